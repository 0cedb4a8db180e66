//! Names made in autossh's private directory, as they are made (inotify): ssh binds its
//! forwards' unix sockets there once it has authenticated.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

/// A non-blocking inotify descriptor watching one directory for new entries.
pub struct DirWatch {
    fd: Inotify,
}

impl DirWatch {
    pub fn open(dir: &Path) -> io::Result<DirWatch> {
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        fd.add_watch(dir, AddWatchFlags::IN_CREATE)?;
        Ok(DirWatch { fd })
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let raw = self.fd.as_fd().as_raw_fd();
        registry.register(&mut SourceFd(&raw), token, Interest::READABLE)
    }

    /// The names made since the last call (the queue read until it is empty; bounded: a
    /// directory autossh alone writes to).
    pub fn names(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        for _ in 0..64 {
            match self.fd.read_events() {
                Ok(evs) if !evs.is_empty() => out.extend(evs.into_iter().filter_map(|e| e.name)),
                _ => break,
            }
        }
        out
    }
}

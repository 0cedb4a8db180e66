//! The pidfile: locked while autossh runs, so a second autossh with it refuses to start.

use crate::error::{runtime, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A locked pidfile, removed on drop.
pub struct Pidfile {
    path: PathBuf,
    file: Flock<File>,
}

impl Pidfile {
    /// Opens and locks the pidfile (before any fork, so a conflict reaches the caller).
    pub fn lock(path: &Path) -> Result<Pidfile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| runtime(format!("cannot open pid file {}: {e}", path.display())))?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(mut f, _)| {
            let mut other = String::new();
            let _ = f.read_to_string(&mut other);
            runtime(format!(
                "pid file {} is locked by another autossh (pid {})",
                path.display(),
                other.trim()
            ))
        })?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes our pid (after `-f` has forked: the daemon's pid).
    pub fn write_pid(&mut self) -> Result<()> {
        let pid = std::process::id();
        let f: &mut File = &mut self.file;
        f.set_len(0)
            .and_then(|_| f.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(f, "{pid}"))
            .and_then(|_| f.flush())
            .map_err(|e| {
                runtime(format!(
                    "cannot write pid file {}: {e}",
                    self.path.display()
                ))
            })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

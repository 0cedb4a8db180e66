//! Network changes on the BSDs and macOS: a `PF_ROUTE` routing socket in the event loop.
//! Every message starts with its length (u16), version and type (u8 each), whatever its
//! header (rt_msghdr, ifa_msghdr, if_msghdr); only the types that change addresses, routes or
//! links count (other processes' route look-ups are echoed to every routing socket too).
//! Linux built portable has no routing socket: `open` fails and changes are not watched.

use mio::{Registry, Token};
use std::io;
use std::os::fd::OwnedFd;

/// A non-blocking routing socket.
pub struct NetWatch {
    #[allow(dead_code)] // only read where a routing socket exists
    fd: OwnedFd,
}

/// RTM_ADD, RTM_DELETE, RTM_CHANGE, RTM_NEWADDR, RTM_DELADDR, RTM_IFINFO: the same numbers in
/// FreeBSD's, OpenBSD's and macOS's <net/route.h>.
const CHANGES: [u8; 6] = [0x1, 0x2, 0x3, 0xc, 0xd, 0xe];

/// Whether one routing message (as read) changed an address, a route or a link: its type is
/// its fourth byte (after the u16 length and the version), whatever its header.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(super) fn is_change(msg: &[u8]) -> bool {
    msg.len() >= 4 && CHANGES.contains(&msg[3])
}

#[cfg(not(target_os = "linux"))]
impl NetWatch {
    pub fn open() -> io::Result<NetWatch> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, libc::AF_UNSPEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just made and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        Ok(NetWatch { fd })
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        registry.register(
            &mut mio::unix::SourceFd(&self.fd.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )
    }

    /// Reads what is queued (bounded, one message a read); whether any of it changed an
    /// address, a route or a link.
    pub fn drain(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 2048];
        let mut any = false;
        for _ in 0..256 {
            // SAFETY: read into a buffer we own, at most its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                any |= is_change(&buf[..n as usize]);
                continue;
            }
            if n == 0 {
                break;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                // ENOBUFS: messages were lost; something may have changed.
                Some(libc::ENOBUFS) => any = true,
                _ => break,
            }
        }
        any
    }
}

#[cfg(target_os = "linux")]
impl NetWatch {
    pub fn open() -> io::Result<NetWatch> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no routing socket in the portable build on Linux",
        ))
    }

    pub fn register(&self, _registry: &Registry, _token: Token) -> io::Result<()> {
        Ok(())
    }

    pub fn drain(&self) -> bool {
        false
    }
}

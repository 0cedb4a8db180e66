//! A bulk download gets a larger send buffer on ssh's end of its unix socket (Linux). ssh
//! writes what it decrypted into that socket; at the kernel's default (net.core.wmem_default,
//! about 208 KiB) a fast transfer fills it, ssh's writes come back short and ssh moves the
//! rest of its buffer down again before each next write. ssh offers no option for it, so
//! autossh (ssh's parent, allowed to by ptrace's rules) takes a duplicate of that descriptor
//! with `pidfd_getfd(2)` and sets `SO_SNDBUF` on it; the socket is the same, ssh's descriptor
//! is untouched. Best effort: where anything of it is refused, nothing changes. The kernel
//! memory this lets one connection queue is what plain `ssh -L`'s TCP socket may queue too
//! (tcp_wmem's maximum, 4 MiB by default), and the application's pace still bounds it.

use std::io;
use std::os::fd::RawFd;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Bytes a connection must have moved towards the application before its ssh end is
/// widened: a query's answer never is, a dump or a file is.
pub const AFTER: u64 = 1 << 20;
/// The send buffer asked for (the kernel caps it at net.core.wmem_max).
#[cfg(target_os = "linux")]
const SNDBUF: libc::c_int = 4 << 20;
/// ssh's descriptors are looked through only while it holds at most this many relayed
/// connections: each widening reads them all.
pub const MAX_CONNS: usize = 64;

/// Widens ssh's (process `pid`) end of the unix socket whose other end is `ours`.
#[cfg(target_os = "linux")]
pub fn widen(pid: u32, ours: RawFd) -> io::Result<()> {
    let peer = diag::peer_inode(ours)?;
    let theirs = fd_with_inode(pid, peer)?;
    let pidfd = syscall_fd(libc::SYS_pidfd_open, pid as libc::c_long, 0)?;
    let dup = syscall_fd(
        libc::SYS_pidfd_getfd,
        pidfd.as_raw_fd() as libc::c_long,
        theirs as libc::c_long,
    )?;
    socket2::SockRef::from(&dup).set_send_buffer_size(SNDBUF as usize)
}

#[cfg(not(target_os = "linux"))]
pub fn widen(_pid: u32, _ours: RawFd) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A syscall that returns a new descriptor (`pidfd_open`, `pidfd_getfd`; `flags` 0).
#[cfg(target_os = "linux")]
fn syscall_fd(nr: libc::c_long, a: libc::c_long, b: libc::c_long) -> io::Result<OwnedFd> {
    // SAFETY: both calls take (int or pid, int or flags, flags) and return a new descriptor
    // or -1; the third argument is 0 (no flags).
    let rc = unsafe {
        if nr == libc::SYS_pidfd_open {
            libc::syscall(nr, a, b)
        } else {
            libc::syscall(nr, a, b, 0)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a descriptor just made for us.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Which of process `pid`'s descriptors is the socket with inode `inode`.
#[cfg(target_os = "linux")]
fn fd_with_inode(pid: u32, inode: u32) -> io::Result<RawFd> {
    let want = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.as_os_str() == want.as_str() {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::from(io::ErrorKind::NotFound))
}

/// The peer of a unix socket, asked of the kernel's socket diagnostics (sock_diag).
#[cfg(target_os = "linux")]
mod diag {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 0x4;
    const UNIX_DIAG_PEER: u16 = 2;
    const NOCOOKIE: u32 = !0;

    /// `struct nlmsghdr` followed by `struct unix_diag_req` (linux/unix_diag.h).
    #[repr(C)]
    struct Request {
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
        family: u8,
        protocol: u8,
        pad: u16,
        states: u32,
        ino: u32,
        show: u32,
        cookie: [u32; 2],
    }

    /// The inode of the socket at the other end of `fd`.
    pub fn peer_inode(fd: RawFd) -> io::Result<u32> {
        // SAFETY: `fd` is open for the length of this call (the caller holds it).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let ino = nix::sys::stat::fstat(borrowed)
            .map_err(io::Error::from)?
            .st_ino as u32;
        // SAFETY: a plain socket call; the descriptor is owned at once.
        let nl = unsafe {
            let s = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            );
            if s < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(s)
        };
        send(&nl, ino)?;
        let mut buf = [0u8; 512];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(nl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse(&buf[..n as usize]).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn send(nl: &OwnedFd, ino: u32) -> io::Result<()> {
        let req = Request {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: libc::NLM_F_REQUEST as u16,
            seq: 1,
            pid: 0,
            family: libc::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: !0,
            ino,
            show: UDIAG_SHOW_PEER,
            cookie: [NOCOOKIE, NOCOOKIE],
        };
        let len = std::mem::size_of::<Request>();
        // SAFETY: req is plain data of `len` bytes; the kernel is the only recipient.
        let n = unsafe { libc::send(nl.as_raw_fd(), (&req as *const Request).cast(), len, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// UNIX_DIAG_PEER from the answer: a nlmsghdr (16 bytes), a unix_diag_msg (16 bytes),
    /// then attributes (length, type, value; each 4-aligned). An error answer has none.
    pub(super) fn parse(msg: &[u8]) -> Option<u32> {
        let u16_at = |i: usize| Some(u16::from_ne_bytes(msg.get(i..i + 2)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_ne_bytes(msg.get(i..i + 4)?.try_into().ok()?));
        if u16_at(4)? != SOCK_DIAG_BY_FAMILY {
            return None;
        }
        let end = (u32_at(0)? as usize).min(msg.len());
        let mut at = 32;
        for _ in 0..64 {
            if at + 4 > end {
                return None;
            }
            let (len, kind) = (u16_at(at)? as usize, u16_at(at + 2)?);
            if kind == UNIX_DIAG_PEER && len >= 8 {
                return u32_at(at + 4);
            }
            if len < 4 {
                return None;
            }
            at += (len + 3) & !3;
        }
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_peer_of_a_socketpair_end_is_the_other_end() {
        let (a, b) = UnixStream::pair().unwrap();
        let b_ino = nix::sys::stat::fstat(&b).unwrap().st_ino as u32;
        assert_eq!(diag::peer_inode(a.as_raw_fd()).unwrap(), b_ino);
        let fd = fd_with_inode(std::process::id(), b_ino).unwrap();
        assert_eq!(fd, b.as_raw_fd());
    }

    #[test]
    fn our_own_end_is_widened_through_its_peer() {
        let (a, b) = UnixStream::pair().unwrap();
        let before = socket2::SockRef::from(&b).send_buffer_size().unwrap();
        widen(std::process::id(), a.as_raw_fd()).unwrap();
        let after = socket2::SockRef::from(&b).send_buffer_size().unwrap();
        assert!(after > before, "SO_SNDBUF {before} -> {after}");
    }

    #[test]
    fn an_error_answer_names_no_peer() {
        let mut msg = vec![0u8; 36];
        msg[0..4].copy_from_slice(&36u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        assert_eq!(diag::parse(&msg), None);
    }
}

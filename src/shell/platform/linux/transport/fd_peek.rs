//! ssh's sockets seen through duplicates of its descriptors (pidfd_getfd): which one is the server connection, and TCP_INFO; the unsafe glue.

use super::*;

/// Finds ssh's server connection among its sockets without reading the host's whole socket
/// table: each of ssh's sockets is looked at through a duplicate. The server connection is
/// the established TCP socket with the lowest descriptor whose local port is not one of
/// ssh's own listeners (connections accepted on `-L` ports share the listener's port).
pub(super) fn server_fd(pidfd: RawFd, sockets: &[(u32, u64)]) -> Option<u32> {
    let (listening, established) = tcp_sockets(pidfd, sockets);
    established
        .into_iter()
        .filter(|(_, port, _)| !listening.contains(port))
        .map(|(fd, _, _)| fd)
        .min()
}

/// ssh's listening ports, and its established TCP connections: (fd, local port, TCP_INFO).
pub(super) type Established = Vec<(u32, u16, libc::tcp_info)>;

/// Looks at each of ssh's sockets through a duplicate (closed at once).
pub(super) fn tcp_sockets(pidfd: RawFd, sockets: &[(u32, u64)]) -> (HashSet<u16>, Established) {
    let mut listening = HashSet::new();
    let mut established = Vec::new();
    for &(fd, _) in sockets {
        let Some(dup) = Dup::take(pidfd, fd) else {
            continue;
        };
        let Some(port) = dup.local_port() else {
            continue;
        };
        if dup.int_opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1) {
            listening.insert(port);
        } else if dup.int_opt(libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP) {
            if let Some(i) = dup.tcp_info().filter(|i| i.tcpi_state == 1) {
                established.push((fd, port, i));
            }
        }
    }
    (listening, established)
}

/// Whether one of ssh's TCP sockets is still connecting: its SYN sent, not answered.
pub(super) fn syn_sent(pidfd: RawFd, sockets: &[(u32, u64)]) -> bool {
    /// `TCP_SYN_SENT` in `tcpi_state`.
    const SYN_SENT: u8 = 2;
    sockets.iter().any(|&(fd, _)| {
        Dup::take(pidfd, fd).is_some_and(|dup| {
            dup.int_opt(libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
                && dup.tcp_info().is_some_and(|i| i.tcpi_state == SYN_SENT)
        })
    })
}

/// A duplicate of another process's descriptor, closed on drop.
pub(super) struct Dup(pub(super) OwnedFd);

impl Dup {
    pub(super) fn take(pidfd: RawFd, fd: u32) -> Option<Dup> {
        // SAFETY: pidfd_getfd returns a new descriptor we own, or -1.
        unsafe {
            let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd as libc::c_int, 0);
            (dup >= 0).then(|| Dup(OwnedFd::from_raw_fd(dup as RawFd)))
        }
    }

    pub(super) fn int_opt(&self, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int we own.
        let rc = unsafe {
            libc::getsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    }

    /// Sets an int socket option on the shared socket (best effort).
    pub(super) fn set_int_opt(&self, level: libc::c_int, name: libc::c_int, v: libc::c_int) {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: setsockopt from a c_int we own.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                len,
            );
        }
    }

    pub(super) fn local_port(&self) -> Option<u16> {
        // SAFETY: getsockname into a sockaddr_storage we own.
        unsafe {
            let mut ss: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getsockname(
                self.0.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ) != 0
            {
                return None;
            }
            match ss.ss_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                    Some(u16::from_be(sin.sin_port))
                }
                libc::AF_INET6 => {
                    let sin6 =
                        &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                    Some(u16::from_be(sin6.sin6_port))
                }
                _ => None,
            }
        }
    }

    pub(super) fn tcp_info(&self) -> Option<libc::tcp_info> {
        // SAFETY: tcp_info is plain data; getsockopt fills at most its size.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            (rc == 0).then_some(info)
        }
    }
}

/// (fd, inode) of every socket ssh holds.
pub(super) fn socket_inodes(pid: u32) -> Option<Vec<(u32, u64)>> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(link) = fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            out.push((fd, ino));
        }
    }
    Some(out)
}

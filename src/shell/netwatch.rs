//! The network under the client: an rtnetlink socket in the event loop tells when addresses,
//! routes or links change; a look at ssh's connection then tells whether its path is gone
//! (its local address left the machine), moved (the server is now reached another way) or
//! untouched (another interface came up).

use crate::core::supervisor::NetPath;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The multicast groups listened to: links, IPv4/IPv6 addresses and routes.
const GROUPS: u32 = (libc::RTMGRP_LINK
    | libc::RTMGRP_IPV4_IFADDR
    | libc::RTMGRP_IPV4_ROUTE
    | libc::RTMGRP_IPV6_IFADDR
    | libc::RTMGRP_IPV6_ROUTE) as u32;

/// A non-blocking `NETLINK_ROUTE` socket subscribed to address, route and link changes.
pub struct NetWatch {
    fd: OwnedFd,
}

impl NetWatch {
    pub fn open() -> io::Result<NetWatch> {
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just made and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; bind reads exactly its size.
        let rc = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = GROUPS;
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetWatch { fd })
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Reads what is queued (bounded); whether anything was. What changed is not parsed:
    /// the look at ssh's connection decides whether it matters.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        for _ in 0..256 {
            // SAFETY: recv into a buffer we own, at most its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // ENOBUFS: messages were lost; something changed all the same.
                Some(libc::ENOBUFS) => any = true,
                _ => break,
            }
        }
        any
    }
}

/// What the machine's addresses and routes now mean for a connection from `local` to `peer`.
pub fn judge_path(local: SocketAddr, peer: SocketAddr) -> NetPath {
    let unspecified = match local {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let mut own = local;
    own.set_port(0);
    match UdpSocket::bind(own) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
            return NetPath::Gone(format!(
                "the client's address {} went away under ssh's connection",
                local.ip()
            ))
        }
        Err(_) => return NetPath::Unknown,
        Ok(_) => {}
    }
    // Which source the kernel would pick for the server now (connect sends nothing).
    let now_from =
        UdpSocket::bind(unspecified).and_then(|s| s.connect(peer).and_then(|_| s.local_addr()));
    match now_from {
        Ok(a) if a.ip() == local.ip() => NetPath::Same,
        Ok(a) => NetPath::Moved(format!(
            "the server {} is now reached from {} (ssh's connection is from {})",
            peer.ip(),
            a.ip(),
            local.ip()
        )),
        Err(e) => NetPath::Moved(format!("no route to the server {} ({e})", peer.ip())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_connection_keeps_its_path() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (local, peer) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        assert_eq!(judge_path(local, peer), NetPath::Same);
    }

    #[test]
    fn an_address_the_machine_does_not_have_is_gone() {
        // TEST-NET-3: never assigned here.
        let local = SocketAddr::from(([203, 0, 113, 77], 40000));
        let peer = SocketAddr::from(([127, 0, 0, 1], 22));
        assert!(matches!(judge_path(local, peer), NetPath::Gone(_)));
    }

    #[test]
    fn another_source_for_the_server_is_a_move() {
        // 127.0.0.2 is the machine's (all of 127/8 is), but 127.0.0.1 is what the kernel
        // picks to reach 127.0.0.1.
        let local = SocketAddr::from(([127, 0, 0, 2], 40000));
        let peer = SocketAddr::from(([127, 0, 0, 1], 22));
        assert!(matches!(judge_path(local, peer), NetPath::Moved(_)));
    }

    #[test]
    fn the_socket_opens_and_drains_without_blocking() {
        let w = NetWatch::open().expect("NETLINK_ROUTE socket");
        let _ = w.drain();
    }
}

//! The network under the client: the platform's watch (rtnetlink on Linux, a routing socket
//! on the BSDs and macOS) tells when addresses, routes or links change; a look at ssh's
//! connection then tells whether its path is gone (its local address left the machine), moved
//! (the server is now reached another way) or untouched (another interface came up).

use crate::core::supervisor::NetPath;
pub use crate::shell::platform::NetWatch;
use std::net::{SocketAddr, UdpSocket};

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
}

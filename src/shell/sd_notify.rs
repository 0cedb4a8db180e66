//! systemd's notify protocol: datagrams to `$NOTIFY_SOCKET` (`READY=1`, `STATUS=`,
//! `WATCHDOG=1`, `STOPPING=1`). Nothing happens when the variable is not set.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notify socket.
pub struct SdNotify {
    socket: UnixDatagram,
    path: String,
    /// Half of `WATCHDOG_USEC`, when systemd asked for a watchdog.
    pub watchdog_every: Option<Duration>,
}

impl SdNotify {
    /// From the environment: `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace)
    /// and `WATCHDOG_USEC` (ignored when `WATCHDOG_PID` names another process).
    pub fn from_env() -> Option<SdNotify> {
        // systemd is Linux's: elsewhere a stray NOTIFY_SOCKET is ignored.
        if !cfg!(target_os = "linux") {
            return None;
        }
        let path = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty())?;
        let socket = UnixDatagram::unbound().ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Some(SdNotify {
            socket,
            path,
            watchdog_every,
        })
    }

    /// Sends one message (newline-separated assignments).
    pub fn send(&self, msg: &str) {
        let result = if let Some(name) = self.path.strip_prefix('@') {
            send_abstract(&self.socket, name, msg)
        } else {
            self.socket.send_to(msg.as_bytes(), &self.path).map(|_| ())
        };
        if let Err(e) = result {
            log::debug!("NOTIFY_SOCKET {}: {e}", self.path);
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, msg: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("abstract sockets need Linux"))
}

//! ssh's server connection where another process's sockets cannot be reached (no
//! pidfd_getfd, no /proc): the same interface as Linux's transport, seeing nothing. A late
//! probe's path is `Unknown` (it waits for the net timeout), no stall is seen (ServerAlive and
//! the probes find a dead link), ssh counts as connected (as through a proxy), and the
//! applications' waits are not looked at (held forwards: the relay tells them).

use crate::core::supervisor::{PathState, Waiting};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// ssh's connection to the server: out of sight here.
pub struct Transport {
    _pid: u32,
}

impl Transport {
    /// This platform does not see ssh's own sockets.
    pub const SEES_SSH_SOCKETS: bool = false;

    pub fn new(pid: u32) -> Transport {
        Transport { _pid: pid }
    }

    /// A probe was sent: nothing to note.
    pub fn probe_sent(&mut self, _probe_len: u64) {}

    /// ssh's connection cannot be reached here: nothing to flush (the supervisor does not
    /// ask: its `flush_acks` follows `SEES_SSH_SOCKETS`).
    pub fn flush_acks(&mut self) {}

    /// A late probe's path: cannot be told.
    pub fn inspect(&mut self, _waited: Duration) -> PathState {
        PathState::Unknown
    }

    /// No look at the server connection.
    pub fn watch(&mut self) -> Option<Look> {
        None
    }

    /// The applications behind ssh's own listeners: not looked at.
    pub fn app_waiting(
        &mut self,
        _skip: Option<u16>,
        _server_sent: Option<Duration>,
        _server_recv: Option<Duration>,
    ) -> Waiting {
        Waiting::NotLooked
    }

    /// ssh's connection's addresses: unknown.
    pub fn endpoints(&mut self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        None
    }

    /// No duplicate of ssh's server socket.
    pub fn server_socket(&mut self) -> Option<OwnedFd> {
        None
    }

    /// Whether ssh's connect to the server is under way: not seen here.
    pub fn connecting(&self) -> bool {
        false
    }

    /// ssh's server connection left stuck at its end: not seen here (nothing is held).
    pub fn take_unfinished(&mut self) -> Option<OwnedFd> {
        None
    }
}

/// What one look at the server connection shows (never made here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub stalled: bool,
    /// Since ssh last sent data to the server.
    pub sent_ago: Duration,
    /// Since ssh last received data from the server.
    pub recv_ago: Duration,
}

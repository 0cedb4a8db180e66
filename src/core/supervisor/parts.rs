//! What the supervisor remembers beside its state, one struct per subject: the probes, loop
//! mode's monitor ports, the way to the server, and the outage under way.

use super::*;

/// The probes: numbering, the round-trip estimate, the last answer.
#[derive(Debug)]
pub(super) struct Probes {
    pub(super) next_seq: u64,
    pub(super) rtt: RttEstimate,
    /// When the last probe came back: its exchange on ssh's connection is not application
    /// traffic.
    pub(super) answered_at: Option<Time>,
}

impl Default for Probes {
    fn default() -> Probes {
        Probes {
            next_seq: 1,
            rtt: RttEstimate::default(),
            answered_at: None,
        }
    }
}

/// Loop mode's ports: the local `-L` port, the remote `-R` port ssh asks the server for, and
/// the ports it must never move onto.
#[derive(Debug)]
pub(super) struct LoopPorts {
    pub(super) local: u16,
    /// Starts equal to `local`, as in 1.4g; moves when the server holds it.
    pub(super) remote: u16,
    /// Ports the other tunnels bind (many tunnels).
    pub(super) reserved: Vec<u16>,
    /// Moves in a row without a proven tunnel.
    pub(super) moves: u32,
}

impl LoopPorts {
    pub(super) fn new(m: &LoopMonitor) -> LoopPorts {
        LoopPorts {
            local: m.local,
            remote: m.local,
            reserved: m.reserved.clone(),
            moves: 0,
        }
    }

    /// The next remote port: two up, wrapping to 20000, never onto a port another tunnel
    /// binds nor onto our own local pair (the server may be this host). Bounded, for a file
    /// that reserves every port.
    pub(super) fn next_remote(&self) -> u16 {
        let step = |p: u16| if p >= 65533 { 20000 } else { p + 2 };
        let mut next = step(self.remote);
        for _ in 0..1000 {
            let taken =
                self.reserved.contains(&next) || next == self.local || next == self.local + 1;
            if !taken {
                break;
            }
            next = step(next);
        }
        next
    }
}

/// The server: the way to it, as far as it is known, and whether it answers.
#[derive(Debug, Default)]
pub(super) struct Server {
    /// ssh goes through a jump host or a proxy command.
    pub(super) proxied: bool,
    /// The server behind the proxy (`host:port`), for the log.
    pub(super) target: Option<String>,
    /// The server's address cannot be checked.
    pub(super) unknown: bool,
    /// Since when reachability checks have failed (while waiting or stalled).
    pub(super) unreachable_since: Option<Time>,
    /// Through a proxy, since when the target has not answered (handshakes through the
    /// proxy are retried at a steady pace meanwhile, see `recovery.rs`).
    pub(super) target_away_since: Option<Time>,
    /// A remote forward's port refused while the server answers: handshakes are retried at
    /// a steady pace until it is free (see `recovery.rs`).
    pub(super) port_held: Option<PortHeld>,
}

/// The tunnel's health as the application sees it: the outage under way, the last proof.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// When the tunnel was last seen failing: to tell how long an outage lasted.
    pub(super) down_since: Option<Time>,
    /// The last proof that the tunnel worked: a probe's echo, or data from the server seen
    /// on ssh's connection. An outage is counted from here, not from when it was noticed.
    pub(super) last_proof: Option<Time>,
    /// `Action::Ready` was given (the first proof).
    pub(super) ready_sent: bool,
}

/// The ssh a planned restart replaced (held forwards, make-before-break): it serves until
/// its successor is proven, then drains its connections and stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Old {
    pub(super) gen: u32,
    /// Its successor is proven: it takes no new connection.
    pub(super) draining: bool,
}

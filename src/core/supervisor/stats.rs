//! Figures the supervisor keeps for logs, the status file, metrics and systemd.

use crate::core::clock::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// How many restarts and RTT samples are remembered.
const KEEP_RESTARTS: usize = 10;
const KEEP_RTTS: usize = 20;

/// Why ssh was restarted, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartKind {
    /// A probe failed on a proven tunnel.
    Probe,
    /// A new ssh never proved its tunnel.
    Unconfirmed,
    /// ssh exited on its own.
    SshExit,
    /// SIGUSR1.
    Signal,
    /// The server held the remote monitor port.
    PortBusy,
    /// ssh's connection stalled and the server answered again.
    Stall,
    /// The client's address under ssh's connection went away.
    Network,
}

impl RestartKind {
    pub const ALL: [RestartKind; 7] = [
        RestartKind::Probe,
        RestartKind::Unconfirmed,
        RestartKind::SshExit,
        RestartKind::Signal,
        RestartKind::PortBusy,
        RestartKind::Stall,
        RestartKind::Network,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RestartKind::Probe => "probe",
            RestartKind::Unconfirmed => "unconfirmed",
            RestartKind::SshExit => "ssh_exit",
            RestartKind::Signal => "signal",
            RestartKind::PortBusy => "port_busy",
            RestartKind::Stall => "stall",
            RestartKind::Network => "network",
        }
    }
}

/// One restart.
#[derive(Debug, Clone)]
pub struct Restart {
    pub at: Time,
    pub kind: RestartKind,
    pub reason: String,
}

/// Counters and figures.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub restarts: u32,
    pub last_rtt: Option<Duration>,
    pub rtt_history: VecDeque<Duration>,
    pub recent_restarts: VecDeque<Restart>,
    pub restarts_by_kind: [u64; RestartKind::ALL.len()],
    pub probe_failures: u64,
    /// Since when the tunnel has been proven up (unset while it is not).
    pub up_since: Option<Time>,
}

impl Stats {
    pub fn record_restart(&mut self, kind: RestartKind, reason: String, at: Time) {
        self.restarts += 1;
        self.restarts_by_kind[kind as usize] += 1;
        if self.recent_restarts.len() == KEEP_RESTARTS {
            self.recent_restarts.pop_front();
        }
        self.recent_restarts.push_back(Restart { at, kind, reason });
        self.up_since = None;
    }

    /// A planned restart with make-before-break: counted, but the tunnel stays up.
    pub fn record_handover(&mut self, reason: String, at: Time) {
        let up = self.up_since;
        self.record_restart(RestartKind::Signal, reason, at);
        self.up_since = up;
    }

    pub fn record_rtt(&mut self, rtt: Duration) {
        self.last_rtt = Some(rtt);
        if self.rtt_history.len() == KEEP_RTTS {
            self.rtt_history.pop_front();
        }
        self.rtt_history.push_back(rtt);
    }

    pub fn restarts_of(&self, kind: RestartKind) -> u64 {
        self.restarts_by_kind[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_ten_restarts_and_counts_all() {
        let mut s = Stats::default();
        for i in 0..15 {
            s.record_restart(
                RestartKind::Probe,
                format!("r{i}"),
                Time::from_origin(Duration::ZERO),
            );
        }
        s.record_restart(
            RestartKind::Stall,
            "x".into(),
            Time::from_origin(Duration::ZERO),
        );
        assert_eq!(s.recent_restarts.len(), 10);
        assert_eq!(s.recent_restarts.back().unwrap().reason, "x");
        assert_eq!(s.restarts_of(RestartKind::Probe), 15);
        assert_eq!(s.restarts, 16);
        for i in 0..30 {
            s.record_rtt(Duration::from_millis(i));
        }
        assert_eq!(s.rtt_history.len(), 20);
        assert_eq!(s.last_rtt, Some(Duration::from_millis(29)));
    }
}

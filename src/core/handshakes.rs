//! Handshake slots: many tunnels to one server start at most a few ssh handshakes at once,
//! so a restarted server's `MaxStartups` never refuses them, and none waits longer than it
//! must (a slot frees the moment its handshake is proven, ends, or has taken too long).

use crate::core::clock::Time;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Handshakes in flight to one server at most (sshd's default `MaxStartups 10:30:100`
/// refuses beyond 10 unauthenticated connections; other clients need some too).
pub const PER_SERVER: usize = 4;
/// A handshake holds its slot this long at most.
pub const HOLD: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Server {
    /// Tunnel slots holding a handshake slot, and since when.
    in_flight: Vec<(usize, Time)>,
    /// Tunnel slots waiting, first come first served.
    waiting: VecDeque<usize>,
}

/// The slots of every server.
pub struct Handshakes {
    per_server: usize,
    hold: Duration,
    servers: HashMap<String, Server>,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes::new(PER_SERVER, HOLD)
    }
}

impl Handshakes {
    pub fn new(per_server: usize, hold: Duration) -> Handshakes {
        Handshakes {
            per_server: per_server.max(1),
            hold,
            servers: HashMap::new(),
        }
    }

    /// Tunnel `tunnel` wants to start a handshake with `server`: true when it may now
    /// (it then holds a slot), false when it waits for [`Handshakes::grants`].
    pub fn ask(&mut self, server: &str, tunnel: usize, now: Time) -> bool {
        self.forget(tunnel);
        let s = self.servers.entry(server.to_string()).or_default();
        if s.in_flight.len() < self.per_server && s.waiting.is_empty() {
            s.in_flight.push((tunnel, now));
            true
        } else {
            s.waiting.push_back(tunnel);
            false
        }
    }

    /// The tunnels that hold a slot.
    pub fn holders(&self) -> Vec<usize> {
        self.servers
            .values()
            .flat_map(|s| s.in_flight.iter().map(|&(t, _)| t))
            .collect()
    }

    /// Whether `tunnel` waits for a slot.
    #[cfg(test)]
    pub fn is_waiting(&self, tunnel: usize) -> bool {
        self.servers.values().any(|s| s.waiting.contains(&tunnel))
    }

    /// `tunnel` no longer needs its slot or its place in the queue (proven, ended, removed).
    pub fn forget(&mut self, tunnel: usize) {
        for s in self.servers.values_mut() {
            s.in_flight.retain(|&(t, _)| t != tunnel);
            s.waiting.retain(|&t| t != tunnel);
        }
        self.servers
            .retain(|_, s| !s.in_flight.is_empty() || !s.waiting.is_empty());
    }

    /// Frees slots held too long, then gives free slots to waiting tunnels: those may start now.
    pub fn grants(&mut self, now: Time) -> Vec<usize> {
        let mut out = Vec::new();
        for s in self.servers.values_mut() {
            s.in_flight
                .retain(|&(_, since)| now.since(since) < self.hold);
            while s.in_flight.len() < self.per_server {
                let Some(t) = s.waiting.pop_front() else {
                    break;
                };
                s.in_flight.push((t, now));
                out.push(t);
            }
            // INVARIANT: at most `per_server` handshakes in flight to one server.
            debug_assert!(s.in_flight.len() <= self.per_server);
        }
        out
    }

    /// When a held slot next times out (the event loop's poll must wake for it).
    pub fn next_deadline(&self) -> Option<Time> {
        self.servers
            .values()
            .filter(|s| !s.waiting.is_empty())
            .flat_map(|s| s.in_flight.iter().map(|&(_, since)| since + self.hold))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Time {
        Time::from_origin(Duration::from_secs(1))
    }

    #[test]
    fn at_most_n_per_server_and_first_come_first_served() {
        let mut h = Handshakes::new(2, HOLD);
        let now = t0();
        assert!(h.ask("a:22", 1, now));
        assert!(h.ask("a:22", 2, now));
        assert!(!h.ask("a:22", 3, now));
        assert!(!h.ask("a:22", 4, now));
        // Another server has its own slots.
        assert!(h.ask("b:22", 5, now));
        assert!(h.grants(now).is_empty());
        h.forget(2);
        assert_eq!(h.grants(now), vec![3]);
        assert!(h.is_waiting(4));
        h.forget(1);
        assert_eq!(h.grants(now), vec![4]);
        assert!(!h.is_waiting(4));
    }

    #[test]
    fn a_slot_held_too_long_is_freed() {
        let mut h = Handshakes::new(1, Duration::from_secs(10));
        let now = t0();
        assert!(h.ask("a:22", 1, now));
        assert!(!h.ask("a:22", 2, now));
        assert_eq!(h.next_deadline(), Some(now + Duration::from_secs(10)));
        assert!(h.grants(now + Duration::from_secs(9)).is_empty());
        assert_eq!(h.grants(now + Duration::from_secs(10)), vec![2]);
        assert_eq!(h.holders(), vec![2]);
    }

    #[test]
    fn a_newcomer_does_not_jump_the_queue() {
        let mut h = Handshakes::new(1, HOLD);
        let now = t0();
        assert!(h.ask("a:22", 1, now));
        assert!(!h.ask("a:22", 2, now));
        h.forget(1);
        // 2 waits for grants(); 3 asking now must queue behind it.
        assert!(!h.ask("a:22", 3, now));
        assert_eq!(h.grants(now), vec![2]);
    }
}

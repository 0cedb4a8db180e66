//! Handshake slots: many tunnels to one server start only as many ssh handshakes at once as
//! the server's `MaxStartups` lets through, so none is refused and none waits longer than it
//! must (a slot frees the moment its handshake is proven, ends, or has taken too long). When
//! the server cuts one before its banner anyway (other clients count too, or its
//! `MaxStartups` is lower), fewer go at once for a while: the window halves and the server
//! gets a short pause; then a window's worth of handshakes proven lets one more go at once,
//! back to [`MOST`] (TCP's congestion avoidance: it settles just below what the server
//! takes instead of swinging past it).

use crate::core::clock::Time;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Handshakes in flight to one server at most. sshd's default `MaxStartups 10:30:100` may
/// drop a connection that arrives while 10 unauthenticated ones are open; of those 10, one is
/// left to the tunnels' shared reachability check and one to everyone else.
pub const MOST: usize = 8;
/// A handshake holds its slot this long at most.
pub const HOLD: Duration = Duration::from_secs(10);
/// After the server cut a handshake before its banner, no new one starts for this long (the
/// handshakes it is busy with finish meanwhile).
pub const PAUSE: Duration = Duration::from_millis(500);

/// How a handshake that held a slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The tunnel works (proven).
    Proven,
    /// The server closed or reset the connection before its banner (`MaxStartups`).
    Cut,
    /// ssh ended otherwise, or the tunnel was stopped.
    Failed,
}

/// One server's slots.
struct Server {
    /// Tunnel slots holding a handshake slot, and since when.
    in_flight: Vec<(usize, Time)>,
    /// Tunnel slots waiting, first come first served.
    waiting: VecDeque<usize>,
    /// How many may be in flight now (1 to `most`).
    window: usize,
    /// Handshakes proven since the window last changed.
    proven: usize,
    /// No new handshake before this (after a cut).
    paused_until: Option<Time>,
}

impl Server {
    fn new(window: usize) -> Server {
        Server {
            in_flight: Vec::new(),
            waiting: VecDeque::new(),
            window,
            proven: 0,
            paused_until: None,
        }
    }

    /// Whether a handshake may start now.
    fn has_room(&self, now: Time) -> bool {
        self.in_flight.len() < self.window && self.paused_until.is_none_or(|p| now >= p)
    }
}

/// The slots of every server.
pub struct Handshakes {
    most: usize,
    hold: Duration,
    pause: Duration,
    servers: HashMap<String, Server>,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes::new(MOST, HOLD, PAUSE)
    }
}

impl Handshakes {
    pub fn new(most: usize, hold: Duration, pause: Duration) -> Handshakes {
        Handshakes {
            most: most.max(1),
            hold,
            pause,
            servers: HashMap::new(),
        }
    }

    /// Tunnel `tunnel` wants to start a handshake with `server`: true when it may now
    /// (it then holds a slot), false when it waits for [`Handshakes::grants`].
    pub fn ask(&mut self, server: &str, tunnel: usize, now: Time) -> bool {
        self.forget(tunnel);
        let most = self.most;
        let s = self
            .servers
            .entry(server.to_string())
            .or_insert_with(|| Server::new(most));
        if s.has_room(now) && s.waiting.is_empty() {
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

    /// How many handshakes may be in flight to `server` now.
    pub fn window(&self, server: &str) -> usize {
        self.servers.get(server).map_or(self.most, |s| s.window)
    }

    /// The handshake `tunnel` holds a slot for is over, `how`: its slot is free. A cut
    /// halves the window and pauses the server (once per pause: the handshakes cut in one
    /// burst count once); as many proven as the window holds widen it by one. Returns the
    /// new window when it shrank.
    pub fn finish(&mut self, tunnel: usize, how: Ended, now: Time) -> Option<usize> {
        let (most, pause) = (self.most, self.pause);
        let s = self
            .servers
            .values_mut()
            .find(|s| s.in_flight.iter().any(|&(t, _)| t == tunnel))?;
        s.in_flight.retain(|&(t, _)| t != tunnel);
        let shrank = match how {
            Ended::Proven => {
                s.proven += 1;
                if s.proven >= s.window && s.window < most {
                    s.window += 1;
                    s.proven = 0;
                }
                None
            }
            Ended::Cut if s.paused_until.is_none_or(|p| now >= p) => {
                s.window = (s.window / 2).max(1);
                s.proven = 0;
                s.paused_until = Some(now + pause);
                Some(s.window)
            }
            Ended::Cut | Ended::Failed => None,
        };
        self.tidy();
        shrank
    }

    /// `tunnel` no longer needs its slot or its place in the queue (ended, removed).
    pub fn forget(&mut self, tunnel: usize) {
        for s in self.servers.values_mut() {
            s.in_flight.retain(|&(t, _)| t != tunnel);
            s.waiting.retain(|&t| t != tunnel);
        }
        self.tidy();
    }

    /// Drops the servers with nothing to remember: none in flight or waiting, the window
    /// whole and no pause.
    fn tidy(&mut self) {
        let most = self.most;
        self.servers.retain(|_, s| {
            !s.in_flight.is_empty()
                || !s.waiting.is_empty()
                || s.window < most
                || s.paused_until.is_some()
        });
    }

    /// Frees slots held too long, then gives free slots to waiting tunnels: those may start now.
    pub fn grants(&mut self, now: Time) -> Vec<usize> {
        let mut out = Vec::new();
        for s in self.servers.values_mut() {
            s.in_flight
                .retain(|&(_, since)| now.since(since) < self.hold);
            if s.paused_until.is_some_and(|p| now >= p) {
                s.paused_until = None;
            }
            while s.has_room(now) {
                let Some(t) = s.waiting.pop_front() else {
                    break;
                };
                s.in_flight.push((t, now));
                out.push(t);
            }
            // INVARIANT: at most `most` handshakes in flight to one server.
            debug_assert!(s.in_flight.len() <= self.most);
        }
        self.tidy();
        out
    }

    /// When waiting tunnels may next get a slot without a handshake ending first: a held
    /// slot times out, or a pause ends (the event loop's poll must wake for it).
    pub fn next_deadline(&self) -> Option<Time> {
        self.servers
            .values()
            .filter(|s| !s.waiting.is_empty())
            .flat_map(|s| {
                let holds = s.in_flight.iter().map(|&(_, since)| since + self.hold);
                holds.chain(s.paused_until)
            })
            .min()
    }
}

#[cfg(test)]
mod tests;

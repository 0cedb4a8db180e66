//! Connections coming in: accepted at once, relayed when a proven ssh is there, held (in
//! order, bounded) when none is, reset when they have waited too long or too many wait.

use super::*;
use mio::net::UnixStream;

impl Relay {
    /// Accepts every connection waiting on listener `li`.
    pub(super) fn accept(&mut self, registry: &Registry, li: usize, now: Instant) {
        for _ in 0..4096 {
            let Some((forward, l)) = self.listeners.get(li) else {
                return;
            };
            let forward = *forward;
            let peer = match l {
                Listener::Tcp(t) => t.accept().map(|(s, _)| {
                    // As ssh does with the connections it accepts for a forward.
                    let _ = s.set_nodelay(true);
                    Peer::Tcp(s)
                }),
                Listener::Unix { listener, .. } => listener.accept().map(|(s, _)| Peer::Unix(s)),
            };
            match peer {
                Ok(p) => self.admit(registry, forward, p, now),
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE): the connection stays in the queue; it is
                    // taken when one frees, or reset by the kernel's limits.
                    warn!("cannot accept a connection on {}: {e}", l.describe());
                    return;
                }
            }
        }
    }

    /// A new connection: relayed now if it can be, else held, else reset.
    fn admit(&mut self, registry: &Registry, forward: usize, client: Peer, now: Instant) {
        let routed = self.route != Route::Hold;
        if !routed && self.held.len() >= self.cfg.hold_max {
            self.stats.overflowed += 1;
            debug!("{} connections wait already: reset", self.held.len());
            client.reset();
            return;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut conn = Conn::new(forward, client);
        if let Err(e) = conn.client_mut().register(registry, self.token(id, false)) {
            warn!("cannot watch a connection: {e}");
            self.free.push(id);
            return;
        }
        self.slots[id] = Some(Slot {
            conn,
            accepted: now,
            gen: None,
        });
        if !routed || !self.relay_one(registry, id, now) {
            self.hold_conn(id);
        }
    }

    fn hold_conn(&mut self, id: usize) {
        self.held.push_back(id);
        self.stats.held = self.held.len();
        self.stats.held_total += 1;
    }

    pub(super) fn token(&self, id: usize, upstream: bool) -> Token {
        Token(self.base + CONNS + 2 * id + usize::from(upstream))
    }

    /// Relays the held connections, oldest first, while ssh's sockets take them.
    pub(super) fn release(&mut self, registry: &Registry, now: Instant) {
        while let Some(&id) = self.held.front() {
            if self.route == Route::Hold {
                return;
            }
            if !self.relay_one(registry, id, now) {
                self.retry_at = Some(now + RETRY_EVERY);
                return;
            }
            self.held.pop_front();
            self.stats.held = self.held.len();
        }
    }

    /// Connects connection `id` to its forward's socket of the ssh routed to; false when
    /// that socket is not there yet or its queue is full (try again later).
    fn relay_one(&mut self, registry: &Registry, id: usize, now: Instant) -> bool {
        let Route::To(gen) = self.route else {
            return false;
        };
        let Some(g) = self.gens.iter_mut().find(|g| g.gen == gen) else {
            return false;
        };
        let Some(slot) = self.slots[id].as_mut() else {
            return true;
        };
        let Some(path) = g.sockets.get(slot.conn.forward) else {
            return false;
        };
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e) => {
                debug!("ssh's socket {} refuses for now: {e}", path.display());
                return false;
            }
        };
        // INVARIANT: a connection is relayed to at most one ssh (a held one, once).
        debug_assert!(slot.gen.is_none() && !slot.conn.is_relayed());
        let mut peer = Peer::Unix(stream);
        let token = Token(self.base + CONNS + 2 * id + 1);
        if peer.register(registry, token).is_err() {
            return false;
        }
        slot.conn.relay(peer, now);
        slot.gen = Some(gen);
        g.conns += 1;
        self.stats.open += 1;
        self.stats.relayed_total += 1;
        // Whatever arrived while it waited is moved now.
        self.step(registry, id, now);
        true
    }

    /// Held connections that have waited `AUTOSSH_HOLD_TIME` are reset.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant) {
        while let Some(&id) = self.held.front() {
            let due = self.slots[id]
                .as_ref()
                .is_none_or(|s| now.saturating_duration_since(s.accepted) >= self.cfg.hold_time);
            if !due {
                return;
            }
            self.held.pop_front();
            self.stats.held = self.held.len();
            if self.slots[id].is_some() {
                self.stats.expired += 1;
                debug!(
                    "a connection waited {} s for the tunnel: reset",
                    self.cfg.hold_time.as_secs()
                );
                self.close(registry, id, Step::UpstreamBroken);
            }
        }
    }
}

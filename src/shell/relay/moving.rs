//! Bytes moving: a relayed connection's readiness, its steps, its end; a held one whose
//! application gave up.

use super::*;

impl Relay {
    pub(super) fn conn_ready(
        &mut self,
        registry: &Registry,
        id: usize,
        upstream: bool,
        ev: Readiness,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.as_mut()) else {
            return;
        };
        if !slot.conn.is_relayed() {
            // Held: nothing is read while it waits; an end means the application gave up,
            // and it is never forwarded.
            if ev.closed {
                self.held.retain(|&h| h != id);
                self.stats.held = self.held.len();
                self.stats.abandoned += 1;
                debug!("a waiting connection was closed by its application");
                self.close(registry, id, Step::ClientBroken);
            }
            return;
        }
        // An end or an error is seen by the next read or write.
        let readable = ev.readable || ev.closed;
        slot.conn
            .ready(upstream, readable, ev.writable || ev.closed);
        self.step(registry, id, now);
    }

    /// Moves what connection `id` can move, and ends it when it is done or broken.
    pub(super) fn step(&mut self, registry: &Registry, id: usize, now: Instant) {
        let since = self.unsure.iter().find(|u| u.0 == id).map(|u| u.1);
        let settled = since.map_or(SSH_EXIT_SETTLES_IN.is_zero(), |at| {
            at + SSH_EXIT_SETTLES_IN <= now
        });
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.as_mut()) else {
            return;
        };
        let gen = slot.gen.and_then(|g| self.gens.iter().find(|x| x.gen == g));
        let (dying, pid) = gen.map_or((true, 0), |g| (g.dying, g.pid));
        let server = gen.and_then(|g| g.server.as_ref());
        // Looked at only when ssh's side of a connection ends.
        let upstream_dying = || dying || exiting(pid) || server.is_some_and(connection_gone);
        let (step, (out, back)) = slot
            .conn
            .step(&mut self.pool, now, &upstream_dying, settled);
        self.stats.bytes_out += out;
        self.stats.bytes_in += back;
        if back > 0 {
            self.last_in = Some(now);
        }
        if since.is_some() && step != Step::Unsure {
            self.unsure.retain(|u| u.0 != id);
        }
        match step {
            Step::Open { more: true } => self.pending.push(id),
            Step::Open { more: false } => {}
            Step::Unsure if since.is_none() => self.unsure.push((id, now)),
            Step::Unsure => {}
            how => self.close(registry, id, how),
        }
    }

    /// Ends connection `id` as `how` says, and frees its slot.
    pub(super) fn close(&mut self, registry: &Registry, id: usize, how: Step) {
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.take()) else {
            return;
        };
        if let Some(gen) = slot.gen {
            self.stats.open -= 1;
            if let Some(g) = self.gens.iter_mut().find(|g| g.gen == gen) {
                g.conns -= 1;
                if g.draining && g.conns == 0 {
                    self.notes.push(Note::Drained(gen));
                }
            }
        }
        slot.conn.close(registry, how, &mut self.pool);
        self.pending.retain(|&p| p != id);
        self.unsure.retain(|u| u.0 != id);
        self.free.push(id);
    }

    /// Notes a change between "connections open or waiting" and "none".
    pub(super) fn note_busy(&mut self) {
        let busy = self.stats.open + self.held.len() > 0;
        if busy != self.busy {
            self.busy = busy;
            self.notes.push(Note::Busy(busy));
        }
    }
}

/// Whether process `pid` is exiting or gone: an end of ssh's socket is then ssh's death,
/// not the server closing its side (`platform::ssh_exiting`).
fn exiting(pid: u32) -> bool {
    crate::shell::platform::ssh_exiting(pid)
}

/// Whether ssh's connection to the server has ended (the server's end closed or reset it):
/// ssh's channels then end with it, and their ends are not the server's half-closes.
fn connection_gone(fd: &std::os::fd::OwnedFd) -> bool {
    crate::shell::platform::connection_gone(fd)
}

//! Reachability checks one tunnel runs for itself and the tunnels sharing its server.

use super::*;

impl Tunnel {
    pub(super) fn note_reached(&mut self, e: &Event) {
        if let Event::Reachable(ok) = e {
            self.reached = Some(*ok);
        }
    }

    /// Checks its server now, for itself and the tunnels sharing the check; the answer
    /// when it is known at once (else [`Tunnel::take_reached`] has it later).
    pub fn check_reach_now(&mut self, registry: &Registry) -> Option<bool> {
        self.reached = None;
        let e = self.reach.check(registry)?;
        self.note_reached(&e);
        self.queue.push_back(e);
        self.reached.take()
    }

    /// The answer of its last check, once.
    pub fn take_reached(&mut self) -> Option<bool> {
        self.reached.take()
    }
}

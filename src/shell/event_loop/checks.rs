//! Many tunnels to one server share its reachability checks: one TCP connect at a time per
//! server, its answer handed to every tunnel that asked meanwhile.

use super::*;

/// An answer this young is given again instead of checking anew (less than the checks' pace:
/// each tick of the tunnels' shared grid gets one new check).
const FRESH: Duration = Duration::from_millis(100);
/// A check without an answer this long is given up (its tunnel stopped checking).
const STALE: Duration = Duration::from_millis(1500);

/// One server's check.
#[derive(Default)]
pub(super) struct SharedCheck {
    /// The tunnel checking for all, and since when.
    by: Option<(usize, Instant)>,
    /// Tunnels waiting for that check's answer.
    waiters: Vec<usize>,
    /// The last answer and when it came.
    last: Option<(Instant, bool)>,
}

impl Runner {
    /// Tunnel `i` wants its server checked.
    pub(super) fn check_reach(&mut self, i: usize) {
        let now = Instant::now();
        let server = match self.slots.get(i) {
            Some(Some(Slot { def: Some(d), .. })) => d.server.clone(),
            _ => return,
        };
        let c = self.fleet.checks.entry(server.clone()).or_default();
        if let Some((_, ok)) = c.last.filter(|(at, _)| now.duration_since(*at) < FRESH) {
            if let Some(Some(s)) = self.slots.get_mut(i) {
                s.tunnel.push(Event::Reachable(ok));
            }
            return;
        }
        let busy = c.by.is_some_and(|(j, since)| {
            j != i
                && now.duration_since(since) < STALE
                && matches!(self.slots.get(j), Some(Some(s)) if s.tunnel.ended().is_none())
        });
        if busy {
            if !c.waiters.contains(&i) {
                c.waiters.push(i);
            }
            return;
        }
        c.by = Some((i, now));
        let registry = self.poll.registry();
        let answer = match self.slots.get_mut(i) {
            Some(Some(s)) => {
                let _log = tunnel_context(s.tunnel.name());
                s.tunnel.check_reach_now(registry)
            }
            _ => None,
        };
        if let Some(ok) = answer {
            self.answer_check(&server, ok);
        }
    }

    /// Takes the answers of checks in flight and hands them to the waiting tunnels.
    pub(super) fn share_check_answers(&mut self) {
        let mut answers = Vec::new();
        for (server, c) in &self.fleet.checks {
            if let Some((j, _)) = c.by {
                if let Some(Some(s)) = self.slots.get_mut(j) {
                    if let Some(ok) = s.tunnel.take_reached() {
                        answers.push((server.clone(), ok));
                    }
                }
            }
        }
        for (server, ok) in answers {
            self.answer_check(&server, ok);
        }
    }

    fn answer_check(&mut self, server: &str, ok: bool) {
        let Some(c) = self.fleet.checks.get_mut(server) else {
            return;
        };
        c.by = None;
        c.last = Some((Instant::now(), ok));
        for w in std::mem::take(&mut c.waiters) {
            if let Some(Some(s)) = self.slots.get_mut(w) {
                if s.tunnel.ended().is_none() {
                    s.tunnel.push(Event::Reachable(ok));
                }
            }
        }
    }
}

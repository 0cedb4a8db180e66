//! Loop mode's listener: connections accepted, read at once, the probe's echo recognised.

use super::*;

impl Monitor {
    /// Accepts what is queued. Each connection is read at once, so the one carrying the
    /// probe is recognised even in a crowd, and junk is closed before it takes a slot.
    pub(super) fn accept(&mut self, registry: &Registry) -> Option<Event> {
        // Bounded: a flood cannot keep the loop here.
        for _ in 0..1024 {
            let listener = self.listener.as_ref()?;
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let slot = self.free_slot(registry);
                    let token = Token(self.base + INBOUND_FIRST + slot);
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.accepted += 1;
                    self.inbound[slot] = Some(Inbound {
                        stream,
                        got: Vec::new(),
                        during: self.current.as_ref().map(|c| c.seq),
                        order: self.accepted,
                    });
                    if let Some(e) = self.inbound_ready(registry, slot) {
                        return Some(e);
                    }
                }
                Err(e) if interrupted(&e) => continue,
                Err(_) => break, // WouldBlock, or a transient accept error
            }
        }
        None
    }

    /// A free slot; when all are taken, the connection least likely to carry the probe
    /// goes: one accepted before the probe in flight left, else the oldest.
    pub(super) fn free_slot(&mut self, registry: &Registry) -> usize {
        if let Some(i) = self.inbound.iter().position(Option::is_none) {
            return i;
        }
        let current = self.current.as_ref().map(|c| c.seq);
        let victim = (0..INBOUND_SLOTS)
            .min_by_key(|&i| {
                let c = self.inbound[i].as_ref();
                let stale = c.is_some_and(|c| current.is_none() || c.during != current);
                (!stale, c.map(|c| c.order).unwrap_or(0))
            })
            .unwrap_or(0);
        self.close_inbound(registry, victim);
        victim
    }

    pub(super) fn inbound_ready(&mut self, registry: &Registry, slot: usize) -> Option<Event> {
        let inbound = self.inbound.get_mut(slot)?.as_mut()?;
        // A probe line is far shorter: more is junk, judged as it stands.
        let closed = read_available(&mut inbound.stream, &mut inbound.got, 1025) == ReadEnd::Closed;
        let verdict = match self.current.as_ref() {
            Some(cur) if matches!(cur.state, OutState::Sent { .. }) => {
                compare(&cur.bytes, &inbound.got)
            }
            // ssh forwards the connection as soon as ours is accepted, so it can be here
            // before our connect was seen complete: empty, it may still carry the probe.
            Some(_) if inbound.got.is_empty() && !closed => Echo::Partial,
            // Bytes before we sent any: not ours.
            _ => Echo::Wrong,
        };
        match verdict {
            Echo::Complete => {
                let seq = self.current.as_ref().map(|c| c.seq)?;
                self.drop_probe(registry);
                Some(Event::ProbeEchoed { seq })
            }
            // Junk, a stale echo or another client's probe: never a success, never a
            // failure either (anyone on this host can connect here). Drop the connection.
            Echo::Wrong => {
                self.close_inbound(registry, slot);
                None
            }
            Echo::Partial if closed => {
                self.close_inbound(registry, slot);
                None
            }
            Echo::Partial => None,
        }
    }

    pub(super) fn close_inbound(&mut self, registry: &Registry, slot: usize) {
        if let Some(mut i) = self.inbound[slot].take() {
            let _ = registry.deregister(&mut i.stream);
        }
    }
}

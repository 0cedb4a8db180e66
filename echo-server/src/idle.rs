//! Idle deadlines: a sorted set of (deadline, token), one entry per open connection.
//!
//! Activity does not touch the set; when an entry comes due, the connection's real deadline
//! (last activity + timeout) decides: close it, or queue it again for later.

use mio::Token;
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct IdleQueue {
    set: BTreeSet<(Instant, Token)>,
}

impl IdleQueue {
    pub fn insert(&mut self, deadline: Instant, token: Token) {
        self.set.insert((deadline, token));
    }

    pub fn remove(&mut self, deadline: Instant, token: Token) {
        self.set.remove(&(deadline, token));
    }

    /// The earliest queued deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|(d, _)| *d)
    }

    /// Takes the entry due first if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token)> {
        match self.set.first() {
            Some(&(d, _)) if d <= now => self.set.pop_first(),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = IdleQueue::default();
        q.insert(t0 + 3 * s, Token(1));
        q.insert(t0 + s, Token(2));
        q.insert(t0 + s, Token(3));
        q.insert(t0 + 2 * s, Token(4));
        q.remove(t0 + 2 * s, Token(4));
        assert_eq!(q.next(), Some(t0 + s));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + s), Some((t0 + s, Token(2))));
        assert_eq!(q.pop_due(t0 + s), Some((t0 + s, Token(3))));
        assert_eq!(q.pop_due(t0 + 2 * s), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0 + 9 * s), Some((t0 + 3 * s, Token(1))));
        assert!(q.is_empty());
    }
}

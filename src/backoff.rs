//! Restart pacing: how long to wait before starting ssh again. I/O-free; the one place
//! that holds the curve.

use std::time::Duration;

/// autossh 1.4g's rule: count quick deaths in a row; after five, wait
/// `POLL/100 · t²/3` seconds (`t = tries − 5`), capped at POLL.
#[derive(Debug, Clone)]
pub struct Backoff {
    poll: Duration,
    tries: u32,
}

impl Backoff {
    pub fn new(poll: Duration) -> Backoff {
        Backoff { poll, tries: 0 }
    }

    /// Quick deaths in a row so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// The minimum life that counts as "not quick": `max(POLL/10, 10 s)`.
    fn min_life(&self) -> Duration {
        Duration::from_secs((self.poll.as_secs() / 10).max(10))
    }

    /// Called before a restart with how long the previous ssh lived; returns the wait.
    pub fn next_delay(&mut self, lived: Duration) -> Duration {
        if lived >= self.min_life() {
            self.tries = 0;
        } else {
            self.tries += 1;
        }
        if self.tries <= 5 {
            return Duration::ZERO;
        }
        let t = f64::from(self.tries - 5);
        let poll = self.poll.as_secs();
        let n = ((poll as f64 / 100.0) * (t * (t / 3.0))) as u64;
        Duration::from_secs(n.min(poll))
    }

    /// Forget the quick deaths (the tunnel was proven to work).
    pub fn reset(&mut self) {
        self.tries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_matches_1_4g_at_default_poll() {
        let mut b = Backoff::new(Duration::from_secs(600));
        let quick = Duration::from_secs(1);
        let delays: Vec<u64> = (0..12).map(|_| b.next_delay(quick).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 0, 0, 2, 8, 18, 32, 50, 72, 98]);
        for _ in 0..100 {
            assert!(b.next_delay(quick) <= Duration::from_secs(600));
        }
        assert_eq!(b.next_delay(quick), Duration::from_secs(600));
    }

    #[test]
    fn a_long_life_resets_the_count() {
        let mut b = Backoff::new(Duration::from_secs(600));
        for _ in 0..8 {
            b.next_delay(Duration::ZERO);
        }
        assert_eq!(b.next_delay(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(b.tries(), 0);
        // With a short poll the floor of 10 s applies.
        let mut b = Backoff::new(Duration::from_secs(4));
        b.next_delay(Duration::from_secs(9));
        assert_eq!(b.tries(), 1);
        b.next_delay(Duration::from_secs(10));
        assert_eq!(b.tries(), 0);
    }
}

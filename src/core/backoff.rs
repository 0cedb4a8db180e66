//! Restart pacing: how long to wait before the next ssh handshake. I/O-free; the one place
//! that holds the curve.
//!
//! Capped exponential backoff with jitter. The first retry after a quick death is
//! immediate; then 0.5 s, 1 s, 2 s ... up to the cap, each drawn from `[d/2, d]` so a fleet
//! of autossh processes does not hit a returning server in lockstep. Between handshakes the
//! supervisor runs cheap reachability checks, so a returning server is found within a fraction
//! of a second however long the wait (see `supervisor.rs`); the backoff only paces handshakes
//! that fail while the server answers TCP. A configuration error waits the whole cap.

use std::time::Duration;

/// Lowest cap: a short AUTOSSH_POLL does not turn retries into a hammer.
const MIN_CAP: Duration = Duration::from_secs(5);
/// Highest cap: autossh 1.4g's wait grew to a whole poll (600 s); ours stops at 30 s.
const MAX_CAP: Duration = Duration::from_secs(30);
const FIRST_STEP: Duration = Duration::from_millis(500);

/// The backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    poll: Duration,
    tries: u32,
    rng: u64,
}

impl Backoff {
    /// `seed` feeds the jitter (any value; tests fix it).
    pub fn new(poll: Duration, seed: u64) -> Backoff {
        Backoff {
            poll,
            tries: 0,
            rng: seed | 1,
        }
    }

    /// Quick deaths in a row so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// The longest wait between handshakes: POLL, within [5 s, 30 s].
    pub fn cap(&self) -> Duration {
        self.poll.clamp(MIN_CAP, MAX_CAP)
    }

    /// The minimum life that counts as "not quick" (1.4g's rule): `max(POLL/10, 10 s)`.
    fn min_life(&self) -> Duration {
        Duration::from_secs((self.poll.as_secs() / 10).max(10))
    }

    /// Called before a restart with how long the previous ssh lived; returns the wait.
    /// `config_error`: ssh failed in a way retrying cannot fix soon; wait the whole cap.
    pub fn next_delay(&mut self, lived: Duration, config_error: bool) -> Duration {
        if lived >= self.min_life() {
            self.tries = 0;
        } else {
            self.tries += 1;
        }
        if config_error {
            return self.cap();
        }
        if self.tries <= 1 {
            return Duration::ZERO;
        }
        let exp = (self.tries - 2).min(16);
        let full = (FIRST_STEP * 2u32.pow(exp)).min(self.cap());
        // Jitter: uniform in [full/2, full].
        let frac = (self.next_random() % 1000) as f64 / 1000.0;
        full.mul_f64(0.5 + frac / 2.0)
    }

    /// Forget the quick deaths.
    pub fn reset(&mut self) {
        self.tries = 0;
    }

    /// xorshift64: jitter needs no more.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(600), 42);
        let quick = Duration::from_secs(1);
        assert_eq!(b.next_delay(quick, false), Duration::ZERO);
        let mut prev_full = Duration::ZERO;
        for i in 0..12 {
            let d = b.next_delay(quick, false);
            let full = (FIRST_STEP * 2u32.pow(i)).min(Duration::from_secs(30));
            assert!(
                d >= full / 2 && d <= full,
                "try {i}: {d:?} not in [{full:?}/2, {full:?}]"
            );
            assert!(full >= prev_full);
            prev_full = full;
        }
        assert_eq!(prev_full, Duration::from_secs(30));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let quick = Duration::from_secs(1);
        let run = |seed| {
            let mut b = Backoff::new(Duration::from_secs(600), seed);
            (0..8)
                .map(|_| b.next_delay(quick, false))
                .collect::<Vec<_>>()
        };
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn cap_follows_the_poll_within_bounds() {
        assert_eq!(
            Backoff::new(Duration::from_secs(4), 1).cap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            Backoff::new(Duration::from_secs(20), 1).cap(),
            Duration::from_secs(20)
        );
        assert_eq!(
            Backoff::new(Duration::from_secs(600), 1).cap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn configuration_errors_wait_the_cap_at_once() {
        let mut b = Backoff::new(Duration::from_secs(600), 7);
        assert_eq!(b.next_delay(Duration::ZERO, true), Duration::from_secs(30));
    }

    #[test]
    fn a_long_life_resets_the_count() {
        let mut b = Backoff::new(Duration::from_secs(600), 3);
        for _ in 0..8 {
            b.next_delay(Duration::ZERO, false);
        }
        assert_eq!(b.next_delay(Duration::from_secs(60), false), Duration::ZERO);
        assert_eq!(b.tries(), 0);
        let mut b = Backoff::new(Duration::from_secs(4), 3);
        b.next_delay(Duration::from_secs(9), false);
        assert_eq!(b.tries(), 1);
        b.next_delay(Duration::from_secs(10), false);
        assert_eq!(b.tries(), 0);
    }
}

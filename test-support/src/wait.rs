//! Bounded polling: the only way the tests wait.

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every ~20 ms until it returns true (→ `true`) or `timeout`
/// has passed (→ `false`). `cond` is always called at least once, and once
/// more at the deadline.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_every(timeout, POLL, cond)
}

/// [`wait_until`] polling at `every` (for conditions that cost a process each, such as a
/// command to autossh, which 20 ms would spin).
pub fn wait_every(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

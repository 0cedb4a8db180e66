//! Time as the supervisor sees it: a monotonic clock that keeps counting while the machine
//! is suspended (`CLOCK_BOOTTIME`), so deadlines stay honest across a laptop's sleep.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the boot-time clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// Reads `CLOCK_BOOTTIME` (falls back to `CLOCK_MONOTONIC` where it does not exist).
    /// macOS has none by that name: its `CLOCK_MONOTONIC` is the one that counts sleep.
    pub fn now() -> Time {
        use nix::time::{clock_gettime, ClockId};
        #[cfg(not(target_vendor = "apple"))]
        let boot = ClockId::CLOCK_BOOTTIME;
        #[cfg(target_vendor = "apple")]
        let boot = ClockId::CLOCK_MONOTONIC;
        let ts = clock_gettime(boot)
            .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
            .expect("a monotonic clock");
        Time(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
    }

    /// A time `d` after the clock's origin: for tests with a fake clock.
    pub const fn from_origin(d: Duration) -> Time {
        Time(d)
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` rounded up to a multiple of `step` (deadlines of many tunnels on one grid
    /// share the event loop's wake-ups).
    pub fn on_grid(self, step: Duration) -> Time {
        let step = step.as_nanos().max(1);
        let t = self.0.as_nanos();
        let up = t.div_ceil(step) * step;
        Time(Duration::from_nanos(up.min(u64::MAX as u128) as u64))
    }

    /// The time `d` before `self` (the clock's origin at the earliest).
    pub fn before(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0 + d)
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, other: Time) -> Duration {
        self.since(other)
    }
}

/// Milliseconds of a duration, for log lines.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_moves_forward_and_arithmetic_saturates() {
        let a = Time::now();
        let b = Time::now();
        assert!(b >= a);
        assert_eq!(a.since(a + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!((a + Duration::from_secs(2)) - a, Duration::from_secs(2));
    }
}

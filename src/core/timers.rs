//! A small table of deadlines keyed by an enum; the poll timeout is the nearest one.

use crate::core::clock::Time;
use std::time::Duration;

/// Every kind of deadline the supervisor keeps. At most one of each is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// End of a backoff wait: start ssh.
    Restart,
    /// ssh did not exit after SIGTERM: send SIGKILL.
    KillEscalation,
    /// `AUTOSSH_MAXLIFETIME` reached.
    MaxLifetime,
    /// Time to send the next probe.
    Probe,
    /// The probe in flight is late: look at the path.
    ProbeSoft,
    /// The probe in flight has failed.
    ProbeHard,
    /// A newly started ssh must prove its tunnel by then.
    ConfirmBy,
    /// Next reachability check of the server.
    ReachCheck,
    /// Next look at ssh's connection for a stall.
    Watch,
    /// `-M 0`: ssh has lived past the gate; the tunnel counts as up.
    Settled,
    /// The kernel's addresses or routes changed a moment ago: look at ssh's path.
    NetCheck,
}

const ALL: [Timer; 11] = [
    Timer::Restart,
    Timer::KillEscalation,
    Timer::MaxLifetime,
    Timer::Probe,
    Timer::ProbeSoft,
    Timer::ProbeHard,
    Timer::ConfirmBy,
    Timer::ReachCheck,
    Timer::Watch,
    Timer::Settled,
    Timer::NetCheck,
];

/// The deadline table.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    slots: [Option<Time>; ALL.len()],
}

impl Timers {
    pub fn set(&mut self, t: Timer, at: Time) {
        self.slots[t as usize] = Some(at);
    }

    pub fn clear(&mut self, t: Timer) {
        self.slots[t as usize] = None;
    }

    pub fn get(&self, t: Timer) -> Option<Time> {
        self.slots[t as usize]
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Time> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest deadline that is due at `now`, if any.
    pub fn pop_due(&mut self, now: Time) -> Option<Timer> {
        let due = ALL
            .iter()
            .filter_map(|&t| self.get(t).filter(|&at| at <= now).map(|at| (at, t)))
            .min_by_key(|&(at, _)| at)?
            .1;
        self.clear(due);
        Some(due)
    }

    /// How long the event loop may sleep: until the nearest deadline.
    pub fn timeout(&self, now: Time) -> Option<Duration> {
        self.next().map(|at| at.since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time::from_origin(Duration::from_secs(s))
    }

    #[test]
    fn nearest_deadline_first() {
        let mut tm = Timers::default();
        assert_eq!(tm.timeout(t(0)), None);
        tm.set(Timer::Probe, t(10));
        tm.set(Timer::MaxLifetime, t(5));
        assert_eq!(tm.timeout(t(1)), Some(Duration::from_secs(4)));
        assert_eq!(tm.pop_due(t(4)), None);
        assert_eq!(tm.pop_due(t(20)), Some(Timer::MaxLifetime));
        assert_eq!(tm.pop_due(t(20)), Some(Timer::Probe));
        assert_eq!(tm.pop_due(t(20)), None);
    }
}

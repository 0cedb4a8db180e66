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
    /// The probe in flight is not back yet: have ssh acknowledge what it has received.
    AckFlush,
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
    /// The old ssh of a planned restart has drained long enough: stop it.
    Drain,
    /// The old ssh did not exit after SIGTERM: SIGKILL.
    OldKill,
    /// On demand: no connection for the idle time: stop ssh.
    Idle,
}

const ALL: [Timer; 15] = [
    Timer::Restart,
    Timer::KillEscalation,
    Timer::MaxLifetime,
    Timer::Probe,
    Timer::ProbeSoft,
    Timer::ProbeHard,
    Timer::AckFlush,
    Timer::ConfirmBy,
    Timer::ReachCheck,
    Timer::Watch,
    Timer::Settled,
    Timer::NetCheck,
    Timer::Drain,
    Timer::OldKill,
    Timer::Idle,
];

/// The deadline table.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    slots: [Option<Time>; ALL.len()],
    /// The earliest of `slots`, kept on every change: the event loop asks for it at each
    /// wake-up, for every tunnel, far more often than deadlines change.
    earliest: Option<Time>,
}

impl Timers {
    pub fn set(&mut self, t: Timer, at: Time) {
        let old = self.slots[t as usize].replace(at);
        self.earliest = match (old, self.earliest) {
            // The earliest moved later: look again.
            (Some(o), Some(e)) if o == e && at > o => self.slots.iter().flatten().min().copied(),
            (_, e) => Some(e.map_or(at, |e| e.min(at))),
        };
    }

    pub fn clear(&mut self, t: Timer) {
        if let Some(was) = self.slots[t as usize].take() {
            if self.earliest == Some(was) {
                self.earliest = self.slots.iter().flatten().min().copied();
            }
        }
    }

    pub fn get(&self, t: Timer) -> Option<Time> {
        self.slots[t as usize]
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Time> {
        // INVARIANT: `earliest` is the earliest armed deadline.
        debug_assert_eq!(self.earliest, self.slots.iter().flatten().min().copied());
        self.earliest
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

    #[test]
    fn the_earliest_follows_every_change() {
        let mut tm = Timers::default();
        tm.set(Timer::Probe, t(5));
        tm.set(Timer::Watch, t(7));
        // The earliest moved later, then cleared: the next one takes over.
        tm.set(Timer::Probe, t(9));
        assert_eq!(tm.next(), Some(t(7)));
        tm.clear(Timer::Watch);
        assert_eq!(tm.next(), Some(t(9)));
        tm.set(Timer::Restart, t(1));
        assert_eq!(tm.next(), Some(t(1)));
        tm.clear(Timer::Restart);
        tm.clear(Timer::Probe);
        assert_eq!(tm.next(), None);
    }
}

//! What a tunnel shows: its state in a word and since when, whether it failed, why.

use super::*;

impl Tunnel {
    /// Notes when the reported state began.
    pub fn state_since(&mut self, now: Time) -> Time {
        let phase = self.phase_name();
        if phase != self.state_since.0 {
            self.state_since = (phase, now);
        }
        self.state_since.1
    }

    /// Its state in a word (one of many: `failed` once it ended on its own).
    pub fn phase_name(&self) -> &'static str {
        if self.name.is_some() && self.failed() {
            "failed"
        } else {
            self.sup.phase_name()
        }
    }

    /// Whether it ended for good on its own (see [`crate::core::supervisor::Ending`]).
    pub fn failed(&self) -> bool {
        self.sup.ending().is_some_and(|e| e.failed)
    }

    /// Why it ended, or why ssh was last restarted.
    pub fn last_reason(&self) -> Option<&str> {
        match self.sup.ending() {
            Some(e) if self.ended.is_some() => Some(&e.reason),
            _ => self
                .sup
                .stats()
                .recent_restarts
                .back()
                .map(|r| r.reason.as_str()),
        }
    }
}

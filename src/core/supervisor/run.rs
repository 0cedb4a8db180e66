//! What belongs to one ssh run. Starting ssh builds a fresh one, so nothing of the last run
//! is reset by hand (or forgotten); after ssh ends it still tells why, until the next start.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Run {
    /// When this ssh was started (`None` before the first).
    pub(super) started_at: Option<Time>,
    /// Why the last confirmation probe failed, for the log when confirmation times out.
    pub(super) last_failure: Option<String>,
    /// What this ssh said about failing (configuration or network trouble).
    pub(super) story: Story,
    /// This ssh was stopped because the server stopped answering.
    pub(super) server_silent: bool,
    /// Its server connection is stalled.
    pub(super) stalled: bool,
    /// It was started while the server did not answer checks (checks go on).
    pub(super) blind: bool,
    /// It has an established connection to the server (as last watched).
    pub(super) ssh_connected: bool,
    /// Requests through its tunnel that went unanswered, and the probes they drew.
    pub(super) unanswered: Unanswered,
    /// Its session probes that failed before one came back.
    pub(super) session_tries: u32,
}

impl Run {
    pub(super) fn new(now: Time) -> Run {
        Run {
            started_at: Some(now),
            ..Run::default()
        }
    }

    /// How long this ssh has lived at `now` (zero before the first start).
    pub(super) fn lived(&self, now: Time) -> Duration {
        self.started_at.map(|s| now.since(s)).unwrap_or_default()
    }
}

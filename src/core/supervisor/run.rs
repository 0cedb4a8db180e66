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
    /// Whether the server is checked while this ssh has not reached it, and why.
    pub(super) reaching: Reaching,
    /// It has an established connection to the server (as last watched).
    pub(super) ssh_connected: bool,
    /// Requests through its tunnel that went unanswered, and the probes they drew.
    pub(super) unanswered: Unanswered,
    /// Its session probes that failed before one came back.
    pub(super) session_tries: u32,
    /// The server refused one of the user's remote forwards (its port, the first one).
    pub(super) forward_refused: Option<u16>,
    /// A probe answered while a held port was retried, and its proof was put off once.
    pub(super) proof_waited: bool,
}

/// Checks of the server while an ssh has not reached it: when the server answers one after
/// failing, the ssh (stuck in its TCP connect's backoff) is replaced at once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaching {
    /// Not watched: it reached the server, or has not been seen trying for long.
    #[default]
    Unwatched,
    /// Started while the server did not answer checks (checks go on).
    Blind,
    /// Seen still connecting (its SYN unanswered) [`CONNECT_PATIENCE`] after its start.
    Connecting,
    /// Seen connecting while the server answered checks all along: its connect is its own
    /// business (another of the server's addresses, say); not watched again.
    LeftAlone,
}

impl Reaching {
    /// Whether checks of the server run for it.
    pub(super) fn checking(self) -> bool {
        matches!(self, Reaching::Blind | Reaching::Connecting)
    }
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

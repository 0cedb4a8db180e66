//! The supervisor: a pure state machine fed `(event, now)` that returns actions.
//!
//! It holds the restart rules, the gate, MAXSTART, MAXLIFETIME, the backoff and the probe
//! schedule. It never touches a process, a socket or a clock: the event loop performs the
//! [`Action`]s it returns and reports back with [`Event`]s. See `docs/architecture.md`.

use crate::core::backoff::Backoff;
use crate::core::clock::{ms, Time};
use crate::core::exit_rules::{judge, RunFacts, SshEnd, Verdict};
use crate::core::probe::RttEstimate;
use crate::core::ssh_stderr::{Complaint, Reason, Story};
use crate::core::timers::{Timer, Timers};
use log::{debug, info, warn};
use std::time::Duration;

/// How long ssh gets to exit after SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// A probe is never declared late sooner than this (nor later than the net timeout).
pub const PATIENCE_FLOOR: Duration = Duration::from_secs(1);
/// A new ssh gets at least this long to prove its tunnel (a handshake over a lossy link).
const CONFIRM_FLOOR: Duration = Duration::from_secs(15);
/// First confirmation probe after a start, then doubling up to [`CONFIRM_MAX_GAP`].
const CONFIRM_FIRST_GAP: Duration = Duration::from_millis(200);
const CONFIRM_MAX_GAP: Duration = Duration::from_secs(1);
/// One of many tunnels holds a handshake slot of its server until its tunnel is proven: it
/// confirms every 100 ms for its first 20 tries, so the slot goes to the next one quickly.
const GATED_CONFIRM_GAP: Duration = Duration::from_millis(100);
const GATED_QUICK_TRIES: u32 = 20;
/// A session probe not yet answered 15 s after the start is retried this often.
const SESSION_RETRY_MAX_GAP: Duration = Duration::from_secs(30);
/// A probe drawn by an unanswered request is judged sooner: the session had already been
/// silent for the request's threshold (at least [`unanswered::FLOOR`]) before it left.
const DRAWN_PATIENCE_FLOOR: Duration = Duration::from_millis(400);
/// A probe late on a full link (the server keeps sending) is given up after this long.
const MAX_PROBE_WAIT: Duration = Duration::from_secs(60);
/// An address or route change is looked at this long after the first message of a burst.
const NET_SETTLE: Duration = Duration::from_millis(200);
/// How often ssh's connection is looked at for a stall, and for unanswered requests.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// One of many tunnels puts its idle looks and its periodic probes on this grid: the looks
/// and probes of a hundred tunnels take four wake-ups a second, not a hundred and more (each
/// wake-up of the event loop costs more than the looks it serves).
const FLEET_GRID: Duration = Duration::from_millis(250);
/// ... and its periodic probes on this one (a poll is at least a second; a probe up to a
/// second late is within it): the probes of ten tunnels leave, and come back, together.
const PROBE_GRID: Duration = Duration::from_secs(1);
/// ... while data moved on it within [`ACTIVE_WITHIN`].
const WATCH_ACTIVE: Duration = Duration::from_millis(250);
const ACTIVE_WITHIN: Duration = Duration::from_secs(2);
/// ... while the server owes ssh an answer: an unanswered request is seen within this.
const WATCH_OWED: Duration = Duration::from_millis(100);
/// What ssh sends or hears this soon after a probe came back is the probe's own exchange
/// (the channel closing).
const PROBE_TAIL: Duration = Duration::from_millis(100);
/// Moving the monitor's remote port this many times in a row without a proven tunnel
/// means the server refuses remote forwards: stop moving.
const MAX_RELOCATIONS: u32 = 8;

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    cfg: Config,
    state: State,
    timers: Timers,
    backoff: Backoff,
    start_count: u32,
    /// What belongs to the current (or last) ssh: built fresh at each start.
    run: Run,
    next_seq: u64,
    in_flight: Option<InFlight>,
    rtt: RttEstimate,
    relocations: u32,
    /// The remote port of loop mode's `-R`, as the event loop told us.
    remote_monitor_port: Option<u16>,
    /// Loop mode's local `-L` port (the remote one starts equal to it, as in 1.4g).
    local_monitor_port: Option<u16>,
    /// When the tunnel was last seen failing: to tell how long an outage lasted.
    down_since: Option<Time>,
    /// The last proof that the tunnel worked: a probe's echo, or data from the server seen
    /// on ssh's connection. An outage is counted from here, not from when it was noticed.
    last_proof: Option<Time>,
    /// When the last probe came back: its exchange on ssh's connection is not application
    /// traffic.
    probe_answered_at: Option<Time>,
    /// ssh goes through a jump host or a proxy command.
    proxied: bool,
    /// The server behind the proxy (`host:port`), for the log.
    target: Option<String>,
    /// Through a proxy, since when the target has not answered (handshakes through the
    /// proxy are retried at a steady pace meanwhile, see `recovery.rs`).
    target_away_since: Option<Time>,
    /// The server's address cannot be checked.
    reach_unknown: bool,
    /// Since when reachability checks have failed (while waiting or stalled).
    unreachable_since: Option<Time>,
    /// The backoff asked for no wait: a reachable server gets ssh at once.
    quick_retry: bool,
    /// When the backoff of the current wait ends.
    backoff_until: Time,
    /// `Action::Ready` was given.
    ready_sent: bool,
    /// The pending `InspectPath` was asked at the net timeout.
    hard_look: bool,
    /// Once done: whether it ended for good on its own (a failure), and why.
    ending: Option<Ending>,
    stats: Stats,
}

/// How the supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Ended on its own for good (ssh's exit said so, MAXSTART, ssh could not run), as
    /// opposed to stopped (a signal, MAXLIFETIME, ssh exiting 0 or killed on purpose).
    pub failed: bool,
    pub reason: String,
}

impl Supervisor {
    pub fn new(cfg: Config) -> Supervisor {
        Supervisor {
            backoff: Backoff::new(cfg.poll, cfg.seed),
            cfg,
            state: State::Idle,
            timers: Timers::default(),
            start_count: 0,
            run: Run::default(),
            next_seq: 1,
            in_flight: None,
            rtt: RttEstimate::default(),
            relocations: 0,
            remote_monitor_port: None,
            local_monitor_port: None,
            down_since: None,
            last_proof: None,
            probe_answered_at: None,
            proxied: false,
            target: None,
            target_away_since: None,
            reach_unknown: false,
            unreachable_since: None,
            quick_retry: false,
            backoff_until: Time::from_origin(Duration::ZERO),
            ready_sent: false,
            hard_look: false,
            ending: None,
            stats: Stats::default(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn start_count(&self) -> u32 {
        self.start_count
    }

    /// Tells the supervisor which remote port loop mode's `-R` asks for (so it can
    /// recognise ssh's complaint about it). `None` in echo mode or with `-M 0`.
    pub fn set_remote_monitor_port(&mut self, port: Option<u16>) {
        self.remote_monitor_port = port;
    }

    /// Tells the supervisor loop mode's local `-L` port: a server on this very host sees
    /// it as busy when the remote port is the same number.
    pub fn set_local_monitor_port(&mut self, port: Option<u16>) {
        self.local_monitor_port = port;
    }

    /// How long the event loop may sleep before calling [`Supervisor::on_time`].
    pub fn timeout(&self, now: Time) -> Option<Duration> {
        self.timers.timeout(now)
    }

    /// Fires every deadline that is due.
    pub fn on_time(&mut self, now: Time) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(t, now, &mut out);
        }
        out
    }

    /// Handles one event.
    pub fn handle(&mut self, ev: Event, now: Time) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::Begin => {
                if let Some(life) = self.cfg.max_lifetime {
                    self.timers.set(Timer::MaxLifetime, now + life);
                }
                self.spawn(now, &mut out);
            }
            Event::SpawnFailed(e) => self.on_spawn_failed(e, now, &mut out),
            Event::SshExited(end) => self.on_exit(end, now, &mut out),
            Event::Signal(sig) => self.on_signal(sig, now, &mut out),
            Event::ProbeEchoed { seq } => self.on_echo(seq, now, &mut out),
            Event::ProbeFailed { seq, why } => {
                if self.in_flight.map(|p| p.seq) == Some(seq) {
                    self.probe_failed(why.to_string(), now, &mut out);
                }
            }
            Event::Path(path) => self.on_path(path, now, &mut out),
            Event::SshSaid(Complaint::RemoteForwardFailed(port)) => {
                self.on_forward_failed(port, now, &mut out)
            }
            Event::SshSaid(c) => self.run.story.hear(&c),
            Event::Reachable(ok) => self.on_reachable(ok, now, &mut out),
            Event::ReachUnknown => self.on_reach_unknown(now, &mut out),
            Event::Proxied { target } => self.on_proxied(target),
            Event::Stall(stalled) => self.on_stall(stalled, now, &mut out),
            Event::Traffic(t) => self.on_traffic(t, now, &mut out),
            Event::Connected(c) => {
                self.run.ssh_connected = c;
                if c && self.run.blind {
                    self.run.blind = false;
                    self.stop_checks(&mut out);
                }
            }
            Event::Resumed => self.on_resumed(now),
            Event::NetworkChanged => {
                // Changes come in bursts (an address, then routes): look once it settled.
                if self.timers.get(Timer::NetCheck).is_none() {
                    self.timers.set(Timer::NetCheck, now + NET_SETTLE);
                }
            }
            Event::NetPath(p) => self.on_net_path(p, now, &mut out),
            Event::SlotGranted => {
                if let State::Queued { blind } = self.state {
                    self.start(blind, now, &mut out);
                }
            }
        }
        out
    }

    /// The tunnel is proven (a probe came back, or ssh lived past the gate with `-M 0`).
    fn became_up(&mut self, now: Time, out: &mut Vec<Action>) {
        self.stats.up_since = Some(now);
        self.target_away_since = None;
        if !self.ready_sent {
            self.ready_sent = true;
            out.push(Action::Ready);
        }
    }

    /// A word for the current state, for the status file and systemd.
    pub fn phase_name(&self) -> &'static str {
        match self.state {
            State::Idle => "starting",
            State::Running {
                phase: Phase::Confirming { .. },
            }
            | State::Running {
                phase: Phase::Unmonitored,
            } if self.stats.up_since.is_none() => {
                if self.start_count <= 1 {
                    "starting"
                } else {
                    "reconnecting"
                }
            }
            State::Running { .. } if self.in_flight.is_some() => "probing",
            State::Running { .. } => "up",
            State::WaitingForServer => "reconnecting",
            State::BackingOff if self.target_away_since.is_some() => "reconnecting",
            State::BackingOff => "backing-off",
            State::Queued { .. } => "waiting",
            State::Stopping { .. } => "stopping",
            State::Done => "stopped",
        }
    }

    /// How it ended, once done.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// Whether the tunnel is proven up right now (systemd's watchdog is fed only then).
    pub fn healthy(&self) -> bool {
        matches!(self.state, State::Running { .. }) && self.stats.up_since.is_some()
    }

    /// When the current outage began, if the server has been seen unreachable (by checks,
    /// or through a proxy by handshakes).
    pub fn unreachable_since(&self) -> Option<Time> {
        self.unreachable_since.or(self.target_away_since)
    }

    /// Handshakes are being retried through a proxy in an outage already logged: the event
    /// loop logs the ssh lines that say so again at debug level, so an outage is one line
    /// in the log.
    pub fn quiet(&self) -> bool {
        self.target_away_since.is_some()
    }

    /// Why the current (or last) ssh failed, from what it said.
    fn reason(&self) -> Option<Reason> {
        self.run.story.reason(self.proxied)
    }

    /// A reason in words, for the log.
    fn describe(&self, r: &Reason) -> String {
        let target = match &self.target {
            Some(t) => format!("the target {t}"),
            None => "the target".to_string(),
        };
        match r {
            Reason::Config(l) => format!("configuration error: {l}"),
            Reason::Network(l) => l.clone(),
            Reason::TargetUnreachable { jump: true, why } => {
                format!("{target} is unreachable from the jump host ({why})")
            }
            Reason::TargetUnreachable { jump: false, why } => {
                format!("{target} does not answer through the proxy ({why})")
            }
        }
    }

    /// Notes when a proven tunnel went down (not a start-up that never came up).
    fn mark_down(&mut self, now: Time) {
        if self.state == (State::Running { phase: Phase::Up }) {
            self.note_down(now);
        }
    }

    /// The tunnel went down: counted from the last proof that it worked.
    fn note_down(&mut self, now: Time) {
        let since = self.last_proof.map_or(now, |p| p.min(now));
        self.down_since.get_or_insert(since);
    }

    /// "tunnel up, ... (down for N s)": N from the last proof before the outage.
    fn log_up(&mut self, what: &str, rtt: Duration, now: Time) {
        match self.down_since.take() {
            Some(down) => info!(
                "tunnel up, {what} rtt {} ms (down for {:.1} s)",
                ms(rtt),
                now.since(down).as_secs_f64()
            ),
            None => info!("tunnel up, {what} rtt {} ms", ms(rtt)),
        }
    }
}

mod lifecycle;
mod probes;
mod recovery;
mod run;
use run::Run;
mod stats;
mod unanswered;
mod vocabulary;
pub use stats::{Restart, RestartKind, Stats};
pub use unanswered::{Traffic, Unanswered, Waiting};
pub use vocabulary::*;

#[cfg(test)]
mod tests;

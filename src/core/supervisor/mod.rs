//! The supervisor: a pure state machine fed `(event, now)` that returns actions.
//!
//! It holds the restart rules, the gate, MAXSTART, MAXLIFETIME, the backoff and the probe
//! schedule. It never touches a process, a socket or a clock: the event loop performs the
//! [`Action`]s it returns and reports back with [`Event`]s. See `docs/architecture.md`.

use crate::core::backoff::Backoff;
use crate::core::clock::{ms, Time};
use crate::core::exit_rules::{judge, RunFacts, SshEnd, Verdict};
use crate::core::probe::RttEstimate;
use crate::core::ssh_stderr::{classify, Complaint, Reason, Story};
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
/// confirms every 50 ms for its first 40 tries (2 s), so the slot goes to the next one
/// quickly (a handshake takes 100-200 ms here: at 100 ms steps a slot idled ~50 ms each).
const GATED_CONFIRM_GAP: Duration = Duration::from_millis(50);
const GATED_QUICK_TRIES: u32 = 40;
/// A session probe not yet answered 15 s after the start is retried this often.
const SESSION_RETRY_MAX_GAP: Duration = Duration::from_secs(30);
/// A probe drawn by an unanswered request is judged sooner: the session had already been
/// silent for the request's threshold (at least [`unanswered::FLOOR`]) before it left.
const DRAWN_PATIENCE_FLOOR: Duration = Duration::from_millis(400);
/// A probe late on a full link (the server keeps sending) is given up after this long.
const MAX_PROBE_WAIT: Duration = Duration::from_secs(60);
/// An address or route change is looked at this long after the first message of a burst.
const NET_SETTLE: Duration = Duration::from_millis(200);
/// How often ssh's connection is looked at for a stall, and for unanswered requests ...
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// ... while data moved on it within [`ACTIVE_WITHIN`] ...
const WATCH_ACTIVE: Duration = Duration::from_millis(250);
const ACTIVE_WITHIN: Duration = Duration::from_secs(2);
/// ... and while the server owes ssh an answer: an unanswered request is seen within this.
const WATCH_OWED: Duration = Duration::from_millis(100);
/// One of many tunnels puts its idle looks at ssh's connection on this grid: the looks of a
/// hundred tunnels take four wake-ups a second, not a hundred (each wake-up of the event
/// loop costs more than the looks it serves).
const FLEET_GRID: Duration = Duration::from_millis(250);
/// One of many tunnels puts its periodic probes on this grid (a poll is at least a second;
/// a probe up to a second late is within it): the probes of ten tunnels leave, and come
/// back, together.
const PROBE_GRID: Duration = Duration::from_secs(1);
/// What ssh sends or hears this soon after a probe came back is the probe's own exchange
/// (the channel closing).
const PROBE_TAIL: Duration = Duration::from_millis(100);
/// While a remote port held on the server is retried, a probe's first answer through a new
/// ssh is confirmed this much later: ssh's line refusing the forward may come just after it.
const FORWARD_WORD: Duration = Duration::from_millis(250);
/// ssh's sockets are probed this long after it bound them (it listens right after).
const LISTEN_SETTLE: Duration = Duration::from_millis(5);
/// A probe not back this long after it left has ssh's delayed acknowledgements flushed;
/// again at doubling gaps while it is out, the last before [`ACK_FLUSH_SPAN`].
const ACK_FLUSH_FIRST: Duration = Duration::from_millis(1);
/// Past this, any acknowledgement ssh delayed has gone out by itself (Linux's delayed ACK is
/// at most 200 ms).
const ACK_FLUSH_SPAN: Duration = Duration::from_millis(256);
/// Moving the monitor's remote port this many times in a row without a proven tunnel
/// means the server refuses remote forwards: stop moving.
const MAX_RELOCATIONS: u32 = 8;

/// The supervisor. What only one state has lives in that state's variant ([`State`]);
/// what belongs to one ssh lives in [`Run`], rebuilt at each start.
#[derive(Debug)]
pub struct Supervisor {
    cfg: Config,
    state: State,
    timers: Timers,
    backoff: Backoff,
    start_count: u32,
    /// What belongs to the current (or last) ssh: built fresh at each start.
    run: Run,
    probes: Probes,
    /// Loop mode's monitor ports.
    ports: Option<LoopPorts>,
    server: Server,
    health: Health,
    /// The ssh a planned restart is replacing, while it still runs.
    old: Option<Old>,
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

impl Ending {
    /// A failure, for this reason.
    pub(super) fn failure(reason: impl Into<String>) -> Ending {
        Ending {
            failed: true,
            reason: reason.into(),
        }
    }

    /// The ending an exit code tells when nothing more was said.
    pub(super) fn of_code(code: i32) -> Ending {
        match code {
            0 => Ending {
                failed: false,
                reason: "stopped".into(),
            },
            c => Ending::failure(format!("exit status {c}")),
        }
    }
}

impl Supervisor {
    pub fn new(cfg: Config) -> Supervisor {
        Supervisor {
            backoff: Backoff::new(cfg.poll, cfg.seed),
            ports: cfg.loop_monitor.as_ref().map(LoopPorts::new),
            server: Server {
                proxied: cfg.proxied,
                unknown: cfg.proxied,
                ..Server::default()
            },
            cfg,
            state: State::Idle,
            timers: Timers::default(),
            start_count: 0,
            run: Run::default(),
            probes: Probes::default(),
            health: Health::default(),
            old: None,
            stats: Stats::default(),
        }
    }

    /// Whether a planned restart is make-before-break here.
    pub fn handover(&self) -> bool {
        self.cfg.handover
    }

    /// New settings (a reload keeping the tunnel): they apply from the next start and the
    /// next deadlines set; the state, the backoff and the figures stay.
    pub fn reconfigure(&mut self, cfg: Config) {
        if let (Some(ports), Some(m)) = (self.ports.as_mut(), cfg.loop_monitor.as_ref()) {
            ports.reserved = m.reserved.clone();
        }
        self.cfg = Config {
            seed: self.cfg.seed,
            ..cfg
        };
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
        let done = matches!(self.state, State::Done(_));
        self.on_event(ev, now, &mut out);
        // INVARIANT: once done, a supervisor asks for nothing more.
        debug_assert!(!done || out.is_empty(), "{out:?} after Done");
        out
    }

    fn on_event(&mut self, ev: Event, now: Time, out: &mut Vec<Action>) {
        match ev {
            Event::Begin => {
                if self.server.proxied {
                    debug!("ssh goes through a proxy: handshakes are the only check of the server");
                }
                if let Some(life) = self.cfg.max_lifetime {
                    self.timers.set(Timer::MaxLifetime, now + life);
                }
                self.begin(now, out);
            }
            Event::SpawnFailed(e) => self.on_spawn_failed(e, now, out),
            Event::SshExited(end) => self.on_exit(end, now, out),
            Event::Signal(sig) => self.on_signal(sig, now, out),
            Event::ProbeEchoed { seq } => self.on_echo(seq, now, out),
            Event::ProbeFailed { seq, why } => {
                if self.probe().map(|p| p.seq) == Some(seq) {
                    self.probe_failed(why.to_string(), now, out);
                }
            }
            Event::Path(path) => self.on_path(path, now, out),
            Event::SshSaid(line) => self.on_ssh_line(line, now, out),
            Event::Reachable(ok) => self.on_reachable(ok, now, out),
            Event::ReachUnknown => self.on_reach_unknown(now, out),
            Event::Proxied { target } => self.on_proxied(target),
            Event::Stall(stalled) => self.on_stall(stalled, now, out),
            Event::Traffic(t) => self.on_traffic(t, now, out),
            Event::Link(link) => self.on_link(link, now, out),
            Event::Resumed => self.on_resumed(now),
            Event::NetworkChanged => {
                // Changes come in bursts (an address, then routes): look once it settled.
                if self.timers.get(Timer::NetCheck).is_none() {
                    self.timers.set(Timer::NetCheck, now + NET_SETTLE);
                }
            }
            Event::NetPath(p) => self.on_net_path(p, now, out),
            Event::SlotGranted => {
                if let State::Queued { blind } = self.state {
                    self.start(blind, now, out);
                }
            }
            Event::SshBound => self.on_bound(now),
            Event::Busy(busy) => self.on_busy(busy, now, out),
            Event::Drained => self.on_drained(now, out),
            Event::OldExited(end) => self.on_old_exited(end, out),
        }
    }

    /// The first start; on demand, listening is all there is until a connection comes.
    fn begin(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.cfg.on_demand.is_none() {
            return self.spawn(now, out);
        }
        info!("on demand: ssh starts with the first connection");
        self.state = State::Dormant;
        self.health.ready_sent = true;
        out.push(Action::Ready);
    }

    /// One line of ssh's stderr: logged (at debug level when it only repeats an outage
    /// already logged), and taken into the current ssh's story.
    fn on_ssh_line(&mut self, line: String, now: Time, out: &mut Vec<Action>) {
        let class = classify(&line);
        if self.quiet() && class.as_ref().is_some_and(|c| c.repeats_an_outage()) {
            debug!("ssh: {line}");
        } else {
            info!("ssh: {line}");
        }
        match class {
            Some(Complaint::RemoteForwardFailed(port)) => self.on_forward_failed(port, now, out),
            Some(c) => self.run.story.hear(&c),
            None => {}
        }
    }

    /// The probe in flight, if any (only a running ssh carries one).
    fn probe(&self) -> Option<InFlight> {
        match self.state {
            State::Running { probe, .. } => probe,
            _ => None,
        }
    }

    /// The monitor's phase while ssh runs.
    fn phase(&self) -> Option<Phase> {
        match self.state {
            State::Running { phase, .. } => Some(phase),
            _ => None,
        }
    }

    /// Whether the tunnel is proven by a probe and watched by probes.
    fn is_up(&self) -> bool {
        self.phase() == Some(Phase::Up)
    }

    /// Moves to `phase`, keeping the probe in flight.
    fn set_phase(&mut self, phase: Phase) {
        if let State::Running { phase: p, .. } = &mut self.state {
            *p = phase;
        }
    }

    /// The tunnel is proven (a probe came back, or ssh lived past the gate with `-M 0`).
    fn became_up(&mut self, now: Time, out: &mut Vec<Action>) {
        // Across a planned restart the tunnel never went down: its uptime goes on.
        if self.old.is_none() || self.stats.up_since.is_none() {
            self.stats.up_since = Some(now);
        }
        self.serve(now, out);
        self.server.target_away_since = None;
        if let Some(h) = self.server.port_held.take() {
            info!(
                "remote port {} is free again (held on the server for {:.1} s)",
                h.port,
                now.since(h.since).as_secs_f64()
            );
        }
        if !self.health.ready_sent {
            self.health.ready_sent = true;
            out.push(Action::Ready);
        }
    }

    /// A word for the current state, for the status file and systemd.
    pub fn phase_name(&self) -> &'static str {
        let held = self.server.port_held.is_some();
        match self.state {
            State::Idle => "starting",
            State::BackingOff if held => "port-held",
            State::Running { .. } if held && self.stats.up_since.is_none() => "port-held",
            State::Running {
                phase: Phase::Confirming { .. } | Phase::Unmonitored,
                ..
            } if self.stats.up_since.is_none() => {
                if self.start_count <= 1 {
                    "starting"
                } else {
                    "reconnecting"
                }
            }
            State::Running { probe: Some(_), .. } => "probing",
            State::Running { .. } => "up",
            State::WaitingForServer(_) => "reconnecting",
            State::BackingOff if self.server.target_away_since.is_some() => "reconnecting",
            State::BackingOff => "backing-off",
            State::Queued { .. } => "waiting",
            State::Dormant => "idle",
            State::Closing => "stopping",
            State::Stopping { .. } => "stopping",
            State::Done(_) => "stopped",
        }
    }

    /// How it ended, once done.
    pub fn ending(&self) -> Option<&Ending> {
        match &self.state {
            State::Done(e) => Some(e),
            _ => None,
        }
    }

    /// Whether ssh is being stopped for good (autossh exiting, MaxLifetime, the tunnel
    /// removed), not to be restarted.
    pub fn exiting(&self) -> bool {
        matches!(
            self.state,
            State::Stopping {
                then: Then::Exit(_)
            }
        )
    }

    /// Whether the tunnel is proven up right now, or idle on demand (systemd's watchdog is
    /// fed only then).
    pub fn healthy(&self) -> bool {
        let up = matches!(self.state, State::Running { .. }) && self.stats.up_since.is_some();
        up || self.state == State::Dormant
    }

    /// Whether the current (or last) ssh was cut by the server before its banner.
    pub fn cut_before_banner(&self) -> bool {
        self.run.story.cut_before_banner(self.server.proxied)
    }

    /// When the current outage began, if the server has been seen unreachable (by checks,
    /// or through a proxy by handshakes).
    pub fn unreachable_since(&self) -> Option<Time> {
        self.server
            .unreachable_since
            .or(self.server.target_away_since)
    }

    /// Handshakes are being retried through a proxy, or for a remote port held on the
    /// server, in an outage already logged: the lines that say so again, and the new ssh's
    /// pid, go to the debug log, so an outage is one line in the log.
    fn quiet(&self) -> bool {
        self.server.target_away_since.is_some() || self.server.port_held.is_some_and(|h| h.logged)
    }

    /// The remote forward's port the server holds for another session, while it does.
    pub fn port_held(&self) -> Option<PortHeld> {
        self.server.port_held
    }

    /// Why the current (or last) ssh failed, from what it said.
    fn reason(&self) -> Option<Reason> {
        self.run.story.reason(self.server.proxied)
    }

    /// A reason in words, for the log.
    fn describe(&self, r: &Reason) -> String {
        let target = match &self.server.target {
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
        if self.is_up() {
            self.note_down(now);
        }
    }

    /// The tunnel went down: counted from the last proof that it worked.
    fn note_down(&mut self, now: Time) {
        let since = self.health.last_proof.map_or(now, |p| p.min(now));
        self.health.down_since.get_or_insert(since);
    }

    /// "tunnel up, ... (down for N s)": N from the last proof before the outage.
    fn log_up(&mut self, what: &str, rtt: Duration, now: Time) {
        match self.health.down_since.take() {
            Some(down) => info!(
                "tunnel up, {what} rtt {} ms (down for {:.1} s)",
                ms(rtt),
                now.since(down).as_secs_f64()
            ),
            None => info!("tunnel up, {what} rtt {} ms", ms(rtt)),
        }
    }
}

mod handover;
mod lifecycle;
mod parts;
use parts::{Health, LoopPorts, Old, Probes, Server};
mod probes;
mod recovery;
mod run;
use run::{Reaching, Run};
mod stats;
mod unanswered;
mod vocabulary;
pub use stats::{Restart, RestartKind, Stats};
pub use unanswered::{Traffic, Unanswered, Waiting};
pub use vocabulary::*;

#[cfg(test)]
mod tests;

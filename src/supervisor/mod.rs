//! The supervisor: a pure state machine fed `(event, now)` that returns actions.
//!
//! It holds the restart rules, the gate, MAXSTART, MAXLIFETIME, the backoff and the probe
//! schedule. It never touches a process, a socket or a clock: the event loop performs the
//! [`Action`]s it returns and reports back with [`Event`]s. See `docs/architecture.md`.

use crate::backoff::Backoff;
use crate::clock::{ms, Time};
use crate::complaint::{Complaint, Reason, Story};
use crate::exit_rules::{judge, RunFacts, SshEnd, Verdict};
use crate::probe::RttEstimate;
use crate::timers::{Timer, Timers};
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
/// ... while data moved on it within [`ACTIVE_WITHIN`].
const WATCH_ACTIVE: Duration = Duration::from_millis(250);
const ACTIVE_WITHIN: Duration = Duration::from_secs(2);
/// ... while the server owes ssh an answer: an unanswered request is seen within this.
const WATCH_OWED: Duration = Duration::from_millis(100);
/// Moving the monitor's remote port this many times in a row without a proven tunnel
/// means the server refuses remote forwards: stop moving.
const MAX_RELOCATIONS: u32 = 8;

/// The supervisor's fixed settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub gate_time: Duration,
    pub max_start: Option<u32>,
    pub max_lifetime: Option<Duration>,
    pub poll: Duration,
    pub first_poll: Duration,
    pub net_timeout: Duration,
    /// Whether probes run through monitor ports (false with `-M 0`).
    pub monitored: bool,
    /// `-M 0` with the session probe: ServerAlive as without it, and once a probe has come
    /// back through the session, watched like a monitored tunnel.
    pub session_probe: bool,
    /// Seed for the backoff's jitter.
    pub seed: u64,
}

/// Signals to autossh, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM, SIGINT, SIGQUIT: stop ssh and exit 0.
    Terminate(i32),
    /// SIGUSR1: kill ssh and start a new one now.
    Restart,
    /// SIGHUP: skip a backoff wait; when running, probe now.
    Retry,
    /// SIGUSR2: wake up only.
    Wake,
}

/// Why a probe failed, as seen by the monitor's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// Could not connect to the monitor port.
    Refused(String),
    /// ssh closed the connection before the echo came back.
    Closed,
    /// Bytes came back that are not the probe.
    WrongBytes,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Refused(e) => write!(f, "monitor connection failed: {e}"),
            ProbeFailure::Closed => f.write_str("monitor connection closed before the echo"),
            ProbeFailure::WrongBytes => f.write_str("wrong bytes came back on the monitor"),
        }
    }
}

/// What the transport under ssh shows while a probe is late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// ssh's TCP connection is idle and all our bytes were acknowledged: the server's
    /// kernel has the probe, the session does not answer.
    Quiet,
    /// Data is unacknowledged, being retransmitted, or the path is slow: cannot tell yet.
    Busy,
    /// The server sent data within the last moments: its session is alive and the link is
    /// merely full (a bulk transfer through the tunnel). A late probe waits longer.
    Alive,
    /// Segments were retransmitted lately and acknowledgements still come: a lossy link,
    /// where a late echo is likely being resent. A late probe waits longer.
    Lossy,
    /// No TCP connection of ssh's found (ProxyCommand...): cannot tell.
    Unknown,
}

/// What happened, reported by the event loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// autossh is ready: start the first ssh.
    Begin,
    /// The `Spawn` action failed.
    SpawnFailed(String),
    /// ssh ended.
    SshExited(SshEnd),
    /// A signal arrived.
    Signal(Sig),
    /// The echo of probe `seq` came back intact.
    ProbeEchoed { seq: u64 },
    /// Probe `seq` failed.
    ProbeFailed { seq: u64, why: ProbeFailure },
    /// Answer to [`Action::InspectPath`].
    Path(PathState),
    /// ssh said something autossh acts on (stderr).
    SshSaid(Complaint),
    /// Answer to one [`Action::CheckReach`]: the server's ssh port accepted a TCP connect.
    Reachable(bool),
    /// The server's address cannot be checked (proxy, `ssh -G` failed): backoff alone.
    ReachUnknown,
    /// ssh goes through a jump host or a proxy command (command line or ssh_config);
    /// `target`: the server behind it, as `ssh -G` names it (`host:port`), when known.
    Proxied { target: Option<String> },
    /// Answer to [`Action::InspectStall`]: ssh's server connection is stuck retransmitting.
    Stall(bool),
    /// Also after [`Action::InspectStall`]: the traffic on ssh's sockets, and how long
    /// applications have waited for answers (see [`Supervisor::unanswered_threshold`]).
    Traffic(Traffic),
    /// Also after [`Action::InspectStall`]: whether ssh has an established connection to
    /// the server (false while it is still connecting).
    Connected(bool),
    /// The machine was suspended and has resumed.
    Resumed,
    /// The kernel's addresses, routes or links changed (rtnetlink).
    NetworkChanged,
    /// Answer to [`Action::CheckNetPath`].
    NetPath(NetPath),
}

/// What an address or route change did to ssh's connection to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPath {
    /// Its local address is gone from the machine: the connection is dead.
    Gone(String),
    /// The kernel would now reach the server another way (another source address, or no
    /// route): the connection may be dead.
    Moved(String),
    /// Same address, same way to the server: nothing to do.
    Same,
    /// Cannot be told (no connection seen, a proxy).
    Unknown,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start ssh.
    Spawn,
    /// Send SIGTERM to ssh.
    TermSsh,
    /// Send SIGKILL to ssh.
    KillSsh,
    /// Open a monitor connection and send probe `seq`.
    SendProbe { seq: u64 },
    /// Abandon the probe in flight (close its sockets).
    DropProbe,
    /// Look at ssh's transport and answer with [`Event::Path`].
    InspectPath,
    /// Move loop mode's remote monitor port for the next ssh.
    RelocateMonitor(Relocation),
    /// Start one cheap reachability check of the server (TCP connect to its ssh port).
    CheckReach,
    /// Abandon reachability checks in flight.
    StopReach,
    /// Look whether ssh's server connection is stalled; answer with [`Event::Stall`].
    InspectStall,
    /// Look at ssh's connection after an address or route change; answer with
    /// [`Event::NetPath`].
    CheckNetPath,
    /// The tunnel is proven for the first time (systemd `READY=1`).
    Ready,
    /// Exit autossh with this code (ssh is already gone).
    Exit(i32),
}

/// Why the remote monitor port moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relocation {
    /// ssh said the server holds it.
    Busy,
    /// The tunnel just failed: the dead session may still hold the port on the server
    /// for a while, so the next ssh asks for another one instead of failing on it.
    AfterFailure,
}

/// Where the monitor of the current ssh stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No monitor ports (`-M 0`): ServerAlive only, until a session probe (if on) answers.
    Unmonitored,
    /// Started, not yet proven: probes come quickly; failures are retried.
    Confirming { attempt: u32 },
    /// Proven: probes every POLL; a failure restarts ssh.
    Up,
}

/// What comes after ssh has exited when we stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Restart; `paced: false` skips the backoff (signal, port move).
    Restart {
        paced: bool,
    },
    Exit(i32),
}

/// The supervisor's states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Before the first start.
    Idle,
    /// ssh runs.
    Running { phase: Phase },
    /// We asked ssh to go; waiting for it to exit.
    Stopping { then: Then },
    /// ssh is not running; waiting out the backoff.
    BackingOff,
    /// ssh is not running; the server did not answer: checking it until it does.
    WaitingForServer,
    /// autossh is exiting.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    sent: Time,
    /// Sent because a request through the tunnel went unanswered.
    drawn: bool,
}

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    cfg: Config,
    state: State,
    timers: Timers,
    backoff: Backoff,
    start_count: u32,
    started_at: Option<Time>,
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
    /// Why the last confirmation probe failed, for the log when confirmation times out.
    last_failure: Option<String>,
    /// What the current ssh said about failing (config or network trouble).
    story: Story,
    /// ssh goes through a jump host or a proxy command.
    proxied: bool,
    /// The server behind the proxy (`host:port`), for the log.
    target: Option<String>,
    /// Through a proxy, since when the target has not answered (handshakes through the
    /// proxy are retried at a steady pace meanwhile, see `recovery.rs`).
    target_away_since: Option<Time>,
    /// The current ssh was stopped because the server stopped answering.
    server_silent: bool,
    /// The server's address cannot be checked.
    reach_unknown: bool,
    /// Since when reachability checks have failed (while waiting or stalled).
    unreachable_since: Option<Time>,
    /// ssh's server connection is stalled.
    stalled: bool,
    /// The backoff asked for no wait: a reachable server gets ssh at once.
    quick_retry: bool,
    /// When the backoff of the current wait ends.
    backoff_until: Time,
    /// `Action::Ready` was given.
    ready_sent: bool,
    /// The pending `InspectPath` was asked at the net timeout.
    hard_look: bool,
    /// This ssh was started while the server did not answer checks (checks go on).
    blind: bool,
    /// ssh has an established connection to the server (as last watched).
    ssh_connected: bool,
    /// Requests through the tunnel that went unanswered, and the probes they drew.
    unanswered: Unanswered,
    /// Session probes of this ssh that failed before one came back.
    session_tries: u32,
    stats: Stats,
}

impl Supervisor {
    pub fn new(cfg: Config) -> Supervisor {
        Supervisor {
            backoff: Backoff::new(cfg.poll, cfg.seed),
            cfg,
            state: State::Idle,
            timers: Timers::default(),
            start_count: 0,
            started_at: None,
            next_seq: 1,
            in_flight: None,
            rtt: RttEstimate::default(),
            relocations: 0,
            remote_monitor_port: None,
            local_monitor_port: None,
            down_since: None,
            last_proof: None,
            last_failure: None,
            story: Story::default(),
            proxied: false,
            target: None,
            target_away_since: None,
            server_silent: false,
            reach_unknown: false,
            unreachable_since: None,
            stalled: false,
            quick_retry: false,
            backoff_until: Time::from_origin(Duration::ZERO),
            ready_sent: false,
            hard_look: false,
            unanswered: Unanswered::default(),
            session_tries: 0,
            blind: false,
            ssh_connected: false,
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
            Event::SshSaid(c) => self.story.hear(&c),
            Event::Reachable(ok) => self.on_reachable(ok, now, &mut out),
            Event::ReachUnknown => self.on_reach_unknown(now, &mut out),
            Event::Proxied { target } => self.on_proxied(target),
            Event::Stall(stalled) => self.on_stall(stalled, now, &mut out),
            Event::Traffic(t) => self.on_traffic(t, now, &mut out),
            Event::Connected(c) => {
                self.ssh_connected = c;
                if c && self.blind {
                    self.blind = false;
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
        }
        out
    }

    fn on_timer(&mut self, t: Timer, now: Time, out: &mut Vec<Action>) {
        match t {
            Timer::Restart => match self.state {
                State::BackingOff => self.spawn(now, out),
                State::WaitingForServer => {
                    debug!("backoff over; trying ssh although the server did not answer a check");
                    // Checks go on: if the server answers while this ssh is still stuck in
                    // its connect (TCP backoff), it is replaced at once.
                    self.blind = true;
                    self.spawn(now, out);
                }
                _ => {}
            },
            Timer::ReachCheck => self.on_reach_tick(now, out),
            Timer::NetCheck => match self.state {
                State::Running { .. } => out.push(Action::CheckNetPath),
                // No ssh: the server may be reachable now (another network): check at once.
                State::WaitingForServer => self.timers.set(Timer::ReachCheck, now),
                _ => {}
            },
            Timer::Settled => {
                if self.state
                    == (State::Running {
                        phase: Phase::Unmonitored,
                    })
                {
                    if let Some(since) = self.target_away_since {
                        info!(
                            "ssh runs: the target answers again (unreachable for {:.1} s)",
                            now.since(since).as_secs_f64()
                        );
                    }
                    self.became_up(now, out);
                }
            }
            Timer::Watch => {
                if matches!(self.state, State::Running { .. }) {
                    self.timers.set(Timer::Watch, now + WATCH_EVERY);
                    out.push(Action::InspectStall);
                }
            }
            Timer::KillEscalation => {
                if matches!(self.state, State::Stopping { .. }) {
                    warn!(
                        "ssh did not exit {} s after SIGTERM; sending SIGKILL",
                        KILL_GRACE.as_secs()
                    );
                    out.push(Action::KillSsh);
                }
            }
            Timer::MaxLifetime => {
                info!("maximum lifetime reached; exiting");
                self.terminate(0, now, out);
            }
            Timer::Probe => {
                if matches!(self.state, State::Running { .. }) {
                    self.send_probe(now, false, out);
                }
            }
            Timer::ProbeSoft => {
                if self.in_flight.is_some() {
                    out.push(Action::InspectPath);
                }
            }
            Timer::ProbeHard => {
                if let Some(p) = self.in_flight {
                    if self.state == (State::Running { phase: Phase::Up }) {
                        // One more look: a full link gets more time, a dead one does not.
                        self.hard_look = true;
                        out.push(Action::InspectPath);
                    } else {
                        let waited = now.since(p.sent);
                        self.probe_failed(
                            format!("probe timed out after {:.1} s", waited.as_secs_f64()),
                            now,
                            out,
                        );
                    }
                }
            }
            Timer::ConfirmBy => {
                if let State::Running {
                    phase: Phase::Confirming { .. },
                } = self.state
                {
                    let waited = self.started_at.map(|s| now.since(s)).unwrap_or_default();
                    let last = match self.last_failure.take() {
                        Some(why) => format!(" (last probe: {why})"),
                        None => String::new(),
                    };
                    self.restart_ssh(
                        RestartKind::Unconfirmed,
                        format!(
                            "tunnel not working {:.0} s after ssh started{last}",
                            waited.as_secs_f64()
                        ),
                        true,
                        now,
                        out,
                    );
                }
            }
        }
    }

    /// Starts ssh unless MAXSTART says otherwise.
    fn spawn(&mut self, now: Time, out: &mut Vec<Action>) {
        if let Some(max) = self.cfg.max_start {
            if self.start_count >= max {
                info!("max start count reached; exiting");
                self.finish(0, out);
                return;
            }
        }
        self.start_count += 1;
        // One line per outage: handshakes retried through a proxy are not logged each.
        let level = if self.quiet() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        match self.cfg.max_start {
            Some(max) => log::log!(level, "starting ssh (count {} of {max})", self.start_count),
            None => log::log!(level, "starting ssh (count {})", self.start_count),
        }
        self.started_at = Some(now);
        self.ssh_connected = false;
        self.last_failure = None;
        self.story = Story::default();
        self.server_silent = false;
        self.stalled = false;
        self.unanswered.reset();
        self.timers.set(Timer::Watch, now + WATCH_EVERY);
        let phase = if self.cfg.monitored {
            self.timers.set(Timer::Probe, now + CONFIRM_FIRST_GAP);
            self.timers.set(
                Timer::ConfirmBy,
                now + (self.cfg.first_poll + self.cfg.net_timeout).max(CONFIRM_FLOOR),
            );
            Phase::Confirming { attempt: 0 }
        } else {
            // Without probes, ssh alive past the gate (at least a second) counts as up.
            self.timers.set(
                Timer::Settled,
                now + self.cfg.gate_time.max(Duration::from_secs(1)),
            );
            if self.cfg.session_probe {
                self.session_tries = 0;
                self.timers.set(Timer::Probe, now + CONFIRM_FIRST_GAP);
            }
            Phase::Unmonitored
        };
        self.state = State::Running { phase };
        out.push(Action::Spawn);
    }

    fn on_spawn_failed(&mut self, e: String, now: Time, out: &mut Vec<Action>) {
        self.clear_probe(out);
        if self.start_count <= 1 {
            log::error!("cannot run ssh: {e}");
            self.finish(1, out);
            return;
        }
        warn!("cannot run ssh: {e}");
        self.after_exit(true, Some("ssh could not be started".into()), now, out);
    }

    fn on_exit(&mut self, end: SshEnd, now: Time, out: &mut Vec<Action>) {
        self.timers.clear(Timer::KillEscalation);
        self.clear_probe(out);
        self.timers.clear(Timer::ConfirmBy);
        match std::mem::replace(&mut self.state, State::Done) {
            State::Stopping { then } => match then {
                Then::Exit(code) => self.finish(code, out),
                Then::Restart { paced } => self.after_exit(paced, None, now, out),
            },
            State::Running { phase } => {
                // `self.state` is already replaced: the phase tells whether it was up.
                if phase == Phase::Up {
                    self.note_down(now);
                }
                let lived = self.started_at.map(|s| now.since(s)).unwrap_or_default();
                let facts = RunFacts {
                    start_count: self.start_count,
                    lived,
                    gate_time: self.cfg.gate_time,
                };
                match judge(end, facts) {
                    Verdict::Exit { code, why } => {
                        match (self.reason(), code) {
                            (_, 0) => info!("{why}"),
                            (Some(Reason::Config(line)), _) => {
                                log::error!("{why}: configuration error, not retrying: {line}")
                            }
                            (Some(Reason::Network(line)), _) => {
                                log::error!("{why}: the server could not be reached: {line}")
                            }
                            (Some(r), _) => log::error!("{why}: {}", self.describe(&r)),
                            _ => log::error!("{why}"),
                        }
                        self.finish(code, out);
                    }
                    Verdict::Restart(why) => {
                        self.stats
                            .record_restart(RestartKind::SshExit, why.clone(), now);
                        self.after_exit(true, Some(why), now, out);
                    }
                }
            }
            other => {
                debug!("ssh exit while {other:?}; ignored");
                self.state = other;
            }
        }
    }

    fn on_signal(&mut self, sig: Sig, now: Time, out: &mut Vec<Action>) {
        match sig {
            Sig::Terminate(n) => {
                info!("received signal to exit ({n})");
                if let State::Stopping {
                    then: Then::Exit(_),
                } = self.state
                {
                    // Asked twice: do not wait out the grace.
                    out.push(Action::KillSsh);
                }
                self.terminate(0, now, out);
            }
            Sig::Restart => match self.state {
                State::Running { .. } => self.restart_ssh(
                    RestartKind::Signal,
                    "signalled to kill and restart ssh".into(),
                    false,
                    now,
                    out,
                ),
                State::BackingOff | State::WaitingForServer => {
                    info!("signalled to restart ssh; skipping the wait");
                    self.timers.clear(Timer::Restart);
                    self.stop_checks(out);
                    self.spawn(now, out);
                }
                _ => {}
            },
            Sig::Retry => match self.state {
                State::BackingOff | State::WaitingForServer => {
                    info!("SIGHUP: retrying now");
                    self.timers.clear(Timer::Restart);
                    self.stop_checks(out);
                    self.spawn(now, out);
                }
                State::Running { .. }
                    if self.in_flight.is_none()
                        && (self.cfg.monitored || self.cfg.session_probe) =>
                {
                    info!("SIGHUP: probing the tunnel now");
                    self.timers.set(Timer::Probe, now);
                }
                _ => {}
            },
            Sig::Wake => debug!("SIGUSR2: awake"),
        }
    }

    /// Stop everything and exit with `code`.
    fn terminate(&mut self, code: i32, now: Time, out: &mut Vec<Action>) {
        match self.state {
            State::Running { .. } => {
                self.clear_probe(out);
                self.stop_ssh(Then::Exit(code), now, out);
            }
            State::Stopping { .. } => {
                self.state = State::Stopping {
                    then: Then::Exit(code),
                };
            }
            State::Idle | State::BackingOff | State::WaitingForServer => {
                self.stop_checks(out);
                self.finish(code, out)
            }
            State::Done => {}
        }
    }

    fn finish(&mut self, code: i32, out: &mut Vec<Action>) {
        if self.timers.get(Timer::ReachCheck).is_some() {
            out.push(Action::StopReach);
        }
        self.timers = Timers::default();
        self.in_flight = None;
        self.state = State::Done;
        out.push(Action::Exit(code));
    }

    fn stop_ssh(&mut self, then: Then, now: Time, out: &mut Vec<Action>) {
        self.stats.up_since = None;
        self.timers.clear(Timer::ConfirmBy);
        self.timers.clear(Timer::Settled);
        self.timers.clear(Timer::Watch);
        if self.stalled {
            self.stop_checks(out);
        }
        self.timers.set(Timer::KillEscalation, now + KILL_GRACE);
        self.state = State::Stopping { then };
        out.push(Action::TermSsh);
    }

    /// Kill the running ssh and start another (after the backoff when `paced`).
    fn restart_ssh(
        &mut self,
        kind: RestartKind,
        why: String,
        paced: bool,
        now: Time,
        out: &mut Vec<Action>,
    ) {
        info!("{why}, restarting ssh");
        self.mark_down(now);
        self.stats.record_restart(kind, why, now);
        self.clear_probe(out);
        self.stop_ssh(Then::Restart { paced }, now, out);
    }

    /// Whether unanswered requests are watched now (a tunnel proven by a probe).
    pub fn watching_requests(&self) -> bool {
        self.state == (State::Running { phase: Phase::Up })
    }

    /// How long an application's request must go unanswered, with the server silent as
    /// long, before it draws a probe: `max(500 ms, 2·srtt + 4·rttvar)` of the probes' RTT.
    pub fn unanswered_threshold(&self) -> Duration {
        self.rtt.patience(
            unanswered::FLOOR,
            self.cfg.net_timeout.max(unanswered::FLOOR),
        )
    }

    /// An address or route change reached ssh's connection: a vanished local address
    /// means a dead connection (restart now); another way to the server means a probe now.
    fn on_net_path(&mut self, p: NetPath, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        match p {
            NetPath::Gone(what) => {
                self.restart_ssh(RestartKind::Network, what, false, now, out);
                // Its connection cannot send a byte: SIGTERM would only wait out the grace.
                out.push(Action::KillSsh);
            }
            NetPath::Moved(what) => {
                if self.state == (State::Running { phase: Phase::Up }) && self.in_flight.is_none() {
                    info!("{what}; probing the tunnel now");
                    self.send_probe(now, true, out);
                } else {
                    debug!("{what}");
                }
            }
            NetPath::Same | NetPath::Unknown => debug!("network change: ssh's path unchanged"),
        }
    }

    /// A look at ssh's sockets: look again sooner while the tunnel carries traffic, and
    /// probe now when an application's request has gone unanswered (whatever the poll).
    fn on_traffic(&mut self, t: Traffic, now: Time, out: &mut Vec<Action>) {
        if self.state != (State::Running { phase: Phase::Up }) {
            return;
        }
        if let Some(heard) = t.server_recv.map(|r| now.before(r)) {
            self.last_proof = Some(self.last_proof.map_or(heard, |p| p.max(heard)));
        }
        let again = if t.server_owes() {
            WATCH_OWED
        } else if t.active(ACTIVE_WITHIN) {
            WATCH_ACTIVE
        } else {
            WATCH_EVERY
        };
        if self
            .timers
            .get(Timer::Watch)
            .is_some_and(|at| now + again < at)
        {
            self.timers.set(Timer::Watch, now + again);
        }
        if self.in_flight.is_some() {
            return;
        }
        if self.unanswered.look(&t, self.unanswered_threshold(), now) {
            if let Waiting::For { waited: w, .. } = t.waiting {
                debug!(
                    "a request through the tunnel unanswered for {} ms, the server silent: \
                     probing now",
                    ms(w)
                );
            }
            self.send_probe(now, true, out);
        }
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
            State::Stopping { .. } => "stopping",
            State::Done => "stopped",
        }
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
        self.story.reason(self.proxied)
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

    fn send_probe(&mut self, now: Time, drawn: bool, out: &mut Vec<Action>) {
        if self.in_flight.is_some() {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight = Some(InFlight {
            seq,
            sent: now,
            drawn,
        });
        let confirming = self.state != (State::Running { phase: Phase::Up });
        let hard = self.cfg.net_timeout;
        if !confirming {
            let floor = if drawn {
                DRAWN_PATIENCE_FLOOR
            } else {
                PATIENCE_FLOOR
            };
            let soft = self.rtt.patience(floor.min(hard), hard);
            if soft < hard {
                self.timers.set(Timer::ProbeSoft, now + soft);
            }
        }
        self.timers.set(Timer::ProbeHard, now + hard);
        out.push(Action::SendProbe { seq });
    }

    fn clear_probe(&mut self, out: &mut Vec<Action>) {
        self.hard_look = false;
        self.timers.clear(Timer::Probe);
        self.timers.clear(Timer::ProbeSoft);
        self.timers.clear(Timer::ProbeHard);
        if self.in_flight.take().is_some() {
            out.push(Action::DropProbe);
        }
    }

    fn on_echo(&mut self, seq: u64, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.in_flight.filter(|p| p.seq == seq) else {
            return;
        };
        self.in_flight = None;
        self.timers.clear(Timer::ProbeSoft);
        self.timers.clear(Timer::ProbeHard);
        let rtt = now.since(p.sent);
        self.last_proof = Some(now);
        self.rtt.sample(rtt);
        self.stats.record_rtt(rtt);
        if self.state
            == (State::Running {
                phase: Phase::Unmonitored,
            })
        {
            // The session probe answered: from now on the tunnel is watched by probes.
            match self.stats.up_since {
                Some(_) => info!("session probe answers, rtt {} ms", ms(rtt)),
                None => self.log_up("session probe", rtt, now),
            }
            self.down_since = None;
            self.state = State::Running { phase: Phase::Up };
            self.became_up(now, out);
        } else if let State::Running {
            phase: Phase::Confirming { .. },
        } = self.state
        {
            self.timers.clear(Timer::ConfirmBy);
            self.relocations = 0;
            self.log_up("probe", rtt, now);
            self.state = State::Running { phase: Phase::Up };
            self.became_up(now, out);
        } else {
            debug!("probe {seq} ok, rtt {} ms", ms(rtt));
        }
        let next = (p.sent + self.cfg.poll).max(now);
        self.timers.set(Timer::Probe, next);
    }

    fn on_path(&mut self, path: PathState, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.in_flight else { return };
        let waited = now.since(p.sent);
        if std::mem::take(&mut self.hard_look) {
            if matches!(path, PathState::Alive | PathState::Lossy) && waited < MAX_PROBE_WAIT {
                debug!(
                    "probe {} late after {:.1} s, path {path:?}: the link is alive, waiting",
                    p.seq,
                    waited.as_secs_f64()
                );
                self.timers
                    .set(Timer::ProbeHard, now + self.cfg.net_timeout);
            } else {
                let why = match path {
                    PathState::Alive => "the server sends, but not the echo",
                    PathState::Lossy => "lossy link, no echo",
                    PathState::Quiet => "server acknowledged it, session silent",
                    PathState::Busy => "nothing from the server",
                    PathState::Unknown => "path unknown",
                };
                self.probe_failed(
                    format!(
                        "probe timed out after {:.1} s ({why})",
                        waited.as_secs_f64()
                    ),
                    now,
                    out,
                );
            }
            return;
        }
        match path {
            PathState::Quiet => {
                let waited = now.since(p.sent);
                let drawn = if p.drawn {
                    "; a request through the tunnel went unanswered"
                } else {
                    ""
                };
                self.probe_failed(
                    format!(
                        "probe timed out after {:.1} s (server acknowledged it, session \
                         silent{drawn})",
                        waited.as_secs_f64()
                    ),
                    now,
                    out,
                );
            }
            PathState::Busy | PathState::Alive | PathState::Lossy | PathState::Unknown => {
                debug!(
                    "probe {} late; path {path:?}: waiting for the net timeout",
                    p.seq
                )
            }
        }
    }

    fn probe_failed(&mut self, why: String, now: Time, out: &mut Vec<Action>) {
        match self.state {
            State::Running {
                phase: Phase::Confirming { attempt },
            } => {
                debug!("tunnel not up yet: {why}");
                self.last_failure = Some(why);
                self.clear_probe(out);
                let gap = (CONFIRM_FIRST_GAP * 2u32.saturating_pow(attempt + 1))
                    .min(CONFIRM_MAX_GAP)
                    .min(self.cfg.poll);
                self.timers.set(Timer::Probe, now + gap);
                self.state = State::Running {
                    phase: Phase::Confirming {
                        attempt: attempt + 1,
                    },
                };
            }
            State::Running { phase: Phase::Up } => {
                if self.remote_monitor_port.is_some() {
                    out.push(Action::RelocateMonitor(Relocation::AfterFailure));
                }
                self.stats.probe_failures += 1;
                self.restart_ssh(RestartKind::Probe, why, true, now, out);
                self.server_silent = true;
            }
            State::Running {
                phase: Phase::Unmonitored,
            } => {
                // The session probe's socket is not there yet (ssh still authenticating),
                // or the session does not answer: ServerAlive is still watching; retry, at
                // most once a second early on, then every 30 s.
                debug!("session probe: {why}");
                self.clear_probe(out);
                let early = self
                    .started_at
                    .is_some_and(|s| now.since(s) < CONFIRM_FLOOR);
                let cap = if early {
                    CONFIRM_MAX_GAP
                } else {
                    SESSION_RETRY_MAX_GAP
                };
                let gap = (CONFIRM_FIRST_GAP * 2u32.saturating_pow(self.session_tries)).min(cap);
                self.session_tries += 1;
                self.timers.set(Timer::Probe, now + gap);
            }
            _ => self.clear_probe(out),
        }
    }

    fn on_forward_failed(&mut self, port: u16, now: Time, out: &mut Vec<Action>) {
        if Some(port) != self.remote_monitor_port || !matches!(self.state, State::Running { .. }) {
            return;
        }
        if self.relocations >= MAX_RELOCATIONS {
            warn!(
                "remote monitor port {port} busy on the server, and {MAX_RELOCATIONS} others \
                 before it; keeping this ssh (is remote forwarding allowed?)"
            );
            return;
        }
        self.relocations += 1;
        out.push(Action::RelocateMonitor(Relocation::Busy));
        let own = if Some(port) == self.local_monitor_port {
            format!(" (if the server is this host, by our own -L {port})")
        } else {
            String::new()
        };
        self.restart_ssh(
            RestartKind::PortBusy,
            format!("remote monitor port {port} busy on the server{own}"),
            false,
            now,
            out,
        );
    }
}

mod recovery;
mod stats;
mod unanswered;
pub use stats::{Restart, RestartKind, Stats};
pub use unanswered::{Traffic, Unanswered, Waiting};

#[cfg(test)]
mod tests;

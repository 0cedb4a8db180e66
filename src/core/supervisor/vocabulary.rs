//! The supervisor's vocabulary: its settings, the events it is fed, the actions it returns, and its states.

use super::*;

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
    /// One of many tunnels: each start first asks the event loop for a handshake slot
    /// ([`Action::AwaitSlot`], answered by [`Event::SlotGranted`]).
    pub gated: bool,
    /// Loop mode's monitor ports (`None` in echo mode and with `-M 0`).
    pub loop_monitor: Option<LoopMonitor>,
    /// The command line sends ssh through a jump host or a proxy command (ssh_config may
    /// say so later: [`Event::Proxied`]).
    pub proxied: bool,
    /// autossh holds the local forwards: new connections go to an ssh once it is proven
    /// ([`Action::Serve`]).
    pub held: bool,
    /// A planned restart may start the new ssh before the old one stops (held forwards,
    /// nothing of ssh's own that two sessions cannot both bind): make-before-break.
    pub handover: bool,
    /// How long the old ssh's connections may go on after a planned restart.
    pub drain_time: Duration,
    /// On demand: no ssh while no connection is open or waiting; stopped after this long
    /// without one.
    pub on_demand: Option<Duration>,
    /// ssh ends when a forward is refused (ExitOnForwardFailure, which autossh adds unless
    /// the user set it): a probe's answer, or the gate, through an ssh that was refused one
    /// is then no proof (it is about to end). A user's own setting keeps 1.4g's view.
    pub refusal_ends_ssh: bool,
    /// ssh's server connection can be reached (Linux): while a probe is out, its delayed
    /// acknowledgements are flushed ([`Action::FlushAcks`]).
    pub flush_acks: bool,
}

/// Loop mode's local `-L` port, and the ports its remote port must never move onto (the
/// other tunnels' local ports, many tunnels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopMonitor {
    pub local: u16,
    pub reserved: Vec<u16>,
}

/// Signals to autossh, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM, SIGINT, SIGQUIT: stop ssh and exit 0.
    Terminate(i32),
    /// The event loop stops this one of many tunnels (it logged why): as `Terminate`.
    Stop,
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
    /// ssh wrote this line on its stderr (the supervisor classifies it, logs it and acts on
    /// it).
    SshSaid(String),
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
    /// Also after [`Action::InspectStall`]: where ssh's connection to the server stands.
    Link(SshLink),
    /// The machine was suspended and has resumed.
    Resumed,
    /// The kernel's addresses, routes or links changed (rtnetlink).
    NetworkChanged,
    /// Answer to [`Action::CheckNetPath`].
    NetPath(NetPath),
    /// Answer to [`Action::AwaitSlot`]: ssh may start now.
    SlotGranted,
    /// The running ssh bound its private sockets: it is past authentication (ssh sets up
    /// its forwards only then).
    SshBound,
    /// Held forwards: connections are open or waiting (`true`), or none is any more.
    Busy(bool),
    /// The old ssh of a planned restart, draining, has no connection left.
    Drained,
    /// The old ssh of a planned restart ended.
    OldExited(SshEnd),
}

/// ssh's connection to the server, as one look at its sockets shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshLink {
    /// An established TCP connection (or a proxy, whose connection cannot be seen).
    Established,
    /// A TCP connect to the server whose SYN has not been answered yet.
    Connecting,
    /// Neither: no socket of ssh's found (not created yet, or not looked at).
    Unseen,
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
    /// Start ssh number `gen` (each start is one more); `quiet`: an outage already logged
    /// is being retried, its pid goes to the debug log.
    Spawn { quiet: bool, gen: u32 },
    /// Held forwards: new connections, and those waiting, go to ssh number `gen` (proven).
    Serve { gen: u32 },
    /// A planned restart: the running ssh becomes the old one (it keeps serving, its end is
    /// [`Event::OldExited`]); a new one is started next.
    Detach,
    /// The old ssh (number `gen`) takes no new connection; [`Event::Drained`] says when it
    /// has none left.
    Drain { gen: u32 },
    /// Send SIGTERM to the old ssh.
    StopOld,
    /// Send SIGKILL to the old ssh.
    KillOld,
    /// Held forwards: stop listening (autossh is exiting; a listener systemd passed keeps
    /// new connections queued for the next autossh).
    StopListening,
    /// Start ssh as soon as a handshake slot to its server is free (see [`Config::gated`]).
    AwaitSlot,
    /// Send SIGTERM to ssh.
    TermSsh,
    /// Send SIGKILL to ssh.
    KillSsh,
    /// Open a monitor connection and send probe `seq`.
    SendProbe { seq: u64 },
    /// Abandon the probe in flight (close its sockets).
    DropProbe,
    /// Have ssh acknowledge now what it has received from the server (`TCP_QUICKACK` on its
    /// connection). sshd leaves Nagle's algorithm on for a session without a terminal
    /// (`-N`), so its answer to a probe waits while a packet it sent before is
    /// unacknowledged, and ssh delays that acknowledgement (40 ms on Linux, up to 200 ms):
    /// the first probe after every login met it.
    FlushAcks,
    /// Look at ssh's transport and answer with [`Event::Path`].
    InspectPath {
        /// Since the probe left, on the supervisor's clock.
        waited: Duration,
    },
    /// The next ssh asks the server for this remote monitor port (loop mode).
    RelocateMonitor { to: u16 },
    /// Start one cheap reachability check of the server (TCP connect to its ssh port).
    CheckReach,
    /// Abandon reachability checks in flight.
    StopReach,
    /// Look whether ssh's server connection is stalled and connected; answer with
    /// [`Event::Stall`] and [`Event::Connected`], and, with `threshold`, with
    /// [`Event::Traffic`]: how long applications have waited for answers, looked at only
    /// when the server has been silent that long.
    InspectStall {
        /// ssh has no server connection of its own to look at (a proxy): report it
        /// connected, not stalled.
        proxied: bool,
        /// Set while unanswered requests are watched (a tunnel proven by a probe).
        threshold: Option<Duration>,
    },
    /// Look at ssh's connection after an address or route change; answer with
    /// [`Event::NetPath`].
    CheckNetPath,
    /// The tunnel is proven for the first time (systemd `READY=1`).
    Ready,
    /// Exit autossh with this code (ssh is already gone).
    Exit(i32),
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
    /// On demand, idle: no ssh until a connection comes.
    Sleep,
    Exit(i32),
}

/// The supervisor's states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Before the first start.
    Idle,
    /// ssh runs; a probe may be out through it.
    Running {
        phase: Phase,
        probe: Option<InFlight>,
    },
    /// We asked ssh to go; waiting for it to exit.
    Stopping { then: Then },
    /// ssh is not running; waiting out the backoff (the `Restart` deadline).
    BackingOff,
    /// Waiting for a handshake slot to the server (many tunnels; `blind` as in [`Run`]).
    Queued { blind: bool },
    /// ssh is not running; the server did not answer: checking it until it does.
    WaitingForServer(Wait),
    /// On demand, no connection open or waiting: no ssh until one comes.
    Dormant,
    /// Held forwards, exiting (`AUTOSSH_MAXLIFETIME`): no new connection is taken; the last
    /// ssh, detached, drains its connections; autossh exits once it is gone.
    Closing,
    /// Ended, for this reason.
    Done(Ending),
}

/// A remote forward's port the server holds for another session (ssh said "remote port
/// forwarding failed for listen port N"): since when it has been refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortHeld {
    pub port: u16,
    pub since: Time,
    /// What holds it and the fix were logged (once an outage).
    pub logged: bool,
}

/// While waiting for the server: what the backoff said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The backoff asked for no wait: a reachable server gets ssh at once.
    pub quick: bool,
    /// When the backoff ends.
    pub backoff_until: Time,
}

/// The probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    pub seq: u64,
    pub sent: Time,
    /// Sent because a request through the tunnel went unanswered.
    pub drawn: bool,
    /// The pending `InspectPath` was asked at the net timeout.
    pub hard_look: bool,
}

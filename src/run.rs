//! The event loop: one mio `Poll` for signals, ssh's stderr and the monitor's sockets. It
//! feeds the supervisor `(event, now)` and performs the actions it returns; only here are
//! processes started and killed.

use crate::clock::Time;
use crate::complaint::classify;
use crate::config::Settings;
use crate::daemon::{self, Notifier};
use crate::error::{runtime, Result};
use crate::monitor::{Mode, Monitor};
use crate::path;
use crate::pidfile::Pidfile;
use crate::probe::Prober;
use crate::reach::Reach;
use crate::report;
use crate::sd_notify::SdNotify;
use crate::ssh_argv::{self, Forwards};
use crate::ssh_process::SshProcess;
use crate::supervisor::{
    Action, Config, Event, NetPath, PathState, Relocation, Sig, Supervisor, Traffic, Waiting,
};
use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
use signal_hook::consts::signal::*;
use signal_hook_mio::v1_0::Signals;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Status and metrics files are refreshed at least this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Token of the signal pipe.
const SIGNALS: Token = Token(0);
/// Token of ssh's stderr pipe.
const SSH_STDERR: Token = Token(1);
/// Token of the rtnetlink socket (address, route and link changes).
const NETLINK: Token = Token(4);

/// Runs autossh to the end; returns the exit code.
pub fn run(settings: Settings) -> Result<i32> {
    let (forwards, listener) = prepare_monitor(&settings)?;
    let mut pidfile = settings.pidfile.as_deref().map(Pidfile::lock).transpose()?;
    let notifier = if settings.daemon {
        let n = daemon::detach()?;
        if settings.logfile.is_none() {
            crate::logging::switch_to_syslog();
        }
        Some(n)
    } else {
        None
    };
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }
    // Started for good (past the checks, detached): what is said now goes to the log.
    let (forwards, session_socket) = prepare_session_probe(&settings, forwards);
    if !settings.sharing_asked {
        info!(
            "ssh runs with ControlMaster=no and ControlPath=none: the supervised ssh holds the \
             session itself (set either on autossh's command line to share a connection)"
        );
    }
    let mut runner = Runner::new(settings, forwards, listener, notifier)?;
    runner.session_socket = session_socket;
    let code = runner.run();
    runner.cleanup();
    // A last report says "stopped".
    runner.last_report = None;
    runner.report();
    drop(pidfile);
    code
}

/// Binds the loop-mode listener (or picks a free pair) before anything starts.
fn prepare_monitor(s: &Settings) -> Result<(Forwards, Option<TcpListener>)> {
    use crate::cli::MonitorSpec;
    match s.monitor {
        Some(MonitorSpec::Off) => Ok((Forwards::Off, None)),
        Some(MonitorSpec::Echo { port, echo }) => Ok((Forwards::Echo { local: port, echo }, None)),
        Some(MonitorSpec::Loop(port)) => {
            let l = listen_local(port + 1).map_err(|e| {
                runtime(format!(
                    "cannot listen on monitor port 127.0.0.1:{}: {e}",
                    port + 1
                ))
            })?;
            Ok((
                Forwards::Loop {
                    local: port,
                    remote: port,
                },
                Some(l),
            ))
        }
        None => {
            let seed = random_u64();
            for i in 0..200u64 {
                let port = 20000 + ((seed.wrapping_add(i * 7919)) % 20000) as u16 * 2;
                if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                    continue;
                }
                if let Ok(l) = listen_local(port + 1) {
                    info!(
                        "no monitor port given (-M or AUTOSSH_PORT); using {port} and {}",
                        port + 1
                    );
                    return Ok((
                        Forwards::Loop {
                            local: port,
                            remote: port,
                        },
                        Some(l),
                    ));
                }
            }
            Err(runtime("no free monitor port pair found on 127.0.0.1"))
        }
    }
}

/// `-M 0`: the session probe's socket directory, unless the probe is turned off or ssh
/// would drop its forward (`-W`, `ClearAllForwardings`). A directory that cannot be made
/// leaves `-M 0` as it was, with a warning.
fn prepare_session_probe(
    s: &Settings,
    forwards: Forwards,
) -> (Forwards, Option<crate::probe_conn::SessionSocket>) {
    if forwards != Forwards::Off || !s.session_probe {
        return (forwards, None);
    }
    if s.stdio_forward || s.user_o_keys.iter().any(|k| k == "clearallforwardings") {
        info!("-W or ClearAllForwardings: no session probe; ServerAlive watches the tunnel");
        return (forwards, None);
    }
    match crate::probe_conn::SessionSocket::create(random_u64()) {
        Ok(sock) => {
            let socket = sock.path().to_path_buf();
            (Forwards::Session { socket }, Some(sock))
        }
        Err(e) => {
            warn!("cannot make a directory for the session probe ({e}); ServerAlive only");
            (forwards, None)
        }
    }
}

/// The loop-mode listener on 127.0.0.1:`port`, with a deep accept queue: a burst of
/// connections from other local processes must not keep ssh's loop connection waiting.
fn listen_local(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Time the machine has spent suspended since boot.
fn suspended_offset() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let read = |id| {
        clock_gettime(id)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .unwrap_or_default()
    };
    read(ClockId::CLOCK_BOOTTIME).saturating_sub(read(ClockId::CLOCK_MONOTONIC))
}

/// Random bits for the probe nonce and port choice.
fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
}

struct Runner {
    settings: Settings,
    sup: Supervisor,
    poll: Poll,
    signals: Signals,
    forwards: Forwards,
    monitor: Option<Monitor>,
    prober: Prober,
    ssh: Option<SshProcess>,
    /// ssh's connection to the server, for late probes and stalls.
    transport: Option<path::Transport>,
    notifier: Option<Notifier>,
    /// When the current probe was sent, ssh's read byte count then, and the probe's size.
    probe_baseline: (std::time::Instant, Option<u64>, u64),
    /// Path inspection is meaningless through a proxy: ssh has no TCP socket of its own.
    /// Set from the command line at start, or once `ssh -G` says so (ssh_config).
    proxied: bool,
    reach: Reach,
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` at the last look: it grows across a suspend.
    suspended_offset: Duration,
    /// systemd's notify socket, when run as a `Type=notify` service.
    sd: Option<SdNotify>,
    /// Address and route changes (none where rtnetlink cannot be opened).
    netwatch: Option<crate::netwatch::NetWatch>,
    /// The session probe's socket directory (`-M 0`), removed when autossh ends.
    session_socket: Option<crate::probe_conn::SessionSocket>,
    /// What the last report said and when it was written.
    last_report: Option<(String, Instant)>,
    /// The state last reported and when it began.
    state_since: (&'static str, Time),
    /// Next `WATCHDOG=1`.
    next_watchdog: Option<Instant>,
    queue: VecDeque<Event>,
}

impl Runner {
    fn new(
        settings: Settings,
        forwards: Forwards,
        listener: Option<TcpListener>,
        notifier: Option<Notifier>,
    ) -> Result<Runner> {
        let poll = Poll::new().map_err(|e| runtime(format!("poll: {e}")))?;
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD])
                .map_err(|e| runtime(format!("signals: {e}")))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| runtime(format!("poll: {e}")))?;
        let monitor = match forwards {
            Forwards::Off => None,
            Forwards::Session { ref socket } => Some(Monitor::session(socket.clone())),
            Forwards::Loop { local, .. } => Some(Monitor::new(Mode::Loop, local, listener)),
            Forwards::Echo { local, .. } => Some(Monitor::new(Mode::Echo, local, None)),
        };
        let mut monitor = monitor;
        if let Some(m) = monitor.as_mut() {
            m.register(poll.registry())
                .map_err(|e| runtime(format!("poll: {e}")))?;
        }
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let prober = Prober::new(
            host,
            std::process::id(),
            random_u64(),
            settings.message.clone(),
        );
        let mut sup = Supervisor::new(Config {
            gate_time: settings.gate_time,
            max_start: settings.max_start,
            max_lifetime: settings.max_lifetime,
            poll: settings.poll,
            first_poll: settings.first_poll,
            net_timeout: settings.net_timeout(),
            monitored: matches!(forwards, Forwards::Loop { .. } | Forwards::Echo { .. }),
            session_probe: matches!(forwards, Forwards::Session { .. }),
            seed: random_u64(),
        });
        sup.set_remote_monitor_port(forwards.remote_listen_port());
        if let Forwards::Loop { local, .. } = forwards {
            sup.set_local_monitor_port(Some(local));
        }
        let proxied = settings
            .user_o_keys
            .iter()
            .any(|k| k == "proxycommand" || k == "proxyjump")
            || settings
                .ssh_args
                .iter()
                .any(|a| a.to_string_lossy().starts_with("-J"));
        let mut reach = Reach::new(settings.ssh_path.clone(), settings.ssh_args.clone());
        // Also through a proxy: `ssh -G` names the target behind it, for the log, and its
        // answer is checked for key hygiene.
        reach.prepare();
        let sd = SdNotify::from_env();
        let next_watchdog = sd
            .as_ref()
            .and_then(|s| s.watchdog_every)
            .map(|_| Instant::now());
        let netwatch = match crate::netwatch::NetWatch::open()
            .and_then(|w| w.register(poll.registry(), NETLINK).map(|_| w))
        {
            Ok(w) => Some(w),
            Err(e) => {
                debug!("no rtnetlink ({e}): address and route changes are not watched");
                None
            }
        };
        Ok(Runner {
            netwatch,
            sd,
            session_socket: None,
            last_report: None,
            state_since: ("starting", Time::now()),
            next_watchdog,
            reach,
            suspended_offset: suspended_offset(),
            sup,
            poll,
            signals,
            forwards,
            monitor,
            prober,
            ssh: None,
            transport: None,
            notifier,
            probe_baseline: (std::time::Instant::now(), None, 0),
            proxied,
            queue: VecDeque::new(),
            settings,
        })
    }

    fn run(&mut self) -> Result<i32> {
        let mut events = Events::with_capacity(64);
        if self.proxied {
            self.queue.push_back(Event::Proxied { target: None });
        }
        self.queue.push_back(Event::Begin);
        loop {
            if let Some(code) = self.drain_queue() {
                return Ok(code);
            }
            self.report();
            let timeout = [
                self.sup.timeout(Time::now()),
                self.report_due(),
                self.next_watchdog
                    .map(|t| t.saturating_duration_since(Instant::now())),
            ]
            .into_iter()
            .flatten()
            .min()
            // Round up to a millisecond so a deadline is not missed by a hair.
            .map(|d| d + Duration::from_micros(500));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(runtime(format!("poll: {e}"))),
            }
            // Before ssh's lines and exit: they are judged knowing whether it is proxied.
            self.learn_route();
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(),
                    SSH_STDERR => self.on_stderr(),
                    NETLINK if self.netwatch.as_ref().is_some_and(|w| w.drain()) => {
                        self.queue.push_back(Event::NetworkChanged);
                    }
                    t if Monitor::owns(t) => {
                        let registry = self.poll.registry();
                        if let Some(e) = self.monitor.as_mut().and_then(|m| m.ready(registry, t)) {
                            self.queue.push_back(e);
                        }
                    }
                    t if Reach::owns(t) => {
                        if let Some(e) = self.reach.ready(self.poll.registry(), t) {
                            self.queue.push_back(e);
                        }
                    }
                    _ => {}
                }
            }
            let expired = self.reach.expire(self.poll.registry());
            self.queue.extend(expired);
            self.notice_resume();
            if let Some(code) = self.drain_queue() {
                return Ok(code);
            }
            let now = Time::now();
            for a in self.sup.on_time(now) {
                if let Some(code) = self.perform(a) {
                    return Ok(code);
                }
            }
        }
    }

    /// Takes `ssh -G`'s answer when it is there: through a proxy (ProxyJump or ProxyCommand
    /// from ssh_config too) the server cannot be checked, nor ssh's connection inspected.
    fn learn_route(&mut self) {
        if let Some(e) = self.reach.resolve() {
            if let Event::Proxied { .. } = e {
                self.proxied = true;
            }
            self.queue.push_back(e);
        }
    }

    /// Hands queued events to the supervisor, performing what it asks.
    fn drain_queue(&mut self) -> Option<i32> {
        while let Some(ev) = self.queue.pop_front() {
            let actions = self.sup.handle(ev, Time::now());
            for a in actions {
                if let Some(code) = self.perform(a) {
                    return Some(code);
                }
            }
        }
        None
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            let ev = match sig {
                SIGCHLD => {
                    self.reap();
                    continue;
                }
                SIGTERM | SIGINT | SIGQUIT => {
                    if let Some(sd) = &self.sd {
                        sd.send("STOPPING=1");
                    }
                    Sig::Terminate(sig)
                }
                SIGUSR1 => Sig::Restart,
                SIGHUP => Sig::Retry,
                _ => Sig::Wake,
            };
            self.queue.push_back(Event::Signal(ev));
        }
    }

    /// Collects ssh if it has exited; its last stderr lines are handled first.
    fn reap(&mut self) {
        let Some(ssh) = self.ssh.as_mut() else { return };
        match ssh.try_wait() {
            Ok(Some(end)) => {
                self.on_stderr();
                self.close_stderr();
                let pid = self.ssh.take().map(|s| s.pid()).unwrap_or(0);
                self.transport = None;
                debug!("ssh (pid {pid}) ended: {end:?}");
                self.queue.push_back(Event::SshExited(end));
            }
            Ok(None) => {}
            Err(e) => warn!("waitpid: {e}"),
        }
    }

    fn on_stderr(&mut self) {
        let Some(ssh) = self.ssh.as_mut() else { return };
        let (lines, eof) = ssh.read_stderr();
        let session_probe = self
            .monitor
            .as_ref()
            .is_some_and(|m| m.session_probe_recent());
        // Retrying through a proxy in an outage already logged: one line per outage, the
        // lines that say it again go to debug (anything else ssh says is still news).
        let quiet = self.sup.quiet();
        for line in lines {
            if session_probe && crate::complaint::is_session_probe_refusal(&line) {
                // The server refusing the session probe's channel: the answer we wanted.
                debug!("ssh: {line}");
                continue;
            }
            let class = classify(&line);
            if quiet && class.as_ref().is_some_and(|c| c.repeats_an_outage()) {
                debug!("ssh: {line}");
            } else {
                info!("ssh: {line}");
            }
            if let Some(c) = class {
                self.queue.push_back(Event::SshSaid(c));
            }
        }
        if eof {
            self.close_stderr();
        }
    }

    fn close_stderr(&mut self) {
        if let Some(fd) = self.ssh.as_ref().and_then(|s| s.stderr_fd()) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// Performs one action; returns the exit code when it is time to go.
    fn perform(&mut self, action: Action) -> Option<i32> {
        match action {
            Action::Spawn => self.spawn(),
            Action::TermSsh => self.signal_ssh(Signal::SIGTERM),
            Action::KillSsh => self.signal_ssh(Signal::SIGKILL),
            Action::SendProbe { seq } => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let bytes = self.prober.line(seq, wall);
                // ssh's read count is for the /proc fallback only.
                let tcp_info = self.transport.as_mut().is_some_and(|t| t.has_tcp_info());
                let pid = self.ssh.as_ref().map(|s| s.pid()).filter(|_| !tcp_info);
                self.probe_baseline = (
                    std::time::Instant::now(),
                    pid.and_then(path::ssh_read_bytes),
                    bytes.len() as u64,
                );
                let registry = self.poll.registry();
                if let Some(e) = self
                    .monitor
                    .as_mut()
                    .and_then(|m| m.send(registry, seq, bytes))
                {
                    self.queue.push_back(e);
                }
            }
            Action::DropProbe => {
                if let Some(m) = self.monitor.as_mut() {
                    m.drop_probe(self.poll.registry());
                }
            }
            Action::InspectPath => {
                let state = match self.ssh.as_ref() {
                    Some(_) if !self.proxied => {
                        let (sent, read_before, len) = self.probe_baseline;
                        self.transport
                            .as_mut()
                            .map(|t| t.inspect(sent.elapsed(), read_before, len))
                            .unwrap_or(PathState::Unknown)
                    }
                    _ => PathState::Unknown,
                };
                debug!("probe late; ssh's connection looks {state:?}");
                self.queue.push_back(Event::Path(state));
            }
            Action::RelocateMonitor(why) => self.relocate(why),
            Action::Ready => {
                if let Some(sd) = &self.sd {
                    let line = report::status_line(&self.sup, Time::now());
                    sd.send(&format!("READY=1\nSTATUS={line}"));
                }
            }
            Action::CheckReach => {
                let e = if self.proxied {
                    Some(Event::ReachUnknown)
                } else {
                    self.reach.check(self.poll.registry())
                };
                self.queue.extend(e);
            }
            Action::StopReach => self.reach.stop(self.poll.registry()),
            Action::InspectStall => self.watch_ssh(),
            Action::CheckNetPath => {
                let verdict = match self.transport.as_mut() {
                    Some(t) if !self.proxied => match t.endpoints() {
                        Some((local, peer)) => crate::netwatch::judge_path(local, peer),
                        None => NetPath::Unknown,
                    },
                    _ => NetPath::Unknown,
                };
                self.queue.push_back(Event::NetPath(verdict));
            }
            Action::Exit(code) => {
                if code != 0 {
                    if let Some(n) = self.notifier.as_mut() {
                        n.failed(&format!("autossh exited with status {code} (see its log)"));
                    }
                }
                return Some(code);
            }
        }
        None
    }

    /// Looks at ssh's server connection (stall, connected) and, when the server has gone
    /// quiet while it owes an answer, at what the applications using the tunnel wait for.
    fn watch_ssh(&mut self) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        let look = if self.proxied { None } else { t.watch() };
        // Through a proxy the server connection cannot be seen: take ssh as connected.
        let connected = self.proxied || look.is_some();
        self.queue.push_back(Event::Connected(connected));
        self.queue
            .push_back(Event::Stall(look.is_some_and(|l| l.stalled)));
        if !self.sup.watching_requests() {
            return;
        }
        let threshold = self.sup.unanswered_threshold();
        // The server has said nothing for the threshold (the last thing it said may be the
        // answer to our own probe: a request made before it can still be waiting). Looking
        // is cheap and is not repeated while ssh sends the server nothing new.
        let server_quiet = match look {
            Some(l) => l.recv_ago >= threshold,
            None => self.proxied,
        };
        let waiting = if server_quiet {
            let skip = self.monitor.as_ref().and_then(|m| m.local_port());
            t.app_waiting(skip, look.map(|l| l.sent_ago))
        } else {
            Waiting::NotLooked
        };
        self.queue.push_back(Event::Traffic(Traffic {
            server_sent: look.map(|l| l.sent_ago),
            server_recv: look.map(|l| l.recv_ago),
            waiting,
        }));
    }

    fn spawn(&mut self) {
        if let Some(s) = &self.session_socket {
            s.clear();
        }
        let argv = ssh_argv::build(&self.settings, &self.forwards);
        debug!(
            "execing {} {}",
            self.settings.ssh_path.to_string_lossy(),
            argv.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        match SshProcess::spawn(&self.settings.ssh_path, &argv, self.settings.daemon) {
            Ok(ssh) => {
                if self.sup.quiet() {
                    debug!("ssh child pid is {}", ssh.pid());
                } else {
                    info!("ssh child pid is {}", ssh.pid());
                }
                if let Some(fd) = ssh.stderr_fd() {
                    if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        SSH_STDERR,
                        Interest::READABLE,
                    ) {
                        warn!("cannot watch ssh's stderr: {e}");
                    }
                }
                self.transport = Some(path::Transport::new(ssh.pid()));
                self.ssh = Some(ssh);
                if let Some(n) = self.notifier.as_mut() {
                    n.started();
                }
            }
            Err(e) => {
                let why = format!("{}: {e}", self.settings.ssh_path.to_string_lossy());
                if let Some(n) = self.notifier.as_mut() {
                    n.failed(&format!("cannot run ssh: {why}"));
                }
                self.queue.push_back(Event::SpawnFailed(why));
            }
        }
    }

    fn signal_ssh(&mut self, sig: Signal) {
        if let Some(s) = self.ssh.as_ref() {
            debug!("sending {sig} to ssh (pid {})", s.pid());
            s.signal(sig);
        }
    }

    /// Moves loop mode's remote port to the next pair.
    fn relocate(&mut self, why: Relocation) {
        if let Forwards::Loop { local, remote } = &self.forwards {
            let (local, remote) = (*local, *remote);
            let next = if remote >= 65533 { 20000 } else { remote + 2 };
            match why {
                Relocation::Busy => info!("next ssh uses remote monitor port {next}"),
                Relocation::AfterFailure => info!(
                    "next ssh uses remote monitor port {next} (the old session may still hold {remote})"
                ),
            }
            self.forwards = Forwards::Loop {
                local,
                remote: next,
            };
            self.sup.set_remote_monitor_port(Some(next));
        }
    }

    /// When the next periodic report is due (status files are refreshed every 5 s).
    fn report_due(&self) -> Option<Duration> {
        let wanted = self.settings.statusfile.is_some()
            || self.settings.metricsfile.is_some()
            || self.sd.is_some();
        if !wanted {
            return None;
        }
        Some(match &self.last_report {
            Some((_, at)) => REPORT_EVERY.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// Writes the status and metrics files and tells systemd, when something changed or
    /// the refresh is due; feeds the watchdog while the tunnel is proven.
    fn report(&mut self) {
        let now = Time::now();
        let phase = self.sup.phase_name();
        if phase != self.state_since.0 {
            self.state_since = (phase, now);
        }
        if let (Some(sd), Some(next)) = (&self.sd, self.next_watchdog) {
            if Instant::now() >= next {
                if self.sup.healthy() {
                    sd.send("WATCHDOG=1");
                }
                self.next_watchdog = sd.watchdog_every.map(|e| Instant::now() + e);
            }
        }
        let Some(due) = self.report_due() else { return };
        let line = report::status_line(&self.sup, now);
        let changed = self.last_report.as_ref().is_none_or(|(l, _)| *l != line);
        if !changed && !due.is_zero() {
            return;
        }
        if changed {
            if let Some(sd) = &self.sd {
                sd.send(&format!("STATUS={line}"));
            }
        }
        let facts = self.facts();
        if let Some(p) = &self.settings.statusfile {
            if let Err(e) = report::write_atomically(p, &report::json(&self.sup, &facts, now)) {
                warn!("status file {}: {e}", p.display());
            }
        }
        if let Some(p) = &self.settings.metricsfile {
            if let Err(e) = report::write_atomically(p, &report::prometheus(&self.sup, now)) {
                warn!("metrics file {}: {e}", p.display());
            }
        }
        self.last_report = Some((line, Instant::now()));
    }

    fn facts(&self) -> report::Facts<'static> {
        let (mode, local, remote, echo) = match self.forwards {
            Forwards::Off | Forwards::Session { .. } => ("off", None, None, None),
            Forwards::Loop { local, remote } => ("loop", Some(local), Some(remote), None),
            Forwards::Echo { local, echo } => ("echo", Some(local), None, Some(echo)),
        };
        report::Facts {
            state_since: self.state_since.1,
            ssh_pid: self.ssh.as_ref().map(|s| s.pid()),
            mode,
            session_probe: matches!(self.forwards, Forwards::Session { .. }),
            local_port: local,
            remote_port: remote,
            echo_port: echo,
            poll: self.settings.poll,
            first_poll: self.settings.first_poll,
            gate_time: self.settings.gate_time,
            net_timeout: self.settings.net_timeout(),
            max_start: self.settings.max_start,
            max_lifetime: self.settings.max_lifetime,
        }
    }

    /// A suspend shows as `CLOCK_BOOTTIME` running ahead of `CLOCK_MONOTONIC`.
    fn notice_resume(&mut self) {
        let offset = suspended_offset();
        if offset > self.suspended_offset + Duration::from_secs(2) {
            self.queue.push_back(Event::Resumed);
        }
        self.suspended_offset = offset;
    }

    /// Last line of defence: never leave ssh, or an `ssh -G` look-up, behind.
    fn cleanup(&mut self) {
        if let Some(m) = self.monitor.as_mut() {
            m.drop_probe(self.poll.registry());
        }
        self.reach.shutdown(self.poll.registry());
        if let Some(mut ssh) = self.ssh.take() {
            ssh.signal(Signal::SIGKILL);
            for _ in 0..500 {
                if !matches!(ssh.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.session_socket = None;
    }
}

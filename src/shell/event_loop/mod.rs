//! The event loop: one mio `Poll` for signals, ssh's stderr and the monitor's sockets. It
//! feeds the supervisor `(event, now)` and performs the actions it returns; only here are
//! processes started and killed.

use crate::core::clock::Time;
use crate::core::probe::Prober;
use crate::core::ssh_stderr::classify;
use crate::core::supervisor::{
    Action, Config, Event, NetPath, PathState, Relocation, Sig, Supervisor, Traffic, Waiting,
};
use crate::error::{runtime, Result};
use crate::setup::config::Settings;
use crate::setup::daemon::{self, Notifier};
use crate::setup::pidfile::Pidfile;
use crate::setup::ssh_argv::{self, Forwards};
use crate::shell::monitor::{Mode, Monitor};
use crate::shell::nonblocking::interrupted;
use crate::shell::reach::Reachability;
use crate::shell::report;
use crate::shell::sd_notify::SdNotify;
use crate::shell::ssh_process::SshProcess;
use crate::shell::transport;
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

/// Time the machine has spent suspended since boot.
pub(super) fn suspended_offset() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let read = |id| {
        clock_gettime(id)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .unwrap_or_default()
    };
    read(ClockId::CLOCK_BOOTTIME).saturating_sub(read(ClockId::CLOCK_MONOTONIC))
}

/// Random bits for the probe nonce and port choice.
pub(super) fn random_u64() -> u64 {
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
    ssh: Option<SshProcess>,
    /// ssh's connection to the server, for late probes and stalls.
    transport: Option<transport::Transport>,
    notifier: Option<Notifier>,
    /// Path inspection is meaningless through a proxy: ssh has no TCP socket of its own.
    /// Set from the command line at start, or once `ssh -G` says so (ssh_config).
    proxied: bool,
    reach: Reachability,
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` at the last look: it grows across a suspend.
    suspended_offset: Duration,
    /// systemd's notify socket, when run as a `Type=notify` service.
    sd: Option<SdNotify>,
    /// Address and route changes (none where rtnetlink cannot be opened).
    netwatch: Option<crate::shell::netwatch::NetWatch>,
    /// The session probe's socket directory (`-M 0`), removed when autossh ends.
    session_socket: Option<crate::shell::probe_conn::SessionSocket>,
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
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let prober = Prober::new(
            host,
            std::process::id(),
            random_u64(),
            settings.message.clone(),
        );
        let monitor = match forwards {
            Forwards::Off => None,
            Forwards::Session { ref socket } => Some(Monitor::session(socket.clone(), prober)),
            Forwards::Loop { local, .. } => Some(Monitor::new(Mode::Loop, local, listener, prober)),
            Forwards::Echo { local, .. } => Some(Monitor::new(Mode::Echo, local, None, prober)),
        };
        let mut monitor = monitor;
        if let Some(m) = monitor.as_mut() {
            m.register(poll.registry())
                .map_err(|e| runtime(format!("poll: {e}")))?;
        }
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
        let mut reach = Reachability::new(settings.ssh_path.clone(), settings.ssh_args.clone());
        // Also through a proxy: `ssh -G` names the target behind it, for the log, and its
        // answer is checked for key hygiene.
        reach.prepare();
        let sd = SdNotify::from_env();
        let next_watchdog = sd
            .as_ref()
            .and_then(|s| s.watchdog_every)
            .map(|_| Instant::now());
        let netwatch = match crate::shell::netwatch::NetWatch::open()
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
            ssh: None,
            transport: None,
            notifier,
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
                Err(e) if interrupted(&e) => continue,
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
                    t if Reachability::owns(t) => {
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
            if session_probe && crate::core::ssh_stderr::is_session_probe_refusal(&line) {
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

mod actions;
mod start;
mod status;
pub use start::run;

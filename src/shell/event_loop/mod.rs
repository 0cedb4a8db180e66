//! The event loop: one mio `Poll` for signals, the network watch, the control socket and
//! every tunnel's sockets. It feeds each tunnel's supervisor `(event, now)` and performs
//! what the tunnels cannot do alone: handshake slots, reload, reports; only here are
//! tunnels started and ended.

use crate::core::clock::Time;
use crate::core::handshakes::Handshakes;
use crate::core::supervisor::{Event, Sig};
use crate::error::{runtime, Result};
use crate::setup::config::Settings;
use crate::setup::daemon::Notifier;
use crate::setup::logging::tunnel_context;
use crate::setup::tunnels_file::TunnelDef;
use crate::shell::control::ControlServer;
use crate::shell::hooks::Watch;
use crate::shell::http::HttpServer;
use crate::shell::nonblocking::interrupted;
use crate::shell::platform::DirWatch;
use crate::shell::sd_notify::SdNotify;
use crate::shell::tunnel::{slot_of, Outcome, Spec, Tunnel};
use log::{debug, info};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::signal::*;
use signal_hook_mio::v1_0::Signals;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod checks;
mod fleet;
mod outside;
mod start;
mod status;
pub use start::{run, run_tunnels};

/// Token of the signal pipe.
const SIGNALS: Token = Token(0);
/// Token of the rtnetlink socket (address, route and link changes).
const NETLINK: Token = Token(4);
/// Token of the private directory's watch (ssh binding its sockets).
const DIRWATCH: Token = Token(7);

/// A watch of autossh's private directory in `poll` (none where the platform has none).
fn watch_dir(dir: &std::path::Path, poll: &Poll) -> Option<DirWatch> {
    let w = DirWatch::open(dir).ok()?;
    match w.register(poll.registry(), DIRWATCH) {
        Ok(()) => Some(w),
        Err(e) => {
            debug!("no watch of {} ({e}): slots wait for proofs", dir.display());
            None
        }
    }
}

/// Time the machine has spent suspended since boot (zero where the platform cannot tell).
fn suspended_offset() -> Duration {
    crate::shell::platform::suspended_offset().unwrap_or_default()
}

/// What a tunnel of the file is made from.
fn spec_of(def: &TunnelDef, agent: Option<&crate::shell::agent::Agent>) -> Spec {
    Spec {
        agent: agent.map(|a| a.socket().to_path_buf()),
        name: Some(def.name.clone()),
        settings: def.settings.clone(),
        gated: true,
        reserved: def.others.clone(),
    }
}

/// Why a tunnel is being stopped by the loop.
enum Retire {
    /// Gone from the file, or changed (its new definition waits in `Fleet::pending`).
    Remove,
    /// autossh is exiting.
    Shutdown,
}

/// A tunnel and what the loop knows of it.
struct Slot {
    tunnel: Tunnel,
    /// Its definition in the tunnels file (`None`: the command line's tunnel).
    def: Option<TunnelDef>,
    retire: Option<Retire>,
}

/// What every tunnel shares: handshake slots, reachability checks, the tunnels waiting to
/// start, readiness. The command line's single tunnel is a fleet of one; only where the
/// two truly differ (exit code, SIGHUP and SIGTERM, the reports' form) is [`Source`] asked.
struct Fleet {
    source: Source,
    gate: Handshakes,
    /// One reachability check per server at a time, its answer shared (a hundred tunnels
    /// checking a returning server at once would hit its `MaxStartups` themselves).
    checks: std::collections::HashMap<String, checks::SharedCheck>,
    /// Tunnels to start once every tunnel being removed is gone (a changed tunnel's new
    /// definition, new ones): none binds a port an old one still holds.
    pending: Vec<TunnelDef>,
    /// `READY=1` was sent (once every tunnel is proven, or at the file's `ready_by`).
    ready_sent: bool,
    /// Some tunnel ended on its own with a non-zero code.
    failures: bool,
}

/// Where the tunnels come from.
enum Source {
    /// The command line's one tunnel: its exit code is autossh's, SIGHUP retries it, SIGTERM
    /// goes to its supervisor, the reports are about it alone, systemd hears `READY=1` only
    /// once it is proven.
    CommandLine,
    /// `--tunnels FILE`: reloaded on SIGHUP and on the control socket, stopped together.
    File {
        file: PathBuf,
        control: ControlServer,
        /// `READY=1` is sent at this time even if not every tunnel is proven yet.
        ready_by: Instant,
    },
}

impl Fleet {
    fn new(source: Source) -> Fleet {
        Fleet {
            source,
            gate: Handshakes::default(),
            checks: Default::default(),
            pending: Vec::new(),
            ready_sent: false,
            failures: false,
        }
    }

    /// Whether the tunnels come from a file (`--tunnels`).
    fn is_file(&self) -> bool {
        matches!(self.source, Source::File { .. })
    }
}

struct Runner {
    poll: Poll,
    signals: Signals,
    /// Indexed by token slot; a removed tunnel leaves `None` (slots are not reused).
    slots: Vec<Option<Slot>>,
    /// The tunnels' shared machinery (one from the command line, or a file's).
    fleet: Fleet,
    /// Settings of the whole process (status and metrics files, `-f`).
    process: Settings,
    notifier: Option<Notifier>,
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` at the last look: it grows across a suspend.
    suspended_offset: Duration,
    /// systemd's notify socket, when run as a `Type=notify` service.
    sd: Option<SdNotify>,
    /// Address and route changes (none where rtnetlink or the routing socket cannot be opened).
    netwatch: Option<crate::shell::netwatch::NetWatch>,
    /// New entries of the private directory (Linux): ssh has authenticated once it binds
    /// its sockets there.
    dirwatch: Option<DirWatch>,
    /// The shell's own deadlines (reports, watchdog).
    timers: status::ShellTimers,
    /// What the last report said.
    last_report: Option<String>,
    /// SIGTERM (or the like) arrived: every tunnel is stopping.
    shutting_down: bool,
    /// `AUTOSSH_HTTP`'s endpoint.
    http: Option<HttpServer>,
    /// Every tunnel's outward state, and `AUTOSSH_HOOK`'s runs.
    watch: Watch,
    /// A tunnel worked since the outward states were last watched.
    stepped: bool,
    /// The last `/metrics` answer, shared by the scrapes of the next second.
    metrics_cache: Option<outside::Rendered>,
    /// autossh's private directory and its janitor (declared last: dropped after the
    /// tunnels that use it).
    place: Place,
}

/// autossh's private directory, shared by its tunnels, and the janitor that removes it even
/// when autossh is killed.
#[derive(Default)]
struct Place {
    /// autossh's own ssh-agent (keys with a passphrase), its socket in `dir`.
    agent: Option<crate::shell::agent::Agent>,
    dir: Option<std::rc::Rc<crate::shell::private_dir::PrivateDir>>,
    /// Kept for its drop: the end of autossh's run lets it go.
    _janitor: Option<crate::shell::janitor::Janitor>,
}

impl Runner {
    fn new(process: Settings, notifier: Option<Notifier>, place: Place) -> Result<Runner> {
        let poll = Poll::new().map_err(|e| runtime(format!("poll: {e}")))?;
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD])
                .map_err(|e| runtime(format!("signals: {e}")))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| runtime(format!("poll: {e}")))?;
        let sd = SdNotify::from_env();
        let netwatch = match crate::shell::netwatch::NetWatch::open()
            .and_then(|w| w.register(poll.registry(), NETLINK).map(|_| w))
        {
            Ok(w) => Some(w),
            Err(e) => {
                debug!("no network watch ({e}): address and route changes are not watched");
                None
            }
        };
        let dirwatch = place.dir.as_ref().and_then(|d| watch_dir(d.path(), &poll));
        Ok(Runner {
            timers: status::ShellTimers::new(sd.as_ref()),
            netwatch,
            dirwatch,
            sd,
            last_report: None,
            suspended_offset: suspended_offset(),
            poll,
            signals,
            slots: Vec::new(),
            fleet: Fleet::new(Source::CommandLine),
            watch: Watch::new(process.hook.clone()),
            process,
            notifier,
            shutting_down: false,
            place,
            http: None,
            stepped: true,
            metrics_cache: None,
        })
    }

    /// Adds a started tunnel in the next slot.
    fn add(&mut self, tunnel: Tunnel, def: Option<TunnelDef>) {
        self.slots.push(Some(Slot {
            tunnel,
            def,
            retire: None,
        }));
    }

    fn run(&mut self) -> Result<i32> {
        let mut events = Events::with_capacity(256);
        for slot in self.slots.iter_mut().flatten() {
            slot.tunnel.begin();
        }
        loop {
            self.work();
            self.watch_states();
            if let Some(code) = self.finished() {
                return Ok(code);
            }
            self.report();
            match self.poll.poll(&mut events, self.timeout(Time::now())) {
                Ok(()) => {}
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(runtime(format!("poll: {e}"))),
            }
            // Before ssh's lines and exit: they are judged knowing whether it is proxied.
            for slot in self.slots.iter_mut().flatten() {
                if slot.tunnel.looking_up().0 {
                    let _log = tunnel_context(slot.tunnel.name());
                    slot.tunnel.learn_route();
                }
            }
            for ev in events.iter() {
                self.dispatch(ev.token(), crate::shell::relay::Readiness::of(ev));
            }
            self.http_round();
            self.watch.expire(Time::now());
            for slot in self.slots.iter_mut().flatten() {
                if slot.tunnel.looking_up().1 {
                    let _log = tunnel_context(slot.tunnel.name());
                    slot.tunnel.expire_checks(self.poll.registry());
                }
            }
            self.share_check_answers();
            self.notice_resume();
            self.work();
            let outcomes = self.each_tunnel(Tunnel::on_time);
            self.settle(outcomes);
        }
    }

    /// How long the loop may sleep: until the nearest deadline of any tunnel, of the
    /// shell's own table, or of the oldest held handshake slot.
    fn timeout(&self, now: Time) -> Option<Duration> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|s| s.tunnel.timeout(now))
            .chain(self.timers.timeout())
            .chain(self.http.as_ref().and_then(|h| h.timeout(Instant::now())))
            .chain(self.watch.timeout(now))
            .chain(self.fleet.gate.next_deadline().map(|d| d.since(now)))
            .min()
            // Round up to a millisecond so a deadline is not missed by a hair.
            .map(|d| d + Duration::from_micros(500))
    }

    /// One readiness event, to whoever owns its token.
    fn dispatch(&mut self, token: Token, ev: crate::shell::relay::Readiness) {
        match token {
            SIGNALS => self.on_signals(),
            t if HttpServer::owns(t) => self.on_http(t),
            NETLINK if self.netwatch.as_ref().is_some_and(|w| w.drain()) => {
                self.broadcast(Event::NetworkChanged);
            }
            DIRWATCH => self.on_dir_entries(),
            t => match slot_of(t) {
                None if ControlServer::owns(t) => self.on_control(t),
                None => {}
                Some(i) => {
                    let registry = self.poll.registry();
                    if let Some(Some(slot)) = self.slots.get_mut(i) {
                        let _log = tunnel_context(slot.tunnel.name());
                        slot.tunnel.ready(registry, t, ev);
                    }
                }
            },
        }
    }

    /// Runs `step` for every tunnel (its name on the log lines); what they ask of the loop.
    fn each_tunnel(
        &mut self,
        step: fn(&mut Tunnel, &mio::Registry, &mut Vec<Outcome>),
    ) -> Vec<(usize, Outcome)> {
        let registry = self.poll.registry();
        let now = Time::now();
        let mut outcomes = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            // Most tunnels have nothing to do at a given wake-up: not even a log name set.
            if !slot.tunnel.due(now) {
                continue;
            }
            let _log = tunnel_context(slot.tunnel.name());
            let mut out = Vec::new();
            self.stepped = true;
            step(&mut slot.tunnel, registry, &mut out);
            outcomes.extend(out.into_iter().map(|o| (i, o)));
        }
        outcomes
    }

    /// Drains every tunnel's queue and settles what they ask of the loop, until quiet.
    fn work(&mut self) {
        // Bounded: a grant queues an event, which may ask for more; a few rounds settle it.
        for _ in 0..8 {
            let outcomes = self.each_tunnel(Tunnel::drain);
            let granted = self.gate_round();
            if outcomes.is_empty() && !granted {
                return;
            }
            self.settle(outcomes);
        }
    }

    /// Performs what tunnels asked of the loop.
    fn settle(&mut self, outcomes: Vec<(usize, Outcome)>) {
        for (i, o) in outcomes {
            match o {
                Outcome::Ready => self.check_ready(),
                Outcome::AwaitSlot => self.await_slot(i),
                Outcome::CheckReach => self.check_reach(i),
                Outcome::Started => {
                    if !self.fleet.is_file() {
                        if let Some(n) = self.notifier.as_mut() {
                            n.started();
                        }
                    }
                }
                Outcome::SpawnFailed(why) => {
                    if let Some(n) = self.notifier.as_mut() {
                        n.failed(&format!("cannot run ssh: {why}"));
                    }
                }
                Outcome::Ended(code) => self.on_ended(i, code),
            }
        }
    }

    /// The exit code once autossh is done: the single tunnel ended; or, with many, every
    /// tunnel stopped after a signal, or every tunnel ended for good.
    fn finished(&mut self) -> Option<i32> {
        if !self.fleet.is_file() {
            return self
                .slots
                .iter()
                .flatten()
                .next()
                .and_then(|s| s.tunnel.ended());
        }
        let live = self
            .slots
            .iter()
            .flatten()
            .any(|s| s.tunnel.ended().is_none());
        if live || (!self.fleet.pending.is_empty() && !self.shutting_down) {
            return None;
        }
        Some(if self.shutting_down || !self.fleet.failures {
            0
        } else {
            1
        })
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            let ev = match sig {
                SIGCHLD => {
                    if let Some(a) = self.place.agent.as_mut() {
                        a.reap();
                    }
                    let registry = self.poll.registry();
                    for slot in self.slots.iter_mut().flatten() {
                        let _log = tunnel_context(slot.tunnel.name());
                        slot.tunnel.reap(registry);
                    }
                    self.watch.reap(Time::now());
                    continue;
                }
                SIGTERM | SIGINT | SIGQUIT => {
                    if let Some(sd) = &self.sd {
                        sd.send("STOPPING=1");
                    }
                    if self.fleet.is_file() {
                        info!("received signal to exit ({sig}); stopping every tunnel");
                        self.shutting_down = true;
                        for slot in self.slots.iter_mut().flatten() {
                            slot.retire = Some(Retire::Shutdown);
                            let _log = tunnel_context(slot.tunnel.name());
                            slot.tunnel.stop();
                        }
                        continue;
                    }
                    Sig::Terminate(sig)
                }
                SIGUSR1 => Sig::Restart,
                SIGHUP if self.fleet.is_file() => {
                    info!("SIGHUP: reloading the tunnels file");
                    let _ = self.reload();
                    continue;
                }
                SIGHUP => Sig::Retry,
                _ => Sig::Wake,
            };
            self.broadcast(Event::Signal(ev));
        }
    }

    /// New entries of the private directory, each to the tunnel whose running ssh bound it.
    fn on_dir_entries(&mut self) {
        let Some(w) = self.dirwatch.as_ref() else {
            return;
        };
        for name in w.names() {
            let Some(name) = name.to_str() else { continue };
            for slot in self.slots.iter_mut().flatten() {
                if slot.tunnel.on_bound(name) {
                    break;
                }
            }
        }
    }

    /// Gives every live tunnel the same event.
    fn broadcast(&mut self, ev: Event) {
        for slot in self.slots.iter_mut().flatten() {
            if slot.tunnel.ended().is_none() {
                slot.tunnel.push(ev.clone());
            }
        }
    }

    /// A suspend shows as `CLOCK_BOOTTIME` running ahead of `CLOCK_MONOTONIC`.
    fn notice_resume(&mut self) {
        let offset = suspended_offset();
        if offset > self.suspended_offset + Duration::from_secs(2) {
            self.broadcast(Event::Resumed);
        }
        self.suspended_offset = offset;
    }

    /// Last line of defence: never leave an ssh, or an `ssh -G` look-up, behind.
    fn cleanup(&mut self) {
        let registry = self.poll.registry();
        for slot in self.slots.iter_mut().flatten() {
            slot.tunnel.cleanup(registry);
        }
        self.watch.finish();
    }
}

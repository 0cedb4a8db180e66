//! One tunnel's whole state in one value: its settings, its supervisor (the rules) and the
//! shell parts that perform them (ssh, the monitor's sockets, ssh's connection, the
//! reachability checks). The event loop holds one (`autossh ... host`) or many
//! (`--tunnels FILE`), each with its own range of mio tokens.

use crate::core::clock::Time;
use crate::core::handshakes::Ended;
use crate::core::probe::Prober;
use crate::core::supervisor::{Config, Event, LoopMonitor, SshLink, Supervisor};
use crate::error::{runtime, Result};
use crate::setup::config::Settings;
use crate::setup::ssh_argv::Forwards;
use crate::shell::monitor::{Mode, Monitor};
use crate::shell::private_dir::PrivateDir;
use crate::shell::reach::Reachability;
use crate::shell::relay::{Readiness, Relay, RelayConfig};
use crate::shell::ssh_process::SshProcess;
use crate::shell::transport::Transport;
use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Registry, Token};
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

mod actions;
mod checks;
mod held;
pub mod prepare;
mod ssh_io;
mod status;

/// Tokens each tunnel has: tunnel `slot` owns `(slot + 1) * TOKENS .. (slot + 2) * TOKENS`;
/// the first range is the event loop's own.
pub const TOKENS: usize = 64;
/// Tokens from here on are the held forwards' relays: tunnel `slot` owns
/// `RELAY_TOKENS + slot · 2³² ...` (listeners, then two per connection).
pub const RELAY_TOKENS: usize = 1 << 48;
const RELAY_SHIFT: u32 = 32;

/// The tunnel slot whose range holds `token` (`None`: the event loop's own range).
pub fn slot_of(token: Token) -> Option<usize> {
    if token.0 >= RELAY_TOKENS {
        return Some((token.0 - RELAY_TOKENS) >> RELAY_SHIFT);
    }
    (token.0 / TOKENS).checked_sub(1)
}

/// ssh's stderr pipe, within a tunnel's range (the monitor's and the checks' are theirs).
const SSH_STDERR: Token = Token(1);
/// The stderr pipe of the old ssh a planned restart is replacing.
const OLD_STDERR: Token = Token(4);
/// How often a host-key hint under way is looked for.
const HINT_POLL: Duration = Duration::from_millis(100);

/// What the event loop must do for a tunnel; only the loop gates starts and ends tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tunnel is proven for the first time.
    Ready,
    /// It wants to start ssh: grant a handshake slot ([`Tunnel::grant`]).
    AwaitSlot,
    /// It wants its server checked (many tunnels share one check per server: the loop runs
    /// [`Tunnel::check_reach_now`] for one of them and hands the answer to the others).
    CheckReach,
    /// ssh started (for `-f`'s parent).
    Started,
    /// ssh could not be started.
    SpawnFailed(String),
    /// The supervisor is done, with this exit code.
    Ended(i32),
}

/// The monitor's ports and sockets and the held forwards' listeners, made before the
/// tunnel (see [`prepare`]).
pub struct Prepared {
    pub forwards: Forwards,
    pub listener: Option<TcpListener>,
    /// autossh's private socket directory, when the tunnel needs it (session probe, held
    /// forwards).
    pub dir: Option<Rc<PrivateDir>>,
    pub held: Option<prepare::HeldParts>,
    /// `ssh -G`'s answer from before the start (see [`prepare::look_up`]): the route to check,
    /// known without a look-up of its own.
    pub ssh_g: Option<Rc<str>>,
}

/// The ssh a planned restart is replacing, while its connections drain.
struct OldSsh {
    ssh: SshProcess,
    gen: u32,
}

/// What a tunnel is made from.
pub struct Spec {
    /// autossh's own ssh-agent's socket, when it runs one.
    pub agent: Option<PathBuf>,
    /// Its name in the tunnels file (`None`: the single tunnel of a command line).
    pub name: Option<String>,
    pub settings: Settings,
    /// One of many: starts wait for a handshake slot, reachability checks are shared.
    pub gated: bool,
    /// Ports the other tunnels bind (many tunnels): a loop monitor's remote port never moves
    /// onto one of them.
    pub reserved: Vec<u16>,
}

/// One supervised tunnel.
pub struct Tunnel {
    /// Its name in the tunnels file (`None`: the single tunnel of a command line).
    name: Option<Rc<str>>,
    /// First token of its range.
    base: usize,
    pub(crate) settings: Settings,
    sup: Supervisor,
    forwards: Forwards,
    monitor: Option<Monitor>,
    ssh: Option<SshProcess>,
    /// ssh's connection to the server, for late probes and stalls.
    transport: Option<Transport>,
    reach: Reachability,
    /// autossh's private socket directory (session probe, held forwards).
    dir: Option<Rc<PrivateDir>>,
    /// Its sockets' names there start so (many tunnels share the directory).
    tag: String,
    /// autossh's own ssh-agent's socket, handed to every ssh.
    agent: Option<PathBuf>,
    /// A host key ssh could not verify: the look-up of what to tell, and when the last began.
    hint: (
        Option<crate::shell::hostkey::HostKeyHint>,
        Option<std::time::Instant>,
    ),
    /// The held forwards' listeners and connections.
    relay: Option<Relay>,
    /// The number of the ssh running (or last run): its sockets are named by it.
    gen: u32,
    /// The number of the last ssh seen binding its private sockets (past authentication).
    bound: Option<u32>,
    old: Option<OldSsh>,
    /// The state last reported and when it began.
    state_since: (&'static str, Time),
    /// The exit code once the supervisor is done.
    ended: Option<i32>,
    /// One of many: reachability checks are shared with the tunnels to the same server.
    shares_checks: bool,
    /// The answer of its own last reachability check, until the loop takes it.
    reached: Option<bool>,
    /// The server connection of an ssh that ended stuck in a black hole (the server has not
    /// seen its end): held open, and reset once the server answers, so that the server ends
    /// that session, and frees the remote ports it holds, at once.
    unfinished: Option<std::os::fd::OwnedFd>,
    /// When the server last answered a check: an ssh replaced just then (a stall the server
    /// answers again) is reset at its reap.
    answered_at: Option<std::time::Instant>,
    queue: VecDeque<Event>,
}

impl Tunnel {
    /// A tunnel in token slot `slot`.
    pub fn new(spec: Spec, prepared: Prepared, slot: usize, registry: &Registry) -> Result<Tunnel> {
        let base = (slot + 1) * TOKENS;
        let Prepared {
            forwards,
            listener,
            dir,
            held,
            ssh_g,
        } = prepared;
        let monitor = monitor(&spec.settings, &forwards, listener, base, registry)?;
        let handover = held.as_ref().is_some_and(|h| h.handover);
        let relay = held
            .map(|h| relay(&spec.settings, h, slot, registry))
            .transpose()?;
        let sup = Supervisor::new(supervisor_config(
            &spec,
            &forwards,
            relay.is_some(),
            handover,
        ));
        let mut reach = Reachability::new(
            spec.settings.ssh_path.clone(),
            spec.settings.ssh_args.clone(),
            base,
        );
        // Also through a proxy: `ssh -G` names the target behind it, for the log, and its
        // answer is checked for key hygiene.
        let mut queue = VecDeque::new();
        match ssh_g {
            Some(text) => queue.extend(reach.known(&text)),
            None => reach.prepare(),
        }
        Ok(Tunnel {
            name: spec.name.as_deref().map(Rc::from),
            base,
            settings: spec.settings,
            sup,
            forwards,
            monitor,
            ssh: None,
            transport: None,
            reach,
            tag: socket_tag(spec.name.as_deref(), slot),
            agent: spec.agent,
            hint: (None, None),
            dir,
            relay,
            gen: 0,
            bound: None,
            old: None,
            state_since: ("starting", Time::now()),
            ended: None,
            shares_checks: spec.gated,
            reached: None,
            unfinished: None,
            answered_at: None,
            queue,
        })
    }

    /// Its name (`None` for the command line's single tunnel).
    pub fn name(&self) -> Option<&Rc<str>> {
        self.name.as_ref()
    }

    pub fn sup(&self) -> &Supervisor {
        &self.sup
    }

    /// The exit code, once the supervisor is done.
    pub fn ended(&self) -> Option<i32> {
        self.ended
    }

    pub fn ssh_pid(&self) -> Option<u32> {
        self.ssh.as_ref().map(|s| s.pid())
    }

    /// Queues the first start.
    pub fn begin(&mut self) {
        self.queue.push_back(Event::Begin);
    }

    /// Queues an event from outside (signals, network changes, a granted slot).
    pub fn push(&mut self, ev: Event) {
        self.queue.push_back(ev);
    }

    /// The handshake slot asked for is free: ssh starts.
    pub fn grant(&mut self) {
        self.queue.push_back(Event::SlotGranted);
    }

    /// `name` was made in the private directory: when it is a socket of the running ssh
    /// (the first of them), ssh is past authentication: its handshake slot is free, and its
    /// supervisor hears of it (its first probe need not wait). True: the name was its.
    pub fn on_bound(&mut self, name: &str) -> bool {
        if self.ssh.is_none() || !is_socket_of(name, &self.tag, self.gen) {
            return false;
        }
        if self.bound != Some(self.gen) {
            self.bound = Some(self.gen);
            self.queue.push_back(Event::SshBound);
        }
        true
    }

    /// How the handshake it holds a slot for ended: proven, or past authentication (its
    /// sockets bound), or its ssh gone (cut by the server before its banner, or ended
    /// otherwise); `None` while ssh is still at it.
    pub fn handshake_end(&self) -> Option<Ended> {
        if self.sup.healthy() {
            return Some(Ended::Proven);
        }
        if self.ssh.is_some() && self.ended.is_none() {
            // Bound its sockets: authenticated, so no longer counted by the server's
            // MaxStartups, however long its tunnel takes to answer.
            return (self.bound == Some(self.gen)).then_some(Ended::Proven);
        }
        Some(if self.sup.cut_before_banner() {
            Ended::Cut
        } else {
            Ended::Failed
        })
    }

    /// One of its sockets is ready.
    pub fn ready(&mut self, registry: &Registry, token: Token, ev: Readiness) {
        if token.0 >= RELAY_TOKENS {
            return self.relay_ready(registry, token, ev);
        }
        let local = Token(token.0 - self.base);
        if local == SSH_STDERR {
            self.on_stderr(registry);
        } else if local == OLD_STDERR {
            self.on_old_stderr(registry);
        } else if Monitor::owns(local) {
            if let Some(e) = self.monitor.as_mut().and_then(|m| m.ready(registry, local)) {
                self.queue.push_back(e);
            }
        } else if Reachability::owns(local) {
            if let Some(e) = self.reach.ready(registry, local) {
                self.note_reached(&e);
                self.queue.push_back(e);
            }
        }
    }

    /// Whether it has anything to do now: events queued, or a deadline due.
    pub fn due(&self, now: Time) -> bool {
        !self.queue.is_empty() || self.timeout(now).is_some_and(|d| d.is_zero())
    }

    /// Whether `ssh -G`'s answer is awaited, or checks of the server are in flight: the
    /// event loop then calls [`Tunnel::learn_route`] / [`Tunnel::expire_checks`].
    pub fn looking_up(&self) -> (bool, bool) {
        (
            self.reach.resolving() || self.hint.0.is_some(),
            self.reach.checking(),
        )
    }

    /// Takes `ssh -G`'s answer when it is there: through a proxy (ProxyJump or ProxyCommand
    /// from ssh_config too) the server cannot be checked, nor ssh's connection inspected.
    pub fn learn_route(&mut self) {
        if let Some(e) = self.reach.resolve() {
            self.queue.push_back(e);
        }
        self.take_host_key_hint();
    }

    /// Checks that took too long count as "unreachable".
    pub fn expire_checks(&mut self, registry: &Registry) {
        let expired = self.reach.expire(registry);
        for e in &expired {
            self.note_reached(e);
        }
        self.queue.extend(expired);
    }

    /// When its supervisor, or its relay, next wants the time.
    pub fn timeout(&self, now: Time) -> Option<Duration> {
        if self.ended.is_some() {
            return None;
        }
        let relay = self
            .relay
            .as_ref()
            .and_then(|r| r.timeout(std::time::Instant::now()));
        // A host-key hint on its way is looked for at this pace.
        let relay = match (relay, self.hint.0.is_some()) {
            (r, true) => Some(r.map_or(HINT_POLL, |r| r.min(HINT_POLL))),
            (r, false) => r,
        };
        match (self.sup.timeout(now), relay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands queued events to the supervisor, performing what it asks.
    pub fn drain(&mut self, registry: &Registry, out: &mut Vec<Outcome>) {
        if self.queue.is_empty() {
            return;
        }
        while let Some(ev) = self.queue.pop_front() {
            if self.ended.is_some() {
                self.queue.clear();
                break;
            }
            if matches!(
                ev,
                Event::Reachable(true) | Event::Link(SshLink::Established)
            ) {
                // A check answered now (a link only says ssh's socket is established).
                if ev == Event::Reachable(true) {
                    self.answered_at = Some(std::time::Instant::now());
                }
                self.reset_unfinished();
            }
            for a in self.sup.handle(ev, Time::now()) {
                self.perform(registry, a, out);
            }
        }
        // Its state changes only here and in `on_time`: noted when it happens.
        self.state_since(Time::now());
    }

    /// Deadlines that have passed (nothing to do, and cheap, when none has).
    pub fn on_time(&mut self, registry: &Registry, out: &mut Vec<Outcome>) {
        if self.ended.is_some() {
            return;
        }
        self.relay_on_time(registry);
        let now = Time::now();
        if self.sup.timeout(now).is_none_or(|d| !d.is_zero()) {
            return self.drain(registry, out);
        }
        for a in self.sup.on_time(now) {
            self.perform(registry, a, out);
        }
        self.state_since(now);
        self.drain(registry, out);
    }

    /// Stops its ssh and ends it (removed, changed, or autossh exiting).
    pub fn stop(&mut self) {
        if self.ended.is_none() {
            let stop = crate::core::supervisor::Sig::Stop;
            self.queue.push_back(Event::Signal(stop));
        }
    }

    /// Last line of defence: never leave ssh, or an `ssh -G` look-up, behind.
    pub fn cleanup(&mut self, registry: &Registry) {
        self.wait_host_key_hint();
        if let Some(m) = self.monitor.as_mut() {
            m.drop_probe(registry);
        }
        self.reach.shutdown(registry);
        self.close_stderr(registry);
        if let Some(r) = self.relay.as_mut() {
            r.shutdown(registry);
        }
        let old = self.old.take().map(|o| o.ssh);
        for mut ssh in self.ssh.take().into_iter().chain(old) {
            ssh.signal(Signal::SIGKILL);
            for _ in 0..500 {
                if !matches!(ssh.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.dir = None;
    }
}

/// Whether `name` (a new entry of the private directory) is a socket of ssh number `gen` of
/// the tunnel whose names start with `tag`: `probe-G.sock`, `mon-G.sock` or `fwd-G-I.sock`.
fn is_socket_of(name: &str, tag: &str, gen: u32) -> bool {
    let Some(rest) = name.strip_prefix(tag) else {
        return false;
    };
    let kinds = [format!("probe-{gen}.sock"), format!("mon-{gen}.sock")];
    if kinds.iter().any(|k| k == rest) {
        return true;
    }
    rest.strip_prefix(&format!("fwd-{gen}-"))
        .and_then(|r| r.strip_suffix(".sock"))
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// What its sockets' names start with: nothing for the command line's tunnel; one of many
/// has its name (what of it is safe in a file name) and its slot.
fn socket_tag(name: Option<&str>, slot: usize) -> String {
    let Some(name) = name else {
        return String::new();
    };
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(24)
        .collect();
    format!("{safe}.{slot}-")
}

/// The monitor's sockets for these forwards, registered in the tunnel's token range.
fn monitor(
    settings: &Settings,
    forwards: &Forwards,
    listener: Option<TcpListener>,
    base: usize,
    registry: &Registry,
) -> Result<Option<Monitor>> {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let prober = Prober::new(
        host,
        std::process::id(),
        prepare::random_u64(),
        settings.message.clone(),
    );
    let monitor = match *forwards {
        Forwards::Off => None,
        Forwards::Session => Some(Monitor::session(prober)),
        Forwards::Loop { local, .. } => Some(Monitor::new(Mode::Loop, local, listener, prober)),
        Forwards::Echo { local, .. } => Some(Monitor::new(Mode::Echo, local, None, prober)),
    };
    let mut monitor = monitor.map(|m| m.with_token_base(base));
    if let Some(m) = monitor.as_mut() {
        m.register(registry)
            .map_err(|e| runtime(format!("poll: {e}")))?;
    }
    Ok(monitor)
}

/// The held forwards' relay, its listeners registered in the tunnel's relay range.
fn relay(
    s: &Settings,
    held: prepare::HeldParts,
    slot: usize,
    registry: &Registry,
) -> Result<Relay> {
    let base = RELAY_TOKENS + (slot << RELAY_SHIFT);
    let mut relay = Relay::new(held.listeners, relay_config(s), base);
    relay
        .register(registry)
        .map_err(|e| runtime(format!("poll: {e}")))?;
    Ok(relay)
}

/// The relay's limits, from the settings.
fn relay_config(s: &Settings) -> RelayConfig {
    RelayConfig {
        hold_time: s.hold_time,
        hold_max: s.hold_max as usize,
        splice: crate::shell::platform::SPLICE,
    }
}

/// The supervisor's settings, from the validated ones.
fn supervisor_config(spec: &Spec, forwards: &Forwards, held: bool, handover: bool) -> Config {
    let s = &spec.settings;
    // ssh_config may say so too: `ssh -G`'s answer tells the supervisor later.
    let proxied = s
        .user_o_keys
        .iter()
        .any(|k| k == "proxycommand" || k == "proxyjump")
        || s.ssh_args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("-J"));
    Config {
        gate_time: s.gate_time,
        max_start: s.max_start,
        max_lifetime: s.max_lifetime,
        poll: s.poll,
        first_poll: s.first_poll,
        net_timeout: s.net_timeout(),
        monitored: matches!(forwards, Forwards::Loop { .. } | Forwards::Echo { .. }),
        session_probe: matches!(forwards, Forwards::Session),
        seed: prepare::random_u64(),
        gated: spec.gated,
        loop_monitor: match *forwards {
            Forwards::Loop { local, .. } => Some(LoopMonitor {
                local,
                reserved: spec.reserved.clone(),
            }),
            _ => None,
        },
        proxied,
        held,
        handover,
        drain_time: s.drain_time,
        on_demand: (held && s.on_demand).then_some(s.idle_time),
        refusal_ends_ssh: !s.user_o_keys.iter().any(|k| k == "exitonforwardfailure"),
        flush_acks: Transport::SEES_SSH_SOCKETS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_is_a_socket_of_one_tunnel_and_one_ssh_only() {
        let tag = socket_tag(Some("db"), 3);
        assert!(is_socket_of("db.3-probe-7.sock", &tag, 7));
        assert!(is_socket_of("db.3-mon-7.sock", &tag, 7));
        assert!(is_socket_of("db.3-fwd-7-0.sock", &tag, 7));
        assert!(is_socket_of("db.3-fwd-7-12.sock", &tag, 7));
        // Another ssh of the same tunnel, another tunnel, or not a socket of ours.
        assert!(!is_socket_of("db.3-fwd-6-0.sock", &tag, 7));
        assert!(!is_socket_of("db.3-fwd-70-0.sock", &tag, 7));
        assert!(!is_socket_of("db.33-probe-7.sock", &tag, 7));
        assert!(!is_socket_of("db.3-fwd-7-.sock", &tag, 7));
        assert!(!is_socket_of("db.3-agent.sock", &tag, 7));
        // The command line's tunnel has no tag.
        assert!(is_socket_of("probe-1.sock", "", 1));
        assert!(!is_socket_of("db.3-probe-1.sock", "", 1));
    }
}

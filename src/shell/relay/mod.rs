//! The held forwards: autossh listens in ssh's place and relays each connection to ssh's
//! private socket for that forward, inside the event loop. While no proven ssh is there,
//! connections wait (bounded in time and in number) instead of being refused; once one is,
//! they are relayed in the order they came. An ssh that ends takes its connections with it,
//! each passed on to the application as a reset. See docs/held.md.

pub mod chunk;
mod conn;
pub mod listen;

use crate::core::supervisor::Waiting;
use crate::shell::nonblocking::would_block;
use chunk::Chunks;
use conn::{Conn, Peer, Step};
use listen::Listener;
use log::{debug, info, warn};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Listener tokens are `base + i`; a connection's are `base + CONNS + 2·id` (the
/// application's socket) and `+ 1` (ssh's).
const CONNS: usize = 1024;
/// A held connection ssh's socket could not take (not there yet, its queue full) is tried
/// again this soon.
const RETRY_EVERY: Duration = Duration::from_millis(20);
use crate::shell::platform::SSH_EXIT_SETTLES_IN;

/// The relay's limits.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub hold_time: Duration,
    pub hold_max: usize,
    /// Move bytes with `splice(2)` where the platform has it.
    pub splice: bool,
}

/// Figures for the status, the status file and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections relayed to ssh and open now.
    pub open: usize,
    /// Connections waiting for the tunnel now.
    pub held: usize,
    /// Connections that waited for the tunnel, in all.
    pub held_total: u64,
    /// Connections relayed, in all.
    pub relayed_total: u64,
    /// Reset after waiting `AUTOSSH_HOLD_TIME`.
    pub expired: u64,
    /// Reset at once: `AUTOSSH_HOLD_MAX` were waiting (or no descriptor was left).
    pub overflowed: u64,
    /// Closed by the application while waiting: never forwarded.
    pub abandoned: u64,
    /// Reset because their ssh ended.
    pub cut: u64,
    /// Bytes to the server and to the applications.
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// What the relay tells its tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Connections are open or waiting (`true`), or none is any more (`false`).
    Busy(bool),
    /// The ssh of `gen`, draining, has no connection left.
    Drained(u32),
}

/// Where new connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Hold,
    To(u32),
}

/// One ssh's sockets and connections.
struct Gen {
    gen: u32,
    pid: u32,
    /// ssh's socket for each held forward, in order.
    sockets: Vec<PathBuf>,
    conns: usize,
    draining: bool,
    /// It was told to go: its connections' ends are resets.
    dying: bool,
    /// A duplicate of its connection to the server: gone, its channels' ends are resets.
    server: Option<std::os::fd::OwnedFd>,
}

/// A connection and where it stands.
struct Slot {
    conn: Conn,
    accepted: Instant,
    /// The ssh it is relayed to (`None`: held).
    gen: Option<u32>,
}

/// The held forwards of one tunnel.
pub struct Relay {
    base: usize,
    /// (forward index, its listener).
    listeners: Vec<(usize, Listener)>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Held connections, oldest first.
    held: VecDeque<usize>,
    route: Route,
    gens: Vec<Gen>,
    pool: Chunks,
    cfg: RelayConfig,
    stats: RelayStats,
    /// Connections with more to move at once.
    pending: Vec<usize>,
    /// Held connections are tried again then (ssh's socket was not ready).
    retry_at: Option<Instant>,
    /// Connections whose ssh side ended while its ssh's fate could not be told yet, and
    /// since when ([`Step::Unsure`]).
    unsure: Vec<(usize, Instant)>,
    notes: Vec<Note>,
    busy: bool,
    /// When bytes last came back from ssh to an application (any connection).
    last_in: Option<Instant>,
}

impl Relay {
    pub fn new(listeners: Vec<(usize, Listener)>, cfg: RelayConfig, base: usize) -> Relay {
        Relay {
            base,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            held: VecDeque::new(),
            route: Route::Hold,
            gens: Vec::new(),
            pool: Chunks::new(cfg.splice),
            cfg,
            stats: RelayStats::default(),
            pending: Vec::new(),
            retry_at: None,
            unsure: Vec::new(),
            notes: Vec::new(),
            busy: false,
            last_in: None,
        }
    }

    /// Registers the listeners.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        for (i, (_, l)) in self.listeners.iter_mut().enumerate() {
            l.register(registry, Token(self.base + i))?;
            debug!("holding {}", l.describe());
        }
        Ok(())
    }

    /// New limits (a reload): waiting connections keep the time they have waited.
    pub fn reconfigure(&mut self, cfg: RelayConfig) {
        self.cfg = cfg;
    }

    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// What happened since the last call, for the tunnel's supervisor.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The ssh of `gen` (pid `pid`) was started with these sockets for the held forwards.
    pub fn started(&mut self, gen: u32, pid: u32, sockets: Vec<PathBuf>) {
        self.gens.push(Gen {
            gen,
            pid,
            sockets,
            conns: 0,
            draining: false,
            dying: false,
            server: None,
        });
    }

    /// ssh number `gen`'s connection to the server (a duplicate of its socket).
    pub fn server_socket(&mut self, gen: u32, fd: std::os::fd::OwnedFd) {
        if let Some(g) = self.gens.iter_mut().find(|g| g.gen == gen) {
            g.server = Some(fd);
        }
    }

    /// New connections, and the waiting ones, go to the ssh of `gen` from now on.
    pub fn serve(&mut self, registry: &Registry, gen: u32, now: Instant) {
        if !self.gens.iter().any(|g| g.gen == gen) {
            return;
        }
        self.route = Route::To(gen);
        let waiting = self.held.len();
        if waiting > 0 {
            info!("tunnel up: relaying {waiting} waiting connection(s)");
        }
        self.release(registry, now);
    }

    /// New connections wait, unless they go to another ssh than `gen`.
    pub fn hold(&mut self, gen: u32) {
        if self.route == Route::To(gen) {
            self.route = Route::Hold;
        }
    }

    /// The ssh of `gen` takes no new connection; the relay says when it has none left.
    pub fn drain(&mut self, gen: u32) {
        self.hold(gen);
        if let Some(g) = self.gens.iter_mut().find(|g| g.gen == gen) {
            g.draining = true;
            debug!("{} connection(s) draining through the old ssh", g.conns);
            if g.conns == 0 {
                self.notes.push(Note::Drained(gen));
            }
        }
    }

    /// The ssh of `gen` was told to go: its connections' ends are resets from now on.
    pub fn dying(&mut self, gen: u32) {
        self.hold(gen);
        if let Some(g) = self.gens.iter_mut().find(|g| g.gen == gen) {
            g.dying = true;
        }
    }

    /// The ssh of `gen` ended: its connections are reset, its socket files removed.
    pub fn ended(&mut self, registry: &Registry, gen: u32) {
        self.hold(gen);
        let ids: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.gen == Some(gen)))
            .map(|(i, _)| i)
            .collect();
        if !ids.is_empty() {
            info!("ssh ended: {} relayed connection(s) reset", ids.len());
        }
        for id in ids {
            self.stats.cut += 1;
            self.close(registry, id, Step::UpstreamBroken);
        }
        if let Some(at) = self.gens.iter().position(|g| g.gen == gen) {
            for s in &self.gens[at].sockets {
                let _ = std::fs::remove_file(s);
            }
            self.gens.remove(at);
        }
        self.note_busy();
    }

    /// Whether `token` (within the tunnel's relay range) is one of ours.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Readiness of one of its sockets.
    pub fn ready(&mut self, registry: &Registry, token: Token, ev: Readiness, now: Instant) {
        let local = token.0 - self.base;
        if local < CONNS {
            self.accept(registry, local, now);
        } else {
            let id = (local - CONNS) / 2;
            let upstream = (local - CONNS) % 2 == 1;
            self.conn_ready(registry, id, upstream, ev, now);
        }
        self.note_busy();
    }

    /// When it next wants the time: the oldest held connection's limit, a retry, or at
    /// once for connections with more to move.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let expiry = self
            .held
            .front()
            .and_then(|&id| self.slots[id].as_ref())
            .map(|s| s.accepted + self.cfg.hold_time);
        let settled = self
            .unsure
            .iter()
            .map(|&(_, at)| at + SSH_EXIT_SETTLES_IN)
            .min();
        [expiry, self.retry_at, settled]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Deadlines and leftover work: held connections past their time are reset, ssh's
    /// sockets tried again, connections with more to move moved.
    pub fn on_time(&mut self, registry: &Registry, now: Instant) {
        self.expire(registry, now);
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.release(registry, now);
        }
        for id in std::mem::take(&mut self.pending) {
            self.step(registry, id, now);
        }
        let due: Vec<usize> = (self.unsure.iter())
            .filter(|&&(_, at)| at + SSH_EXIT_SETTLES_IN <= now)
            .map(|&(id, _)| id)
            .collect();
        for id in due {
            self.step(registry, id, now);
        }
        self.note_busy();
    }

    /// How long the applications have been waiting for answers: the longest wait on a
    /// relayed connection whose application spoke last (sure), or, on one where nothing has
    /// moved yet, since it was relayed (not sure: the application may be the first to speak).
    /// `server_silent`: since ssh last heard from the server (where its connection is seen;
    /// else since an application last got bytes back through the relay): an application
    /// that spoke after the server last did waits as long as the server has been silent,
    /// even if it gave up and came back on a new connection (a client with a timeout
    /// shorter than the threshold would otherwise never wait it).
    pub fn waiting(&self, now: Instant, server_silent: Option<Duration>) -> Waiting {
        let conns = || self.slots.iter().flatten().map(|s| &s.conn);
        let server_silent =
            server_silent.or_else(|| self.last_in.map(|t| now.saturating_duration_since(t)));
        let heard = server_silent.and_then(|s| now.checked_sub(s));
        let spoke_after_server =
            heard.is_some_and(|h| conns().any(|c| c.owed_since.is_some_and(|o| o > h)));
        let since_server = server_silent.filter(|_| spoke_after_server);
        let longest = conns()
            .filter_map(|c| match (c.owed_since, c.relayed_at, c.moved()) {
                (Some(o), _, _) => Some((now.saturating_duration_since(o), true)),
                (None, Some(r), (0, 0)) => Some((now.saturating_duration_since(r), false)),
                _ => None,
            })
            .chain(since_server.map(|w| (w, true)))
            .max_by_key(|&(waited, sure)| (sure, waited));
        match longest {
            Some((waited, sure)) => Waiting::For { waited, sure },
            None => Waiting::Nothing,
        }
    }

    /// Stops listening (the listeners closed: one systemd passed lives on in systemd).
    pub fn stop_listening(&mut self, registry: &Registry) {
        for (_, mut l) in self.listeners.drain(..) {
            match &mut l {
                Listener::Tcp(t) => {
                    let _ = registry.deregister(t);
                }
                Listener::Unix { listener, .. } => {
                    let _ = registry.deregister(listener);
                }
            }
        }
    }

    /// Closes every connection (the applications see resets) and the listeners.
    pub fn shutdown(&mut self, registry: &Registry) {
        for id in 0..self.slots.len() {
            if self.slots[id].is_some() {
                self.close(registry, id, Step::UpstreamBroken);
            }
        }
        self.stop_listening(registry);
        for g in self.gens.drain(..) {
            for s in &g.sockets {
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// What a readiness event said about a socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer ended its stream, or the socket failed.
    pub closed: bool,
}

impl Readiness {
    pub fn of(ev: &mio::event::Event) -> Readiness {
        Readiness {
            readable: ev.is_readable(),
            writable: ev.is_writable(),
            closed: ev.is_read_closed() || ev.is_error(),
        }
    }
}

mod accept;
mod moving;

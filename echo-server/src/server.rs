//! The event loop: listeners, connections, signals, idle timers, silence and reports in one
//! mio `Poll`, on one thread.

use crate::cli::{Config, MAX_LISTENERS};
use crate::clients::ClientTable;
use crate::conn::{Conn, Pumped, State};
use crate::error::{runtime, Result};
use crate::fdlimit;
use crate::idle::IdleQueue;
use crate::probe::Probe;
use crate::report::{self, Printable};
use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod reports;
use reports::{wall_secs, Output};
/// SIGTERM and SIGINT arrive here.
pub const SIGNALS: Token = Token(0);
/// Listener `i` (in `--listen` order) is `Token(FIRST_LISTENER + i)`.
pub const FIRST_LISTENER: usize = 1;
/// Connections get tokens from here up, never reused.
pub const FIRST_CONN: usize = FIRST_LISTENER + MAX_LISTENERS;
/// After an accept error other than "would block" (e.g. out of file descriptors), try again
/// this much later: the listener will not report the connections still queued.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);
/// The echo server.
pub struct Server {
    poll: Poll,
    config: Config,
    /// `--max-connections`, or what the open-files limit allows.
    max_connections: usize,
    listeners: Vec<TcpListener>,
    /// Where the listeners are bound (port 0 resolved).
    local_addrs: Vec<SocketAddr>,
    signals: Signals,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    idle: IdleQueue,
    clients: ClientTable,
    refused_total: u64,
    outputs: Vec<Output>,
    next_report: Option<Instant>,
    /// Connections whose pump ran out of budget: pumped again before waiting.
    again: Vec<Token>,
    accept_retry: Option<Instant>,
    /// Probes read by one pump, recorded after it.
    probes: Vec<Probe>,
}

/// Binds, serves until SIGTERM/SIGINT, writes the final reports.
pub fn run(config: Config) -> Result<()> {
    Server::bind(config)?.serve()
}

impl Server {
    /// Sets up signals and binds every listener; nothing is served yet.
    pub fn bind(config: Config) -> Result<Server> {
        let poll = Poll::new().map_err(|e| runtime("cannot create poll", e))?;
        let mut signals =
            Signals::new([SIGTERM, SIGINT]).map_err(|e| runtime("cannot handle signals", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| runtime("cannot register signals", e))?;
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for (i, addr) in config.listen.iter().enumerate() {
            let mut l =
                listen(*addr).map_err(|e| runtime(format_args!("cannot listen on {addr}"), e))?;
            let local = l
                .local_addr()
                .map_err(|e| runtime(format_args!("cannot listen on {addr}"), e))?;
            poll.registry()
                .register(&mut l, Token(FIRST_LISTENER + i), Interest::READABLE)
                .map_err(|e| runtime(format_args!("cannot register {local}"), e))?;
            listeners.push(l);
            local_addrs.push(local);
        }
        let max_connections = fdlimit::connection_maximum(config.max_connections, listeners.len());
        let mut outputs = Vec::new();
        if let Some(p) = &config.status_file {
            outputs.push(Output {
                path: p.clone(),
                render: report::status_json,
                failing: false,
            });
        }
        if let Some(p) = &config.metrics_file {
            outputs.push(Output {
                path: p.clone(),
                render: report::metrics_text,
                failing: false,
            });
        }
        Ok(Server {
            poll,
            max_connections,
            listeners,
            local_addrs,
            signals,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            idle: IdleQueue::default(),
            clients: ClientTable::new(config.max_clients, config.silent_after),
            refused_total: 0,
            next_report: (!outputs.is_empty()).then(Instant::now),
            outputs,
            again: Vec::new(),
            accept_retry: None,
            probes: Vec::new(),
            config,
        })
    }

    /// The bound listen addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Serves until SIGTERM or SIGINT.
    pub fn serve(mut self) -> Result<()> {
        for a in &self.local_addrs {
            info!(
                "autossh-echo {} listening on {a}",
                env!("CARGO_PKG_VERSION")
            );
            if !a.ip().to_canonical().is_loopback() {
                warn!("{a} is not a loopback address: reachable without ssh (--allow-remote)");
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout(Instant::now());
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                Err(e) => return Err(runtime("poll failed", e)),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if self.signalled() {
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    Token(t) if (FIRST_LISTENER..FIRST_CONN).contains(&t) => {
                        self.accept(t - FIRST_LISTENER, now)
                    }
                    token => self.ready(token, now),
                }
            }
            self.tick(now);
        }
    }

    /// Timers: budget-limited pumps, accept retries, idle connections, silence, reports.
    fn tick(&mut self, now: Instant) {
        for token in std::mem::take(&mut self.again) {
            self.ready(token, now);
        }
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept_retry = None;
            for i in 0..self.listeners.len() {
                self.accept(i, now);
            }
        }
        self.expire_idle(now);
        for s in self.clients.check_silence(now) {
            warn!(
                "client {} pid {} ({}) silent for {} s",
                Printable(&s.host),
                s.pid,
                Printable(&s.message),
                s.silent_for.as_secs()
            );
        }
        if let Some(at) = self.next_report {
            if at <= now {
                self.write_reports();
                self.next_report = Some(now + self.config.status_interval);
            }
        }
    }

    /// How long poll may wait: until the nearest deadline; no deadline, no timeout.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.idle.next(),
            self.clients.next_silence(),
            self.next_report,
            self.accept_retry,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    /// Drains pending signals; true if one asks us to stop.
    fn signalled(&mut self) -> bool {
        let mut stop = false;
        for sig in self.signals.pending() {
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            info!("received {name}, shutting down");
            stop = true;
        }
        stop
    }

    /// Stops accepting and writes the final reports.
    fn shutdown(&mut self) {
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(l);
        }
        self.listeners.clear();
        self.write_reports();
        info!(
            "stopped: {} connections closed, {} clients known",
            self.conns.len(),
            self.clients.len()
        );
    }

    /// Accepts until the listener runs dry; connections over the limit are closed at once.
    fn accept(&mut self, i: usize, now: Instant) {
        let Some(listener) = self.listeners.get(i) else {
            return;
        };
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    if self.accept_retry.is_none() {
                        warn!("cannot accept on {}: {e}", self.local_addrs[i]);
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            if self.conns.len() >= self.max_connections {
                self.refused_total += 1;
                debug!(
                    "refused {peer}: {} connections open (--max-connections)",
                    self.conns.len()
                );
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            let mut conn = Conn::new(stream, token, peer, self.config.max_buffer, now);
            if let Err(e) = conn.sync_interest(self.poll.registry()) {
                warn!("cannot register connection from {peer}: {e}");
                continue;
            }
            if let Some(idle) = self.config.idle_timeout {
                conn.queued_deadline = Some(now + idle);
                self.idle.insert(now + idle, token);
            }
            debug!("connection from {peer} ({} open)", self.conns.len() + 1);
            self.conns.insert(token, conn);
        }
    }

    /// A connection is ready (or owed another pump): move its bytes, record its probes.
    fn ready(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match conn.pump(now, &mut self.probes) {
            Ok(Pumped::Wait) => {}
            Ok(Pumped::Again) => self.again.push(token),
            Err(e) => {
                debug!("{}: {e}", conn.peer);
                conn.close();
            }
        }
        if conn.state() != State::Closed {
            if let Err(e) = conn.sync_interest(self.poll.registry()) {
                debug!("{}: cannot reregister: {e}", conn.peer);
                conn.close();
            }
        }
        let peer = conn.peer;
        let closed = conn.state() == State::Closed;
        if !self.probes.is_empty() {
            let wall = wall_secs();
            for p in std::mem::take(&mut self.probes) {
                self.record(p, peer, now, wall);
            }
        }
        if closed {
            self.remove(token);
        }
    }

    fn remove(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            conn.deregister(self.poll.registry());
            if let Some(d) = conn.queued_deadline {
                self.idle.remove(d, token);
            }
            debug!("closed {} ({} open)", conn.peer, self.conns.len());
        }
    }

    /// Closes connections idle past `--idle-timeout`; requeues the others at their real deadline.
    fn expire_idle(&mut self, now: Instant) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        while let Some((_, token)) = self.idle.pop_due(now) {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let due = conn.last_activity + timeout;
            if due <= now {
                conn.queued_deadline = None;
                debug!("{}: idle for {} s, closing", conn.peer, timeout.as_secs());
                self.remove(token);
            } else {
                conn.queued_deadline = Some(due);
                self.idle.insert(due, token);
            }
        }
    }
}

/// Listens with a deep accept queue: after a server restart a whole fleet reconnects at once.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

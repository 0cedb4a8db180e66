//! The monitor's sockets: the probe connection to ssh's `-L` port and, in loop mode, the
//! listener on port+1 where the probe comes back through the server; with `-M 0`, the
//! connection to the session probe's unix-socket forward. Non-blocking, driven by the event
//! loop; outcomes are reported to the supervisor as events.

use crate::core::probe::{compare, Echo, Prober};
use crate::core::supervisor::{Event, ProbeFailure};
use crate::shell::nonblocking::{interrupted, read_available, would_block, ReadEnd};
use crate::shell::probe_conn::{ProbeConn, Target};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod inbound;

/// Token of the loop-mode listener.
pub const LISTENER: Token = Token(2);
/// Token of the outgoing probe connection.
pub const PROBE: Token = Token(3);
/// Tokens of connections accepted on the listener: `INBOUND_FIRST + slot`.
pub const INBOUND_FIRST: usize = 16;
/// At most this many accepted connections are kept at once (see `free_slot`).
const INBOUND_SLOTS: usize = 32;

/// Where the outgoing probe connection stands.
enum OutState {
    /// Connect in progress.
    Connecting,
    /// Writing the probe; `written` bytes are out.
    Writing { written: usize },
    /// Probe sent; in echo mode reading the echo, in loop mode watching for a close.
    Sent { got: Vec<u8> },
}

impl OutState {
    fn interest(&self) -> Interest {
        match self {
            OutState::Connecting | OutState::Writing { .. } => {
                Interest::WRITABLE | Interest::READABLE
            }
            OutState::Sent { .. } => Interest::READABLE,
        }
    }
}

/// A connection accepted on the loop-mode listener: it should carry our probe.
struct Inbound {
    stream: TcpStream,
    got: Vec<u8>,
    /// The probe in flight when it was accepted: one accepted before the probe left
    /// cannot be carrying it.
    during: Option<u64>,
    /// Accept order, for evicting the oldest.
    order: u64,
}

/// The probe being made: its connection to ssh's `-L` port or probe socket.
struct Current {
    seq: u64,
    bytes: Vec<u8>,
    stream: ProbeConn,
    state: OutState,
}

/// How the probe comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the server and back to our listener (`-L N`, `-R N` to port N+1).
    Loop,
    /// On the same connection, from an echo service on the server.
    Echo,
    /// The session probe (`-M 0`): ssh asks the server to open a channel to a unix socket
    /// path that cannot exist; the server's refusal, which makes ssh close our connection,
    /// is the answer. Nothing is written.
    Session,
}

/// ssh's session-probe messages ("channel 3: open failed: connect failed: open failed")
/// are looked for this long after a session probe ended.
const SESSION_CHATTER: Duration = Duration::from_secs(2);

/// The monitor's sockets.
pub struct Monitor {
    mode: Mode,
    /// ssh's `-L` port on 127.0.0.1, or the session probe's socket.
    target: Target,
    listener: Option<TcpListener>,
    current: Option<Current>,
    inbound: Vec<Option<Inbound>>,
    accepted: u64,
    /// When the last probe ended (the session probe's messages from ssh come after it).
    last_end: Option<Instant>,
    /// Writes the probe lines.
    prober: Prober,
    /// Added to every token registered (each tunnel has its own range in the event loop).
    base: usize,
}

impl Monitor {
    /// Loop mode: `listener` is already bound to 127.0.0.1:port+1.
    pub fn new(
        mode: Mode,
        local_port: u16,
        listener: Option<std::net::TcpListener>,
        prober: Prober,
    ) -> Monitor {
        let listener = listener.filter(|l| l.set_nonblocking(true).is_ok());
        let target = Target::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, local_port)));
        Monitor::with_target(mode, target, listener.map(TcpListener::from_std), prober)
    }

    /// The session probe through ssh's forward of a unix socket (set by
    /// [`Monitor::retarget`] for each ssh).
    pub fn session(prober: Prober) -> Monitor {
        Monitor::with_target(Mode::Session, Target::Unix(PathBuf::new()), None, prober)
    }

    fn with_target(
        mode: Mode,
        target: Target,
        listener: Option<TcpListener>,
        prober: Prober,
    ) -> Monitor {
        Monitor {
            prober,
            mode,
            target,
            listener,
            current: None,
            inbound: (0..INBOUND_SLOTS).map(|_| None).collect(),
            accepted: 0,
            last_end: None,
            base: 0,
        }
    }

    /// Probes go to `target` from now on (each ssh has its own socket in autossh's private
    /// directory); the probe in flight, if any, is left to end as it will.
    pub fn retarget(&mut self, target: Target) {
        self.target = target;
    }

    /// Registers every socket with tokens offset by `base` (the tunnel's token range).
    pub fn with_token_base(mut self, base: usize) -> Monitor {
        self.base = base;
        self
    }

    fn token(&self, local: Token) -> Token {
        Token(self.base + local.0)
    }

    /// The local TCP port probes go to (ssh's `-L` monitor forward), if any.
    pub fn local_port(&self) -> Option<u16> {
        match &self.target {
            Target::Tcp(a) => Some(a.port()),
            Target::Unix(_) => None,
        }
    }

    /// Whether an ssh message about a refused channel can be the session probe's: a
    /// session probe is in flight or ended moments ago.
    pub fn session_probe_recent(&self) -> bool {
        self.mode == Mode::Session
            && (self.current.is_some()
                || self.last_end.is_some_and(|t| t.elapsed() < SESSION_CHATTER))
    }

    /// Registers the listener (loop mode).
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if let Some(l) = self.listener.as_mut() {
            registry.register(l, Token(self.base + LISTENER.0), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether `token` is one of ours.
    pub fn owns(token: Token) -> bool {
        token == LISTENER
            || token == PROBE
            || (INBOUND_FIRST..INBOUND_FIRST + INBOUND_SLOTS).contains(&token.0)
    }

    /// Starts probe `seq` with these bytes. A connect that fails at once is reported now.
    /// `wall_ms`: the wall clock, written into the probe line. Returns the probe's size (what
    /// ssh reads from us for it) and its outcome when that is known at once.
    pub fn send(&mut self, registry: &Registry, seq: u64, wall_ms: u128) -> (u64, Option<Event>) {
        let bytes = self.prober.line(seq, wall_ms);
        let len = bytes.len() as u64;
        (len, self.start(registry, seq, bytes))
    }

    fn start(&mut self, registry: &Registry, seq: u64, bytes: Vec<u8>) -> Option<Event> {
        self.drop_probe(registry);
        let mut stream = match ProbeConn::connect(&self.target) {
            Ok(s) => s,
            Err(e) => return Some(failed(seq, ProbeFailure::Refused(e.to_string()))),
        };
        let state = OutState::Connecting;
        // The session probe writes nothing: connecting is the whole request.
        let bytes = if self.mode == Mode::Session {
            Vec::new()
        } else {
            bytes
        };
        if let Err(e) = registry.register(&mut stream, self.token(PROBE), state.interest()) {
            return Some(failed(seq, ProbeFailure::Refused(e.to_string())));
        }
        self.current = Some(Current {
            seq,
            bytes,
            stream,
            state,
        });
        None
    }

    /// Closes the probe connection and any accepted ones.
    pub fn drop_probe(&mut self, registry: &Registry) {
        if let Some(mut c) = self.current.take() {
            let _ = registry.deregister(&mut c.stream);
            self.last_end = Some(Instant::now());
        }
        for slot in self.inbound.iter_mut() {
            if let Some(mut i) = slot.take() {
                let _ = registry.deregister(&mut i.stream);
            }
        }
    }

    /// Handles readiness of one of our tokens; returns the probe's outcome if decided.
    pub fn ready(&mut self, registry: &Registry, token: Token) -> Option<Event> {
        if token == LISTENER {
            self.accept(registry)
        } else if token == PROBE {
            self.outgoing_ready(registry)
        } else {
            self.inbound_ready(registry, token.0 - INBOUND_FIRST)
        }
    }

    fn outgoing_ready(&mut self, registry: &Registry) -> Option<Event> {
        let cur = self.current.as_mut()?;
        let seq = cur.seq;
        let result = advance(cur, self.mode);
        match result {
            Ok(Progress::Pending) => {
                let interest = cur.state.interest();
                let token = Token(self.base + PROBE.0);
                let _ = registry.reregister(&mut cur.stream, token, interest);
                None
            }
            Ok(Progress::Echoed) => {
                self.drop_probe(registry);
                Some(Event::ProbeEchoed { seq })
            }
            Err(why) => {
                self.drop_probe(registry);
                Some(failed(seq, why))
            }
        }
    }
}

fn failed(seq: u64, why: ProbeFailure) -> Event {
    Event::ProbeFailed { seq, why }
}

enum Progress {
    Pending,
    Echoed,
}

/// Moves the outgoing connection as far as it can go without blocking.
fn advance(cur: &mut Current, mode: Mode) -> Result<Progress, ProbeFailure> {
    loop {
        match &mut cur.state {
            OutState::Connecting => {
                match cur.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => return Err(ProbeFailure::Refused(e.to_string())),
                }
                match cur.stream.connected() {
                    Ok(true) => cur.state = OutState::Writing { written: 0 },
                    Ok(false) => return Ok(Progress::Pending),
                    Err(e) => return Err(ProbeFailure::Refused(e.to_string())),
                }
            }
            OutState::Writing { written } => {
                while *written < cur.bytes.len() {
                    match cur.stream.write(&cur.bytes[*written..]) {
                        Ok(0) => return Err(ProbeFailure::Closed),
                        Ok(n) => *written += n,
                        Err(e) if interrupted(&e) => continue,
                        Err(e) if would_block(&e) => return Ok(Progress::Pending),
                        Err(e) => return Err(ProbeFailure::Refused(e.to_string())),
                    }
                }
                cur.state = OutState::Sent { got: Vec::new() };
            }
            OutState::Sent { .. } if mode == Mode::Session => {
                // ssh closes our connection once the server refused the channel: any end
                // (or, were the channel ever opened, any byte) is the session answering.
                let mut got = Vec::new();
                return match read_available(&mut cur.stream, &mut got, 1) {
                    ReadEnd::WouldBlock => Ok(Progress::Pending),
                    ReadEnd::Closed | ReadEnd::Full => Ok(Progress::Echoed),
                };
            }
            OutState::Sent { got } => {
                // One byte more than the probe is enough to call it wrong.
                let end = read_available(&mut cur.stream, got, cur.bytes.len() + 1);
                return match (mode, compare(&cur.bytes, got)) {
                    (Mode::Echo, Echo::Complete) => Ok(Progress::Echoed),
                    _ if end == ReadEnd::Closed => Err(ProbeFailure::Closed),
                    (Mode::Echo, Echo::Wrong) => Err(ProbeFailure::WrongBytes),
                    (Mode::Echo, Echo::Partial) => Ok(Progress::Pending),
                    // Loop mode: nothing should come back on this connection; ignore it.
                    (Mode::Loop | Mode::Session, _) => {
                        got.clear();
                        Ok(Progress::Pending)
                    }
                };
            }
        }
    }
}

//! One relayed connection: the application's socket, ssh's socket for it (once the tunnel is
//! there), and the bytes each way. Back-pressure both ways: a direction reads only while it
//! has room, so a slow reader slows its writer down to the kernel's buffers. An end of stream
//! is passed on as a half-close once everything before it is written; a broken side is passed
//! on as a reset.

use super::chunk::{readable_bytes, Chunk, Chunks};
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// Rounds of read and write one direction does per wake-up before letting others go: a
/// fast transfer cannot keep the loop from everything else (1 MiB at most per round).
const ROUNDS: usize = 16;

/// A socket of a connection: the application's (TCP, or a unix socket forward) or ssh's.
pub enum Peer {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Peer {
    fn fd(&self) -> RawFd {
        match self {
            Peer::Tcp(s) => s.as_raw_fd(),
            Peer::Unix(s) => s.as_raw_fd(),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Peer::Tcp(s) => s.shutdown(Shutdown::Write),
            Peer::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Closes it so that the other end sees a reset (TCP: an RST; a unix socket has none:
    /// it is closed, and ssh closes the channel).
    pub fn reset(self) {
        if let Peer::Tcp(s) = &self {
            let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    pub fn register(&mut self, r: &Registry, t: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match self {
            Peer::Tcp(s) => r.register(s, t, i),
            Peer::Unix(s) => r.register(s, t, i),
        }
    }

    pub fn deregister(&mut self, r: &Registry) {
        let _ = match self {
            Peer::Tcp(s) => r.deregister(s),
            Peer::Unix(s) => r.deregister(s),
        };
    }
}

/// A socket and what its last readiness said (edge-triggered: kept until an operation
/// would block).
struct Side {
    peer: Peer,
    readable: bool,
    writable: bool,
}

impl Side {
    fn new(peer: Peer) -> Side {
        Side {
            peer,
            readable: false,
            writable: false,
        }
    }
}

/// One direction.
#[derive(Default)]
struct Flow {
    chunk: Option<Chunk>,
    /// The chunk takes no more for now (a pipe's slots are used up).
    full: bool,
    /// The source ended its stream.
    eof: bool,
    /// The end was passed on (the destination's write side shut).
    shut: bool,
    moved: u64,
}

/// How one direction's pump ended.
enum Pumped {
    /// Moved what it could; `more`: it stopped at [`ROUNDS`] with more to move.
    Moved { bytes: u64, more: bool },
    /// Reading the source failed (a reset).
    SourceBroken,
    /// Writing the destination failed (its reader is gone).
    DestinationBroken,
}

impl Flow {
    /// Moves bytes from `from` to `to` until neither can go on, or [`ROUNDS`].
    fn pump(&mut self, from: &mut Side, to: &mut Side, pool: &mut Chunks) -> Pumped {
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let read = match self.fill(from, pool) {
                Ok(r) => r,
                Err(()) => return Pumped::SourceBroken,
            };
            let wrote = match self.drain(to) {
                Ok(n) => n,
                Err(()) => return Pumped::DestinationBroken,
            };
            bytes += wrote as u64;
            if self.chunk.as_ref().is_some_and(|c| c.is_empty()) {
                if let Some(c) = self.chunk.take() {
                    pool.give(c);
                }
                self.full = false;
            }
            if !read && wrote == 0 {
                self.moved += bytes;
                return Pumped::Moved { bytes, more: false };
            }
        }
        self.moved += bytes;
        Pumped::Moved { bytes, more: true }
    }

    /// One read into the chunk, if the source may have bytes and there is room: whether
    /// anything happened (bytes, or the end).
    fn fill(&mut self, from: &mut Side, pool: &mut Chunks) -> Result<bool, ()> {
        if self.eof || self.full || !from.readable {
            return Ok(false);
        }
        let c = self.chunk.get_or_insert_with(|| pool.take());
        if c.room() == 0 {
            self.full = true;
            return Ok(false);
        }
        match c.fill(from.peer.fd()) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A pipe out of slots says the same as an empty socket: ask the socket, unless
                // nothing is in the chunk (an empty pipe has every slot, a buffer has room).
                if !c.is_empty() && readable_bytes(from.peer.fd()) > 0 {
                    self.full = true;
                } else {
                    from.readable = false;
                }
                Ok(false)
            }
            Err(_) => Err(()),
        }
    }

    /// One write of what the chunk holds, if the destination may take it.
    fn drain(&mut self, to: &mut Side) -> Result<usize, ()> {
        let Some(c) = self.chunk.as_mut().filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        if !to.writable {
            return Ok(0);
        }
        match c.drain(to.peer.fd()) {
            Ok(n) => {
                self.full = false;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                to.writable = false;
                Ok(0)
            }
            Err(_) => Err(()),
        }
    }

    /// The source ended and everything before its end is written.
    fn ended(&self) -> bool {
        self.eof && self.chunk.is_none()
    }

    fn release(&mut self, pool: &mut Chunks) {
        if let Some(c) = self.chunk.take() {
            pool.give(c);
        }
    }
}

/// What a connection's step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Still open; `more`: it has more to move right away.
    Open { more: bool },
    /// ssh's side ended and whether its ssh is dying cannot be told yet: step it again
    /// once that has settled (`platform::SSH_EXIT_SETTLES_IN`).
    Unsure,
    /// Both directions ended cleanly: close both sockets.
    Done,
    /// The application's side broke: close ssh's at once.
    ClientBroken,
    /// ssh's side broke, or ended while its ssh is dying: reset the application's.
    UpstreamBroken,
}

/// Bytes moved by one step: (to the server, to the application).
pub type Moved = (u64, u64);

/// A relayed connection.
pub struct Conn {
    /// Which held forward it came in on.
    pub forward: usize,
    client: Side,
    upstream: Option<Side>,
    up: Flow,
    down: Flow,
    /// Since when the application has sent bytes that nothing has answered yet.
    pub owed_since: Option<Instant>,
    /// When it was handed to ssh (`None` while held).
    pub relayed_at: Option<Instant>,
}

impl Conn {
    pub fn new(forward: usize, client: Peer) -> Conn {
        Conn {
            forward,
            client: Side::new(client),
            upstream: None,
            up: Flow::default(),
            down: Flow::default(),
            owed_since: None,
            relayed_at: None,
        }
    }

    pub fn client_mut(&mut self) -> &mut Peer {
        &mut self.client.peer
    }

    /// Hands it to ssh's socket `upstream` (already registered). Both sides are taken as
    /// ready: what the application sent while it waited came with an edge that is gone, and
    /// an operation that cannot go on says so (would block).
    pub fn relay(&mut self, upstream: Peer, now: Instant) {
        let mut up = Side::new(upstream);
        (up.readable, up.writable) = (true, true);
        (self.client.readable, self.client.writable) = (true, true);
        self.upstream = Some(up);
        self.relayed_at = Some(now);
    }

    pub fn is_relayed(&self) -> bool {
        self.upstream.is_some()
    }

    /// Readiness of one of its sockets (`upstream`: ssh's).
    pub fn ready(&mut self, upstream: bool, readable: bool, writable: bool) {
        let side = if upstream {
            self.upstream.as_mut()
        } else {
            Some(&mut self.client)
        };
        if let Some(s) = side {
            s.readable |= readable;
            s.writable |= writable;
        }
    }

    /// Moves what can be moved each way; `upstream_dying`: asked when ssh's side ends,
    /// whether its ssh is going (its end is then a reset, not the server's half-close);
    /// `settled`: whether a "no" is final.
    pub fn step(
        &mut self,
        pool: &mut Chunks,
        now: Instant,
        upstream_dying: &dyn Fn() -> bool,
        settled: bool,
    ) -> (Step, Moved) {
        let Some(upstream) = self.upstream.as_mut() else {
            return (Step::Open { more: false }, (0, 0));
        };
        let (out, more_out) = match self.up.pump(&mut self.client, upstream, pool) {
            Pumped::Moved { bytes, more } => (bytes, more),
            Pumped::SourceBroken => return (Step::ClientBroken, (0, 0)),
            Pumped::DestinationBroken => return (Step::UpstreamBroken, (0, 0)),
        };
        let (back, more_back) = match self.down.pump(upstream, &mut self.client, pool) {
            Pumped::Moved { bytes, more } => (bytes, more),
            Pumped::SourceBroken => return (Step::UpstreamBroken, (out, 0)),
            Pumped::DestinationBroken => return (Step::ClientBroken, (out, 0)),
        };
        if back > 0 {
            self.owed_since = None;
        } else if out > 0 && self.owed_since.is_none() {
            self.owed_since = Some(now);
        }
        let moved = (out, back);
        if self.up.ended() && !self.up.shut {
            upstream.peer.shutdown_write();
            self.up.shut = true;
        }
        if self.down.ended() && !self.down.shut {
            if upstream_dying() {
                return (Step::UpstreamBroken, moved);
            }
            if !settled {
                return (Step::Unsure, moved);
            }
            self.client.peer.shutdown_write();
            self.down.shut = true;
        }
        if self.up.shut && self.down.shut {
            return (Step::Done, moved);
        }
        (
            Step::Open {
                more: more_out || more_back,
            },
            moved,
        )
    }

    /// Closes both sockets as `how` says: cleanly, or passing a reset on to the side that
    /// did not break. Chunks go back to the pool.
    pub fn close(mut self, registry: &Registry, how: Step, pool: &mut Chunks) {
        self.up.release(pool);
        self.down.release(pool);
        self.client.peer.deregister(registry);
        if let Some(u) = self.upstream.as_mut() {
            u.peer.deregister(registry);
        }
        match how {
            Step::UpstreamBroken => self.client.peer.reset(),
            Step::ClientBroken | Step::Done | Step::Open { .. } | Step::Unsure => {}
        }
        // Dropping the streams closes them.
    }

    /// Bytes each way so far: (to the server, to the application).
    pub fn moved(&self) -> Moved {
        (self.up.moved, self.down.moved)
    }
}

//! The HTTP endpoint of `AUTOSSH_HTTP`: `/metrics`, `/healthz` and `/status`, GET only,
//! HTTP/1.1 with `Connection: close`, served from the event loop's own `Poll`. Every
//! connection is bounded: its head in [`MAX_HEAD`] bytes within [`HEAD_TIME`], its whole
//! life within [`CONN_TIME`], at most [`CLIENTS`] at once (the oldest dropped for a new one),
//! at most [`ACCEPT_BURST`] accepted per wake-up: a slow or garbage client costs the loop a
//! few system calls and never holds it.

use crate::setup::endpoints::HttpAddr;
use crate::shell::nonblocking::{interrupted, read_available, would_block, ReadEnd};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

pub mod health;
mod request;
pub use request::{Refusal, Request};

/// Token of the listening socket (in the event loop's own range).
pub const LISTENER: Token = Token(6);
/// Tokens of connections: `CLIENT_FIRST + slot`, far above any tunnel's range (a tunnel
/// slot would have to be the 16 millionth to reach it).
pub const CLIENT_FIRST: usize = 1 << 30;
/// Connections open at once.
pub const CLIENTS: usize = 128;
/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// A connection's head must have arrived within this.
pub const HEAD_TIME: Duration = Duration::from_secs(5);
/// A connection is closed after this, answered or not (a client that does not read).
pub const CONN_TIME: Duration = Duration::from_secs(10);
/// Connections accepted per wake-up; more wait for the next one (which comes at once).
pub const ACCEPT_BURST: usize = 64;

/// The listening address could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub error: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AUTOSSH_HTTP: cannot listen on {}: {}",
            self.addr, self.error
        )
    }
}

impl std::error::Error for BindError {}

/// An answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: (u16, &'static str),
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: (200, "OK"),
            content_type,
            body,
        }
    }

    fn refusal(r: Refusal) -> Response {
        let status = r.status();
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{}\n", status.1.to_ascii_lowercase()),
        }
    }

    /// The bytes on the wire.
    fn bytes(&self) -> Vec<u8> {
        let (code, reason) = self.status;
        let allow = if code == 405 { "Allow: GET\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
            self.content_type,
            self.body.len()
        );
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its head is arriving.
    Reading,
    /// Its request was handed to the loop, which answers it now.
    Asked,
    /// Its answer is going out.
    Writing,
}

/// One client connection: its socket, the head so far or the answer going out.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    written: usize,
    phase: Phase,
    accepted: Instant,
}

impl Conn {
    fn interest(&self) -> Interest {
        match self.phase {
            Phase::Reading | Phase::Asked => Interest::READABLE,
            Phase::Writing => Interest::WRITABLE,
        }
    }

    fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Reading => self.accepted + HEAD_TIME,
            Phase::Asked | Phase::Writing => self.accepted + CONN_TIME,
        }
    }

    /// Reads what has arrived: the head's verdict once it is whole, `Err(())` when the
    /// client went away before, `Ok(None)` while more is to come.
    fn read(&mut self) -> Result<Option<Result<Request, Refusal>>, ()> {
        let end = read_available(&mut self.stream, &mut self.buf, MAX_HEAD + 1);
        if let Some(n) = request::head_end(&self.buf) {
            return Ok(Some(request::parse(&self.buf[..n])));
        }
        match end {
            ReadEnd::Full => Ok(Some(Err(Refusal::TooLarge))),
            ReadEnd::Closed => Err(()),
            ReadEnd::WouldBlock => Ok(None),
        }
    }

    /// Writes what it can of the answer; true once there is nothing more to do.
    fn flush(&mut self) -> bool {
        while self.written < self.buf.len() {
            match self.stream.write(&self.buf[self.written..]) {
                Ok(0) => return true,
                Ok(n) => self.written += n,
                Err(e) if interrupted(&e) => continue,
                Err(e) if would_block(&e) => return false,
                Err(_) => return true,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        true
    }
}

/// The listening socket and its connections.
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    conns: Vec<Option<Conn>>,
    /// Connections open now.
    open: usize,
    /// The last accept stopped at the burst limit: more may wait in the backlog.
    backlog: bool,
}

impl HttpServer {
    /// Binds the address (before anything starts: a port in use is an error then).
    pub fn bind(at: &HttpAddr) -> Result<HttpServer, BindError> {
        let listener = TcpListener::bind(at.addr).map_err(|error| BindError {
            addr: at.addr,
            error,
        })?;
        let addr = listener.local_addr().unwrap_or(at.addr);
        Ok(HttpServer {
            listener,
            addr,
            conns: (0..CLIENTS).map(|_| None).collect(),
            open: 0,
            backlog: false,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.listener, LISTENER, Interest::READABLE)
    }

    pub fn owns(token: Token) -> bool {
        token == LISTENER || (CLIENT_FIRST..CLIENT_FIRST + CLIENTS).contains(&token.0)
    }

    /// Accepts or reads or writes; returns the requests complete now, by connection.
    pub fn ready(&mut self, registry: &Registry, token: Token) -> Vec<(usize, Request)> {
        if token == LISTENER {
            return self.accept(registry);
        }
        let id = token.0.wrapping_sub(CLIENT_FIRST);
        let phase = match self.conns.get(id).and_then(|c| c.as_ref()) {
            Some(c) => c.phase,
            None => return Vec::new(),
        };
        match phase {
            Phase::Reading => self.read(registry, id).into_iter().collect(),
            Phase::Writing => {
                self.flush(registry, id);
                Vec::new()
            }
            Phase::Asked => Vec::new(),
        }
    }

    /// Accepts up to [`ACCEPT_BURST`] connections; reads each at once (its request is
    /// usually there already).
    pub fn accept(&mut self, registry: &Registry) -> Vec<(usize, Request)> {
        self.backlog = false;
        let mut asked = Vec::new();
        for _ in 0..ACCEPT_BURST {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if interrupted(&e) => continue,
                // Out of descriptors and the like: the next connection's event retries.
                Err(e) => {
                    if !would_block(&e) {
                        log::debug!("HTTP {}: accept: {e}", self.addr);
                    }
                    return asked;
                }
            };
            if let Some(id) = self.place(registry, stream) {
                asked.extend(self.read(registry, id));
            }
        }
        self.backlog = true;
        asked
    }

    /// A slot for a new connection, the oldest one's when every slot is taken.
    fn place(&mut self, registry: &Registry, mut stream: TcpStream) -> Option<usize> {
        let id = match self.conns.iter().position(Option::is_none) {
            Some(id) => id,
            None => {
                let oldest = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.as_ref().map(|c| (c.accepted, i)))
                    .min()?
                    .1;
                self.close(registry, oldest);
                oldest
            }
        };
        let token = Token(CLIENT_FIRST + id);
        registry
            .register(&mut stream, token, Interest::READABLE)
            .ok()?;
        self.conns[id] = Some(Conn {
            stream,
            buf: Vec::new(),
            written: 0,
            phase: Phase::Reading,
            accepted: Instant::now(),
        });
        self.open += 1;
        Some(id)
    }

    /// Reads connection `id`: its request when complete (refusals are answered here).
    fn read(&mut self, registry: &Registry, id: usize) -> Option<(usize, Request)> {
        let c = self.conns.get_mut(id)?.as_mut()?;
        match c.read() {
            Ok(None) => None,
            Ok(Some(Ok(request))) => {
                c.phase = Phase::Asked;
                Some((id, request))
            }
            Ok(Some(Err(refusal))) => {
                self.reply(registry, id, &Response::refusal(refusal));
                None
            }
            Err(()) => {
                self.close(registry, id);
                None
            }
        }
    }

    /// Sends the answer to connection `id`, then closes it.
    pub fn reply(&mut self, registry: &Registry, id: usize, response: &Response) {
        let Some(c) = self.conns.get_mut(id).and_then(|c| c.as_mut()) else {
            return;
        };
        c.buf = response.bytes();
        c.written = 0;
        c.phase = Phase::Writing;
        let (token, interest) = (Token(CLIENT_FIRST + id), c.interest());
        let _ = registry.reregister(&mut c.stream, token, interest);
        self.flush(registry, id);
    }

    fn flush(&mut self, registry: &Registry, id: usize) {
        let done = self
            .conns
            .get_mut(id)
            .and_then(|c| c.as_mut())
            .is_none_or(Conn::flush);
        if done {
            self.close(registry, id);
        }
    }

    fn close(&mut self, registry: &Registry, id: usize) {
        if let Some(mut c) = self.conns.get_mut(id).and_then(Option::take) {
            let _ = registry.deregister(&mut c.stream);
            self.open -= 1;
        }
    }

    /// Closes the connections past their deadline (a late head gets a 408 if it fits).
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        if self.open == 0 {
            return;
        }
        for id in 0..self.conns.len() {
            let Some(c) = self.conns[id].as_mut() else {
                continue;
            };
            if c.deadline() > now {
                continue;
            }
            if c.phase == Phase::Reading {
                let _ = c.stream.write(&Response::refusal(Refusal::Timeout).bytes());
            }
            self.close(registry, id);
        }
    }

    /// Until the nearest connection deadline; zero while connections wait to be accepted.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.backlog {
            return Some(Duration::ZERO);
        }
        if self.open == 0 {
            return None;
        }
        self.conns
            .iter()
            .flatten()
            .map(|c| c.deadline().saturating_duration_since(now))
            .min()
    }

    /// Whether connections may still wait to be accepted (see [`HttpServer::accept`]).
    pub fn backlogged(&self) -> bool {
        self.backlog
    }
}

#[cfg(test)]
mod tests;

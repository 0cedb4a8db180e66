//! One echo connection: its socket, its pending output, and the state its interest follows.

use crate::probe::{feed_probes, LineSplitter, Probe};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

/// Bytes read per `read` call.
const CHUNK: usize = 16 * 1024;
/// Reads per [`Conn::pump`]; a client that never lets the socket run dry must not starve the
/// others. Past it, the pump says [`Pumped::Again`] and the server comes back later.
const READS_PER_PUMP: usize = 16;

/// Where a connection stands; its poll interest follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading and echoing.
    Echoing,
    /// The pending output reached the cap: not reading until it drains to half.
    Backlogged,
    /// The client shut down its write side: flushing what is pending, then shutting down ours.
    Draining,
    /// Done; the server drops it.
    Closed,
}

/// What a pump left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Waiting for readiness.
    Wait,
    /// The read budget ran out with data maybe still waiting: pump again soon.
    Again,
}

/// An accepted client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    pub token: Token,
    pub peer: SocketAddr,
    state: State,
    /// Echo bytes not yet written: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    max_buffer: usize,
    lines: LineSplitter,
    /// The interest it is registered with.
    registered: Option<Interest>,
    /// Last time bytes moved either way.
    pub last_activity: Instant,
    /// The idle deadline it is queued under, if queued.
    pub queued_deadline: Option<Instant>,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        token: Token,
        peer: SocketAddr,
        max_buffer: usize,
        now: Instant,
    ) -> Conn {
        Conn {
            stream,
            token,
            peer,
            state: State::Echoing,
            out: Vec::new(),
            sent: 0,
            max_buffer,
            lines: LineSplitter::default(),
            registered: None,
            last_activity: now,
            queued_deadline: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes waiting to be echoed.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// The interest this state calls for; `None` once closed.
    pub fn interest(&self) -> Option<Interest> {
        match self.state {
            State::Echoing if self.pending() > 0 => Some(Interest::READABLE | Interest::WRITABLE),
            State::Echoing => Some(Interest::READABLE),
            State::Backlogged | State::Draining => Some(Interest::WRITABLE),
            State::Closed => None,
        }
    }

    /// Registers, or re-registers when the wanted interest changed.
    pub fn sync_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let want = self.interest();
        if want == self.registered {
            return Ok(());
        }
        match (self.registered, want) {
            (None, Some(i)) => registry.register(&mut self.stream, self.token, i)?,
            (Some(_), Some(i)) => registry.reregister(&mut self.stream, self.token, i)?,
            (Some(_), None) => registry.deregister(&mut self.stream)?,
            (None, None) => {}
        }
        self.registered = want;
        Ok(())
    }

    /// Moves bytes as far as the socket allows: echo what is pending, read more while there is
    /// room, follow the client's half-close. Complete probe lines read go onto `probes`.
    /// An error means the connection is dead.
    pub fn pump(&mut self, now: Instant, probes: &mut Vec<Probe>) -> io::Result<Pumped> {
        let mut buf = [0u8; CHUNK];
        let mut reads = 0;
        loop {
            self.flush(now)?;
            match self.state {
                State::Echoing => {
                    let room = self.max_buffer.saturating_sub(self.pending());
                    if room == 0 {
                        self.state = State::Backlogged;
                        continue;
                    }
                    if reads == READS_PER_PUMP {
                        return Ok(Pumped::Again);
                    }
                    reads += 1;
                    let want = room.min(CHUNK);
                    match self.stream.read(&mut buf[..want]) {
                        Ok(0) => self.state = State::Draining,
                        Ok(n) => {
                            self.last_activity = now;
                            feed_probes(&mut self.lines, &buf[..n], probes);
                            self.queue(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Wait),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                State::Backlogged => {
                    if self.pending() <= self.max_buffer / 2 {
                        self.state = State::Echoing;
                        continue;
                    }
                    return Ok(Pumped::Wait);
                }
                State::Draining => {
                    if self.pending() == 0 {
                        // The client may already be gone entirely; closing is all that is left.
                        let _ = self.stream.shutdown(Shutdown::Write);
                        self.state = State::Closed;
                    }
                    return Ok(Pumped::Wait);
                }
                State::Closed => return Ok(Pumped::Wait),
            }
        }
    }

    /// Appends bytes to echo, reclaiming the already-sent front first.
    fn queue(&mut self, bytes: &[u8]) {
        if self.sent > 0 && self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent >= self.out.len() / 2 && self.sent > 0 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        self.out.extend_from_slice(bytes);
    }

    /// Writes pending bytes until done or the socket is full.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.last_activity = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > 2 * CHUNK {
            self.out.shrink_to(CHUNK);
        }
        Ok(())
    }

    /// Marks it closed (the server then drops it, closing the socket).
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    pub fn deregister(&mut self, registry: &Registry) {
        if self.registered.take().is_some() {
            let _ = registry.deregister(&mut self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connected pair: our side as a [`Conn`], the client side as a blocking std socket.
    fn pair(max_buffer: usize) -> (Conn, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let conn = Conn::new(
            TcpStream::from_std(server),
            Token(9),
            peer,
            max_buffer,
            Instant::now(),
        );
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (conn, client)
    }

    /// Pumps until `cond` holds, bounded.
    fn pump_until(c: &mut Conn, probes: &mut Vec<Probe>, mut cond: impl FnMut(&Conn) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond(c) {
            assert!(
                Instant::now() < deadline,
                "state {:?}, pending {}",
                c.state(),
                c.pending()
            );
            c.pump(Instant::now(), probes).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn echoes_and_collects_probes() {
        let (mut c, mut client) = pair(1024);
        client
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        assert_eq!(c.interest(), Some(Interest::READABLE));
        client.write_all(b"h autossh 1 2 msg\r\n\x00\xff").unwrap();
        let mut probes = Vec::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 21 {
            assert!(Instant::now() < deadline, "got {got:?}");
            c.pump(Instant::now(), &mut probes).unwrap();
            if let Ok(n) = client.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, b"h autossh 1 2 msg\r\n\x00\xff");
        assert_eq!(probes.len(), 1);
        assert_eq!(c.state(), State::Echoing);
    }

    #[test]
    fn backlog_stops_reading_until_drained_then_resumes() {
        let (mut c, mut client) = pair(4096);
        let mut probes = Vec::new();
        // The client writes a lot and does not read: the pending output hits the cap.
        let data: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut w = client.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || w.write_all(&data))
        };
        pump_until(&mut c, &mut probes, |c| c.state() == State::Backlogged);
        assert_eq!(c.interest(), Some(Interest::WRITABLE));
        assert!(c.pending() <= 4096);
        // Now the client reads everything back: the server resumes and echoes it all.
        let mut got = vec![0u8; data.len()];
        let mut filled = 0;
        client.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while filled < data.len() {
            assert!(
                Instant::now() < deadline,
                "echoed {filled} of {}",
                data.len()
            );
            c.pump(Instant::now(), &mut probes).unwrap();
            assert!(c.pending() <= 4096);
            match client.read(&mut got[filled..]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        writer.join().unwrap().unwrap();
        assert!(got == data, "echo differs");
    }

    #[test]
    fn half_close_flushes_then_closes() {
        let (mut c, mut client) = pair(1024);
        client.write_all(b"last words").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut probes = Vec::new();
        pump_until(&mut c, &mut probes, |c| c.state() == State::Closed);
        assert_eq!(c.interest(), None);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
    }
}

//! The monitor's outgoing probe connection: TCP to ssh's `-L` monitor port (loop and echo
//! mode), or a unix socket to the session probe's local forward (`-M 0`).

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where probes are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One probe connection, non-blocking.
#[derive(Debug)]
pub enum ProbeConn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ProbeConn {
    /// Starts connecting (TCP) or connects (unix: at once, or fails at once).
    pub fn connect(target: &Target) -> io::Result<ProbeConn> {
        match target {
            Target::Tcp(a) => TcpStream::connect(*a).map(ProbeConn::Tcp),
            Target::Unix(p) => UnixStream::connect(p).map(ProbeConn::Unix),
        }
    }

    /// The connect's error, if it failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            ProbeConn::Tcp(s) => s.take_error(),
            ProbeConn::Unix(s) => s.take_error(),
        }
    }

    /// Whether the connect has completed (`Ok(false)`: still in progress).
    pub fn connected(&self) -> io::Result<bool> {
        let r = match self {
            ProbeConn::Tcp(s) => s.peer_addr().map(|_| ()),
            ProbeConn::Unix(s) => s.peer_addr().map(|_| ()),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Read for ProbeConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ProbeConn::Tcp(s) => s.read(buf),
            ProbeConn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for ProbeConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ProbeConn::Tcp(s) => s.write(buf),
            ProbeConn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for ProbeConn {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ProbeConn::Tcp(s) => s.register(r, t, i),
            ProbeConn::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            ProbeConn::Tcp(s) => s.reregister(r, t, i),
            ProbeConn::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            ProbeConn::Tcp(s) => s.deregister(r),
            ProbeConn::Unix(s) => s.deregister(r),
        }
    }
}

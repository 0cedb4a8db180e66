//! A local TCP service to tunnel to.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{free_port, next_seq};

/// The line [`Service`] writes first on every connection.
pub const GREETING: &str = "hello from service\n";

/// Longest a [`Service`] thread runs, whatever happens (loops are bounded).
pub(crate) const SERVICE_MAX_LIFETIME: Duration = Duration::from_secs(600);

/// A TCP service on 127.0.0.1:<free port>: for each connection it writes
/// [`GREETING`], then echoes what it receives. Drop (or [`Service::stop`])
/// stops it within ~100 ms.
pub struct Service {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    pub fn start() -> Service {
        let mut last_err = None;
        for _ in 0..20 {
            let port = free_port();
            match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                Ok(listener) => return Service::serve(listener, port),
                Err(e) => last_err = Some(e),
            }
        }
        panic!("service: cannot bind a port: {last_err:?}");
    }

    fn serve(listener: TcpListener, port: u16) -> Service {
        listener
            .set_nonblocking(true)
            .expect("service: set_nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let thread = std::thread::Builder::new()
            .name(format!("service-{port}"))
            .spawn(move || accept_loop(listener, stop2, conns2))
            .expect("service: spawn thread");
        Service {
            port,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and closes all connections (bounded).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, conns: Arc<AtomicUsize>) {
    let started = Instant::now();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < SERVICE_MAX_LIFETIME {
        match listener.accept() {
            Ok((stream, _)) => {
                conns.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                if let Ok(h) = std::thread::Builder::new()
                    .name("service-conn".into())
                    .spawn(move || serve_conn(stream, stop, started))
                {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    stop.store(true, Ordering::SeqCst);
    drop(listener);
    for h in handlers {
        let _ = h.join();
    }
}

pub(crate) fn serve_conn(mut stream: TcpStream, stop: Arc<AtomicBool>, started: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(GREETING.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < SERVICE_MAX_LIFETIME {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads up to and including the first '\n' (at most 4 KiB), before
/// `deadline`. None on EOF, error or timeout.
pub(crate) fn read_line_until(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// True if 127.0.0.1:`port` leads to a [`Service`]: connects (2 s timeout),
/// reads the greeting, sends a line and reads it back, all within ~2 s
/// after connecting.
pub fn tunnel_works(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let deadline = Instant::now() + Duration::from_secs(2);
    if read_line_until(&mut stream, deadline).as_deref() != Some(GREETING) {
        return false;
    }
    let probe = format!("ping {} {}\n", std::process::id(), next_seq());
    if stream.write_all(probe.as_bytes()).is_err() {
        return false;
    }
    read_line_until(&mut stream, deadline).as_deref() == Some(probe.as_str())
}

//! Connections for the running tests: a plain echo service (the server side of echo-mode
//! monitors) and a connection held open through a tunnel across a reload.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use test_support::*;

/// A plain TCP echo service on 127.0.0.1 (the server side of echo-mode monitors).
pub struct Echo {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start() -> Echo {
        let port = free_port();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("echo: bind");
        listener.set_nonblocking(true).expect("echo: nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut buf = [0u8; 4096];
                            while !stop3.load(Ordering::SeqCst)
                                && started.elapsed() < Duration::from_secs(600)
                            {
                                match s.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) if s.write_all(&buf[..n]).is_err() => break,
                                    Ok(_) => {}
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                                | std::io::ErrorKind::Interrupted
                                        ) => {}
                                    Err(_) => break,
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Echo {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one line (up to '\n') before `deadline`.
pub fn read_line(s: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// A connection held open through a tunnel's `-L` port: greeted, and it echoes.
pub struct Held {
    s: TcpStream,
}

impl Held {
    pub fn open(port: u16) -> Option<Held> {
        let addr = (Ipv4Addr::LOCALHOST, port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        let line = read_line(&mut s, Instant::now() + Duration::from_secs(3))?;
        (line == GREETING).then_some(Held { s })
    }

    /// Sends `msg` and reads it back (3 s at most).
    pub fn echo(&mut self, msg: &str) -> Result<(), String> {
        let line = format!("{msg}\n");
        self.s
            .write_all(line.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        match read_line(&mut self.s, Instant::now() + Duration::from_secs(3)) {
            Some(l) if l == line => Ok(()),
            other => Err(format!("sent {line:?}, got {other:?}")),
        }
    }
}

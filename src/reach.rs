//! Cheap reachability checks of the server between ssh handshakes: a non-blocking TCP
//! connect to the address and port ssh would use. The address comes from `ssh -G <the
//! user's arguments>` (so ssh_config aliases, `HostName` and `Port` count), worked out once
//! in a helper thread so a slow resolver never blocks the event loop.

use crate::supervisor::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Tokens of checks in flight: `REACH_FIRST + slot`.
pub const REACH_FIRST: usize = 8;
const SLOTS: usize = 4;
/// A check that has not connected by then counts as "unreachable".
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// `ssh -G` must answer within this.
const SSH_G_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server is, as far as we know.
enum Target {
    NotResolved,
    Resolving(Receiver<Option<Vec<SocketAddr>>>),
    Known(Vec<SocketAddr>),
    Unknown,
}

struct Check {
    stream: TcpStream,
    started: Instant,
}

/// The checker.
pub struct Reach {
    ssh_path: OsString,
    ssh_args: Vec<OsString>,
    target: Target,
    checks: Vec<Option<Check>>,
    next_addr: usize,
}

impl Reach {
    pub fn new(ssh_path: OsString, ssh_args: Vec<OsString>) -> Reach {
        Reach {
            ssh_path,
            ssh_args,
            target: Target::NotResolved,
            checks: (0..SLOTS).map(|_| None).collect(),
            next_addr: 0,
        }
    }

    pub fn owns(token: Token) -> bool {
        (REACH_FIRST..REACH_FIRST + SLOTS).contains(&token.0)
    }

    /// Starts working out the server's address in the background, so the first check after
    /// a failure does not wait for `ssh -G`.
    pub fn prepare(&mut self) {
        if let Target::NotResolved = self.target {
            let (tx, rx) = mpsc::channel();
            let (path, args) = (self.ssh_path.clone(), self.ssh_args.clone());
            let spawned = std::thread::Builder::new()
                .name("resolve".into())
                .spawn(move || {
                    let _ = tx.send(resolve(&path, &args));
                });
            self.target = match spawned {
                Ok(_) => Target::Resolving(rx),
                Err(_) => Target::Unknown,
            };
        }
    }

    /// Starts one check; returns an event when the answer is known at once.
    pub fn check(&mut self, registry: &Registry) -> Option<Event> {
        self.prepare();
        if let Target::Resolving(rx) = &self.target {
            self.target = match rx.try_recv() {
                Ok(Some(addrs)) if !addrs.is_empty() => {
                    log::info!("checking the server at {} between handshakes", addrs[0]);
                    Target::Known(addrs)
                }
                Ok(_) | Err(TryRecvError::Disconnected) => Target::Unknown,
                Err(TryRecvError::Empty) => return None,
            };
        }
        let addrs = match &self.target {
            Target::Known(a) => a,
            _ => return Some(Event::ReachUnknown),
        };
        let addr = addrs[self.next_addr % addrs.len()];
        self.next_addr += 1;
        let slot = self.free_slot(registry);
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => return Some(Event::Reachable(false)),
        };
        let token = Token(REACH_FIRST + slot);
        if registry
            .register(&mut stream, token, Interest::WRITABLE)
            .is_err()
        {
            return Some(Event::Reachable(false));
        }
        self.checks[slot] = Some(Check {
            stream,
            started: Instant::now(),
        });
        None
    }

    /// A free slot, dropping the oldest check when all are busy.
    fn free_slot(&mut self, registry: &Registry) -> usize {
        if let Some(i) = self.checks.iter().position(Option::is_none) {
            return i;
        }
        let oldest = (0..SLOTS)
            .min_by_key(|&i| self.checks[i].as_ref().map(|c| c.started))
            .unwrap_or(0);
        self.close(registry, oldest);
        oldest
    }

    fn close(&mut self, registry: &Registry, slot: usize) {
        if let Some(mut c) = self.checks[slot].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// A check's socket is ready: connected or refused.
    pub fn ready(&mut self, registry: &Registry, token: Token) -> Option<Event> {
        let slot = token.0 - REACH_FIRST;
        let check = self.checks.get_mut(slot)?.as_mut()?;
        let ok = match check.stream.take_error() {
            Ok(Some(_)) | Err(_) => false,
            Ok(None) => match check.stream.peer_addr() {
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(_) => false,
            },
        };
        self.close(registry, slot);
        Some(Event::Reachable(ok))
    }

    /// Checks older than the timeout count as failed.
    pub fn expire(&mut self, registry: &Registry) -> Vec<Event> {
        let mut out = Vec::new();
        for slot in 0..SLOTS {
            let late = self.checks[slot]
                .as_ref()
                .is_some_and(|c| c.started.elapsed() >= CHECK_TIMEOUT);
            if late {
                self.close(registry, slot);
                out.push(Event::Reachable(false));
            }
        }
        out
    }

    pub fn stop(&mut self, registry: &Registry) {
        for slot in 0..SLOTS {
            self.close(registry, slot);
        }
    }
}

/// Asks `ssh -G` where the user's arguments lead; `None` through a proxy or on failure.
fn resolve(ssh: &OsString, args: &[OsString]) -> Option<Vec<SocketAddr>> {
    let mut child = Command::new(ssh)
        .arg("-G")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < SSH_G_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    let (host, port) = parse_ssh_g(&text)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .map(|a| a.collect())
}

/// `hostname` and `port` from `ssh -G` output; `None` when a proxy is configured.
fn parse_ssh_g(text: &str) -> Option<(String, u16)> {
    let mut host = None;
    let mut port = 22;
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        match key {
            "hostname" => host = Some(value.to_string()),
            "port" => port = value.parse().ok()?,
            "proxycommand" | "proxyjump" if value != "none" => return None,
            _ => {}
        }
    }
    host.map(|h| (h, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_gives_host_and_port() {
        let out = "user root\nhostname 10.0.0.7\nport 2222\nproxycommand none\n";
        assert_eq!(parse_ssh_g(out), Some(("10.0.0.7".into(), 2222)));
        let proxied = "hostname h\nport 22\nproxyjump bastion\n";
        assert_eq!(parse_ssh_g(proxied), None);
        assert_eq!(parse_ssh_g("port 22\n"), None);
    }

    #[test]
    fn real_ssh_g_honours_port_and_hostname() {
        let ssh = OsString::from("/usr/bin/ssh");
        if !std::path::Path::new(&ssh).exists() {
            return;
        }
        let args: Vec<OsString> = [
            "-F",
            "/dev/null",
            "-p",
            "2299",
            "-o",
            "HostName=127.0.0.9",
            "alias",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let addrs = resolve(&ssh, &args).expect("ssh -G answers");
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 9], 2299))]);
    }
}

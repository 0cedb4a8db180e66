//! Cheap reachability checks of the server between ssh handshakes: a non-blocking TCP
//! connect to the address and port ssh would use. The address comes from `ssh -G <the
//! user's arguments>` ([`crate::shell::ssh_g`]): its answer from before the start, or (late,
//! or none asked) a look-up in a helper thread; a host name is resolved in one, so a slow
//! resolver never blocks the event loop. The same answer tells whether ssh goes through a
//! jump host or a proxy command (then there is nothing to check from here).

use crate::core::supervisor::Event;
use crate::shell::ssh_g::{self, Answer, Lookup, Route};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

/// Tokens of checks in flight: `REACH_FIRST + slot`.
pub const REACH_FIRST: usize = 8;
/// Checks in flight at most: started 125 ms apart (the supervisor's pace), the oldest reaches
/// its [`CHECK_TIMEOUT`] as the last slot is taken. Tokens `REACH_FIRST..REACH_FIRST + SLOTS`
/// stay below the monitor's inbound connections (16).
const SLOTS: usize = 8;
const _: () = assert!(REACH_FIRST + SLOTS <= crate::shell::monitor::INBOUND_FIRST);
/// A check that has not connected by then counts as "unreachable".
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the server is, as far as we know.
enum Target {
    NotResolved,
    Resolving(Lookup),
    Known(Vec<SocketAddr>),
    /// Behind a proxy, or the look-up failed.
    Unknown,
}

struct Check {
    stream: TcpStream,
    started: Instant,
}

/// The checker.
pub struct Reachability {
    ssh_path: OsString,
    ssh_args: Vec<OsString>,
    target: Target,
    checks: Vec<Option<Check>>,
    next_addr: usize,
    /// Added to every token registered (the tunnel's token range in the event loop).
    base: usize,
}

impl Reachability {
    pub fn new(ssh_path: OsString, ssh_args: Vec<OsString>, base: usize) -> Reachability {
        Reachability {
            ssh_path,
            ssh_args,
            target: Target::NotResolved,
            checks: (0..SLOTS).map(|_| None).collect(),
            next_addr: 0,
            base,
        }
    }

    pub fn owns(token: Token) -> bool {
        (REACH_FIRST..REACH_FIRST + SLOTS).contains(&token.0)
    }

    /// Starts working out the server's address in the background, so the first check after
    /// a failure does not wait for `ssh -G`.
    pub fn prepare(&mut self) {
        if let Target::NotResolved = self.target {
            self.target = match Lookup::start(self.ssh_path.clone(), self.ssh_args.clone()) {
                Ok(lookup) => Target::Resolving(lookup),
                Err(_) => Target::Unknown,
            };
        }
    }

    /// With `ssh -G`'s answer at hand (looked up before the start): the route at once (an
    /// address, or a proxy: then [`Event::Proxied`]); a host name is resolved in the
    /// background. Its key hygiene is looked at too.
    pub fn known(&mut self, text: &str) -> Option<Event> {
        crate::shell::hygiene::warn(text);
        let (target, event) = match ssh_g::answer(text) {
            Some(Answer::Route(Route::Direct(addrs))) => (direct(addrs), None),
            Some(Answer::Route(Route::Proxied { target })) => (
                Target::Unknown,
                Some(Event::Proxied {
                    target: Some(target),
                }),
            ),
            Some(Answer::Resolve { host, port }) => match Lookup::resolving(host, port) {
                Ok(lookup) => (Target::Resolving(lookup), None),
                Err(_) => (Target::Unknown, None),
            },
            None => (Target::Unknown, None),
        };
        self.target = target;
        event
    }

    /// Takes the look-up's answer once it is there (cheap; call it often). Returns
    /// [`Event::Proxied`] when ssh goes through a jump host or a proxy command.
    pub fn resolve(&mut self) -> Option<Event> {
        let Target::Resolving(lookup) = &self.target else {
            return None;
        };
        let (target, event) = match lookup.try_result() {
            Ok(Some(Route::Direct(addrs))) => (direct(addrs), None),
            Ok(Some(Route::Proxied { target })) => (
                Target::Unknown,
                Some(Event::Proxied {
                    target: Some(target),
                }),
            ),
            Ok(_) | Err(TryRecvError::Disconnected) => (Target::Unknown, None),
            Err(TryRecvError::Empty) => return None,
        };
        self.target = target;
        event
    }

    /// Starts one check; returns an event when the answer is known at once.
    pub fn check(&mut self, registry: &Registry) -> Option<Event> {
        self.prepare();
        let addrs = match &self.target {
            Target::Known(a) => a,
            // Not known yet: the next check will tell.
            Target::NotResolved | Target::Resolving(_) => return None,
            Target::Unknown => return Some(Event::ReachUnknown),
        };
        let addr = addrs[self.next_addr % addrs.len()];
        self.next_addr += 1;
        let slot = self.free_slot(registry);
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => return Some(Event::Reachable(false)),
        };
        let token = Token(self.base + REACH_FIRST + slot);
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
    /// Whether `ssh -G`'s answer is still awaited ([`Reachability::resolve`] has work).
    pub fn resolving(&self) -> bool {
        matches!(self.target, Target::Resolving(_))
    }

    /// Whether checks are in flight ([`Reachability::expire`] has work).
    pub fn checking(&self) -> bool {
        self.checks.iter().any(Option::is_some)
    }

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

    /// autossh is exiting: stops the checks, and kills and reaps an `ssh -G` still running.
    pub fn shutdown(&mut self, registry: &Registry) {
        self.stop(registry);
        if let Target::Resolving(lookup) = &self.target {
            lookup.cancel();
            self.target = Target::Unknown;
        }
    }
}

/// The server's addresses, said once in the log (none: nothing to check).
fn direct(addrs: Vec<SocketAddr>) -> Target {
    match addrs.first() {
        Some(a) => {
            log::info!("checking the server at {a} between handshakes");
            Target::Known(addrs)
        }
        None => Target::Unknown,
    }
}

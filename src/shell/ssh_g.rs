//! `ssh -G <the user's arguments>`: where ssh would connect (ssh_config aliases, `HostName`,
//! `Port` count), and whether it goes through a jump host or a proxy command. Before the start
//! every tunnel's look-up runs at once ([`configs`]); one that is late or comes later (a reload)
//! is asked in a helper thread, and so is the resolver for a host name, so a slow one never
//! blocks the event loop. The same answer is looked at once for key hygiene
//! ([`crate::shell::hygiene`]).
//!
//! The look-up runs in a process group of its own (ssh_config's `Match exec` commands run in
//! it too). The group is killed with SIGKILL and its leader reaped when the look-up ends, when
//! it is late, and when autossh exits ([`Lookup::cancel`], also on drop): nothing it started
//! outlives autossh. A parent-death signal covers the leader even when autossh is SIGKILLed.

use crate::shell::nonblocking::read_available;
use crate::shell::platform::unix::{peek_exit, ChildExit};
use crate::shell::ssh_process::{die_with_autossh, set_nonblocking};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `ssh -G` must answer within this.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the helper thread looks whether `ssh -G` has exited.
const POLL: Duration = Duration::from_millis(20);
/// Look-ups run together at most before the start ([`configs`]).
const AT_ONCE: usize = 32;

/// What the helper thread and the event loop share.
#[derive(Default)]
struct Shared {
    /// The running `ssh -G`, not reaped yet (so its pid is still its group's id).
    child: Option<Child>,
    /// Set by [`Lookup::cancel`]: start nothing more.
    cancelled: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where ssh connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to these addresses (the server's ssh port).
    Direct(Vec<SocketAddr>),
    /// Through `ProxyJump` or `ProxyCommand`; `target` is the server behind the proxy
    /// (`host:port`, as ssh names it, not resolved here).
    Proxied { target: String },
}

/// A look-up in progress.
pub struct Lookup {
    rx: Receiver<Option<Route>>,
    shared: Arc<Mutex<Shared>>,
}

impl Lookup {
    /// Starts `ssh -G args...` from a helper thread.
    pub fn start(ssh: OsString, args: Vec<OsString>) -> io::Result<Lookup> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let theirs = shared.clone();
        let tunnel = crate::setup::logging::current_tunnel();
        std::thread::Builder::new()
            .name("ssh-G".into())
            .spawn(move || {
                let name = tunnel.map(|n| std::rc::Rc::from(n.as_str()));
                let _log = crate::setup::logging::tunnel_context(name.as_ref());
                let _ = tx.send(resolve(&ssh, &args, &theirs));
            })?;
        Ok(Lookup { rx, shared })
    }

    /// Resolves `host` (from an `ssh -G` answer already at hand) from a helper thread: a
    /// slow resolver never blocks the event loop.
    pub fn resolving(host: String, port: u16) -> io::Result<Lookup> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let _ = tx.send(resolve_name(&host, port));
            })?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        Ok(Lookup { rx, shared })
    }

    /// The route once known; `Ok(None)`: the look-up failed.
    pub fn try_result(&self) -> Result<Option<Route>, TryRecvError> {
        self.rx.try_recv()
    }

    /// Kills the look-up's process group and reaps `ssh -G`; one not started yet never starts.
    pub fn cancel(&self) {
        let mut shared = lock(&self.shared);
        shared.cancelled = true;
        if let Some(mut child) = shared.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// SIGKILL to the child's process group, then reap it.
fn kill_and_reap(child: &mut Child) {
    // Not reaped yet: its pid cannot have been reused, so the group is still its own.
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// True once `child` has exited; it is left unreaped (a zombie) where the platform can, so
/// its group can still be killed.
fn has_exited(child: &mut Child) -> bool {
    peek_exit(child) != ChildExit::Running
}

fn spawn(ssh: &OsString, args: &[OsString]) -> io::Result<Child> {
    let mut cmd = Command::new(ssh);
    cmd.arg("-G")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // This thread waits for the child until it is reaped, so the signal is not sent early.
    die_with_autossh(&mut cmd, libc::SIGKILL);
    cmd.spawn()
}

/// Runs `ssh -G` (in the helper thread); `None` late, cancelled or on failure.
fn resolve(ssh: &OsString, args: &[OsString], shared: &Mutex<Shared>) -> Option<Route> {
    {
        let mut s = lock(shared);
        if s.cancelled {
            return None;
        }
        s.child = Some(spawn(ssh, args).ok()?);
    }
    let started = Instant::now();
    let stdout = loop {
        {
            let mut s = lock(shared);
            // Gone: cancelled, and already killed and reaped.
            let child = s.child.as_mut()?;
            let exited = has_exited(child);
            if exited || started.elapsed() >= TIMEOUT {
                let stdout = child.stdout.take();
                // Whatever it left running in its group goes too.
                kill_and_reap(child);
                s.child = None;
                if !exited {
                    return None;
                }
                break stdout?;
            }
        }
        std::thread::sleep(POLL);
    };
    let text = read_output(stdout)?;
    // Before the address is resolved: a slow resolver does not hold the warnings back.
    crate::shell::hygiene::warn(&text);
    match answer(&text)? {
        Answer::Route(route) => Some(route),
        Answer::Resolve { host, port } => resolve_name(&host, port),
    }
}

/// What an `ssh -G` answer says of ssh's way to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Known without a resolver: an address, or a proxy.
    Route(Route),
    /// A name to resolve (it may take a while).
    Resolve { host: String, port: u16 },
}

/// The route in `ssh -G`'s output; `None` when it names no host.
pub fn answer(text: &str) -> Option<Answer> {
    let dest = parse(text)?;
    if dest.proxied {
        let target = if dest.host.contains(':') {
            format!("[{}]:{}", dest.host, dest.port)
        } else {
            format!("{}:{}", dest.host, dest.port)
        };
        return Some(Answer::Route(Route::Proxied { target }));
    }
    Some(match dest.host.parse::<std::net::IpAddr>() {
        Ok(ip) => Answer::Route(Route::Direct(vec![SocketAddr::new(ip, dest.port)])),
        Err(_) => Answer::Resolve {
            host: dest.host,
            port: dest.port,
        },
    })
}

/// The addresses of `host`, as ssh would connect to them (blocks on the resolver).
fn resolve_name(host: &str, port: u16) -> Option<Route> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .map(|a| Route::Direct(a.collect()))
}

/// `ssh -G args...` run here and now (at most [`TIMEOUT`]), before anything starts: its
/// output, or `None` when it fails or is late. Its process group goes with it.
pub fn config(ssh: &OsString, args: &[OsString]) -> Option<String> {
    configs(&[(ssh, args)]).pop().flatten()
}

/// [`config`] for each of `lists` (ssh, its arguments), all at once ([`AT_ONCE`] at most
/// running together, each given [`TIMEOUT`] from its own start): the outputs in their order.
pub fn configs(lists: &[(&OsString, &[OsString])]) -> Vec<Option<String>> {
    let mut out = vec![None; lists.len()];
    let mut running: Vec<(usize, Child, Instant)> = Vec::new();
    let mut next = 0;
    while next < lists.len() || !running.is_empty() {
        while running.len() < AT_ONCE && next < lists.len() {
            let (ssh, args) = lists[next];
            if let Ok(child) = spawn(ssh, args) {
                running.push((next, child, Instant::now()));
            }
            next += 1;
        }
        let mut i = 0;
        while i < running.len() {
            let exited = has_exited(&mut running[i].1);
            if exited || running[i].2.elapsed() >= TIMEOUT {
                let (k, mut child, _) = running.swap_remove(i);
                out[k] = collect(&mut child, exited);
            } else {
                i += 1;
            }
        }
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    out
}

/// An `ssh -G` that exited (or is late): its output when it succeeded; its process group
/// killed and its leader reaped either way.
fn collect(child: &mut Child, exited: bool) -> Option<String> {
    let stdout = child.stdout.take();
    let success = exited && peek_exit(child) == ChildExit::Ended { success: true };
    kill_and_reap(child);
    if !success {
        return None;
    }
    read_output(stdout?)
}

/// What an exited `ssh -G` wrote: all of it is in the pipe. Non-blocking, so a process outside
/// its group still holding the pipe cannot stall us.
fn read_output(mut stdout: ChildStdout) -> Option<String> {
    set_nonblocking(stdout.as_raw_fd()).ok()?;
    let mut bytes = Vec::new();
    // Bounded: ssh -G writes a few KiB; a pipe holds at most 1 MiB by default.
    read_available(&mut stdout, &mut bytes, 1 << 20);
    String::from_utf8(bytes).ok()
}

/// What `ssh -G` says about the destination.
#[derive(Debug, PartialEq, Eq)]
struct Dest {
    host: String,
    port: u16,
    /// A `ProxyJump` or `ProxyCommand` is configured.
    proxied: bool,
}

/// `hostname`, `port`, `proxyjump` and `proxycommand` from `ssh -G` output.
fn parse(text: &str) -> Option<Dest> {
    let mut host = None;
    let mut port = 22;
    let mut proxied = false;
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        match key {
            "hostname" => host = Some(value.to_string()),
            "port" => port = value.parse().ok()?,
            "proxycommand" | "proxyjump" if value != "none" => proxied = true,
            _ => {}
        }
    }
    host.map(|host| Dest {
        host,
        port,
        proxied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_gives_host_and_port() {
        let dest = |host: &str, port, proxied| {
            Some(Dest {
                host: host.into(),
                port,
                proxied,
            })
        };
        let out = "user root\nhostname 10.0.0.7\nport 2222\nproxycommand none\n";
        assert_eq!(parse(out), dest("10.0.0.7", 2222, false));
        let proxied = "hostname h\nport 22\nproxyjump bastion\n";
        assert_eq!(parse(proxied), dest("h", 22, true));
        let command = "hostname h\nport 2200\nproxycommand nc %h %p\n";
        assert_eq!(parse(command), dest("h", 2200, true));
        assert_eq!(parse("port 22\n"), None);
    }

    /// Waits (bounded) for the look-up's answer.
    fn answer(l: &Lookup) -> Option<Route> {
        for _ in 0..500 {
            match l.try_result() {
                Ok(a) => return a,
                Err(TryRecvError::Empty) => std::thread::sleep(POLL),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        panic!("no answer from ssh -G within 10 s");
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
        let lookup = Lookup::start(ssh, args).unwrap();
        let route = answer(&lookup).expect("ssh -G answers");
        assert_eq!(
            route,
            Route::Direct(vec![SocketAddr::from(([127, 0, 0, 9], 2299))])
        );
    }

    #[test]
    fn real_ssh_g_tells_a_jump_host_and_names_the_target() {
        let ssh = OsString::from("/usr/bin/ssh");
        if !std::path::Path::new(&ssh).exists() {
            return;
        }
        let args: Vec<OsString> = [
            "-F",
            "/dev/null",
            "-J",
            "jump",
            "-p",
            "2299",
            "target.invalid",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let lookup = Lookup::start(ssh, args).unwrap();
        assert_eq!(
            answer(&lookup),
            Some(Route::Proxied {
                target: "target.invalid:2299".into()
            })
        );
    }
}

//! The held forwards' listeners, bound as ssh would bind them (`BindPlan`: loopback of every
//! family, every address, or the one named; `IPV6_V6ONLY`; unix sockets under
//! `StreamLocalBindMask`, replacing a stale one with `StreamLocalBindUnlink`), or taken from
//! systemd (socket activation). Bound before anything starts: a forward that cannot listen
//! is one line and exit 1, and nothing half-bound is left.

use crate::setup::held::{plan, BindPlan, HeldForward, Listen};
use mio::net::{TcpListener, UnixListener};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// How deep each listener's accept queue is (autossh accepts at once, held or not).
const BACKLOG: i32 = 1024;

/// What ssh's configuration says about binding (`ssh -G`'s answer, or the command line's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOptions {
    /// `GatewayPorts` / `-g`.
    pub gateway_ports: bool,
    /// `AddressFamily` / `-4` / `-6`: `None` for any.
    pub family: Option<Family>,
    /// `StreamLocalBindMask` (default 0177: sockets 0600).
    pub unix_mask: u32,
    /// `StreamLocalBindUnlink`.
    pub unix_unlink: bool,
}

impl Default for BindOptions {
    fn default() -> BindOptions {
        BindOptions {
            gateway_ports: false,
            family: None,
            unix_mask: 0o177,
            unix_unlink: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

/// What `ssh -G` says about binding, and whether ssh binds any forward itself beside the held
/// ones (`localforward`, `remoteforward`, `dynamicforward` lines: from ssh_config, `-R`, `-D`).
pub fn bind_options(ssh_g: &str) -> (BindOptions, bool) {
    let mut o = BindOptions::default();
    let mut others = false;
    for line in ssh_g.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "gatewayports" => o.gateway_ports = value == "yes",
            "addressfamily" => o.family = family(value),
            "streamlocalbindmask" => {
                o.unix_mask = u32::from_str_radix(value, 8).unwrap_or(o.unix_mask)
            }
            "streamlocalbindunlink" => o.unix_unlink = value == "yes",
            "localforward" | "remoteforward" | "dynamicforward" => others = true,
            _ => {}
        }
    }
    (o, others)
}

fn family(value: &str) -> Option<Family> {
    match value {
        "inet" => Some(Family::Inet),
        "inet6" => Some(Family::Inet6),
        _ => None,
    }
}

/// The same from the command line alone (when `ssh -G` gives no answer): `-g`, `-4`, `-6`
/// and their `-o` forms.
pub fn command_line_options(args: &[std::ffi::OsString]) -> BindOptions {
    use crate::setup::ssh_opts::{kind, OptKind};
    let mut o = BindOptions::default();
    let mut next_is_o = false;
    for a in args.iter().map(|a| a.to_string_lossy()) {
        if std::mem::take(&mut next_is_o) {
            option(&mut o, &a);
            continue;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.starts_with('-')) else {
            continue;
        };
        for (i, c) in flags.char_indices() {
            match (c, kind(c)) {
                ('g', _) => o.gateway_ports = true,
                ('4', _) => o.family = Some(Family::Inet),
                ('6', _) => o.family = Some(Family::Inet6),
                ('o', OptKind::Value) if i + 1 < flags.len() => option(&mut o, &flags[i + 1..]),
                ('o', OptKind::Value) => next_is_o = true,
                (_, OptKind::Value) => {}
                _ => continue,
            }
            if kind(c) == OptKind::Value {
                break;
            }
        }
    }
    o
}

/// One `-o Key=value` that matters for binding.
fn option(o: &mut BindOptions, v: &str) {
    let (key, value) = v
        .split_once(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or((v, ""));
    let value = value.trim().to_ascii_lowercase();
    match key.to_ascii_lowercase().as_str() {
        "gatewayports" => o.gateway_ports = value == "yes",
        "addressfamily" => o.family = family(&value),
        "streamlocalbindmask" => {
            o.unix_mask = u32::from_str_radix(&value, 8).unwrap_or(o.unix_mask)
        }
        "streamlocalbindunlink" => o.unix_unlink = value == "yes",
        _ => {}
    }
}

/// A listening socket of a held forward.
pub enum Listener {
    Tcp(TcpListener),
    /// `ours`: bound here, so its file is removed with it (one systemd passed is systemd's).
    Unix {
        listener: UnixListener,
        path: PathBuf,
        ours: bool,
    },
}

impl Listener {
    pub fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    pub fn register(&mut self, r: &mio::Registry, t: mio::Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => r.register(l, t, mio::Interest::READABLE),
            Listener::Unix { listener, .. } => r.register(listener, t, mio::Interest::READABLE),
        }
    }

    /// Where it listens, for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix { path, .. } => path.display().to_string(),
        }
    }
}

/// A forward that cannot listen.
#[derive(Debug)]
pub struct BindError {
    pub spec: String,
    pub what: String,
    pub error: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot listen on {}: {}",
            self.spec, self.what, self.error
        )
    }
}

impl std::error::Error for BindError {}

/// Binds one forward's listeners.
pub fn bind(fwd: &HeldForward, opts: &BindOptions) -> Result<Vec<Listener>, BindError> {
    match &fwd.listen {
        Listen::Unix(path) => bind_unix(fwd, path, opts).map(|l| vec![l]),
        Listen::Tcp { bind, port } => {
            bind_tcp(fwd, plan(bind.as_deref(), opts.gateway_ports), *port, opts)
        }
    }
}

/// The addresses a TCP plan stands for, in the family allowed.
fn addresses(plan: &BindPlan, port: u16, family: Option<Family>) -> io::Result<Vec<SocketAddr>> {
    let ips: Vec<SocketAddr> = match plan {
        BindPlan::Wildcard => vec![
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ],
        BindPlan::Loopback => vec![
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ],
        BindPlan::Address(a) => match a.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (a.as_str(), port).to_socket_addrs()?.collect(),
        },
    };
    Ok(ips
        .into_iter()
        .filter(|a| match family {
            None => true,
            Some(Family::Inet) => a.is_ipv4(),
            Some(Family::Inet6) => a.is_ipv6(),
        })
        .collect())
}

/// Every address of the plan: a port in use anywhere is an error (ssh would go on with the
/// other family, and half the applications would meet a refusal); an address this host
/// lacks (`::1` where IPv6 is off) is not, as long as one address listens.
fn bind_tcp(
    fwd: &HeldForward,
    plan: BindPlan,
    port: u16,
    opts: &BindOptions,
) -> Result<Vec<Listener>, BindError> {
    let fail = |what: String, error| BindError {
        spec: fwd.spec.clone(),
        what,
        error,
    };
    let shown = match &plan {
        BindPlan::Address(a) => format!("{a} port {port}"),
        other => format!("{other:?} port {port}").to_lowercase(),
    };
    let addrs = addresses(&plan, port, opts.family).map_err(|e| fail(shown.clone(), e))?;
    let mut out = Vec::new();
    let mut last = None;
    for a in addrs {
        match listen_tcp(a) {
            Ok(l) => out.push(Listener::Tcp(l)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(fail(a.to_string(), e)),
            Err(e) => last = Some((a, e)),
        }
    }
    match (out.is_empty(), last) {
        (false, _) => Ok(out),
        (true, Some((a, e))) => Err(fail(a.to_string(), e)),
        (true, None) => Err(fail(
            shown,
            io::Error::new(io::ErrorKind::AddrNotAvailable, "no address of that family"),
        )),
    }
}

fn listen_tcp(a: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(a), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if a.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&a.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn bind_unix(fwd: &HeldForward, path: &PathBuf, opts: &BindOptions) -> Result<Listener, BindError> {
    let fail = |error| BindError {
        spec: fwd.spec.clone(),
        what: path.display().to_string(),
        error,
    };
    if opts.unix_unlink {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
    }
    // The socket's mode comes from the umask at bind time, as ssh does it.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        opts.unix_mask as _,
    ));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = bound.map_err(fail)?;
    l.set_nonblocking(true).map_err(fail)?;
    Ok(Listener::Unix {
        listener: UnixListener::from_std(l),
        path: path.clone(),
        ours: true,
    })
}

/// Listeners systemd passed (`LISTEN_FDS`, `LISTEN_PID`), taken once: the variables are
/// removed so that ssh does not see them.
pub fn activated() -> Vec<OwnedFd> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !ours || n <= 0 {
        return Vec::new();
    }
    (3..3 + n)
        .filter_map(|fd| {
            // SAFETY: fcntl on a descriptor number: fails harmlessly if it is not open.
            let open = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
            // SAFETY: systemd hands these descriptors to us, open, from 3 on; each is
            // owned once.
            open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

/// Takes from `fds` the listeners that serve `fwd` (the same port, or the same socket path).
pub fn adopt(fwd: &HeldForward, fds: &mut Vec<OwnedFd>) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < fds.len() {
        let sock = socket2::SockRef::from(&fds[i]);
        let serves = match (&fwd.listen, sock.local_addr()) {
            (Listen::Tcp { port, .. }, Ok(a)) => a.as_socket().is_some_and(|s| s.port() == *port),
            (Listen::Unix(p), Ok(a)) => a.as_pathname() == Some(p.as_path()),
            _ => false,
        };
        if !serves {
            i += 1;
            continue;
        }
        let fd = fds.remove(i);
        let _ = socket2::SockRef::from(&fd).set_nonblocking(true);
        out.push(match &fwd.listen {
            Listen::Tcp { .. } => Listener::Tcp(TcpListener::from_std(fd.into())),
            Listen::Unix(p) => Listener::Unix {
                listener: UnixListener::from_std(fd.into()),
                path: p.clone(),
                ours: false,
            },
        });
    }
    out
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            path, ours: true, ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

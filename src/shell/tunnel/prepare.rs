//! Before a tunnel starts: `ssh -G`'s answer (every tunnel's at once, one per distinct
//! argument list), its monitor's ports (bound or picked), its held forwards' listeners (bound
//! as ssh would, or taken from systemd), and its private socket directory.

use super::Prepared;
use crate::error::{runtime, usage, Result};
use crate::setup::config::{AgentMode, Settings};
use crate::setup::ssh_argv::Forwards;
use crate::shell::private_dir::PrivateDir;
use crate::shell::relay::listen::{self, Listener};
use log::{info, warn};
use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The held forwards' listeners, and whether a planned restart can be make-before-break.
pub struct HeldParts {
    /// (forward index, listener): a forward may listen on several addresses.
    pub listeners: Vec<(usize, Listener)>,
    /// ssh binds nothing itself that two sessions could not both bind (no `-R`, `-D`, or
    /// forward from ssh_config beside the held ones).
    pub handover: bool,
}

/// `ssh -G`'s answer for each of these tunnels that needs one before it starts (held
/// forwards bind as it says; autossh's agent loads the identities it names), all run at once,
/// one per distinct ssh and argument list (tunnels that differ only in their held forwards
/// share one). `None`: not needed, failed or late.
pub fn look_up(all: &[&Settings]) -> Vec<Option<Rc<str>>> {
    let needs = |s: &Settings| !s.held.forwards.is_empty() || s.agent != AgentMode::No;
    let mut lists: Vec<(&OsString, &[OsString])> = Vec::new();
    let index: Vec<Option<usize>> = all
        .iter()
        .map(|s| {
            let key = (&s.ssh_path, s.held.rest.as_slice());
            needs(s).then(|| match lists.iter().position(|l| *l == key) {
                Some(k) => k,
                None => {
                    lists.push(key);
                    lists.len() - 1
                }
            })
        })
        .collect();
    let answers: Vec<Option<Rc<str>>> = crate::shell::ssh_g::configs(&lists)
        .into_iter()
        .map(|a| a.map(Rc::from))
        .collect();
    index
        .into_iter()
        .map(|k| k.and_then(|k| answers[k].clone()))
        .collect()
}

/// The monitor's ports and the held forwards' listeners, before anything is started or
/// detached (errors reach the terminal). `activated`: listeners systemd passed, taken by
/// the forwards they serve; `answer`: `ssh -G`'s, when [`look_up`] had it (else the held
/// forwards ask it here).
pub fn prepare(
    s: &Settings,
    activated: &mut Vec<OwnedFd>,
    answer: Option<Rc<str>>,
) -> Result<Prepared> {
    let (forwards, listener) = prepare_monitor(s)?;
    let held = held(s, activated, answer.as_deref())?;
    Ok(Prepared {
        forwards,
        listener,
        dir: None,
        held,
        ssh_g: answer,
    })
}

/// Whether the tunnel needs autossh's private directory: for the session probe's socket or
/// held forwards' sockets.
pub fn needs_dir(s: &Settings, p: &Prepared) -> bool {
    p.held.is_some() || wants_session_probe(s, &p.forwards)
}

/// Once started for good (detached): the tunnel gets the private directory it needs. Without
/// one (it could not be made), `-M 0` goes without the session probe, with a warning; held
/// forwards cannot do without it.
pub fn private_dir(
    s: &Settings,
    mut p: Prepared,
    dir: Option<&Rc<PrivateDir>>,
) -> Result<Prepared> {
    let session = wants_session_probe(s, &p.forwards);
    if p.forwards == Forwards::Off && s.session_probe && !session {
        info!("-W or ClearAllForwardings: no session probe; ServerAlive watches the tunnel");
    }
    if !session && p.held.is_none() {
        return Ok(p);
    }
    match dir {
        Some(d) => {
            if session {
                p.forwards = Forwards::Session;
            }
            p.dir = Some(d.clone());
        }
        None if p.held.is_some() => {
            return Err(runtime(format!(
                "no private directory in {} for the held forwards' sockets",
                std::env::temp_dir().display()
            )))
        }
        None => warn!("no directory for the session probe's socket; ServerAlive only"),
    }
    Ok(p)
}

/// The unix sockets this tunnel's held forwards bound (not those systemd passed).
pub fn own_sockets(p: &Prepared) -> Vec<std::path::PathBuf> {
    p.held
        .iter()
        .flat_map(|h| &h.listeners)
        .filter_map(|(_, l)| match l {
            Listener::Unix {
                path, ours: true, ..
            } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Random bits for the probe nonce and port choice.
pub fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
}

/// Binds the loop-mode listener (or picks a free pair) before anything starts.
fn prepare_monitor(s: &Settings) -> Result<(Forwards, Option<TcpListener>)> {
    use crate::setup::cli::MonitorSpec;
    match s.monitor {
        Some(MonitorSpec::Off) => Ok((Forwards::Off, None)),
        Some(MonitorSpec::Echo { port, echo }) => Ok((Forwards::Echo { local: port, echo }, None)),
        Some(MonitorSpec::Loop(port)) => {
            let l = listen_local(port + 1).map_err(|e| {
                runtime(format!(
                    "cannot listen on monitor port 127.0.0.1:{}: {e}",
                    port + 1
                ))
            })?;
            Ok((
                Forwards::Loop {
                    local: port,
                    remote: port,
                },
                Some(l),
            ))
        }
        None => pick_monitor(),
    }
}

/// Neither `-M` nor `AUTOSSH_PORT`: a free pair of ports, as Debian's wrapper picks one.
fn pick_monitor() -> Result<(Forwards, Option<TcpListener>)> {
    let seed = random_u64();
    for i in 0..200u64 {
        let port = 20000 + ((seed.wrapping_add(i * 7919)) % 20000) as u16 * 2;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        if let Ok(l) = listen_local(port + 1) {
            info!(
                "no monitor port given (-M or AUTOSSH_PORT); using {port} and {}",
                port + 1
            );
            let fwd = Forwards::Loop {
                local: port,
                remote: port,
            };
            return Ok((fwd, Some(l)));
        }
    }
    Err(runtime("no free monitor port pair found on 127.0.0.1"))
}

/// `-M 0`, and the session probe not turned off, nor dropped by ssh (`-W`,
/// `ClearAllForwardings`).
fn wants_session_probe(s: &Settings, forwards: &Forwards) -> bool {
    *forwards == Forwards::Off
        && s.session_probe
        && !s.stdio_forward
        && !s.user_o_keys.iter().any(|k| k == "clearallforwardings")
}

/// Whether, with these settings, ssh binds nothing itself that two sessions could not both
/// bind (asked of `ssh -G`): a planned restart can then be make-before-break.
pub fn handover_allowed(s: &Settings) -> bool {
    match crate::shell::ssh_g::config(&s.ssh_path, &s.held.rest) {
        Some(text) => !listen::bind_options(&text).1,
        None => false,
    }
}

/// The held forwards' listeners: how ssh would bind them is asked of `ssh -G` (GatewayPorts,
/// AddressFamily, StreamLocalBind*, from ssh_config too), which also tells whether ssh binds
/// anything else itself.
fn held(
    s: &Settings,
    activated: &mut Vec<OwnedFd>,
    answer: Option<&str>,
) -> Result<Option<HeldParts>> {
    if s.held.forwards.is_empty() {
        return Ok(None);
    }
    let asked;
    let text = match answer {
        Some(t) => Some(t),
        None => {
            asked = crate::shell::ssh_g::config(&s.ssh_path, &s.held.rest);
            asked.as_deref()
        }
    };
    let (opts, others) = match text {
        Some(text) => listen::bind_options(text),
        None => (listen::command_line_options(&s.held.rest), true),
    };
    let mut listeners = Vec::new();
    for (i, f) in s.held.forwards.iter().enumerate() {
        let adopted = listen::adopt(f, activated);
        let ls = if adopted.is_empty() {
            listen::bind(f, &opts).map_err(|e| usage(e.to_string()))?
        } else {
            info!("{}: listening on what systemd passed", f.spec);
            adopted
        };
        listeners.extend(ls.into_iter().map(|l| (i, l)));
    }
    Ok(Some(HeldParts {
        listeners,
        handover: !others,
    }))
}

/// The loop-mode listener on 127.0.0.1:`port`, with a deep accept queue: a burst of
/// connections from other local processes must not keep ssh's loop connection waiting.
fn listen_local(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

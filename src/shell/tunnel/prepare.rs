//! Before a tunnel starts: its monitor's ports (bound or picked) and the session probe's socket directory.

use super::Prepared;
use crate::error::{runtime, Result};
use crate::setup::config::Settings;
use crate::setup::ssh_argv::Forwards;
use log::{info, warn};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

/// The monitor's ports, before anything is started or detached (errors reach the terminal).
pub fn monitor(s: &Settings) -> Result<Prepared> {
    let (forwards, listener) = prepare_monitor(s)?;
    Ok(Prepared {
        forwards,
        listener,
        session_socket: None,
    })
}

/// `-M 0`: the session probe's socket directory, once started for good (see
/// [`prepare_session_probe`]).
pub fn session_probe(s: &Settings, mut p: Prepared) -> Prepared {
    let (forwards, socket) = prepare_session_probe(s, p.forwards);
    p.forwards = forwards;
    p.session_socket = socket;
    p
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
        None => {
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
                    return Ok((
                        Forwards::Loop {
                            local: port,
                            remote: port,
                        },
                        Some(l),
                    ));
                }
            }
            Err(runtime("no free monitor port pair found on 127.0.0.1"))
        }
    }
}

/// `-M 0`: the session probe's socket directory, unless the probe is turned off or ssh
/// would drop its forward (`-W`, `ClearAllForwardings`). A directory that cannot be made
/// leaves `-M 0` as it was, with a warning.
fn prepare_session_probe(
    s: &Settings,
    forwards: Forwards,
) -> (Forwards, Option<crate::shell::probe_conn::SessionSocket>) {
    if forwards != Forwards::Off || !s.session_probe {
        return (forwards, None);
    }
    if s.stdio_forward || s.user_o_keys.iter().any(|k| k == "clearallforwardings") {
        info!("-W or ClearAllForwardings: no session probe; ServerAlive watches the tunnel");
        return (forwards, None);
    }
    match crate::shell::probe_conn::SessionSocket::create(random_u64()) {
        Ok(sock) => {
            let socket = sock.path().to_path_buf();
            (Forwards::Session { socket }, Some(sock))
        }
        Err(e) => {
            warn!("cannot make a directory for the session probe ({e}); ServerAlive only");
            (forwards, None)
        }
    }
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

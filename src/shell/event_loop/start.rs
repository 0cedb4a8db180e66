//! Before the loop and after it: the monitor's ports, the session probe's socket, the pid file, detaching, and the last report.

use super::*;

/// Runs autossh to the end; returns the exit code.
pub fn run(settings: Settings) -> Result<i32> {
    let (forwards, listener) = prepare_monitor(&settings)?;
    let mut pidfile = settings.pidfile.as_deref().map(Pidfile::lock).transpose()?;
    let notifier = if settings.daemon {
        let n = daemon::detach()?;
        if settings.logfile.is_none() {
            crate::setup::logging::switch_to_syslog();
        }
        Some(n)
    } else {
        None
    };
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }
    // Started for good (past the checks, detached): what is said now goes to the log.
    let (forwards, session_socket) = prepare_session_probe(&settings, forwards);
    if !settings.sharing_asked {
        info!(
            "ssh runs with ControlMaster=no and ControlPath=none: the supervised ssh holds the \
             session itself (set either on autossh's command line to share a connection)"
        );
    }
    let mut runner = Runner::new(settings, forwards, listener, notifier)?;
    runner.session_socket = session_socket;
    let code = runner.run();
    runner.cleanup();
    // A last report says "stopped".
    runner.last_report = None;
    runner.report();
    drop(pidfile);
    code
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

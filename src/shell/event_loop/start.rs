//! Before the loop and after it: the monitor's ports, the pid file, detaching, the control
//! socket, and the last report.

use super::*;
use crate::setup::daemon;
use crate::setup::pidfile::Pidfile;
use crate::shell::tunnel::prepare;

/// The HTTP endpoint's socket, bound before anything starts (a port in use ends autossh).
fn bind_http(s: &Settings) -> Result<Option<HttpServer>> {
    Ok(s.http.as_ref().map(HttpServer::bind).transpose()?)
}

/// Runs the command line's single tunnel to the end; returns the exit code.
pub fn run(settings: Settings) -> Result<i32> {
    let prepared = prepare::monitor(&settings)?;
    let http = bind_http(&settings)?;
    let (pidfile, notifier) = settle_process(&settings)?;
    // Started for good (past the checks, detached): what is said now goes to the log.
    let prepared = prepare::session_probe(&settings, prepared);
    if !settings.sharing_asked {
        info!(
            "ssh runs with ControlMaster=no and ControlPath=none: the supervised ssh holds the \
             session itself (set either on autossh's command line to share a connection)"
        );
    }
    let mut runner = Runner::new(settings.clone(), notifier)?;
    if let Some(h) = http {
        runner.serve(h)?;
    }
    let spec = Spec {
        name: None,
        settings,
        gated: false,
        reserved: Vec::new(),
    };
    let tunnel = Tunnel::new(spec, prepared, 0, runner.poll.registry())?;
    runner.add(tunnel, None);
    finish(runner, pidfile)
}

/// Runs every tunnel of `file` (`--tunnels`); `process`: the settings of the whole process
/// (from the environment), `control`: the control socket's path.
pub fn run_tunnels(process: Settings, file: PathBuf, control: PathBuf) -> Result<i32> {
    let env = |k: &str| std::env::var_os(k);
    let defs = crate::setup::tunnels_file::load(&file, &env)?;
    // Another autossh on the same socket says so before its ports get in the way.
    let mut control = ControlServer::bind(&control)?;
    let http = bind_http(&process)?;
    // Everything that can fail is done before anything starts: the monitors' ports bound
    // and the control socket made, or nothing is left behind.
    let mut prepared = Vec::with_capacity(defs.len());
    for d in &defs {
        let _log = tunnel_context(Some(&std::rc::Rc::from(d.name.as_str())));
        let p = prepare::monitor(&d.settings).map_err(|e| {
            crate::error::usage(format!(
                "{}:{}: tunnel {:?}: {e}",
                file.display(),
                d.line,
                d.name
            ))
        })?;
        prepared.push(p);
    }
    let (pidfile, notifier) = settle_process(&process)?;
    let mut runner = Runner::new(process, notifier)?;
    if let Some(h) = http {
        runner.serve(h)?;
    }
    control
        .register(runner.poll.registry())
        .map_err(|e| runtime(format!("poll: {e}")))?;
    info!(
        "{} tunnels from {}; control socket {}",
        defs.len(),
        file.display(),
        control.path().display()
    );
    runner.fleet = Some(Fleet {
        file,
        control: Some(control),
        gate: Handshakes::default(),
        ready_by: Instant::now() + Duration::from_secs(30),
        ready_sent: false,
        failures: false,
        pending: Vec::new(),
        checks: Default::default(),
    });
    for (i, (def, p)) in defs.into_iter().zip(prepared).enumerate() {
        let _log = tunnel_context(Some(&std::rc::Rc::from(def.name.as_str())));
        let p = prepare::session_probe(&def.settings, p);
        let tunnel = Tunnel::new(spec_of(&def), p, i, runner.poll.registry())?;
        runner.add(tunnel, Some(def));
    }
    if let Some(n) = runner.notifier.as_mut() {
        n.started();
    }
    finish(runner, pidfile)
}

/// The pid file locked and written, and the process detached for `-f`.
fn settle_process(s: &Settings) -> Result<(Option<Pidfile>, Option<Notifier>)> {
    let mut pidfile = s.pidfile.as_deref().map(Pidfile::lock).transpose()?;
    let notifier = if s.daemon {
        let n = daemon::detach()?;
        if s.logfile.is_none() {
            crate::setup::logging::switch_to_syslog();
        }
        Some(n)
    } else {
        None
    };
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }
    Ok((pidfile, notifier))
}

/// Runs the loop, then leaves nothing behind and says "stopped" a last time.
/// The pid file goes last, once ssh is gone and the last report written.
fn finish(mut runner: Runner, pidfile: Option<Pidfile>) -> Result<i32> {
    let code = runner.run();
    runner.cleanup();
    runner.write_files(Time::now());
    drop(runner);
    drop(pidfile);
    code
}

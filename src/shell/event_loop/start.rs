//! Before the loop and after it: the monitor's ports, the pid file, detaching, the control
//! socket, and the last report.

use super::*;
use crate::setup::daemon;
use crate::setup::pidfile::Pidfile;
use crate::shell::agent;
use crate::shell::janitor::Janitor;
use crate::shell::private_dir::PrivateDir;
use crate::shell::relay::listen;
use crate::shell::tunnel::prepare;
use crate::shell::tunnel::Prepared;
use log::warn;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The HTTP endpoint's socket, bound before anything starts (a port in use ends autossh).
fn bind_http(s: &Settings) -> Result<Option<HttpServer>> {
    Ok(s.http.as_ref().map(HttpServer::bind).transpose()?)
}

/// Runs the command line's single tunnel to the end; returns the exit code.
pub fn run(settings: Settings) -> Result<i32> {
    // A bad endpoint ends autossh before anything runs, `ssh -G` included.
    let http = bind_http(&settings)?;
    let mut activated = listen::activated();
    let answer = prepare::look_up(&[&settings]).pop().flatten();
    let prepared = prepare::prepare(&settings, &mut activated, answer)?;
    let (pidfile, mut notifier) = settle_process(&settings)?;
    // Started for good (past the checks, detached): what is said now goes to the log.
    settle_descriptors(activated, prepared.held.is_some());
    let keys = agent_keys(&[(&settings, prepared.ssh_g.as_deref())]);
    let needs = prepare::needs_dir(&settings, &prepared) || !keys.is_empty();
    let mut place = private_place(needs, &[&prepared]);
    start_agent(keys, &settings.ssh_path, &mut place, notifier.as_mut())?;
    let prepared = prepare::private_dir(&settings, prepared, place.dir.as_ref())?;
    if !settings.sharing_asked {
        info!(
            "ssh runs with ControlMaster=no and ControlPath=none: the supervised ssh holds the \
             session itself (set either on autossh's command line to share a connection)"
        );
    }
    let mut runner = Runner::new(settings.clone(), notifier, place)?;
    if let Some(h) = http {
        runner.serve(h)?;
    }
    let spec = Spec {
        agent: runner
            .place
            .agent
            .as_ref()
            .map(|a| a.socket().to_path_buf()),
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
    let control = ControlServer::bind(&control)?;
    let http = bind_http(&process)?;
    let mut activated = listen::activated();
    let prepared = prepare_all(&file, &defs, &mut activated)?;
    let (pidfile, mut notifier) = settle_process(&process)?;
    settle_descriptors(activated, prepared.iter().any(|p| p.held.is_some()));
    // A reload may bring a tunnel that needs it: many tunnels always have one.
    let mut place = private_place(true, &prepared.iter().collect::<Vec<_>>());
    let all: Vec<_> = defs
        .iter()
        .zip(&prepared)
        .map(|(d, p)| (&d.settings, p.ssh_g.as_deref()))
        .collect();
    let keys = agent_keys(&all);
    start_agent(keys, &process.ssh_path, &mut place, notifier.as_mut())?;
    let mut runner = Runner::new(process, notifier, place)?;
    runner.open_fleet(file, control, http, defs.len())?;
    runner.add_tunnels(defs, prepared)?;
    if let Some(n) = runner.notifier.as_mut() {
        n.started();
    }
    finish(runner, pidfile)
}

/// Everything of the file's tunnels that can fail, done before anything starts: `ssh -G`'s
/// answers (all at once), the monitors' ports and the held forwards' listeners bound. An
/// error names the file, the line and the tunnel, and leaves nothing behind.
fn prepare_all(
    file: &Path,
    defs: &[TunnelDef],
    activated: &mut Vec<OwnedFd>,
) -> Result<Vec<Prepared>> {
    let all: Vec<&Settings> = defs.iter().map(|d| &d.settings).collect();
    let answers = prepare::look_up(&all);
    defs.iter()
        .zip(answers)
        .map(|(d, answer)| {
            let _log = tunnel_context(Some(&std::rc::Rc::from(d.name.as_str())));
            prepare::prepare(&d.settings, activated, answer).map_err(|e| {
                crate::error::usage(format!(
                    "{}:{}: tunnel {:?}: {e}",
                    file.display(),
                    d.line,
                    d.name
                ))
            })
        })
        .collect()
}

impl Runner {
    /// `--tunnels`: the HTTP endpoint served, the control socket registered, and what only
    /// many tunnels have (handshake slots, shared checks, reload).
    fn open_fleet(
        &mut self,
        file: PathBuf,
        mut control: ControlServer,
        http: Option<HttpServer>,
        count: usize,
    ) -> Result<()> {
        if let Some(h) = http {
            self.serve(h)?;
        }
        control
            .register(self.poll.registry())
            .map_err(|e| runtime(format!("poll: {e}")))?;
        info!(
            "{count} tunnels from {}; control socket {}",
            file.display(),
            control.path().display()
        );
        self.fleet.source = Source::File {
            file,
            control,
            ready_by: Instant::now() + Duration::from_secs(30),
        };
        Ok(())
    }

    /// The file's tunnels, each in its slot with the private directory it needs.
    fn add_tunnels(&mut self, defs: Vec<TunnelDef>, prepared: Vec<Prepared>) -> Result<()> {
        for (i, (def, p)) in defs.into_iter().zip(prepared).enumerate() {
            let _log = tunnel_context(Some(&std::rc::Rc::from(def.name.as_str())));
            let p = prepare::private_dir(&def.settings, p, self.place.dir.as_ref())?;
            let spec = spec_of(&def, self.place.agent.as_ref());
            let tunnel = Tunnel::new(spec, p, i, self.poll.registry())?;
            self.add(tunnel, Some(def));
        }
        Ok(())
    }
}

/// autossh's private directory (when `needed`) and its janitor, which removes it and the unix
/// sockets the tunnels bound even if autossh is killed.
fn private_place(needed: bool, prepared: &[&Prepared]) -> Place {
    if !needed {
        return Place::default();
    }
    let dir = match PrivateDir::create(prepare::random_u64()) {
        Ok(d) => std::rc::Rc::new(d),
        Err(e) => {
            warn!(
                "cannot make a private directory in {}: {e}",
                std::env::temp_dir().display()
            );
            return Place::default();
        }
    };
    let sockets: Vec<_> = prepared
        .iter()
        .flat_map(|p| prepare::own_sockets(p))
        .collect();
    let janitor = Janitor::start(dir.path(), &sockets)
        .inspect_err(|e| warn!("no janitor ({e}): a killed autossh leaves its sockets"))
        .ok();
    Place {
        agent: None,
        dir: Some(dir),
        _janitor: janitor,
    }
}

/// The keys with a passphrase autossh's agent must hold for these tunnels (each with
/// `ssh -G`'s answer; none: no agent).
fn agent_keys(all: &[(&Settings, Option<&str>)]) -> Vec<PathBuf> {
    match all.first() {
        Some((s, _)) => agent::keys_to_load(all, &agent::Tools::beside(&s.ssh_path)),
        None => Vec::new(),
    }
}

/// autossh's own ssh-agent for `keys`, in the private directory, loaded once: on this
/// terminal, or with `-f` by the waiting parent on its terminal. A key that cannot be
/// loaded ends autossh (one line) with nothing left running.
fn start_agent(
    keys: Vec<PathBuf>,
    ssh: &std::ffi::OsString,
    place: &mut Place,
    notifier: Option<&mut Notifier>,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let tools = agent::Tools::beside(ssh);
    let fail = |e: String, n: Option<&mut Notifier>| {
        if let Some(n) = n {
            n.failed(&e);
        }
        runtime(e)
    };
    let Some(dir) = place.dir.as_ref() else {
        return Err(fail(
            "no private directory for autossh's ssh-agent".into(),
            notifier,
        ));
    };
    let a = agent::Agent::start(&tools, dir.socket("agent.sock"), keys.clone())
        .map_err(|e| runtime(e.to_string()))?;
    let loaded = match notifier {
        Some(n) => n
            .load_keys(&tools.add, a.socket(), &keys)
            .map_err(|e| fail(e, Some(n))),
        None => agent::load(&tools, a.socket(), &keys).map_err(|e| runtime(e.to_string())),
    };
    loaded?;
    info!(
        "autossh's ssh-agent holds {} key(s); every ssh uses it",
        keys.len()
    );
    place.agent = Some(a);
    Ok(())
}

/// Once started for good: listeners systemd passed that no forward took are closed (with a
/// warning), the private directories of killed autossh processes removed, and with held
/// forwards the open-files limit raised (two descriptors a relayed connection).
fn settle_descriptors(unused: Vec<std::os::fd::OwnedFd>, held: bool) {
    if !unused.is_empty() {
        warn!(
            "{} listener(s) passed by systemd match no held forward; closed",
            unused.len()
        );
    }
    crate::shell::private_dir::remove_stale();
    if held {
        crate::shell::fdlimit::raise();
    }
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

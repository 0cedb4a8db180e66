//! autossh's own ssh-agent: a key with a passphrase is asked for once, with OpenSSH's own
//! prompt (`ssh-add`: the terminal, or SSH_ASKPASS), before `-f` detaches, and kept in an
//! ssh-agent that autossh runs on a socket in its private directory; every ssh gets
//! `-o IdentityAgent=<socket>`, so no restart asks again and the key never lies decrypted
//! anywhere but in that agent. The agent is autossh's child: it dies with autossh, and one
//! that dies meanwhile is started again and refilled when a prompt can be had (SSH_ASKPASS).

use crate::setup::config::{AgentMode, Settings};
use log::{debug, info, warn};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ssh-add gets this long to load the keys (a person typing a passphrase included).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// The agent's socket must appear within this.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the agent could not be made ready.
#[derive(Debug)]
pub enum AgentError {
    /// A program of OpenSSH's could not be run.
    Run { program: PathBuf, error: String },
    /// ssh-agent did not make its socket.
    NoSocket,
    /// ssh-add did not load the keys: what it said last.
    Load { keys: Vec<PathBuf>, said: String },
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Run { program, error } => {
                write!(f, "cannot run {}: {error}", program.display())
            }
            AgentError::NoSocket => write!(
                f,
                "autossh's ssh-agent made no socket within {} s",
                START_TIMEOUT.as_secs()
            ),
            AgentError::Load { keys, said } => {
                let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
                write!(
                    f,
                    "cannot load {} into autossh's ssh-agent: {said}",
                    names.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for AgentError {}

/// OpenSSH's programs: beside the ssh autossh runs, or on PATH.
#[derive(Debug, Clone)]
pub struct Tools {
    agent: PathBuf,
    /// ssh-add (`-f`'s waiting parent runs it too).
    pub add: PathBuf,
    keygen: PathBuf,
}

impl Tools {
    pub fn beside(ssh: &OsString) -> Tools {
        let dir = Path::new(ssh)
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        let find = |name: &str| -> PathBuf {
            dir.map(|d| d.join(name))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from(name))
        };
        Tools {
            agent: find("ssh-agent"),
            add: find("ssh-add"),
            keygen: find("ssh-keygen"),
        }
    }
}

/// The keys autossh's agent must hold for these tunnels (each with `ssh -G`'s answer, looked
/// up before): identities ssh would offer that need a passphrase (and, with `auto`, that the
/// user's own agent does not hold). Each key is looked at once, however many tunnels use it.
pub fn keys_to_load(all: &[(&Settings, Option<&str>)], tools: &Tools) -> Vec<PathBuf> {
    // A key any tunnel wants in autossh's agent whatever the user's agent holds: `yes` wins.
    let mut modes: BTreeMap<PathBuf, AgentMode> = BTreeMap::new();
    for (s, answer) in all.iter().filter(|(s, _)| s.agent != AgentMode::No) {
        for key in identities(s, *answer) {
            let mode = modes.entry(key).or_insert(s.agent);
            if s.agent != AgentMode::Auto {
                *mode = s.agent;
            }
        }
    }
    let mut wanted = Vec::new();
    for (key, mode) in modes {
        if !encrypted(tools, &key) {
            continue;
        }
        if mode == AgentMode::Auto && user_agent_holds(tools, &key) {
            debug!("{}: your ssh-agent holds it", key.display());
            continue;
        }
        wanted.push(key);
    }
    wanted
}

/// The identity files ssh would offer: `-i`, `-o IdentityFile`, systemd's credentials, and
/// the `identityfile` lines of `ssh -G`'s `answer` (ssh_config, defaults), those that exist.
fn identities(s: &Settings, answer: Option<&str>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = s.credentials.clone();
    let args: Vec<String> = s
        .ssh_args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for (i, a) in args.iter().enumerate() {
        let value = match a.as_str() {
            "-i" => args.get(i + 1).cloned(),
            _ if a.starts_with("-i") && a.len() > 2 => Some(a[2..].to_string()),
            _ => None,
        };
        out.extend(value.map(PathBuf::from));
    }
    if let Some(text) = answer {
        out.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("identityfile "))
                .map(expand_home),
        );
    }
    let mut seen = BTreeSet::new();
    out.retain(|p| p.is_file() && seen.insert(p.clone()));
    out
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Whether the private key `key` needs a passphrase (`ssh-keygen -y` with an empty one
/// fails saying so).
fn encrypted(tools: &Tools, key: &Path) -> bool {
    let out = Command::new(&tools.keygen)
        .args(["-y", "-P", "", "-f"])
        .arg(key)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => false,
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("passphrase"),
        Err(_) => false,
    }
}

/// Whether the agent at SSH_AUTH_SOCK holds `key` (by fingerprint).
fn user_agent_holds(tools: &Tools, key: &Path) -> bool {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return false;
    }
    let Some(fp) = fingerprint(tools, key) else {
        return false;
    };
    let listed = Command::new(&tools.add)
        .arg("-l")
        .stdin(Stdio::null())
        .output();
    listed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&fp))
}

/// `SHA256:...` of a key (its public half, in the file or beside it).
fn fingerprint(tools: &Tools, key: &Path) -> Option<String> {
    let mut pubkey = key.as_os_str().to_owned();
    pubkey.push(".pub");
    for f in [key.to_path_buf(), PathBuf::from(pubkey)] {
        let out = Command::new(&tools.keygen)
            .args(["-l", "-f"])
            .arg(&f)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(fp) = text.split_whitespace().nth(1) {
            return Some(fp.to_string());
        }
    }
    None
}

/// Runs `ssh-add keys` against the agent at `socket`, prompting as OpenSSH does (the
/// terminal, or SSH_ASKPASS); bounded by [`LOAD_TIMEOUT`].
pub fn load(tools: &Tools, socket: &Path, keys: &[PathBuf]) -> Result<(), AgentError> {
    load_with(&tools.add, socket, keys)
}

/// [`load`] with this `ssh-add` (the `-f` parent runs it for the child).
pub fn load_with(add: &Path, socket: &Path, keys: &[PathBuf]) -> Result<(), AgentError> {
    let mut child = Command::new(add)
        .args(keys)
        .env("SSH_AUTH_SOCK", socket)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| AgentError::Run {
            program: add.to_path_buf(),
            error: e.to_string(),
        })?;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().ok().flatten() {
            break Some(st);
        }
        if start.elapsed() > LOAD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut said = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut said);
    }
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let no_prompt = std::fs::File::open("/dev/tty").is_err()
        && std::env::var_os("SSH_ASKPASS").is_none_or(|a| a.is_empty());
    let why = if said.contains("Bad passphrase") {
        "the passphrase was wrong".to_string()
    } else if no_prompt {
        "no terminal to ask for the passphrase on, and no SSH_ASKPASS".to_string()
    } else if last.is_empty() || last.starts_with("Enter passphrase") {
        // Through SSH_ASKPASS, ssh-add says nothing more.
        "the passphrase was wrong, or the prompt was cancelled".to_string()
    } else {
        last
    };
    match status {
        Some(st) if st.success() => Ok(()),
        Some(st) => Err(AgentError::Load {
            keys: keys.to_vec(),
            said: if why.is_empty() { st.to_string() } else { why },
        }),
        None => Err(AgentError::Load {
            keys: keys.to_vec(),
            said: format!("no passphrase within {} s", LOAD_TIMEOUT.as_secs()),
        }),
    }
}

/// Whether a prompt can be had without a terminal (to refill an agent that died).
fn askpass_available() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let require = std::env::var("SSH_ASKPASS_REQUIRE").unwrap_or_default();
    set("SSH_ASKPASS")
        && (require == "force" || require == "prefer" || set("DISPLAY") || set("WAYLAND_DISPLAY"))
}

/// The running agent.
pub struct Agent {
    child: Child,
    socket: PathBuf,
    keys: Vec<PathBuf>,
    tools: Tools,
    /// A refill running (after the agent died and was started again).
    refill: Option<Child>,
}

impl Agent {
    /// Starts `ssh-agent -D -a <socket>` and waits until its socket takes connections.
    pub fn start(tools: &Tools, socket: PathBuf, keys: Vec<PathBuf>) -> Result<Agent, AgentError> {
        let child = spawn_agent(tools, &socket)?;
        Ok(Agent {
            child,
            socket,
            keys,
            tools: tools.clone(),
            refill: None,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn keys(&self) -> &[PathBuf] {
        &self.keys
    }

    /// After SIGCHLD: a refill that ended is collected; an agent that died is started again
    /// and refilled when a prompt can be had (SSH_ASKPASS), else said once.
    pub fn reap(&mut self) {
        if let Some(r) = self.refill.as_mut() {
            match r.try_wait() {
                Ok(Some(st)) if st.success() => info!("autossh's ssh-agent holds the keys again"),
                Ok(Some(st)) => warn!("refilling autossh's ssh-agent failed ({st})"),
                Ok(None) => return,
                Err(_) => {}
            }
            self.refill = None;
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if !askpass_available() {
            warn!(
                "autossh's ssh-agent ended; its keys cannot be asked for again without a \
                 prompt (SSH_ASKPASS): the next ssh cannot use them. Restart autossh."
            );
            return;
        }
        warn!("autossh's ssh-agent ended; starting it again and asking for the passphrase");
        match spawn_agent(&self.tools, &self.socket) {
            Ok(child) => {
                self.child = child;
                self.refill = Command::new(&self.tools.add)
                    .args(&self.keys)
                    .env("SSH_AUTH_SOCK", &self.socket)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok();
            }
            Err(e) => warn!("{e}"),
        }
    }
}

/// `ssh-agent -D -a <socket>` (its own process group: the terminal's signals are autossh's
/// to handle), once its socket is there. It dies with autossh: by the parent-death signal
/// where exec keeps it, else by the janitor, which reads `agent.pid` beside the socket.
fn spawn_agent(tools: &Tools, socket: &Path) -> Result<Child, AgentError> {
    let _ = std::fs::remove_file(socket);
    let mut cmd = Command::new(&tools.agent);
    cmd.arg("-D")
        .arg("-a")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    crate::shell::ssh_process::die_with_autossh(&mut cmd, libc::SIGTERM);
    // No core dump of the decrypted keys (ssh-agent does this itself only when it forks,
    // not under -D). Refused inside a unit's filter, where systemd's LimitCORE applies.
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| AgentError::Run {
        program: tools.agent.clone(),
        error: e.to_string(),
    })?;
    // For the janitor, which stops the agent if autossh is killed (see janitor.rs).
    let _ = std::fs::write(socket.with_file_name("agent.pid"), child.id().to_string());
    let start = Instant::now();
    // Listening, not just bound: the socket's file is there at bind(2), before listen(2),
    // and an ssh-add in between is refused.
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if start.elapsed() > START_TIMEOUT || !matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AgentError::NoSocket);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(child)
}

impl Drop for Agent {
    fn drop(&mut self) {
        for c in self
            .refill
            .iter_mut()
            .chain(std::iter::once(&mut self.child))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

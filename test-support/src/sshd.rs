//! A private OpenSSH server.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::{
    all_stats, cmdline_string, descendants_in, free_port, process_exists, read_lossy, signal_pid,
    wait_until, ProcStat, Signal, TestDir,
};

const SSHD_BIN: &str = "/usr/sbin/sshd";
pub const SSH_BIN: &str = "/usr/bin/ssh";
pub(crate) const SSH_KEYGEN_BIN: &str = "/usr/bin/ssh-keygen";

/// The current user's name (tests log in as themselves, usually root).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string())
}

/// An ed25519 key pair without passphrase at `path` (and `path.pub`).
pub fn keygen(path: &Path, comment: &str) {
    let out = Command::new(SSH_KEYGEN_BIN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SSH_KEYGEN_BIN}: {e}"));
    assert!(
        out.status.success(),
        "ssh-keygen for {} failed: {}\n{}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sshd_config every test server uses (key-only login for `user`, forwarding allowed).
pub fn sshd_config_text(
    port: u16,
    listen: &str,
    host_key: &Path,
    authorized: &Path,
    user: &str,
    pidfile: &Path,
) -> String {
    format!(
        "Port {port}\n\
         ListenAddress {listen}\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized}\n\
         UsePAM no\n\
         StrictModes no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers {user}\n\
         PidFile {pid}\n\
         AllowTcpForwarding yes\n\
         ClientAliveInterval 0\n\
         LogLevel VERBOSE\n\
         MaxStartups 100:30:200\n\
         MaxSessions 100\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         UseDNS no\n",
        host_key = host_key.display(),
        authorized = authorized.display(),
        pid = pidfile.display(),
    )
}

/// A private OpenSSH server on 127.0.0.1:<free port>, with its own host key,
/// client key, authorized_keys, config and log in `<test dir>/sshd/`.
/// Drop kills its sessions and the listener.
pub struct Sshd {
    dir: PathBuf,
    config: PathBuf,
    log_path: PathBuf,
    client_key: PathBuf,
    port: u16,
    user: String,
    listener: Option<Child>,
    listener_pid: i32,
    /// Sessions alive when the listener was stopped: (pid, starttime).
    orphans: Vec<(i32, u64)>,
    /// Sessions [`Sshd::stop_sessions`] signalled: (pid, starttime). A frozen session whose
    /// client went away may outlive its listener, stopped, reparented to init: the drop ends
    /// these too.
    signalled: std::sync::Mutex<Vec<(i32, u64)>>,
    /// Lines appended to the config (e.g. a `Match all` block that forbids forwarding).
    extra_config: String,
}

impl Sshd {
    /// Starts the server; panics (with the log) if it does not listen within
    /// 10 s.
    pub fn start(dir: &TestDir) -> Sshd {
        Sshd::start_with(dir, "")
    }

    /// [`Sshd::start`] with `extra` appended to the config. The base config's values come
    /// first and win (sshd takes the first value of a keyword), so override them in a
    /// `Match all` block; a `MaxStartups` line (global only) replaces the base's.
    pub fn start_with(dir: &TestDir, extra: &str) -> Sshd {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd");
        let sdir = dir.unique("sshd");
        fs::create_dir_all(&sdir).unwrap_or_else(|e| panic!("mkdir {}: {e}", sdir.display()));
        let host_key = sdir.join("host_ed25519_key");
        let client_key = sdir.join("client_ed25519_key");
        keygen(&host_key, "autossh-test-host");
        keygen(&client_key, "autossh-test-client");
        let authorized = sdir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized)
            .unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
        let user = current_user();
        let mut sshd = Sshd {
            config: sdir.join("sshd_config"),
            log_path: sdir.join("sshd.log"),
            client_key,
            port: 0,
            user,
            listener: None,
            listener_pid: 0,
            orphans: Vec::new(),
            signalled: Default::default(),
            extra_config: extra.to_string(),
            dir: sdir,
        };
        let mut last_err = String::new();
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_config(&host_key, &authorized);
            match sshd.spawn_listener(Duration::from_secs(10)) {
                Ok(()) => return sshd,
                Err(e) => {
                    let retry = e.contains("Address already in use") || e.contains("Cannot bind");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("sshd did not start:\n{last_err}");
    }

    fn write_config(&self, host_key: &Path, authorized: &Path) {
        let config = sshd_config_text(
            self.port,
            "127.0.0.1",
            host_key,
            authorized,
            &self.user,
            &self.dir.join("sshd.pid"),
        );
        let own_startups = self
            .extra_config
            .lines()
            .any(|l| l.starts_with("MaxStartups "));
        let config: String = config
            .lines()
            .filter(|l| !(own_startups && l.starts_with("MaxStartups ")))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&self.config, config + &self.extra_config)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config.display()));
    }

    /// Spawns the listener and waits (up to `timeout`) until its log says it
    /// listens on the port. On failure the listener is reaped and the error
    /// carries its log.
    fn spawn_listener(&mut self, timeout: Duration) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("dup {}: {e}", self.log_path.display()))?;
        let offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0) as usize;
        let mut child = Command::new(SSHD_BIN)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot spawn {SSHD_BIN}: {e}"))?;
        let pid = child.id() as i32;
        let want = format!("Server listening on 127.0.0.1 port {}", self.port);
        let mut exited = None;
        let ok = wait_until(timeout, || {
            if let Ok(Some(s)) = child.try_wait() {
                exited = Some(s);
                return true;
            }
            let text = read_lossy(&self.log_path);
            text.get(offset..).is_some_and(|t| t.contains(&want))
        });
        if ok && exited.is_none() {
            self.listener_pid = pid;
            self.listener = Some(child);
            return Ok(());
        }
        let status = match exited {
            Some(s) => s.to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                format!("not listening after {timeout:?}; killed")
            }
        };
        let text = read_lossy(&self.log_path);
        Err(format!(
            "sshd -D -e -f {} on port {}: {status}\n--- sshd log ---\n{}",
            self.config.display(),
            self.port,
            text.get(offset..).unwrap_or(&text)
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Pid of the current listener (the last one started; 0 before start).
    pub fn pid(&self) -> i32 {
        self.listener_pid
    }

    /// True while the listener process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.listener {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// `<user>@127.0.0.1`.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// The ssh client options that reach this server (no ServerAlive*
    /// options: autossh adds those itself), without the destination.
    /// `-F /dev/null` keeps ~/.ssh/config and /etc/ssh/ssh_config out;
    /// `LogLevel=ERROR` drops the "Permanently added ... to the list of known
    /// hosts" warning (errors such as "Permission denied" still show).
    pub fn client_opts(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.client_key.to_string_lossy().into_owned(),
            "-p".into(),
            self.port.to_string(),
        ];
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "ConnectTimeout=5",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v
    }

    /// [`Sshd::client_opts`] followed by [`Sshd::destination`].
    pub fn client_args(&self) -> Vec<String> {
        let mut v = self.client_opts();
        v.push(self.destination());
        v
    }

    fn live_orphans(&self, stats: &[ProcStat]) -> Vec<i32> {
        self.orphans
            .iter()
            .filter(|(pid, start)| {
                stats
                    .iter()
                    .any(|s| s.pid == *pid && s.starttime == *start && s.state != 'Z')
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// The server-side per-connection processes: every live (non-zombie)
    /// descendant of the listener (e.g. "sshd: root [priv]" and
    /// "sshd: root@notty"), plus the sessions that outlived a
    /// [`Sshd::stop`] and their descendants.
    pub fn session_pids(&self) -> Vec<i32> {
        let stats = all_stats();
        let mut roots = Vec::new();
        if self.listener.is_some() && self.listener_pid > 0 {
            roots.push(self.listener_pid);
        }
        let orphans = self.live_orphans(&stats);
        roots.extend(orphans.iter().copied());
        let mut all: Vec<i32> = descendants_in(&stats, &roots);
        all.extend(orphans);
        let live: HashSet<i32> = stats
            .iter()
            .filter(|s| s.state != 'Z' && s.state != 'X')
            .map(|s| s.pid)
            .collect();
        all.retain(|p| live.contains(p) && *p != self.listener_pid);
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The session processes past authentication: command line
    /// "sshd: <user>" (root logins, no separate child), "sshd: <user> [priv]"
    /// or "sshd: <user>@notty"; not the pre-auth "[accepted]", "[net]" or
    /// "[preauth]" ones. With a root login and `ssh -N`, one per connection.
    pub fn logged_in_pids(&self) -> Vec<i32> {
        let prefix = format!("sshd: {}", self.user);
        self.session_pids()
            .into_iter()
            .filter(|&p| {
                let c = cmdline_string(p);
                let c = c.trim_end();
                let rest = match c.strip_prefix(&prefix) {
                    Some(r) => r,
                    None => return false,
                };
                (rest.is_empty() || rest.starts_with(' ') || rest.starts_with('@'))
                    && !rest.contains("[net]")
                    && !rest.contains("[preauth]")
                    && !rest.contains("[accepted]")
            })
            .collect()
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, SIGKILL, ...) to every session process;
    /// returns how many were signalled.
    pub fn stop_sessions(&self, sig: Signal) -> usize {
        let stats = all_stats();
        let pids = self.session_pids();
        if let Ok(mut seen) = self.signalled.lock() {
            for &p in &pids {
                if let Some(st) = stats.iter().find(|s| s.pid == p) {
                    seen.push((p, st.starttime));
                }
            }
        }
        pids.into_iter().filter(|&p| signal_pid(p, sig)).count()
    }

    /// Stops the listener (SIGTERM, then SIGKILL after 5 s) and reaps it.
    /// Established sessions live on (they are still listed by
    /// [`Sshd::session_pids`]).
    pub fn stop(&mut self) {
        let stats = all_stats();
        let sessions = self.session_pids();
        for p in sessions {
            if let Some(s) = stats.iter().find(|s| s.pid == p) {
                if !self.orphans.contains(&(p, s.starttime)) {
                    self.orphans.push((p, s.starttime));
                }
            }
        }
        if let Some(mut child) = self.listener.take() {
            signal_pid(self.listener_pid, Signal::SIGTERM);
            let exited = wait_until(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts the listener again on the same port (stopping it first if it
    /// runs); retries for up to 10 s, panics with the log otherwise.
    pub fn restart(&mut self) {
        if self.listener.is_some() {
            self.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last_err = String::new();
        for _ in 0..50 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.spawn_listener(left) {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not restart on port {}:\n{last_err}", self.port);
    }

    /// The sshd log (all starts).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions first, while the listener is alive to reap them; with those signalled,
        // wherever they are now (the same process: same pid and start time).
        let stats = all_stats();
        let mut sessions = self.session_pids();
        if let Ok(seen) = self.signalled.lock() {
            sessions.extend(seen.iter().filter_map(|&(p, t)| {
                stats
                    .iter()
                    .any(|s| s.pid == p && s.starttime == t)
                    .then_some(p)
            }));
        }
        sessions.sort_unstable();
        sessions.dedup();
        for &p in &sessions {
            signal_pid(p, Signal::SIGCONT);
            signal_pid(p, Signal::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || {
            sessions.iter().all(|&p| !process_exists(p))
        });
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = nix::sys::signal::killpg(Pid::from_raw(self.listener_pid), Signal::SIGKILL);
        }
    }
}

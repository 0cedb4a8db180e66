//! sshd inside the server namespace.

use super::*;

/// OpenSSH's sshd on `<server ip>:22` inside the server namespace, with its
/// own host key, client key, authorized_keys, config and pid file in
/// `<test dir>/nsshd/`. [`NsSshd::kill`] takes it down hard (listener and
/// sessions); [`NsSshd::restart`] brings it back on the same address.
pub struct NsSshd {
    ns: String,
    addr: String,
    dir: PathBuf,
    config: PathBuf,
    client_key: PathBuf,
    user: String,
    listener: Option<Proc>,
    starts: usize,
}

impl NsSshd {
    pub fn start(dir: &TestDir, net: &TestNet) -> NsSshd {
        NsSshd::start_with(dir, net, "ClientAliveInterval 0\n")
    }

    /// As [`NsSshd::start`], with `client_alive` (sshd_config lines) in place of
    /// `ClientAliveInterval 0`: how long the server keeps a session whose client vanished.
    pub fn start_with(dir: &TestDir, net: &TestNet, client_alive: &str) -> NsSshd {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd");
        let sdir = dir.join("nsshd");
        fs::create_dir_all(&sdir).unwrap_or_else(|e| panic!("mkdir {}: {e}", sdir.display()));
        let host_key = sdir.join("host_ed25519_key");
        let client_key = sdir.join("client_ed25519_key");
        keygen(&host_key, "autossh-faults-host");
        keygen(&client_key, "autossh-faults-client");
        let authorized = sdir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized)
            .unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
        let user = current_user();
        let addr = net.srv_ip();
        let config = sdir.join("sshd_config");
        let text = sshd_config_text(
            22,
            &addr.to_string(),
            &host_key,
            &authorized,
            &user,
            &sdir.join("sshd.pid"),
        );
        let text = text.replace("ClientAliveInterval 0\n", client_alive);
        fs::write(&config, text).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let mut sshd = NsSshd {
            ns: net.srv().to_string(),
            addr,
            dir: sdir,
            config,
            client_key,
            user,
            listener: None,
            starts: 0,
        };
        sshd.restart_within(dir, Duration::from_secs(15));
        sshd
    }

    /// Starts the listener (retrying, bounded by `timeout`) and waits until
    /// its log says it listens. Returns when that was seen.
    fn restart_within(&mut self, dir: &TestDir, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        let want = format!("Server listening on {} port 22", self.addr);
        let mut last = String::new();
        for _ in 0..20 {
            if Instant::now() >= deadline {
                break;
            }
            self.starts += 1;
            let p = Cmd::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "/usr/sbin/sshd",
                    "-D",
                    "-e",
                    "-f",
                ])
                .arg(&self.config)
                .name("sshd")
                .spawn(dir);
            let left = deadline.saturating_duration_since(Instant::now());
            let ok = wait_until(left, || p.stderr_text().contains(&want) || !p.is_running());
            if ok && p.is_running() {
                let at = Instant::now();
                self.listener = Some(p);
                return at;
            }
            last = p.describe();
            drop(p);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd in {} did not start:\n{last}", self.ns);
    }

    /// Starts sshd again on the same address (after [`NsSshd::kill`]); returns
    /// the instant it was seen listening.
    pub fn restart(&mut self, dir: &TestDir) -> Instant {
        if self.listener.is_some() {
            self.kill();
        }
        self.restart_within(dir, Duration::from_secs(15))
    }

    /// SIGKILLs the listener and every session process (its descendants, and
    /// then anything else in the server namespace), and waits until they are
    /// gone. Returns how many processes were killed.
    pub fn kill(&mut self) -> usize {
        let mut killed = 0;
        if let Some(p) = self.listener.take() {
            let mut victims = descendants_of(p.pid());
            victims.push(p.pid());
            for &v in &victims {
                signal_pid(v, Signal::SIGKILL);
            }
            killed += victims.len();
            p.kill();
        }
        // Sessions that were already orphaned, if any.
        let rest = netns_pids(&self.ns);
        for &v in &rest {
            signal_pid(v, Signal::SIGKILL);
        }
        killed += rest.len();
        let gone = wait_until(Duration::from_secs(5), || netns_pids(&self.ns).is_empty());
        assert!(
            gone,
            "processes survive in {}: {:?}",
            self.ns,
            netns_pids(&self.ns)
        );
        killed
    }

    pub fn is_running(&self) -> bool {
        self.listener.as_ref().is_some_and(|p| p.is_running())
    }

    /// The log of the current listener (sshd -e writes to stderr).
    pub fn log(&self) -> String {
        self.listener
            .as_ref()
            .map(|p| p.stderr_text())
            .unwrap_or_default()
    }

    /// The logs of all listeners started so far, in order.
    pub fn all_logs(&self, dir: &TestDir) -> String {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let seq: u64 = name
                            .strip_prefix("sshd.")?
                            .strip_suffix(".stderr")?
                            .parse()
                            .ok()?;
                        Some((seq, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        for (_, f) in files {
            let _ = writeln!(
                out,
                "--- {} ---\n{}",
                f.display(),
                String::from_utf8_lossy(&fs::read(&f).unwrap_or_default())
            );
        }
        out
    }

    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `user@addr`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.addr)
    }

    /// autossh in `net`'s client namespace holding `-L tunnel:127.0.0.1:service` to this
    /// server with monitor `-M monitor` (no environment set yet).
    pub fn autossh_in(&self, net: &TestNet, monitor: &str, tunnel: u16, service: u16) -> Cmd {
        Cmd::new("ip")
            .args(["netns", "exec", net.cli()])
            .arg(autossh_bin!())
            .args(["-M", monitor, "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{service}"))
            .args(["-F", "/dev/null", "-i"])
            .arg(self.client_key())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg(self.destination())
            .name("autossh")
    }
}

impl Drop for NsSshd {
    fn drop(&mut self) {
        if let Some(p) = self.listener.take() {
            for v in descendants_of(p.pid()) {
                signal_pid(v, Signal::SIGKILL);
            }
            p.kill();
        }
        kill_all_in(&self.ns);
    }
}

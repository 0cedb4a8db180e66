//! The rig of the running tests: a private sshd, a service behind it (greets, then echoes), a
//! plain echo service for echo-mode monitors, a tunnels file, and `autossh --tunnels FILE
//! --control-socket <test dir>/ctl/ctl.sock`; plus the control commands and their JSON.

pub use super::conn::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::*;

/// A tunnel must be up (status `up` and a request through its `-L` port answered) within this.
pub const UP: Duration = Duration::from_secs(20);
/// Anything else (an exit, a command, a stop) within this.
pub const T: Duration = Duration::from_secs(10);

/// Bounded polling at `every` until `cond` holds (true) or `timeout` passed (false); for
/// conditions that spawn a process (`autossh status`), which [`wait_until`]'s 20 ms would spin.
pub fn poll(timeout: Duration, every: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_every(timeout, every, cond)
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn toml_list<S: AsRef<str>>(v: &[S]) -> String {
    let items: Vec<String> = v.iter().map(|s| toml_str(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// The monitor of a test tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mon {
    /// `-M N` (N..N+3 free: loop mode moves its remote port to N+2 on a loopback server).
    Loop,
    /// `-M N:E`, E the rig's echo service.
    Echo,
    /// `-M 0`.
    Zero,
}

/// One `[tunnel.NAME]` table.
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub name: String,
    pub ssh: Vec<String>,
    pub monitor: String,
    /// The `-L` port on 127.0.0.1 that leads to the rig's service.
    pub local: u16,
    /// Extra `key = value` lines.
    pub keys: Vec<String>,
}

impl Tunnel {
    pub fn key(mut self, line: &str) -> Tunnel {
        self.keys.push(line.to_string());
        self
    }

    pub fn toml(&self) -> String {
        let mut s = format!(
            "[tunnel.{}]\nssh = {}\nmonitor = {}\n",
            toml_str(&self.name),
            toml_list(&self.ssh),
            toml_str(&self.monitor)
        );
        for k in &self.keys {
            s.push_str(k);
            s.push('\n');
        }
        s
    }

    /// The `-L` argument as given in the file.
    pub fn forward(&self) -> String {
        self.ssh
            .iter()
            .find(|a| a.starts_with(&format!("{}:", self.local)))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `arg`, of ssh's command line, stands for this tunnel's forward: autossh holds
    /// it and hands ssh a private socket named after the tunnel.
    pub fn is_its_forward(&self, arg: &str) -> bool {
        let target = self.forward();
        let target = target.split_once(':').map_or("", |(_, t)| t);
        arg.contains(&format!("/{}.", self.name)) && arg.ends_with(&format!(".sock:{target}"))
    }
}

/// One tunnel in `autossh status --json`.
#[derive(Clone, Debug)]
pub struct St {
    pub name: String,
    pub state: String,
    pub ssh_pid: Option<i32>,
    pub up: bool,
    pub restarts: u64,
    pub last_reason: Option<String>,
}

/// `{"tunnels": [...]}` → its entries (name, state and up required).
pub fn parse_status(text: &str) -> Result<Vec<St>, String> {
    let doc = json::parse(text.trim())?;
    let list = doc
        .get("tunnels")
        .and_then(Value::as_array)
        .ok_or("no \"tunnels\" array")?;
    let mut out = Vec::new();
    for t in list {
        let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
        out.push(St {
            name: s("name").ok_or(format!("entry without a name: {t:?}"))?,
            state: s("state").ok_or(format!("entry without a state: {t:?}"))?,
            ssh_pid: t.get("ssh_pid").and_then(Value::as_f64).map(|p| p as i32),
            up: t
                .get("up")
                .and_then(Value::as_bool)
                .ok_or(format!("entry without \"up\": {t:?}"))?,
            restarts: t.get("restarts").and_then(Value::as_f64).unwrap_or(0.0) as u64,
            last_reason: s("last_reason"),
        });
    }
    Ok(out)
}

/// A finished command: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end (killed after [`T`]).
pub fn run(dir: &TestDir, cmd: Cmd) -> Out {
    let p = cmd.spawn(dir);
    let st = p.wait_timeout(T);
    assert!(st.is_some(), "did not exit within {T:?}:\n{}", p.describe());
    Out {
        code: st.and_then(|s| s.code()),
        stdout: p.stdout_text(),
        stderr: p.stderr_text(),
    }
}

/// Everything a running test needs.
pub struct Rig {
    pub dir: TestDir,
    pub sshd: Sshd,
    pub service: Service,
    echo: Option<Echo>,
    pub file: PathBuf,
    pub sock: PathBuf,
    /// `[defaults]` and anything else written before the tunnels.
    pub head: String,
    autossh: Option<Proc>,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with_sshd("")
    }

    /// A rig whose sshd has `extra` in its config (see [`Sshd::start_with`]).
    pub fn with_sshd(extra: &str) -> Rig {
        let dir = TestDir::new();
        let sshd = Sshd::start_with(&dir, extra);
        let file = dir.join("tunnels.toml");
        let sock = dir.join("ctl").join("ctl.sock");
        Rig {
            sshd,
            service: Service::start(),
            echo: None,
            file,
            sock,
            head: String::new(),
            autossh: None,
            dir,
        }
    }

    /// ssh's arguments for `-N -L <local>:127.0.0.1:<service>` with the identity `key`.
    pub fn ssh_args(&self, local: u16, key: &Path) -> Vec<String> {
        let mut v = self.sshd.client_opts();
        let i = v.iter().position(|a| a == "-i").expect("-i in client_opts");
        v[i + 1] = key.to_string_lossy().into_owned();
        v.extend([
            "-N".to_string(),
            "-L".to_string(),
            format!("{local}:127.0.0.1:{}", self.service.port()),
            self.sshd.destination(),
        ]);
        v
    }

    /// A tunnel to the service through the sshd, on a fresh local port, with the rig's key.
    pub fn tunnel(&mut self, name: &str, mon: Mon) -> Tunnel {
        let key = self.sshd.client_key().to_path_buf();
        self.tunnel_with_key(name, mon, &key)
    }

    pub fn tunnel_with_key(&mut self, name: &str, mon: Mon, key: &Path) -> Tunnel {
        let local = free_port();
        let monitor = match mon {
            Mon::Zero => "0".to_string(),
            Mon::Loop => free_loop_ports().to_string(),
            Mon::Echo => {
                let e = self.echo.get_or_insert_with(Echo::start).port;
                format!("{}:{e}", free_port())
            }
        };
        Tunnel {
            name: name.to_string(),
            ssh: self.ssh_args(local, key),
            monitor,
            local,
            keys: Vec::new(),
        }
    }

    /// The file's text for these tunnels.
    pub fn text(&self, tunnels: &[Tunnel]) -> String {
        let mut s = self.head.clone();
        for t in tunnels {
            s.push('\n');
            s.push_str(&t.toml());
        }
        s
    }

    /// Replaces the file (write and rename: autossh never reads half a file).
    pub fn write_text(&self, text: &str) {
        let tmp = self.dir.join("tunnels.toml.new");
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, &self.file).unwrap_or_else(|e| panic!("rename: {e}"));
    }

    pub fn write(&self, tunnels: &[Tunnel]) {
        self.write_text(&self.text(tunnels));
    }

    /// `autossh --tunnels FILE --control-socket SOCK` with GATETIME=0, POLL=5 and `env`.
    pub fn start(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Cmd::new(autossh_bin!())
            .name("autossh")
            .env("AUTOSSH_GATETIME", "0")
            .env("AUTOSSH_POLL", "5")
            .arg("--tunnels")
            .arg(&self.file)
            .arg("--control-socket")
            .arg(&self.sock);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        self.autossh = Some(cmd.spawn(&self.dir));
    }

    pub fn autossh(&self) -> &Proc {
        self.autossh.as_ref().expect("autossh started")
    }

    pub fn log(&self) -> String {
        self.autossh().stderr_text()
    }

    /// `autossh ARGS --control-socket SOCK`, to its end.
    pub fn ctl(&self, args: &[&str]) -> Out {
        let cmd = Cmd::new(autossh_bin!())
            .name("ctl")
            .args(args)
            .arg("--control-socket")
            .arg(&self.sock);
        run(&self.dir, cmd)
    }

    /// `autossh status --json`, parsed.
    pub fn status(&self) -> Result<Vec<St>, String> {
        let out = self.ctl(&["status", "--json"]);
        if out.code != Some(0) {
            return Err(format!("status --json: {out:?}"));
        }
        parse_status(&out.stdout).map_err(|e| format!("{e}\n{}", out.stdout))
    }

    /// Polls `status --json` (every 100 ms, up to `timeout`) until `cond` holds; panics with
    /// the story otherwise.
    pub fn wait_status(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&[St]) -> bool,
    ) -> Vec<St> {
        let mut last = Err(String::from("never asked"));
        let ok = poll(timeout, Duration::from_millis(100), || {
            last = self.status();
            matches!(&last, Ok(v) if cond(v))
        });
        assert!(
            ok,
            "{what}: not within {timeout:?}; last status: {last:?}\n{}",
            self.story()
        );
        last.unwrap_or_default()
    }

    /// Waits until every tunnel of `tunnels` is `up` with an ssh pid, answers through its `-L`
    /// port, and its ssh is autossh's child carrying its `-L`; returns the pids by name.
    pub fn wait_up(&self, tunnels: &[Tunnel]) -> Vec<(String, i32)> {
        let list = self.wait_status(UP, "tunnels up", |v| {
            tunnels.iter().all(|t| {
                v.iter()
                    .any(|s| s.name == t.name && s.state == "up" && s.up && s.ssh_pid.is_some())
            })
        });
        let mut pids = Vec::new();
        for t in tunnels {
            assert!(
                wait_until(UP, || tunnel_works(t.local)),
                "tunnel {} (port {}) does not answer\n{}",
                t.name,
                t.local,
                self.story()
            );
            let pid = pid_of(&list, &t.name);
            let kids = self.autossh().children();
            assert!(
                kids.contains(&pid),
                "{}'s ssh pid {pid} is not a child of autossh ({kids:?})\n{}",
                t.name,
                self.story()
            );
            let cmd = cmdline(pid);
            assert!(
                cmd.iter().any(|a| t.is_its_forward(a)),
                "{}'s ssh ({pid}) has not its -L {}: {cmd:?}\n{}",
                t.name,
                t.forward(),
                self.story()
            );
            pids.push((t.name.clone(), pid));
        }
        pids
    }

    /// autossh (command, log, children), the file, the status and the sshd log's tail.
    pub fn story(&self) -> String {
        let sshd_log = self.sshd.log();
        let tail: Vec<&str> = sshd_log.lines().rev().take(40).collect();
        let status = self.ctl(&["status"]);
        format!(
            "{}\n--- {} ---\n{}\n--- autossh status ---\n{status:?}\n--- sshd log (tail) ---\n{}",
            self.autossh
                .as_ref()
                .map(|p| p.describe())
                .unwrap_or_else(|| "autossh not started".into()),
            self.file.display(),
            fs::read_to_string(&self.file).unwrap_or_default(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The tunnels' live sshs among autossh's children: not its `ssh -G` look-ups, not its
    /// janitor, not one that just ended (a zombie has no command line).
    pub fn sshs(&self) -> Vec<i32> {
        self.autossh().ssh_children()
    }

    /// No zombie among autossh's children (every ssh that ended was reaped), within [`T`].
    pub fn assert_no_zombie(&self) {
        let mut z = Vec::new();
        let ok = wait_until(T, || {
            z = self
                .autossh()
                .children()
                .into_iter()
                .filter(|&p| is_zombie(p))
                .collect();
            z.is_empty()
        });
        assert!(ok, "unreaped children {z:?}\n{}", self.story());
    }

    /// SIGTERM: autossh exits 0 within [`T`], every child it had is gone, nothing of the test
    /// is left running.
    pub fn finish(self) {
        self.finish_with(Signal::SIGTERM);
    }

    /// [`Rig::finish`] with another stopping signal (SIGINT, SIGQUIT).
    pub fn finish_with(self, sig: Signal) {
        let kids: Vec<(i32, u64)> = self
            .autossh()
            .children()
            .into_iter()
            .filter_map(|p| proc_stat(p).map(|s| (p, s.starttime)))
            .collect();
        assert!(self.autossh().signal(sig), "{}", self.story());
        let st = self.autossh().wait_timeout(T);
        assert!(st.is_some(), "no exit on {sig}\n{}", self.story());
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(0),
            "exit on {sig}\n{}",
            self.story()
        );
        let mut left = Vec::new();
        let gone = wait_until(T, || {
            left = kids.iter().filter(|k| !gone(**k)).map(|k| k.0).collect();
            left.is_empty()
        });
        assert!(
            gone,
            "autossh's children outlived it:\n{}\n{}",
            describe_pids(&left),
            self.story()
        );
        self.assert_nothing_left();
    }

    /// Nothing of the test but the sshd listener still runs (within [`T`]).
    pub fn assert_nothing_left(&self) {
        let marker = self.dir.marker();
        let listener = self.sshd.pid();
        let mut left = Vec::new();
        let clean = wait_until(T, || {
            left = pids_with_cmdline_containing(&marker);
            left.retain(|&p| p != listener);
            left.is_empty()
        });
        assert!(
            clean,
            "left behind after autossh:\n{}\n{}",
            describe_pids(&left),
            self.story()
        );
    }
}

/// The ssh pid of `name` in a status list (panics if none).
pub fn pid_of(list: &[St], name: &str) -> i32 {
    list.iter()
        .find(|s| s.name == name)
        .and_then(|s| s.ssh_pid)
        .unwrap_or_else(|| panic!("no ssh pid for {name} in {list:?}"))
}

/// (pid, start time) no longer names a process (exited and reaped: not even a zombie).
pub fn gone((pid, start): (i32, u64)) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(s) => s.starttime != start,
    }
}

/// (pid, start time) of a live process.
pub fn ident(pid: i32) -> (i32, u64) {
    let s = proc_stat(pid).unwrap_or_else(|| panic!("pid {pid} does not exist"));
    (pid, s.starttime)
}

/// Kills `pid` (an ssh) with a signal it neither catches nor ignores (SIGUSR1, checked in
/// /proc/PID/status): "killed by a signal", which asks for a restart (SIGTERM would not do:
/// ssh catches it and exits 0; SIGKILL means stop).
pub fn crash(pid: i32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (Signal::SIGUSR1 as i32 - 1);
    assert!(
        (mask("SigCgt:") | mask("SigIgn:") | mask("SigBlk:")) & bit == 0,
        "ssh {pid} handles SIGUSR1:\n{status}"
    );
    assert!(signal_pid(pid, Signal::SIGUSR1), "cannot signal {pid}");
}

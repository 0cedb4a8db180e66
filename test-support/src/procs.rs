//! Spawned processes.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::{
    children_of, cmdline, descendants_of, describe_pids, next_seq, read_lossy, shell_quote,
    signal_pid, wait_until, Signal, TestDir,
};

/// A command to spawn as a [`Proc`]: program, args, environment, working
/// directory. Inherited `AUTOSSH_*` variables are removed so that the test
/// environment cannot leak into autossh; set them with [`Cmd::env`].
#[derive(Clone, Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    cwd: Option<PathBuf>,
    name: Option<String>,
    stderr_file: Option<PathBuf>,
    /// A session of its own (no controlling terminal), not only a process group.
    new_session: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            envs: Vec::new(),
            env_remove: Vec::new(),
            cwd: None,
            name: None,
            stderr_file: None,
            new_session: false,
        }
    }

    /// Runs it in a session of its own: no controlling terminal (nothing can prompt on the
    /// developer's terminal); still its own process group.
    pub fn new_session(mut self) -> Cmd {
        self.new_session = true;
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Cmd {
        self.envs
            .push((key.as_ref().to_os_string(), val.as_ref().to_os_string()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(key.as_ref().to_os_string());
        self
    }

    /// Working directory (default: the test dir).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Label for the output files `<name>.<n>.stdout` / `.stderr` (default:
    /// the program's file name).
    pub fn name(mut self, name: &str) -> Cmd {
        self.name = Some(name.to_string());
        self
    }

    /// Stderr goes to this existing file (appended) instead of a new one: a test that must
    /// know the file before the spawn (its device and inode for `JOURNAL_STREAM`).
    pub fn stderr_file(mut self, path: impl AsRef<Path>) -> Cmd {
        self.stderr_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// The command line, shell-quoted (for messages).
    fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn spawn(&self, dir: &TestDir) -> Proc {
        let label = self.name.clone().unwrap_or_else(|| {
            Path::new(&self.program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "proc".to_string())
        });
        let seq = next_seq();
        let stdout_path = dir.join(format!("{label}.{seq}.stdout"));
        let stderr_path = self
            .stderr_file
            .clone()
            .unwrap_or_else(|| dir.join(format!("{label}.{seq}.stderr")));
        let out = fs::File::create(&stdout_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", stdout_path.display()));
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", stderr_path.display()));
        let cwd = self.cwd.clone().unwrap_or_else(|| dir.path().to_path_buf());

        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if self.new_session {
            // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::unistd::setsid()
                        .map(|_| ())
                        .map_err(std::io::Error::from)
                });
            }
        } else {
            cmd.process_group(0);
        }
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AUTOSSH_") {
                cmd.env_remove(&k);
            }
        }
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot spawn {}: {e} (cwd {})",
                self.command_line(),
                cwd.display()
            )
        });
        let pid = child.id() as i32;
        Proc {
            child: Mutex::new(child),
            status: Mutex::new(None),
            pid,
            cmd: self.clone(),
            cwd,
            stdout_path,
            stderr_path,
            started: Instant::now(),
        }
    }
}

/// A spawned process (its own process group, stdin from /dev/null, stdout and
/// stderr to files in the test dir). Drop kills the whole process group with
/// SIGKILL and reaps the process.
pub struct Proc {
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    pid: i32,
    cmd: Cmd,
    cwd: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    started: Instant,
}

impl Proc {
    /// Spawns `program args...` with the extra environment `env`, in the test
    /// dir. See [`Cmd`] for more control.
    pub fn spawn<S: AsRef<OsStr>>(
        dir: &TestDir,
        program: impl AsRef<OsStr>,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = Cmd::new(program).args(args);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.spawn(dir)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Time since the spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status if the process has exited (reaps it), else None.
    fn try_wait(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(Some(s)) = child.try_wait() {
                *status = Some(s);
            }
        }
        *status
    }

    pub fn is_running(&self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits (bounded polling) up to `timeout` for the process to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut st = None;
        wait_until(timeout, || {
            st = self.try_wait();
            st.is_some()
        });
        st
    }

    /// Sends `sig` to the process (not its group). False if that failed.
    pub fn signal(&self, sig: Signal) -> bool {
        self.try_wait().is_none() && signal_pid(self.pid, sig)
    }

    /// Sends `sig` to the whole process group.
    fn signal_group(&self, sig: Signal) -> bool {
        nix::sys::signal::killpg(Pid::from_raw(self.pid), sig).is_ok()
    }

    /// Kills the process group with SIGKILL and reaps the process.
    pub fn kill(&self) -> Option<ExitStatus> {
        self.signal_group(Signal::SIGCONT);
        self.signal_group(Signal::SIGKILL);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            *status = child.wait().ok();
        }
        *status
    }

    /// Direct children of the process (e.g. autossh's ssh).
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid)
    }

    /// Its live ssh children (the real ssh, or the fake one run by bash): not `ssh -G`
    /// look-ups, not autossh's janitor or ssh-agent, not one that just ended (a zombie has no
    /// command line).
    pub fn ssh_children(&self) -> Vec<i32> {
        self.children()
            .into_iter()
            .filter(|&p| {
                let c = cmdline(p);
                let ssh = c.iter().take(2).any(|a| a == "ssh" || a.ends_with("/ssh"));
                ssh && !c.iter().any(|a| a == "-G")
            })
            .collect()
    }

    /// All descendants of the process.
    pub fn descendants(&self) -> Vec<i32> {
        descendants_of(self.pid)
    }

    pub fn stdout_text(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Waits (bounded) until stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr_text().contains(needle))
    }

    /// Waits (bounded) until stdout contains `needle`.
    pub fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stdout_text().contains(needle))
    }

    /// Command line, environment, working dir, pid, status, descendants and
    /// both outputs: for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "command: {}", self.cmd.command_line());
        if !self.cmd.envs.is_empty() {
            let env: Vec<String> = self
                .cmd
                .envs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        k.to_string_lossy(),
                        shell_quote(&v.to_string_lossy())
                    )
                })
                .collect();
            let _ = writeln!(out, "env: {}", env.join(" "));
        }
        if !self.cmd.env_remove.is_empty() {
            let rm: Vec<String> = self
                .cmd
                .env_remove
                .iter()
                .map(|k| k.to_string_lossy().into_owned())
                .collect();
            let _ = writeln!(out, "env removed: {}", rm.join(" "));
        }
        let _ = writeln!(out, "cwd: {}", self.cwd.display());
        let _ = writeln!(out, "pid: {} (running {:.2?})", self.pid, self.elapsed());
        match self.try_wait() {
            Some(s) => {
                let _ = writeln!(out, "status: {s}");
            }
            None => {
                let _ = writeln!(out, "status: still running");
                let d = self.descendants();
                if !d.is_empty() {
                    let _ = write!(out, "descendants:\n{}", describe_pids(&d));
                }
            }
        }
        let _ = writeln!(
            out,
            "--- stdout ({}) ---\n{}",
            self.stdout_path.display(),
            self.stdout_text()
        );
        let _ = writeln!(
            out,
            "--- stderr ({}) ---\n{}--- end ---",
            self.stderr_path.display(),
            self.stderr_text()
        );
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

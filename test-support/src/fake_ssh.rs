//! A scripted stand-in for ssh.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    cmdline, process_exists, read_lossy, shell_quote, signal_pid, wait_until, Signal, TestDir,
};

/// test-support/fake_ssh.sh (its header documents the plan syntax) in the
/// source tree, made executable once if a
/// checkout lost its mode bit (chmod opens no fd, so it cannot cause
/// ETXTBSY).
pub(crate) fn fake_ssh_source() -> &'static Path {
    static SOURCE: OnceLock<PathBuf> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake_ssh.sh");
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if meta.permissions().mode() & 0o111 != 0o111 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
        path
    })
}

/// A fake ssh (test-support/fake_ssh.sh) installed as `<test dir>/fakessh/ssh`
/// with a plan: invocation N follows plan line N, the last line repeating.
/// Point autossh at it with `AUTOSSH_PATH=<path()>`. Drop kills any
/// invocation still running.
pub struct FakeSsh {
    dir: PathBuf,
}

impl FakeSsh {
    pub fn new(dir: &TestDir, plan: &[&str]) -> FakeSsh {
        let sdir = dir.unique("fakessh");
        fs::create_dir_all(sdir.join("runs"))
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", sdir.display()));
        // A symlink to the committed script, never a fresh copy: writing an
        // executable in a multi-threaded test process races with other
        // threads' fork+exec (the child holds the write fd until it execs)
        // and exec then fails with ETXTBSY ("Text file busy"), seen in CI.
        let script = sdir.join("ssh");
        std::os::unix::fs::symlink(fake_ssh_source(), &script)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", script.display()));
        nix::unistd::mkfifo(
            &sdir.join("block"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap_or_else(|e| panic!("mkfifo in {}: {e}", sdir.display()));
        let fake = FakeSsh { dir: sdir };
        fake.set_plan(plan);
        fake
    }

    /// The script's path (for AUTOSSH_PATH).
    pub fn path(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// The state directory (plan, runs/).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the plan (atomically); it applies to invocations that start
    /// afterwards, by their run number.
    fn set_plan(&self, plan: &[&str]) {
        let mut text = String::new();
        for line in plan {
            assert!(!line.contains('\n'), "plan line with a newline: {line:?}");
            text.push_str(line);
            text.push('\n');
        }
        let tmp = self.dir.join("plan.tmp");
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, self.dir.join("plan")).unwrap_or_else(|e| panic!("rename plan: {e}"));
    }

    /// Makes every later `ssh -G` follow `line` (plan syntax) instead of answering at once.
    pub fn set_g_plan(&self, line: &str) {
        assert!(!line.contains('\n'), "g-plan with a newline: {line:?}");
        let tmp = self.dir.join("g-plan.tmp");
        fs::write(&tmp, format!("{line}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, self.dir.join("g-plan")).unwrap_or_else(|e| panic!("rename g-plan: {e}"));
    }

    /// Pids of the `ssh -G` invocations that followed the g-plan, in order.
    pub fn g_pids(&self) -> Vec<i32> {
        pid_lines(&self.dir.join("g.pids"))
    }

    /// Pids of the background copies started by `fork-hang` steps, in order.
    pub fn forked_pids(&self) -> Vec<i32> {
        pid_lines(&self.dir.join("forked"))
    }

    fn run_file(&self, n: usize, ext: &str) -> PathBuf {
        self.dir.join("runs").join(format!("{n}.{ext}"))
    }

    /// Pid of run `n` (1-based), once its record is complete.
    fn run_pid(&self, n: usize) -> Option<i32> {
        let text = fs::read_to_string(self.run_file(n, "pid")).ok()?;
        text.strip_suffix('\n')?.trim().parse().ok()
    }

    /// Number of complete run records (consecutive from run 1).
    pub fn run_count(&self) -> usize {
        let mut n = 0;
        while n < 100_000 && self.run_pid(n + 1).is_some() {
            n += 1;
        }
        n
    }

    fn nul_list(&self, n: usize, ext: &str) -> Vec<String> {
        let bytes = fs::read(self.run_file(n, ext)).unwrap_or_default();
        let mut v: Vec<String> = bytes
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // Each item ends with NUL: drop the empty piece after the last one.
        v.pop();
        v
    }

    /// The argv (without argv[0]) of each invocation, in order.
    pub fn runs(&self) -> Vec<Vec<String>> {
        (1..=self.run_count())
            .map(|n| self.nul_list(n, "argv"))
            .collect()
    }

    /// The pid of each invocation, in order.
    pub fn pids(&self) -> Vec<i32> {
        (1..=self.run_count())
            .filter_map(|n| self.run_pid(n))
            .collect()
    }

    /// The exported environment of each invocation, in order.
    pub fn envs(&self) -> Vec<HashMap<String, String>> {
        (1..=self.run_count())
            .map(|n| {
                self.nul_list(n, "env")
                    .into_iter()
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .collect()
    }

    /// When each invocation started.
    pub fn start_times(&self) -> Vec<SystemTime> {
        (1..=self.run_count())
            .map(|n| {
                let t = fs::read_to_string(self.run_file(n, "time")).unwrap_or_default();
                let secs: f64 = t.trim().replace(',', ".").parse().unwrap_or(0.0);
                UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))
            })
            .collect()
    }

    /// Pids of the invocations still running (not zombies).
    pub fn live_pids(&self) -> Vec<i32> {
        self.pids()
            .into_iter()
            .filter(|&p| process_exists(p))
            .collect()
    }

    /// Waits (bounded) until at least `n` runs are recorded.
    pub fn wait_for_runs(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.run_count() >= n)
    }

    /// The plan and every run (pid, liveness, argv) for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "fake ssh {}", self.path().display());
        let plan = read_lossy(&self.dir.join("plan"));
        let _ = writeln!(out, "plan:");
        for l in plan.lines() {
            let _ = writeln!(out, "  {l}");
        }
        for (i, (argv, pid)) in self.runs().iter().zip(self.pids()).enumerate() {
            let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
            let _ = writeln!(
                out,
                "run {}: pid {pid} ({}): ssh {}",
                i + 1,
                if process_exists(pid) {
                    "running"
                } else {
                    "gone"
                },
                quoted.join(" ")
            );
        }
        out
    }
}

/// The complete lines of `path` that are pids.
pub(crate) fn pid_lines(path: &Path) -> Vec<i32> {
    let text = read_lossy(path);
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl Drop for FakeSsh {
    fn drop(&mut self) {
        let script = self.path().to_string_lossy().into_owned();
        let all = self
            .pids()
            .into_iter()
            .chain(self.g_pids())
            .chain(self.forked_pids());
        for pid in all {
            if cmdline(pid).iter().any(|a| a == &script) {
                signal_pid(pid, Signal::SIGCONT);
                signal_pid(pid, Signal::SIGKILL);
            }
        }
    }
}

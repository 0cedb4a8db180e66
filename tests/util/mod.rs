//! Shared harness for the autossh integration tests.
//!
//! Each integration test file does `mod util;` and uses the part it needs.
//!
//! Rules this harness follows (and tests built on it should too):
//! - every test works in its own directory ([`TestDir`]), named after the test;
//! - waiting is bounded polling ([`wait_until`]), never a fixed sleep;
//! - every loop is bounded in time and in count;
//! - only loopback addresses (127.0.0.1) are used;
//! - nothing is left running: [`Proc`], [`Sshd`], [`Service`] and [`FakeSsh`]
//!   kill what they started when dropped, and [`TestDir`] kills any process
//!   whose command line still mentions its path before removing it;
//! - failure messages carry the command, its environment, status and output
//!   ([`Proc::describe`], [`Sshd::log`], [`FakeSsh::describe`]).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every ~20 ms until it returns true (→ `true`) or `timeout`
/// has passed (→ `false`). `cond` is always called at least once, and once
/// more at the deadline.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// The path of the autossh binary built by cargo for these tests.
pub fn autossh_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autossh"))
}

/// A small process-wide sequence number (unique names, port seeds).
fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// Quotes `s` for display as one shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------
// Test directories
// ---------------------------------------------------------------------------

/// A temporary directory for one test, named after the test
/// (`$TMPDIR/autossh-<test name>-XXXXXX`). Its path doubles as the test's
/// marker: it appears in the command line of everything the test starts
/// (fake ssh path, sshd config path, ssh `-i` key path).
///
/// On drop, any process whose command line still mentions the directory is
/// killed (SIGCONT + SIGKILL), then the directory is removed, unless
/// `AUTOSSH_TEST_KEEP` is set in the environment (then it is kept and its path
/// printed).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    name: String,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A directory named after the current test (the test thread's name).
    pub fn new() -> TestDir {
        let name = std::thread::current().name().unwrap_or("test").to_string();
        TestDir::named(&name)
    }

    /// A directory named after `name`.
    pub fn named(name: &str) -> TestDir {
        let mut clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        clean.truncate(40);
        let dir = tempfile::Builder::new()
            .prefix(&format!("autossh-{clean}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the test dir for {name}: {e}"));
        let path = dir.path().to_path_buf();
        TestDir {
            dir: Some(dir),
            path,
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The test name the directory was made for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory path as a string: the marker for [`no_process_left`].
    pub fn marker(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A fresh name `<stem>`, `<stem>-2`, ... that does not exist yet in the
    /// directory.
    fn unique(&self, stem: &str) -> PathBuf {
        let first = self.join(stem);
        if !first.exists() {
            return first;
        }
        for i in 2..10_000 {
            let p = self.join(format!("{stem}-{i}"));
            if !p.exists() {
                return p;
            }
        }
        panic!("no free name for {stem} in {}", self.path.display());
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        kill_processes_mentioning(&self.path);
        if std::env::var_os("AUTOSSH_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("test dir kept: {}", kept.display());
            }
        } else if std::thread::panicking() {
            eprintln!(
                "test {} failed; its dir {} is removed (set AUTOSSH_TEST_KEEP=1 to keep it)",
                self.name,
                self.path.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports already handed out by this process: never handed out twice.
fn issued_ports() -> &'static Mutex<HashSet<u16>> {
    static ISSUED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    ISSUED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The ranges of ports to pick from: 20000..=60000, less the kernel's
/// ephemeral range (so that an outgoing connection's source port cannot take
/// a port a test is about to listen on) when enough ports remain.
fn port_ranges() -> &'static Vec<(u16, u16)> {
    static RANGES: OnceLock<Vec<(u16, u16)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let (lo, hi) = (20000u16, 60000u16);
        let eph = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|w| w.parse::<u16>());
                match (it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b))) if a <= b => Some((a, b)),
                    _ => None,
                }
            });
        if let Some((elo, ehi)) = eph {
            let mut ranges = Vec::new();
            if elo > lo {
                ranges.push((lo, hi.min(elo - 1)));
            }
            if ehi < hi {
                ranges.push((lo.max(ehi + 1), hi));
            }
            let total: u32 = ranges.iter().map(|(a, b)| (*b - *a) as u32 + 1).sum();
            if total >= 2000 {
                return ranges;
            }
        }
        vec![(lo, hi)]
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A pseudo-random candidate from the port ranges, seeded by pid, a counter
/// and the time, so that parallel tests and processes rarely collide.
fn candidate_port() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = (std::process::id() as u64) << 32 ^ next_seq().wrapping_mul(0x1000_0001) ^ nanos;
    let r = splitmix64(seed);
    let ranges = port_ranges();
    let total: u64 = ranges.iter().map(|(a, b)| (*b - *a) as u64 + 1).sum();
    let mut k = r % total;
    for (a, b) in ranges {
        let len = (*b - *a) as u64 + 1;
        if k < len {
            return *a + k as u16;
        }
        k -= len;
    }
    ranges[0].0
}

fn can_bind(port: u16) -> Option<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok()
}

/// A port N free on 127.0.0.1 (checked by binding it), never handed out
/// before by this process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A port N where both N and N+1 are free on 127.0.0.1 (autossh's `-M N`
/// uses N and N+1).
pub fn free_port_pair() -> u16 {
    free_ports(2)
}

/// A port N where N to N+3 are free: loop mode's pair, and room for its first move of the
/// remote port (N+2) when the server is this host and sees N as taken by our own `-L N`.
pub fn free_loop_ports() -> u16 {
    free_ports(4)
}

fn free_ports(count: u16) -> u16 {
    for _ in 0..2000 {
        let n = candidate_port();
        let Some(last) = n.checked_add(count - 1) else {
            continue;
        };
        let mut issued = issued_ports().lock().unwrap_or_else(|e| e.into_inner());
        if (n..=last).any(|p| issued.contains(&p)) {
            continue;
        }
        let held: Vec<TcpListener> = (n..=last).filter_map(can_bind).collect();
        if held.len() == count as usize {
            for p in n..=last {
                issued.insert(p);
            }
            return n;
        }
    }
    panic!("no free port (run of {count}) found on 127.0.0.1 after 2000 tries");
}

// ---------------------------------------------------------------------------
// Process inspection (/proc)
// ---------------------------------------------------------------------------

/// The fields of /proc/PID/stat the tests care about.
#[derive(Clone, Debug)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    /// R, S, D, Z, T, t, X, I, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Start time in clock ticks after boot (tells a reused pid apart).
    pub starttime: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); starttime is field 22.
    Some(ProcStat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// All pids (thread group ids) in /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

fn all_stats() -> Vec<ProcStat> {
    all_pids().into_iter().filter_map(proc_stat).collect()
}

/// Direct children of `pid` (any state, zombies included), from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = all_stats()
        .into_iter()
        .filter(|s| s.ppid == pid)
        .map(|s| s.pid)
        .collect();
    v.sort_unstable();
    v
}

/// All descendants of `pid` (children, grandchildren, ...; not `pid`
/// itself), from one /proc snapshot. Zombies included.
pub fn descendants_of(pid: i32) -> Vec<i32> {
    descendants_in(&all_stats(), &[pid])
}

fn descendants_in(stats: &[ProcStat], roots: &[i32]) -> Vec<i32> {
    let mut kids: HashMap<i32, Vec<i32>> = HashMap::new();
    for s in stats {
        kids.entry(s.ppid).or_default().push(s.pid);
    }
    let mut seen: HashSet<i32> = roots.iter().copied().collect();
    let mut out = Vec::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        if let Some(cs) = kids.get(&p) {
            for &c in cs {
                if seen.insert(c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// True if `pid` exists and is not a zombie.
pub fn process_exists(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

/// True if `pid` exists as a zombie (exited, not reaped).
pub fn is_zombie(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(s) if s.state == 'Z')
}

/// The argv of `pid` (empty for zombies and kernel threads).
pub fn cmdline(pid: i32) -> Vec<String> {
    let Ok(bytes) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    let mut args: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if bytes.last() == Some(&0) {
        args.pop();
    }
    args
}

/// The command line of `pid` as one string (args joined by spaces).
pub fn cmdline_string(pid: i32) -> String {
    cmdline(pid).join(" ")
}

/// Pids (other than this test process) whose command line contains `s`.
/// Zombies have no command line, so they never match.
pub fn pids_with_cmdline_containing(s: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| {
                    let text: Vec<u8> = b.iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
                    String::from_utf8_lossy(&text).contains(s)
                })
                .unwrap_or(false)
        })
        .collect();
    v.sort_unstable();
    v
}

/// Number of open file descriptors of `pid` (0 if it cannot be read).
pub fn count_open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Resident set size of `pid` in KiB (VmRSS; 0 if unknown).
pub fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One line per pid: pid, ppid, state and command line (for messages).
pub fn describe_pids(pids: &[i32]) -> String {
    let mut out = String::new();
    for &p in pids {
        match proc_stat(p) {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  pid {p} ppid {} pgrp {} state {} comm {:?}: {}",
                    s.ppid,
                    s.pgrp,
                    s.state,
                    s.comm,
                    cmdline_string(p)
                );
            }
            None => {
                let _ = writeln!(out, "  pid {p}: gone");
            }
        }
    }
    out
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone).
pub fn signal_pid(pid: i32, sig: Signal) -> bool {
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), sig).is_ok()
}

/// After a test: checks that no process whose command line contains `marker`
/// (typically the test dir path) remains, waiting up to 3 s for them to go.
/// `Err` lists the ones still there.
pub fn no_process_left(marker: &str) -> Result<(), String> {
    let mut left = Vec::new();
    if wait_until(Duration::from_secs(3), || {
        left = pids_with_cmdline_containing(marker);
        left.is_empty()
    }) {
        return Ok(());
    }
    Err(format!(
        "{} process(es) mentioning {marker} still running:\n{}",
        left.len(),
        describe_pids(&left)
    ))
}

/// Kills (SIGCONT + SIGKILL) every process whose command line mentions
/// `path` (an argument equal to it, or containing `path/`); returns them.
pub fn kill_processes_mentioning(path: &Path) -> Vec<i32> {
    let p = path.to_string_lossy().into_owned();
    let with_slash = format!("{p}/");
    let me = std::process::id() as i32;
    let mut killed = Vec::new();
    // Bounded: a few rounds in case something forks while being killed.
    for _ in 0..5 {
        let found: Vec<i32> = pids_with_cmdline_containing(&p)
            .into_iter()
            .filter(|&pid| pid != me)
            .filter(|&pid| {
                cmdline(pid)
                    .iter()
                    .any(|a| a == &p || a.contains(&with_slash) || a.ends_with(&p))
            })
            .collect();
        if found.is_empty() {
            break;
        }
        for &pid in &found {
            signal_pid(pid, Signal::SIGCONT);
            signal_pid(pid, Signal::SIGKILL);
        }
        killed.extend(found.iter().copied());
        wait_until(Duration::from_secs(1), || {
            found.iter().all(|&pid| !process_exists(pid))
        });
    }
    killed
}

// ---------------------------------------------------------------------------
// Spawned processes
// ---------------------------------------------------------------------------

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
        }
    }

    /// `Cmd::new(autossh_bin())`.
    pub fn autossh() -> Cmd {
        Cmd::new(autossh_bin())
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
    pub fn command_line(&self) -> String {
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
            .stderr(err)
            .process_group(0);
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
    pub fn try_wait(&self) -> Option<ExitStatus> {
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
    pub fn signal_group(&self, sig: Signal) -> bool {
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

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
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

// ---------------------------------------------------------------------------
// A private OpenSSH server
// ---------------------------------------------------------------------------

pub const SSHD_BIN: &str = "/usr/sbin/sshd";
pub const SSH_BIN: &str = "/usr/bin/ssh";
const SSH_KEYGEN_BIN: &str = "/usr/bin/ssh-keygen";

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
    /// `Match all` block.
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

    pub fn config_path(&self) -> &Path {
        &self.config
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
        self.session_pids()
            .into_iter()
            .filter(|&p| signal_pid(p, sig))
            .count()
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

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions first, while the listener is alive to reap them.
        let sessions = self.session_pids();
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

// ---------------------------------------------------------------------------
// A local TCP service to tunnel to
// ---------------------------------------------------------------------------

/// The line [`Service`] writes first on every connection.
pub const GREETING: &str = "hello from service\n";

/// Longest a [`Service`] thread runs, whatever happens (loops are bounded).
const SERVICE_MAX_LIFETIME: Duration = Duration::from_secs(600);

/// A TCP service on 127.0.0.1:<free port>: for each connection it writes
/// [`GREETING`], then echoes what it receives. Drop (or [`Service::stop`])
/// stops it within ~100 ms.
pub struct Service {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    pub fn start() -> Service {
        let mut last_err = None;
        for _ in 0..20 {
            let port = free_port();
            match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                Ok(listener) => return Service::serve(listener, port),
                Err(e) => last_err = Some(e),
            }
        }
        panic!("service: cannot bind a port: {last_err:?}");
    }

    fn serve(listener: TcpListener, port: u16) -> Service {
        listener
            .set_nonblocking(true)
            .expect("service: set_nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let thread = std::thread::Builder::new()
            .name(format!("service-{port}"))
            .spawn(move || accept_loop(listener, stop2, conns2))
            .expect("service: spawn thread");
        Service {
            port,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and closes all connections (bounded).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, conns: Arc<AtomicUsize>) {
    let started = Instant::now();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < SERVICE_MAX_LIFETIME {
        match listener.accept() {
            Ok((stream, _)) => {
                conns.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                if let Ok(h) = std::thread::Builder::new()
                    .name("service-conn".into())
                    .spawn(move || serve_conn(stream, stop, started))
                {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    stop.store(true, Ordering::SeqCst);
    drop(listener);
    for h in handlers {
        let _ = h.join();
    }
}

fn serve_conn(mut stream: TcpStream, stop: Arc<AtomicBool>, started: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(GREETING.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < SERVICE_MAX_LIFETIME {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads up to and including the first '\n' (at most 4 KiB), before
/// `deadline`. None on EOF, error or timeout.
fn read_line_until(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// True if 127.0.0.1:`port` leads to a [`Service`]: connects (2 s timeout),
/// reads the greeting, sends a line and reads it back, all within ~2 s
/// after connecting.
pub fn tunnel_works(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let deadline = Instant::now() + Duration::from_secs(2);
    if read_line_until(&mut stream, deadline).as_deref() != Some(GREETING) {
        return false;
    }
    let probe = format!("ping {} {}\n", std::process::id(), next_seq());
    if stream.write_all(probe.as_bytes()).is_err() {
        return false;
    }
    read_line_until(&mut stream, deadline).as_deref() == Some(probe.as_str())
}

// ---------------------------------------------------------------------------
// A scripted stand-in for ssh
// ---------------------------------------------------------------------------

/// tests/util/fake_ssh.sh (its header documents the plan syntax) in the
/// source tree, made executable once if a
/// checkout lost its mode bit (chmod opens no fd, so it cannot cause
/// ETXTBSY).
fn fake_ssh_source() -> &'static Path {
    static SOURCE: OnceLock<PathBuf> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/fake_ssh.sh");
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if meta.permissions().mode() & 0o111 != 0o111 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
        path
    })
}

/// A fake ssh (tests/util/fake_ssh.sh) installed as `<test dir>/fakessh/ssh`
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
    pub fn set_plan(&self, plan: &[&str]) {
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
fn pid_lines(path: &Path) -> Vec<i32> {
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

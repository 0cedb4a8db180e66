//! Process inspection (/proc).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::unistd::Pid;

use crate::{wait_until, Signal};

/// The fields of /proc/PID/stat the tests care about.
#[derive(Clone, Debug)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    /// R, S, D, Z, T, t, X, I, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
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
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// All pids (thread group ids) in /proc.
fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

pub(crate) fn all_stats() -> Vec<ProcStat> {
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

pub(crate) fn descendants_in(stats: &[ProcStat], roots: &[i32]) -> Vec<i32> {
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
    // A zombie (or a kernel thread) has none.
    if bytes.is_empty() {
        return Vec::new();
    }
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
pub(crate) fn kill_processes_mentioning(path: &Path) -> Vec<i32> {
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

//! Commands.

use super::*;

/// Runs `argv` (stdin from /dev/null), waiting at most `timeout`; `Ok(stdout)`
/// on exit status 0, else `Err` with the command, status and output.
pub fn run_bounded(argv: &[&str], timeout: Duration) -> Result<String, String> {
    let shown = argv.join(" ");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: cannot run: {e}"))?;
    // The outputs are small; read them in threads so a full pipe cannot block.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown}: still running after {timeout:?}; killed"));
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{shown}: {status}\n{stdout}{stderr}"))
    }
}

pub(crate) const CMD_TIMEOUT: Duration = Duration::from_secs(15);

/// `ip netns exec <ns> argv...`.
pub fn ns_exec(ns: &str, argv: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(argv);
    run_bounded(&full, CMD_TIMEOUT)
}

pub(crate) fn ip(argv: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip"];
    full.extend_from_slice(argv);
    run_bounded(&full, CMD_TIMEOUT)
}

/// Names of all namespaces `ip netns list` shows.
pub fn netns_list() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Pids of the processes in namespace `ns` (`ip netns pids`), never this
/// test process itself.
pub fn netns_pids(ns: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p| p != me)
        .collect()
}

/// Kills (SIGKILL) every process in namespace `ns`, a few rounds, bounded.
pub(crate) fn kill_all_in(ns: &str) {
    for _ in 0..5 {
        let pids = netns_pids(ns);
        if pids.is_empty() {
            return;
        }
        for &p in &pids {
            signal_pid(p, Signal::SIGCONT);
            signal_pid(p, Signal::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || {
            pids.iter().all(|&p| !process_exists(p))
        });
    }
}

/// Removes namespaces named like ours (`as-<pid>-<n>-cli|srv`) whose creating
/// process is gone (a test process killed before its drops ran). Only names
/// of this pattern are touched.
pub fn remove_stale_namespaces() {
    for name in netns_list() {
        let Some(pid) = our_ns_owner(&name) else {
            continue;
        };
        if pid as u32 == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(&name);
        let _ = ip(&["netns", "del", &name]);
    }
}

pub(crate) fn our_ns_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("as-")?;
    let mut parts = rest.split('-');
    let pid: i32 = parts.next()?.parse().ok()?;
    let _n: u32 = parts.next()?.parse().ok()?;
    let side = parts.next()?;
    if parts.next().is_some() || (side != "cli" && side != "srv") {
        return None;
    }
    Some(pid)
}

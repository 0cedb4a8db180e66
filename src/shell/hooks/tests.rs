//! The outward states and the hook's runs: one at a time per tunnel, changes coalesced,
//! killed past its time, nothing left running.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn script(dir: &std::path::Path, body: &str) -> PathBuf {
    let p = dir.join("hook");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Reaps until no hook runs or waits (bounded).
fn settle(w: &mut Watch) {
    for _ in 0..1000 {
        w.reap(Time::now());
        if !w.busy() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("hooks still running");
}

#[test]
fn changes_run_the_hook_with_its_environment_and_coalesce_while_it_runs() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    // Holds each run until `go` exists: the changes during the first run must wait.
    let body = format!(
        "while [ ! -e {go} ]; do sleep 0.01; done\necho \"$AUTOSSH_TUNNEL $AUTOSSH_STATE [$AUTOSSH_REASON] $AUTOSSH_DOWN_FOR\" >> {log}",
        go = d.path().join("go").display(),
        log = log.display()
    );
    let mut w = Watch::new(Some(script(d.path(), &body)));
    let t0 = Time::now();
    let reason = || "probe failed".to_string();
    w.see(3, ("db", Outward::Starting), reason, t0);
    assert!(!w.busy(), "starting is not a change");
    w.see(3, ("db", Outward::Up), reason, t0);
    w.see(
        3,
        ("db", Outward::Down),
        reason,
        t0 + Duration::from_secs(2),
    );
    w.see(3, ("db", Outward::Up), reason, t0 + Duration::from_secs(5));
    w.see(
        3,
        ("db", Outward::Down),
        reason,
        t0 + Duration::from_secs(6),
    );
    assert_eq!(
        w.down_for(3, t0 + Duration::from_secs(7)),
        Some(Duration::from_secs(1))
    );
    std::fs::write(d.path().join("go"), "").unwrap();
    settle(&mut w);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The first change ran; the three during it were coalesced into the last.
    assert_eq!(
        lines,
        ["db up [] 0.0", "db down [probe failed] 0.0"],
        "{text}"
    );
}

#[test]
fn the_latest_change_equal_to_the_running_one_is_not_told_twice() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let body = format!(
        "while [ ! -e {go} ]; do sleep 0.01; done\necho \"$AUTOSSH_STATE\" >> {log}",
        go = d.path().join("go").display(),
        log = log.display()
    );
    let mut w = Watch::new(Some(script(d.path(), &body)));
    let now = Time::now();
    let r = String::new;
    w.see(0, ("", Outward::Up), r, now);
    w.see(0, ("", Outward::Down), r, now);
    w.see(0, ("", Outward::Up), r, now);
    std::fs::write(d.path().join("go"), "").unwrap();
    settle(&mut w);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "up\n");
}

#[test]
fn a_hook_past_its_time_is_killed_with_its_children() {
    let d = tempfile::tempdir().unwrap();
    let pids = d.path().join("pids");
    // A child of the hook that would outlive it, and the hook waiting on it.
    let body = format!("sleep 600 & echo $! > {}\nwait", pids.display());
    let mut w = Watch::new(Some(script(d.path(), &body)));
    let now = Time::now();
    w.see(1, ("x", Outward::Up), String::new, now);
    assert!(w.busy());
    assert!(w.timeout(now).is_some_and(|t| t <= HOOK_LIMIT));
    let wrote = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::fs::read_to_string(&pids).is_ok_and(|s| s.ends_with('\n'))
    });
    assert!(wrote, "the hook never started its child");
    let child: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    w.expire(now + HOOK_LIMIT);
    assert_eq!(w.timeout(now), None, "a killed hook has no deadline left");
    settle(&mut w);
    let gone = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        // The sleep is the test's grandchild: gone once killed (reaped by init, or a zombie
        // of the test process's reaper).
        std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |s| {
            s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'))
        })
    });
    assert!(gone, "the hook's child {child} outlived the kill");
}

#[test]
fn without_a_program_states_are_still_watched() {
    let mut w = Watch::new(None);
    let t0 = Time::now();
    w.see(0, ("", Outward::Down), String::new, t0);
    assert_eq!(
        w.state(0),
        Some(Outward::Starting),
        "never up: still starting"
    );
    w.see(0, ("", Outward::Up), String::new, t0);
    assert_eq!(w.down_for(0, t0), None);
    w.see(
        0,
        ("", Outward::Down),
        String::new,
        t0 + Duration::from_secs(3),
    );
    assert_eq!(
        w.down_for(0, t0 + Duration::from_secs(4)),
        Some(Duration::from_secs(1))
    );
    assert!(!w.busy());
    w.forget(0);
    assert_eq!(w.down_for(0, t0), None);
}

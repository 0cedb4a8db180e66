//! The exit table: ssh's exit codes and signals, MAXSTART, MAXLIFETIME.

use super::*;

/// Runs autossh once with `plan` and returns (exit code, number of ssh runs).
fn outcome(plan: &[&str], env: &[(&str, &str)]) -> (i32, usize, String) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, plan);
    let p = autossh(&dir, &fake, env, &["-M", "0", "host"]);
    let code = exit_code(&p, &fake);
    assert_clean(&dir);
    (code, fake.run_count(), p.stderr_text())
}

#[test]
fn exit_0_exits_0() {
    let (code, runs, _) = outcome(&["exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 1));
}

#[test]
fn first_run_inside_the_gate_exits_1_prematurely() {
    let (code, runs, err) = outcome(&["exit 255"], &[]);
    assert_eq!((code, runs), (1, 1));
    assert!(err.contains("exited prematurely"), "{err}");
}

#[test]
fn exit_255_restarts() {
    let (code, runs, err) = outcome(
        &["exit 255", "exit 255", "exit 0"],
        &[("AUTOSSH_GATETIME", "0")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
    assert!(err.contains("starting ssh (count 3)"), "{err}");
}

#[test]
fn exit_1_after_the_gate_on_first_run_exits_1() {
    let (code, runs, _) = outcome(&["sleep 1.3 exit 1"], &[("AUTOSSH_GATETIME", "1")]);
    assert_eq!((code, runs), (1, 1));
}

#[test]
fn exit_1_and_2_on_later_runs_restart() {
    let plan = ["sleep 1.3 exit 255", "exit 1", "exit 2", "exit 0"];
    let (code, runs, err) = outcome(&plan, &[("AUTOSSH_GATETIME", "1")]);
    assert_eq!((code, runs), (0, 4), "{err}");
}

#[test]
fn exit_1_with_gate_0_restarts() {
    let (code, runs, _) = outcome(&["exit 1", "exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 2));
}

#[test]
fn exit_3_to_254_exits_1() {
    for status in ["3", "42", "254"] {
        let (code, runs, _) = outcome(&[&format!("exit {status}")], &[("AUTOSSH_GATETIME", "0")]);
        assert_eq!((code, runs), (1, 1), "status {status}");
    }
}

#[test]
fn ssh_killed_by_a_signal_is_restarted() {
    let (code, runs, err) = outcome(
        &["kill-self TERM", "kill-self SEGV", "exit 0"],
        &[("AUTOSSH_GATETIME", "0")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
}

#[test]
fn ssh_killed_with_sigkill_stops_autossh() {
    let (code, runs, err) = outcome(&["kill-self KILL", "exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 1), "{err}");
    assert!(err.contains("SIGKILL"), "{err}");
}

#[test]
fn maxstart_limits_the_starts() {
    let (code, runs, err) = outcome(
        &["exit 255"],
        &[("AUTOSSH_GATETIME", "0"), ("AUTOSSH_MAXSTART", "3")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
    assert!(err.contains("count 3 of 3"), "{err}");
    // After the third start nothing announces a restart; the exit follows at once.
    let third = err.find("count 3 of 3").unwrap();
    assert!(!err[third..].contains("restarting ssh in"), "{err}");
    assert!(
        err[third..].contains("max start count reached; exiting"),
        "{err}"
    );
    let (code, runs, _) = outcome(&["hang"], &[("AUTOSSH_MAXSTART", "0")]);
    assert_eq!((code, runs), (0, 0));
}

#[test]
fn maxlifetime_kills_ssh_and_exits_0() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_MAXLIFETIME", "2")],
        &["-M", "0", "h"],
    );
    assert!(fake.wait_for_runs(1, T));
    let code = exit_code(&p, &fake);
    assert_eq!(code, 0);
    assert!(p.elapsed() >= Duration::from_secs(2) && p.elapsed() < Duration::from_secs(6));
    assert_clean(&dir);
}

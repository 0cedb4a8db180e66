//! Signals to autossh in each state: running, backing off; SIGKILL of autossh.

use super::*;

pub(crate) fn running(plan: &[&str]) -> (TestDir, FakeSsh, Proc) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, plan);
    let pidfile = dir.join("autossh.pid");
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_PIDFILE", pidfile.to_str().unwrap())],
        &["-M", "0", "h"],
    );
    assert!(fake.wait_for_runs(1, T), "{}", p.describe());
    (dir, fake, p)
}

#[test]
fn sigterm_sigint_sigquit_while_running_stop_ssh_and_exit_0() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let (dir, fake, p) = running(&["hang"]);
        assert!(dir.join("autossh.pid").exists());
        p.signal(sig);
        assert_eq!(exit_code(&p, &fake), 0, "{sig}");
        assert!(
            !dir.join("autossh.pid").exists(),
            "pidfile left after {sig}"
        );
        assert!(fake.live_pids().is_empty(), "ssh left after {sig}");
        assert_clean(&dir);
    }
}

#[test]
fn ssh_that_ignores_sigterm_is_killed() {
    let (dir, fake, p) = running(&["hang-ignore-term"]);
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert!(p.stderr_text().contains("SIGKILL"), "{}", p.describe());
    assert!(fake.live_pids().is_empty());
    assert_clean(&dir);
}

#[test]
fn sigusr1_restarts_ssh_now() {
    let (dir, fake, p) = running(&["hang"]);
    p.signal(Signal::SIGUSR1);
    assert!(fake.wait_for_runs(2, T), "{}", p.describe());
    assert!(wait_until(T, || fake.live_pids().len() == 1));
    assert!(!process_exists(fake.pids()[0]));
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sighup_and_sigusr2_while_running_change_nothing() {
    let (dir, fake, p) = running(&["hang"]);
    p.signal(Signal::SIGHUP);
    p.signal(Signal::SIGUSR2);
    assert!(!wait_until(Duration::from_millis(500), || fake.run_count()
        > 1
        || !p.is_running()));
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

/// autossh waiting out a backoff: the sixth quick death in a row waits 4 to 8 s.
fn backing_off() -> (TestDir, FakeSsh, Proc) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 255"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], &["-M", "0", "h"]);
    assert!(
        fake.wait_for_runs(6, Duration::from_secs(15)),
        "{}",
        p.describe()
    );
    assert!(
        wait_until(T, || p.stderr_text().matches("restarting ssh in").count()
            >= 6),
        "{}",
        p.describe()
    );
    assert_eq!(fake.run_count(), 6);
    (dir, fake, p)
}

#[test]
fn sigterm_during_backoff_exits_0_at_once() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGTERM);
    let st = p
        .wait_timeout(Duration::from_secs(2))
        .expect("exit during backoff");
    assert_eq!(st.code(), Some(0));
    assert_eq!(fake.run_count(), 6);
    assert_clean(&dir);
}

#[test]
fn sighup_during_backoff_retries_now() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGHUP);
    assert!(
        fake.wait_for_runs(7, Duration::from_secs(2)),
        "{}",
        p.describe()
    );
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sigusr1_during_backoff_restarts_now() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGUSR1);
    assert!(
        fake.wait_for_runs(7, Duration::from_secs(2)),
        "{}",
        p.describe()
    );
    p.signal(Signal::SIGINT);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sigkill_of_autossh_takes_ssh_down() {
    let (dir, fake, p) = running(&["hang"]);
    let ssh = fake.pids()[0];
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(T).is_some());
    assert!(
        wait_until(T, || !process_exists(ssh)),
        "ssh outlived autossh"
    );
    assert_clean(&dir);
}

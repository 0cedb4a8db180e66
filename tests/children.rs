//! No child of autossh outlives it: the `ssh -G` look-up of the server's address (slow under a
//! `Match exec` in ssh_config, or a slow wrapper in AUTOSSH_PATH), and whatever that look-up
//! started in turn, are killed and reaped when autossh exits, whichever way it exits.

use std::time::Duration;
use test_support::*;

const T: Duration = Duration::from_secs(10);

/// A look-up that starts a helper of its own (as `Match exec` would), then takes 30 s to answer.
const SLOW_G: &str = "fork-hang ; sleep 30 ; stdout hostname 127.0.0.1 ; stdout port 22";

/// Starts autossh (`-M 0 -N host`) with the fake ssh following `plan` and a slow `ssh -G`;
/// returns once the look-up, its helper and the first ssh all run.
fn start(dir: &TestDir, plan: &[&str], env: &[(&str, &str)]) -> (FakeSsh, Proc) {
    let fake = FakeSsh::new(dir, plan);
    fake.set_g_plan(SLOW_G);
    let mut cmd = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let p = cmd.args(["-M", "0", "-N", "host"]).spawn(dir);
    // The look-up for the agent's identities runs first, before ssh, and is given up (killed
    // with its helper) after 5 s; the one that counts is the last, running beside ssh.
    let running = |pids: Vec<i32>| pids.last().is_some_and(|&p| process_exists(p));
    let all_up = wait_until(2 * T, || {
        let (g, forked) = (fake.g_pids(), fake.forked_pids());
        g.len() == forked.len() && running(g) && running(forked) && fake.live_pids().len() == 1
    });
    assert!(all_up, "{}\n{}", p.describe(), fake.describe());
    let g = *fake.g_pids().last().expect("a look-up");
    assert!(
        p.descendants().contains(&g),
        "ssh -G (pid {g}) is not autossh's:\n{}",
        describe_pids(&[g])
    );
    (fake, p)
}

/// autossh exits with `code` within `T`, and nothing of the test is left running.
fn assert_exits_alone(dir: &TestDir, fake: &FakeSsh, p: &Proc, code: i32) {
    let st = p.wait_timeout(T);
    assert!(st.is_some(), "autossh did not exit:\n{}", p.describe());
    assert_eq!(st.and_then(|s| s.code()), Some(code), "{}", p.describe());
    let lookup: Vec<i32> = fake
        .g_pids()
        .into_iter()
        .chain(fake.forked_pids())
        .collect();
    if let Err(e) = no_process_left(&dir.marker()) {
        panic!(
            "left behind after autossh exited: {e}\nlook-up and its helper: {lookup:?}\n{}",
            fake.describe()
        );
    }
}

#[test]
fn sigterm_while_ssh_g_is_still_running() {
    let dir = TestDir::new();
    let (fake, p) = start(&dir, &["hang"], &[]);
    assert!(p.signal(Signal::SIGTERM));
    assert_exits_alone(&dir, &fake, &p, 0);
}

#[test]
fn maxstart_reached_while_ssh_g_is_still_running() {
    let dir = TestDir::new();
    let (fake, p) = start(&dir, &["hang-exit 255"], &[("AUTOSSH_MAXSTART", "1")]);
    // ssh ends (255: restart), but it may not be started again: autossh exits 0.
    assert!(signal_pid(fake.live_pids()[0], Signal::SIGTERM));
    assert_exits_alone(&dir, &fake, &p, 0);
}

#[test]
fn ssh_failing_while_ssh_g_is_still_running() {
    let dir = TestDir::new();
    let (fake, p) = start(&dir, &["hang-exit 3"], &[]);
    // ssh exits 3 (the remote command's status): autossh exits 1.
    assert!(signal_pid(fake.live_pids()[0], Signal::SIGTERM));
    assert_exits_alone(&dir, &fake, &p, 1);
}

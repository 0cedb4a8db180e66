//! No ssh outlives its tunnel or autossh, and none is left a zombie: SIGTERM and SIGINT stop
//! every ssh (exit 0); SIGUSR1 replaces every ssh; a SIGKILLed ssh is reaped and, as a single
//! autossh would, ends its tunnel (docs/tunnels.md: each tunnel follows the single-tunnel rules;
//! README "When ssh ends": SIGKILL of ssh means stop); when every tunnel has ended autossh
//! exits (1 if any failed, else 0); SIGKILL of autossh takes every ssh down.

use super::rig::*;
use test_support::*;

fn three(rig: &mut Rig) -> (Vec<Tunnel>, Vec<(String, i32)>) {
    let ts = vec![
        rig.tunnel("t-loop", Mon::Loop),
        rig.tunnel("t-echo", Mon::Echo),
        rig.tunnel("t-zero", Mon::Zero),
    ];
    rig.write(&ts);
    rig.start(&[]);
    let pids = rig.wait_up(&ts);
    (ts, pids)
}

#[test]
fn sigterm_stops_every_ssh_and_exits_0() {
    let mut rig = Rig::new();
    let (_, pids) = three(&mut rig);
    assert_eq!(rig.sshs().len(), 3, "{}", rig.story());
    assert!(pids.iter().all(|p| process_exists(p.1)));
    rig.finish();
}

#[test]
fn sigint_stops_every_ssh_and_exits_0() {
    let mut rig = Rig::new();
    three(&mut rig);
    rig.finish_with(Signal::SIGINT);
}

#[test]
fn sigusr1_replaces_every_ssh() {
    let mut rig = Rig::new();
    let (ts, pids) = three(&mut rig);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();
    assert!(rig.autossh().signal(Signal::SIGUSR1));
    rig.wait_status(UP, "every ssh replaced", |v| {
        v.len() == 3
            && v.iter().all(|s| {
                s.up && s.ssh_pid.is_some() && !pids.iter().any(|p| Some(p.1) == s.ssh_pid)
            })
    });
    for id in &ids {
        assert!(
            wait_until(T, || gone(*id)),
            "old ssh {} left\n{}",
            id.0,
            rig.story()
        );
    }
    rig.wait_up(&ts);
    rig.assert_no_zombie();
    rig.finish();
}

#[test]
fn a_sigkilled_ssh_is_reaped_and_never_orphaned() {
    let mut rig = Rig::new();
    let (ts, pids) = three(&mut rig);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();
    let victim = ids[0];
    assert!(signal_pid(victim.0, Signal::SIGKILL));
    // Reaped (not even a zombie), the others untouched, autossh running.
    assert!(wait_until(T, || gone(victim)), "{}", rig.story());
    rig.assert_no_zombie();
    assert!(rig.autossh().is_running(), "{}", rig.story());
    for (k, t) in ts.iter().enumerate().skip(1) {
        assert!(
            !gone(ids[k]) && tunnel_works(t.local),
            "{}\n{}",
            t.name,
            rig.story()
        );
    }
    // No ssh of the test runs outside autossh (an orphan would be re-parented away).
    let me = rig.autossh().pid();
    let strays: Vec<i32> = pids_with_cmdline_containing(&rig.sshd.client_key().to_string_lossy())
        .into_iter()
        .filter(|&p| proc_stat(p).is_some_and(|s| s.ppid != me && s.comm == "ssh"))
        .collect();
    assert!(
        strays.is_empty(),
        "orphaned ssh:\n{}",
        describe_pids(&strays)
    );
    // As a single autossh: SIGKILL of ssh is someone's decision to stop it; the tunnel ends
    // without failing, it is not restarted (its state is checked last).
    let starts = rig.log().matches("t-loop: starting ssh").count();
    let list = rig.wait_status(T, "t-loop ended", |v| {
        v.iter()
            .any(|s| s.name == "t-loop" && !s.up && s.ssh_pid.is_none())
    });
    let state = list
        .iter()
        .find(|s| s.name == "t-loop")
        .unwrap()
        .state
        .clone();
    let none_started = !poll(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(100),
        || rig.log().matches("t-loop: starting ssh").count() > starts,
    );
    assert!(none_started, "t-loop restarted\n{}", rig.story());

    // Every tunnel ended, none failed: autossh exits 0.
    for id in &ids[1..] {
        assert!(signal_pid(id.0, Signal::SIGKILL));
    }
    let st = rig.autossh().wait_timeout(T);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "every tunnel ended by SIGKILL of its ssh\n{}",
        rig.story()
    );
    assert!(ids.iter().all(|i| gone(*i)), "{}", rig.story());
    rig.assert_nothing_left();
    assert_eq!(
        state,
        "stopped",
        "a tunnel whose ssh was SIGKILLed ended for good without failing (log: \"tunnel ended \
         for good (code 0)\"; autossh's exit status 0 says none failed), yet its state is not \
         `stopped`\n{}",
        rig.log()
    );
}

/// Every tunnel ended for good, one failed: exit 1. A refused key inside the gate, and
/// maxstart reached after a crash, are both `failed` (docs/tunnels.md).
#[test]
fn every_tunnel_ended_with_one_failed_exits_1() {
    // maxstart = 1, then ssh dies by a signal: a restart is wanted and not allowed.
    let mut rig = Rig::new();
    let t = rig.tunnel("only", Mon::Zero).key("maxstart = 1");
    rig.write(std::slice::from_ref(&t));
    rig.start(&[]);
    let pids = rig.wait_up(std::slice::from_ref(&t));
    let id = ident(pids[0].1);
    crash(id.0);
    let st = rig.autossh().wait_timeout(T);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(1),
        "the only tunnel failed (maxstart reached)\n{}",
        rig.story()
    );
    assert!(wait_until(T, || gone(id)), "{}", rig.story());
    rig.assert_nothing_left();
}

#[test]
fn the_only_tunnel_refused_inside_its_gate_exits_1() {
    let mut rig = Rig::new();
    let stranger = rig.dir.join("stranger_ed25519_key");
    keygen(&stranger, "not-in-authorized-keys");
    let t = rig.tunnel_with_key("refused", Mon::Zero, &stranger);
    rig.write(std::slice::from_ref(&t));
    rig.start(&[("AUTOSSH_GATETIME", "30")]);
    let st = rig.autossh().wait_timeout(UP);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(1),
        "the only tunnel failed (Permission denied)\n{}",
        rig.story()
    );
    assert!(rig.log().contains("refused: "), "{}", rig.story());
    rig.assert_nothing_left();
}

#[test]
fn sigkill_of_autossh_takes_every_ssh_down() {
    let mut rig = Rig::new();
    let (_, pids) = three(&mut rig);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();
    assert!(rig.autossh().signal(Signal::SIGKILL));
    assert!(rig.autossh().wait_timeout(T).is_some());
    let mut left = Vec::new();
    let ok = wait_until(T, || {
        left = ids.iter().filter(|i| !gone(**i)).map(|i| i.0).collect();
        left.is_empty()
    });
    assert!(
        ok,
        "ssh outlived a SIGKILLed autossh:\n{}",
        describe_pids(&left)
    );
}

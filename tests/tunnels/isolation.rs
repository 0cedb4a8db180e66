//! One tunnel's trouble is its own (docs/tunnels.md): a tunnel whose key the server refuses
//! fails (inside its gate: `failed`) or keeps retrying (gate off: reconnecting or backing off),
//! while the others come up and stay up, and autossh keeps running; `maxstart` reached is
//! `failed` too.

use super::rig::*;
use std::time::Duration;
use test_support::*;

/// States of a tunnel that is retrying (docs/tunnels.md, "Status and control").
const RETRYING: [&str; 4] = ["reconnecting", "backing-off", "starting", "waiting"];

#[test]
fn a_refused_key_fails_alone() {
    let mut rig = Rig::new();
    let stranger = rig.dir.join("stranger_ed25519_key");
    keygen(&stranger, "not-in-authorized-keys");
    let good1 = rig.tunnel("good1", Mon::Loop);
    let good2 = rig.tunnel("good2", Mon::Zero);
    // Its own gate (30 s): Permission denied on the first run is the end of it.
    let gated = rig
        .tunnel_with_key("bad-gated", Mon::Zero, &stranger)
        .key("gatetime = 30");
    // The environment's gate (0): retried, every 30 s for a configuration error.
    let retry = rig.tunnel_with_key("bad-retry", Mon::Loop, &stranger);
    rig.write(&[gated.clone(), good1.clone(), retry.clone(), good2.clone()]);
    rig.start(&[]);
    let pids = rig.wait_up(&[good1.clone(), good2.clone()]);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();

    let list = rig.wait_status(UP, "the bad tunnels settle", |v| {
        let find = |n: &str| v.iter().find(|s| s.name == n);
        matches!(find("bad-gated"), Some(s) if s.state == "failed" && !s.up)
            && matches!(find("bad-retry"), Some(s) if !s.up && s.restarts >= 1)
    });
    let gated_st = list.iter().find(|s| s.name == "bad-gated").unwrap();
    assert_eq!(
        gated_st.ssh_pid, None,
        "a failed tunnel has no ssh: {gated_st:?}"
    );
    let retry_st = list.iter().find(|s| s.name == "bad-retry").unwrap();
    assert!(
        RETRYING.contains(&retry_st.state.as_str()),
        "bad-retry (gate off) should be retrying, not {:?}\n{}",
        retry_st.state,
        rig.story()
    );
    // Why they are down is in the status (checked last, after everything else): the failed
    // one with what ended it (its log says "exiting: configuration error, not retrying: ...
    // Permission denied"); the retrying one with its last restart's reason (as a single
    // autossh's status file gives it: "ssh exited with error status 255").
    let mut reasons = Vec::new();
    if !gated_st
        .last_reason
        .as_deref()
        .is_some_and(|r| r.contains("Permission denied"))
    {
        reasons.push(format!(
            "bad-gated (failed): last_reason {:?}",
            gated_st.last_reason
        ));
    }
    if retry_st.last_reason.as_deref().unwrap_or("").is_empty() {
        reasons.push(format!("bad-retry: last_reason {:?}", retry_st.last_reason));
    }
    assert_eq!(list.len(), 4, "{list:?}");

    // ssh's complaint is logged under the bad tunnels' names only.
    let log = rig.log();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Permission denied"))
        .collect();
    assert!(!denied.is_empty(), "{log}");
    for l in &denied {
        assert!(
            l.contains("bad-gated: ") || l.contains("bad-retry: "),
            "a Permission denied line without its tunnel's name: {l:?}"
        );
    }

    // The good ones stay up, with the same ssh, for a few seconds more; autossh runs on.
    let disturbed = poll(Duration::from_secs(4), Duration::from_millis(250), || {
        !rig.autossh().is_running()
            || ids.iter().any(|i| gone(*i))
            || !(tunnel_works(good1.local) && tunnel_works(good2.local))
    });
    assert!(
        !disturbed,
        "the good tunnels were disturbed\n{}",
        rig.story()
    );
    let now = rig
        .status()
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    for (name, pid) in &pids {
        let s = now.iter().find(|s| &s.name == name).unwrap();
        assert!(
            s.up && s.ssh_pid == Some(*pid),
            "{name}: {s:?}\n{}",
            rig.story()
        );
    }
    rig.assert_no_zombie();
    let status_text = rig.ctl(&["status"]).stdout;
    rig.finish();
    assert!(
        reasons.is_empty(),
        "status does not say why a refused tunnel is down (ssh said \"Permission denied\"):\n{}\n{status_text}",
        reasons.join("\n")
    );
}

/// `maxstart` reached ends a tunnel for good: `failed`, its ssh reaped, the others on.
#[test]
fn maxstart_reached_fails_alone() {
    let mut rig = Rig::new();
    let once = rig.tunnel("once", Mon::Zero).key("maxstart = 1");
    let other = rig.tunnel("other", Mon::Zero);
    rig.write(&[once.clone(), other.clone()]);
    rig.start(&[]);
    let pids = rig.wait_up(&[once.clone(), other.clone()]);
    let once_id = ident(pids[0].1);
    let other_id = ident(pids[1].1);
    // Killed by a signal (not SIGKILL): a restart is wanted, and maxstart forbids it.
    crash(once_id.0);
    rig.wait_status(UP, "once failed", |v| {
        v.iter()
            .any(|s| s.name == "once" && s.state == "failed" && !s.up)
    });
    assert!(wait_until(T, || gone(once_id)), "{}", rig.story());
    assert!(
        !gone(other_id) && tunnel_works(other.local),
        "{}",
        rig.story()
    );
    assert!(rig.autossh().is_running(), "{}", rig.story());
    rig.assert_no_zombie();
    rig.finish();
}

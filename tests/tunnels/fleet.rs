//! A fleet that reconnects without a stampede (docs/tunnels.md): tunnels to one server start
//! at most 4 handshakes at once; the others wait (state `waiting`, no ssh yet) and start as
//! soon as one is proven.
//!
//! The server's listener is stopped (SIGSTOP) while autossh starts 8 tunnels to it: the kernel
//! still accepts the connections, no banner comes, so the first 4 handshakes stay in flight.
//! The tunnels are `-M 0` with the default gate (30 s): with the gate off, a `-M 0` ssh alive
//! for a second counts as proven (README: "ssh alive past the gate or the first session probe
//! back") and would free its slot without any handshake done.

use super::rig::*;
use std::time::Duration;
use test_support::*;

#[test]
fn at_most_four_handshakes_to_one_server_at_once() {
    let mut rig = Rig::new();
    rig.head = "[defaults]\ngatetime = 30\n".into();
    let ts: Vec<Tunnel> = (1..=8)
        .map(|k| rig.tunnel(&format!("f{k}"), Mon::Zero))
        .collect();
    rig.write(&ts);
    let listener = rig.sshd.pid();
    assert!(signal_pid(listener, Signal::SIGSTOP));
    rig.start(&[]);
    let in_flight = |v: &[St]| v.iter().filter(|s| s.ssh_pid.is_some()).count();
    let waiting = |v: &[St]| v.iter().filter(|s| s.state == "waiting").count();
    let seen = rig.wait_status(T, "4 handshakes, 4 waiting", |v| {
        v.len() == 8 && in_flight(v) == 4 && waiting(v) == 4
    });
    for s in seen.iter().filter(|s| s.state == "waiting") {
        assert!(s.ssh_pid.is_none() && !s.up, "{s:?}");
    }
    // It stays so while the server says nothing (well under the 10 s a handshake may take
    // before the next one is let through, and ssh's ConnectTimeout=5).
    let mut worst = Vec::new();
    let more = poll(Duration::from_secs(2), Duration::from_millis(100), || {
        let kids = rig.sshs();
        if kids.len() > 4 {
            worst = kids;
            return true;
        }
        false
    });
    assert!(
        !more,
        "more than 4 handshakes at once:\n{}\n{}",
        describe_pids(&worst),
        rig.story()
    );
    assert!(signal_pid(listener, Signal::SIGCONT));
    rig.wait_up(&ts);
    let sshd_log = rig.sshd.log();
    assert!(
        !sshd_log.contains("drop connection") && !sshd_log.contains("beginning dropping"),
        "sshd refused handshakes:\n{sshd_log}"
    );
    rig.finish();
}

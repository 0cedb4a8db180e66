//! A fleet that reconnects without a stampede (docs/tunnels.md): tunnels to one server start
//! at most 8 handshakes at once; the others wait (state `waiting`, no ssh yet) and start as
//! soon as one has authenticated (bound its sockets) or is proven; a server that cuts
//! handshakes before its banner gets fewer at once.
//!
//! The server's listener is stopped (SIGSTOP) while autossh starts 12 tunnels to it: the
//! kernel still accepts the connections, no banner comes, so the first 8 handshakes stay in
//! flight. The tunnels are `-M 0` with the default gate (30 s): with the gate off, a `-M 0`
//! ssh alive for a second counts as proven (README: "ssh alive past the gate or the first
//! session probe back") and would free its slot without any handshake done.

use super::rig::*;
use std::time::Duration;
use test_support::*;

#[test]
fn at_most_eight_handshakes_to_one_server_at_once() {
    let mut rig = Rig::new();
    rig.head = "[defaults]\ngatetime = 30\n".into();
    let ts: Vec<Tunnel> = (1..=12)
        .map(|k| rig.tunnel(&format!("f{k}"), Mon::Zero))
        .collect();
    rig.write(&ts);
    let listener = rig.sshd.pid();
    assert!(signal_pid(listener, Signal::SIGSTOP));
    rig.start(&[]);
    let in_flight = |v: &[St]| v.iter().filter(|s| s.ssh_pid.is_some()).count();
    let waiting = |v: &[St]| v.iter().filter(|s| s.state == "waiting").count();
    let seen = rig.wait_status(T, "8 handshakes, 4 waiting", |v| {
        v.len() == 12 && in_flight(v) == 8 && waiting(v) == 4
    });
    for s in seen.iter().filter(|s| s.state == "waiting") {
        assert!(s.ssh_pid.is_none() && !s.up, "{s:?}");
    }
    // It stays so while the server says nothing (well under the 10 s a handshake may take
    // before the next one is let through, and ssh's ConnectTimeout=5).
    let mut worst = Vec::new();
    let more = poll(Duration::from_secs(2), Duration::from_millis(100), || {
        let kids = rig.sshs();
        if kids.len() > 8 {
            worst = kids;
            return true;
        }
        false
    });
    assert!(
        !more,
        "more than 8 handshakes at once:\n{}\n{}",
        describe_pids(&worst),
        rig.story()
    );
    // The 8 land on sshd at once when it wakes: with its default MaxStartups (10) it
    // refuses none of them.
    assert!(signal_pid(listener, Signal::SIGCONT));
    rig.wait_up(&ts);
    let sshd_log = rig.sshd.log();
    assert!(
        !sshd_log.contains("drop connection") && !sshd_log.contains("beginning dropping"),
        "sshd refused handshakes:\n{sshd_log}"
    );
    rig.finish();
}

/// An sshd that takes 3 unauthenticated connections at most (`MaxStartups 3`: a fourth is
/// dropped before the banner) and 16 tunnels: the first 8 handshakes land at once and 5 are
/// cut; autossh says so, lets fewer go at once, and every tunnel comes up after fewer cuts
/// than tunnels (counted as ssh starts beyond the first of each: sshd's own drop lines count
/// the shared reachability checks' connections too). Eight at a time to the end would cut
/// about five of every eight starts.
#[test]
fn a_server_that_cuts_handshakes_gets_fewer_at_once() {
    let mut rig = Rig::with_sshd("MaxStartups 3\n");
    let ts: Vec<Tunnel> = (1..=16)
        .map(|k| rig.tunnel(&format!("c{k:02}"), Mon::Zero))
        .collect();
    rig.write(&ts);
    rig.start(&[]);
    rig.wait_up(&ts);
    let log = rig.log();
    assert!(
        log.contains("cut a handshake before its banner (sshd's MaxStartups?)"),
        "no backing off said:\n{}",
        rig.story()
    );
    assert!(
        rig.sshd.log().contains("past MaxStartups"),
        "sshd dropped nothing: the test tests nothing\n{}",
        rig.story()
    );
    let again = log.matches("starting ssh (count").count() - ts.len();
    assert!(
        again < ts.len(),
        "{again} ssh starts beyond the first of each of {} tunnels:\n{}",
        ts.len(),
        rig.story()
    );
    rig.finish();
}

/// Twelve echo-mode tunnels whose echo port never answers (a listener nobody accepts on):
/// every ssh authenticates and binds its sockets, no tunnel is ever proven. The handshake
/// slot is the server's unauthenticated connection (MaxStartups), so it frees at the bind:
/// all twelve ssh run within a few seconds, not after the 10 s a slot may be held. Linux
/// only: the portable build does not see the bind (docs/compatibility.md).
#[cfg(not(feature = "portable"))]
#[test]
fn a_handshake_slot_frees_once_ssh_has_authenticated() {
    let mut rig = Rig::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent port");
    let echo = silent.local_addr().expect("its port").port();
    let ts: Vec<Tunnel> = (1..=12)
        .map(|k| {
            let mut t = rig.tunnel(&format!("a{k:02}"), Mon::Zero);
            t.monitor = format!("{}:{echo}", free_port());
            t
        })
        .collect();
    rig.write(&ts);
    rig.start(&[]);
    let seen = rig.wait_status(
        Duration::from_secs(8),
        "12 ssh running, none waiting",
        |v| {
            v.len() == 12
                && v.iter()
                    .all(|s| s.ssh_pid.is_some() && s.state != "waiting")
        },
    );
    assert!(
        seen.iter().all(|s| !s.up),
        "a tunnel was proven through a port that never answers: the test tests nothing\n{seen:?}"
    );
    drop(silent);
    rig.finish();
}

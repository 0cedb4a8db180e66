//! Connections made while ssh is away wait for it: never refused, relayed in order once the
//! tunnel is back, never forwarded when the application gave up, bounded in time and number.

use crate::rig::*;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// sshd away (listener stopped, sessions killed): ssh ends and autossh waits for the server.
fn take_sshd_away(rig: &mut Rig) {
    rig.sshd.stop();
    rig.sshd.stop_sessions(Signal::SIGKILL);
    rig.wait_log("server unreachable");
}

#[test]
fn connections_made_while_sshd_is_away_wait_and_the_abandoned_ones_never_reach_the_server() {
    let mut rig = Rig::start(&[]);
    let seen_before = rig.service.connections();
    take_sshd_away(&mut rig);
    // One application waits; others connect and give up. None is refused.
    let mut waiting = Client::connect(rig.tunnel).expect("connect while the tunnel is down");
    let mut refused = 0;
    for _ in 0..10 {
        match Client::connect(rig.tunnel) {
            Ok(c) => drop(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(
        refused,
        0,
        "connects refused while sshd was away\n{}",
        rig.story()
    );
    // The abandoned ones are closed on our side, never relayed.
    must(
        UP,
        "the abandoned connections closed",
        || rig.story(),
        || rig.log().matches("closed by its application").count() == 10,
    );
    let back = Instant::now();
    rig.sshd.restart();
    waiting
        .greeted_and_echoed("ping\n")
        .unwrap_or_else(|e| panic!("the waiting connection: {e}\n{}", rig.story()));
    eprintln!(
        "relayed {:.2} s after sshd was back",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(
        rig.service.connections(),
        seen_before + 1,
        "only the waiting connection reached the server\n{}",
        rig.story()
    );
    drop(waiting);
    rig.finish();
}

/// Reads until the stream ends: how, and after how long.
fn end_of(c: &mut Client) -> (ErrorKind, Duration) {
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let kind = loop {
        match c.s.read(&mut buf) {
            Ok(0) => break ErrorKind::UnexpectedEof,
            Ok(_) => continue,
            Err(e) => break e.kind(),
        }
    };
    (kind, t.elapsed())
}

#[test]
fn waiting_is_bounded_in_time_and_number() {
    let mut rig = Rig::start(&[("AUTOSSH_HOLD_TIME", "2"), ("AUTOSSH_HOLD_MAX", "2")]);
    take_sshd_away(&mut rig);
    let mut a = Client::connect(rig.tunnel).unwrap();
    let mut b = Client::connect(rig.tunnel).unwrap();
    // The third (accepted after them: one queue, in order) finds two waiting: reset at once.
    let mut c = Client::connect(rig.tunnel).unwrap();
    let (kind, after) = end_of(&mut c);
    assert_eq!(kind, ErrorKind::ConnectionReset, "{}", rig.story());
    assert!(after < Duration::from_secs(1), "reset after {after:?}");
    // The first two are reset once they have waited the hold time.
    for x in [&mut a, &mut b] {
        let (kind, after) = end_of(x);
        assert_eq!(kind, ErrorKind::ConnectionReset, "{}", rig.story());
        assert!(after <= Duration::from_secs(4), "reset after {after:?}");
    }
    rig.sshd.restart();
    rig.wait_works();
    rig.finish();
}

#[test]
fn an_ssh_that_dies_resets_its_connections_and_the_next_ones_wait_for_the_new_one() {
    let rig = Rig::start(&[]);
    let mut open = Client::connect(rig.tunnel).unwrap();
    open.greeted_and_echoed("before\n").unwrap();
    rig.sshd.stop_sessions(Signal::SIGKILL);
    // ssh's death is passed on as a reset, not as the server closing its side.
    let (kind, _) = end_of(&mut open);
    assert_eq!(kind, ErrorKind::ConnectionReset, "{}", rig.story());
    let mut next = Client::connect(rig.tunnel).expect("not refused while ssh restarts");
    next.greeted_and_echoed("after\n")
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    rig.finish();
}

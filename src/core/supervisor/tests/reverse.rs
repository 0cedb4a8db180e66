//! Unit tests: an ssh that has not reached the server when the server answers again, and a
//! remote forward's port held on the server by another session.

use super::*;

/// A `-M 0` tunnel up (ssh alive past the gate); its ssh then ends by itself, saying nothing
/// of why (ServerAlive's line is below LogLevel ERROR), long after its start: the next ssh
/// starts at once. Returns the sim with that ssh running.
fn restarted_at_once() -> Sim {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Begin);
    s.advance(120.0);
    assert!(s.sup.healthy());
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    s
}

/// Advances `secs_` in steps of 0.25 s answering each look with `link` and each check
/// with `reachable`; returns every other action.
fn run_for(s: &mut Sim, secs_: f64, link: SshLink, reachable: bool) -> Vec<Action> {
    let mut rest = Vec::new();
    for _ in 0..(secs_ / 0.25).round() as usize {
        for a in s.advance(0.25) {
            match a {
                Action::InspectStall { .. } => {
                    rest.extend(s.ev(Event::Link(link)));
                    rest.extend(s.ev(Event::Stall(false)));
                }
                Action::CheckReach => rest.extend(s.ev(Event::Reachable(reachable))),
                other => rest.push(other),
            }
        }
    }
    rest
}

#[test]
fn an_ssh_still_connecting_is_checked_for_and_replaced_when_the_server_answers_again() {
    let mut s = restarted_at_once();
    // A look before the patience: nothing yet.
    s.now = s.now + secs(0.5);
    assert!(s.ev(Event::Link(SshLink::Connecting)).is_empty());
    assert_eq!(s.sup.timers.get(Timer::ReachCheck), None);
    // Its SYN unanswered a second after its start: the server is checked, and fails.
    let a = run_for(&mut s, 10.0, SshLink::Connecting, false);
    assert!(a.is_empty(), "{a:?}");
    assert!(s.sup.unreachable_since().is_some());
    // The server answers a check again: that ssh goes at once (SIGKILL: it hangs in
    // connect), and the next starts without a wait.
    let a = run_for(&mut s, 0.25, SshLink::Connecting, true);
    assert!(
        a.contains(&Action::TermSsh) && a.contains(&Action::KillSsh),
        "{a:?}"
    );
    assert_eq!(s.exit(SshEnd::Signaled(9)), [SPAWN]);
    assert_eq!(s.sup.stats().restarts_of(RestartKind::Stall), 1);
}

#[test]
fn an_ssh_connecting_while_the_server_answers_checks_is_left_to_its_connect() {
    let mut s = restarted_at_once();
    // Still connecting (to another of the server's addresses, say), while the address
    // checked answers at once: no restart, and no more checks for this ssh.
    let a = run_for(&mut s, 1.25, SshLink::Connecting, true);
    assert!(!a.contains(&Action::TermSsh), "{a:?}");
    assert_eq!(s.sup.timers.get(Timer::ReachCheck), None);
    let a = run_for(&mut s, 10.0, SshLink::Connecting, true);
    assert!(
        !a.contains(&Action::CheckReach) && !a.contains(&Action::TermSsh),
        "{a:?}"
    );
    assert_eq!(s.sup.stats().restarts_of(RestartKind::Stall), 0);
}

#[test]
fn an_ssh_that_connects_stops_the_checks_begun_while_it_connected() {
    let mut s = restarted_at_once();
    run_for(&mut s, 2.0, SshLink::Connecting, false);
    assert!(s.sup.timers.get(Timer::ReachCheck).is_some());
    assert_eq!(s.ev(Event::Link(SshLink::Established)), [Action::StopReach]);
    assert_eq!(s.sup.unreachable_since(), None, "the server was reached");
    assert!(s.ev(Event::Reachable(true)).is_empty());
}

#[test]
fn through_a_proxy_a_connecting_look_starts_no_check() {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Proxied { target: None });
    s.ev(Event::Begin);
    let a = run_for(&mut s, 3.0, SshLink::Connecting, false);
    assert!(!a.contains(&Action::CheckReach), "{a:?}");
}

/// ssh refused the user's remote forward on `port` and exited (ExitOnForwardFailure).
fn refused(s: &mut Sim, port: u16) -> Vec<Action> {
    s.ev(said(Complaint::RemoteForwardFailed(port)));
    s.advance(0.2);
    s.exit(SshEnd::Exited(255))
}

#[test]
fn a_held_remote_port_is_retried_at_a_steady_pace_and_shown_until_free() {
    let mut s = restarted_at_once();
    s.auto_stall = true;
    let mut starts = Vec::new();
    // Ten minutes of refusals: a start every PORT_HELD_EVERY, never backing off.
    for _ in 0..1000 {
        assert!(refused(&mut s, 8022).is_empty());
        assert_eq!(s.sup.phase_name(), "port-held");
        assert_eq!(s.sup.port_held().map(|h| h.port), Some(8022));
        assert!(!s.sup.healthy());
        let wait = s.until(Timer::Restart);
        let a = s.advance(wait.as_secs_f64());
        assert!(
            matches!(a[..], [Action::Spawn { quiet: true, .. }]),
            "{a:?}"
        );
        starts.push(s.now);
        if s.now.since(starts[0]) > secs(600.0) {
            break;
        }
    }
    for w in starts.windows(2) {
        assert_eq!(
            w[1].since(w[0]),
            crate::core::supervisor::recovery::PORT_HELD_EVERY
        );
    }
    // Still shown while the next ssh runs, until it proves the tunnel (the gate).
    assert_eq!(s.sup.phase_name(), "port-held");
    s.advance(1.0);
    assert_eq!(s.sup.port_held(), None);
    assert!(s.sup.healthy());
    assert_eq!(s.sup.phase_name(), "up");
}

#[test]
fn a_port_refused_before_the_tunnel_was_ever_up_is_retried_steadily_for_a_while_only() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    let first = s.now;
    let mut last_gap = Duration::ZERO;
    for _ in 0..2000 {
        assert!(refused(&mut s, 8022).is_empty());
        assert_eq!(s.sup.phase_name(), "port-held");
        let before = s.now;
        let wait = s.until(Timer::Restart);
        s.advance(wait.as_secs_f64());
        last_gap = s.now.since(before) + secs(0.2);
        if s.now.since(first) > secs(400.0) {
            break;
        }
    }
    // Beyond its steady spell, the backoff paces it (the forward may be forbidden).
    assert!(last_gap > secs(2.0), "{last_gap:?}");
    assert_eq!(s.sup.phase_name(), "port-held");
}

#[test]
fn another_failure_ends_the_port_held_state() {
    let mut s = restarted_at_once();
    assert!(refused(&mut s, 8022).is_empty());
    assert!(s.sup.port_held().is_some());
    let wait = s.until(Timer::Restart);
    s.advance(wait.as_secs_f64());
    s.ev(said(Complaint::Network("Connection refused".into())));
    s.exit(SshEnd::Exited(255));
    assert_eq!(s.sup.port_held(), None);
    assert_ne!(s.sup.phase_name(), "port-held");
}

#[test]
fn loop_modes_busy_monitor_port_is_not_a_held_user_port() {
    let mut s = Sim::new(Config {
        loop_monitor: Some(LoopMonitor {
            local: 20000,
            reserved: vec![],
        }),
        ..monitored(600.0)
    });
    s.ev(Event::Begin);
    let a = s.ev(said(Complaint::RemoteForwardFailed(20000)));
    assert!(a.contains(&Action::TermSsh), "{a:?}");
    s.exit(SshEnd::Signaled(15));
    assert_eq!(s.sup.port_held(), None);
}

#[test]
fn a_probe_answered_by_an_ssh_refused_its_remote_forward_proves_nothing() {
    let mut s = Sim::new(Config {
        session_probe: true,
        ..gate0()
    });
    s.ev(Event::Begin);
    let a = s.advance(0.2);
    assert!(matches!(a[..], [Action::SendProbe { .. }]), "{a:?}");
    s.ev(said(Complaint::RemoteForwardFailed(8022)));
    s.echo_all(&a, 0.001);
    s.advance(2.0);
    assert!(!s.sup.healthy(), "{:?}", s.sup.state());
    assert_eq!(s.readies, 0);
}

#[test]
fn with_the_users_own_exit_on_forward_failure_a_refused_forward_does_not_hold_the_proof() {
    let mut s = Sim::new(Config {
        refusal_ends_ssh: false,
        ..gate0()
    });
    s.ev(Event::Begin);
    s.ev(said(Complaint::RemoteForwardFailed(8022)));
    // ExitOnForwardFailure=no: ssh runs on without that forward, as with 1.4g it counts as up.
    s.advance(1.0);
    assert!(s.sup.healthy(), "{:?}", s.sup.state());
}

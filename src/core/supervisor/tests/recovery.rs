//! Unit tests: after a failure: reachability checks, backoff, stalls, resumes, network changes, blind starts.

use super::*;

#[test]
fn a_returning_server_is_tried_at_once_whatever_the_backoff() {
    let mut s = waiting();
    s.ev(Event::Reachable(false));
    // Checks every 125 ms while the server is away, and not sooner.
    assert!(s.advance(0.124).is_empty());
    assert_eq!(s.advance(0.001), [Action::CheckReach]);
    s.ev(Event::Reachable(false));
    assert_eq!(s.advance(0.125), [Action::CheckReach]);
    assert_eq!(s.ev(Event::Reachable(true)), [Action::StopReach, SPAWN]);
    assert_eq!(s.sup.start_count(), 2);
}

#[test]
fn one_of_many_tunnels_checks_on_the_shared_grid() {
    let mut s = Sim::new(Config {
        gated: true,
        ..gate0()
    });
    s.ev(Event::Begin);
    s.advance(0.037);
    // Refused twice: it waits for the server.
    for _ in 0..2 {
        s.ev(Event::SlotGranted);
        s.ev(said(Complaint::Network("Connection refused".into())));
        s.exit(SshEnd::Exited(255));
    }
    assert!(matches!(s.sup.state(), State::WaitingForServer(_)));
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    // The next check is on the 125 ms grid of the clock, whenever this one ran.
    s.ev(Event::Reachable(false));
    let next = s.now + s.until(Timer::ReachCheck);
    assert_eq!(next, next.on_grid(secs(0.125)), "{next:?}");
    assert!(s.until(Timer::ReachCheck) < secs(0.125));
}

#[test]
fn a_server_reachable_all_along_waits_out_the_backoff() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    // Second quick death: 0.25-0.5 s backoff; the server answers TCP at once.
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    assert_eq!(s.ev(Event::Reachable(true)), [Action::StopReach]);
    assert_eq!(*s.sup.state(), State::BackingOff);
    let wait = s.until(Timer::Restart);
    assert!(wait >= secs(0.25) && wait <= secs(0.5), "{wait:?}");
    assert_eq!(s.advance(wait.as_secs_f64()), [SPAWN]);
}

#[test]
fn handshakes_back_off_exponentially_to_the_cap_while_unreachable() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    let mut spawns = Vec::new();
    let start = s.now;
    for _ in 0..400 {
        for a in s.advance(0.25) {
            match a {
                Action::CheckReach => {
                    s.ev(Event::Reachable(false));
                }
                Action::Spawn { .. } => spawns.push(s.now.since(start)),
                _ => {}
            }
        }
        if matches!(s.sup.state(), State::Running { .. }) {
            s.ev(said(Complaint::Network("Connection timed out".into())));
            s.exit(SshEnd::Exited(255));
        }
    }
    let gaps: Vec<f64> = spawns
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(gaps.iter().all(|&g| g <= 30.5), "{gaps:?}");
    assert!(gaps.last().unwrap() >= &15.0, "reaches the cap: {gaps:?}");
    assert!(
        spawns.len() < 20,
        "no hammering: {} handshakes in 100 s",
        spawns.len()
    );
}

#[test]
fn configuration_errors_exit_inside_the_gate_and_back_off_to_the_cap_after() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.ev(said(Complaint::Config(
        "Permission denied (publickey).".into(),
    )));
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(1));

    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    s.ev(said(Complaint::Config(
        "Host key verification failed.".into(),
    )));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
    assert_eq!(s.until(Timer::Restart), secs(30.0));
}

#[test]
fn unknown_server_address_falls_back_to_the_backoff() {
    let mut s = waiting();
    assert_eq!(s.ev(Event::ReachUnknown), [Action::StopReach, SPAWN]);
    // From now on no checks are asked for.
    s.ev(said(Complaint::Network("Connection refused".into())));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
}

#[test]
fn sighup_and_sigusr1_skip_the_wait() {
    let mut s = waiting();
    assert_eq!(s.ev(Event::Signal(Sig::Retry)), [Action::StopReach, SPAWN]);
    let mut s = waiting();
    assert!(s.ev(Event::Signal(Sig::Restart)).contains(&SPAWN));
}

#[test]
fn maxlifetime_while_waiting_exits() {
    let mut s = Sim::new(Config {
        max_lifetime: Some(secs(0.9)),
        ..gate0()
    });
    s.ev(Event::Begin);
    s.ev(said(Complaint::Network("No route to host".into())));
    s.exit(SshEnd::Exited(255));
    let acts = s.advance(0.9);
    assert_eq!(exit_code(&acts), Some(0), "{acts:?}");
}

#[test]
fn a_stalled_connection_is_replaced_once_the_server_answers_again() {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Begin);
    assert_eq!(s.advance(1.0), [LOOK]);
    assert!(s.ev(Event::Stall(false)).is_empty());
    assert_eq!(s.advance(1.0), [LOOK]);
    assert!(s.ev(Event::Stall(true)).is_empty());
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    s.ev(Event::Reachable(false));
    let a = s.advance(0.25);
    assert!(a.contains(&Action::CheckReach), "{a:?}");
    let r = s.ev(Event::Reachable(true));
    assert!(r.contains(&Action::TermSsh), "{r:?}");
    // Restarted without backoff.
    assert!(s.exit(SshEnd::Signaled(15)).contains(&SPAWN));
}

#[test]
fn an_ssh_that_dies_stalled_in_a_black_hole_is_not_replaced_blind() {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Begin);
    // A long-lived ssh: its end would be retried at once (no backoff).
    s.advance(120.0);
    s.ev(Event::Stall(true));
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    s.ev(Event::Reachable(false));
    // ssh gives up by itself (ServerAlive, say nothing of the cause): no ssh into the
    // hole at once; the checks go on and the server's answer starts it.
    let a = s.exit(SshEnd::Exited(255));
    assert!(!a.contains(&SPAWN), "{a:?}");
    assert!(
        matches!(s.sup.state(), State::WaitingForServer(_)),
        "{:?}",
        s.sup.state()
    );
    let a = s.advance(0.25);
    assert!(a.contains(&Action::CheckReach), "{a:?}");
    let a = s.ev(Event::Reachable(true));
    assert!(a.contains(&SPAWN), "{a:?}");
}

#[test]
fn network_changes_are_looked_at_once_settled_and_acted_on() {
    let mut s = up(600.0);
    s.advance(5.0);
    // A burst of rtnetlink messages: one look, 200 ms after the first.
    s.ev(Event::NetworkChanged);
    s.advance(0.1);
    s.ev(Event::NetworkChanged);
    assert_eq!(s.advance(0.1), [Action::CheckNetPath]);
    assert!(s.advance(1.0).is_empty());
    // Untouched path: nothing.
    assert!(s.ev(Event::NetPath(NetPath::Same)).is_empty());
    // Another way to the server: probe now, whatever the poll.
    let a = s.ev(Event::NetPath(NetPath::Moved("moved".into())));
    assert!(matches!(a[..], [Action::SendProbe { .. }]), "{a:?}");
    s.echo_all(&a, 0.001);
    // The local address is gone: restart now, without waiting for SIGTERM's grace.
    let a = s.ev(Event::NetPath(NetPath::Gone("gone".into())));
    assert!(
        a.contains(&Action::TermSsh) && a.contains(&Action::KillSsh),
        "{a:?}"
    );
    assert!(s.exit(SshEnd::Signaled(9)).contains(&SPAWN));
}

#[test]
fn a_stall_with_the_server_answering_all_along_is_left_alone() {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Begin);
    s.advance(1.0);
    s.ev(Event::Stall(true));
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    assert!(s.ev(Event::Reachable(true)).is_empty());
    // The connection recovers by itself: checks stop.
    s.advance(1.0);
    assert_eq!(s.ev(Event::Stall(false)), [Action::StopReach]);
    assert_eq!(s.sup.stats().restarts, 0);
}

#[test]
fn a_resume_probes_at_once() {
    let mut s = up(600.0);
    s.advance(10.0);
    s.ev(Event::Resumed);
    assert!(s.advance(0.0).contains(&Action::SendProbe { seq: 2 }));
}

#[test]
fn a_failed_probe_checks_the_server_before_the_next_ssh() {
    let mut s = up(4.0);
    let seq = s.next_probe();
    s.advance(1.0);
    s.ev(Event::Path(PathState::Quiet));
    let _ = seq;
    // ssh is stopped; its exit leads to a reachability check, not a blind spawn.
    assert!(s.exit(SshEnd::Signaled(15)).is_empty());
    assert!(
        matches!(s.sup.state(), State::WaitingForServer(_)),
        "{:?}",
        s.sup.state()
    );
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    // The server (frozen session, live host) answers TCP: spawn now.
    assert_eq!(s.ev(Event::Reachable(true)), [Action::StopReach, SPAWN]);
}

#[test]
fn ready_once_when_the_tunnel_is_first_proven() {
    let mut s = up(4.0);
    assert_eq!(s.readies, 1);
    s.ev(Event::Signal(Sig::Restart));
    s.exit(SshEnd::Signaled(15));
    let a = s.advance(0.2);
    s.echo_all(&a, 0.001);
    assert_eq!(
        *s.sup.state(),
        State::Running {
            phase: Phase::Up,
            probe: None
        }
    );
    assert_eq!(s.readies, 1, "READY is said once");
    assert!(s.sup.healthy());
    // -M 0: ready once ssh lives past the gate.
    let mut s = Sim::new(Config {
        gate_time: secs(5.0),
        ..cfg()
    });
    s.ev(Event::Begin);
    s.advance(4.9);
    assert_eq!(s.readies, 0);
    assert!(!s.sup.healthy());
    s.advance(0.1);
    assert_eq!(s.readies, 1);
    assert_eq!(s.sup.phase_name(), "up");
}

#[test]
fn a_blind_ssh_that_connects_stops_the_checks() {
    let mut s = waiting();
    s.auto_stall = false;
    s.ev(Event::Reachable(false));
    for _ in 0..200 {
        let acts = s.advance(0.25);
        if acts.contains(&SPAWN) {
            break;
        }
        for a in acts {
            if a == Action::CheckReach {
                s.ev(Event::Reachable(false));
            }
        }
    }
    assert_eq!(s.ev(Event::Link(SshLink::Established)), [Action::StopReach]);
    assert!(s.ev(Event::Reachable(true)).is_empty());
}

#[test]
fn an_ssh_that_ends_by_itself_counts_the_outage_from_the_last_proof() {
    let mut s = up(600.0);
    s.advance(5.0);
    // ssh exits by itself (the server closed the session), 5 s after the last echo.
    s.exit(SshEnd::Exited(255));
    assert_eq!(s.sup.health.down_since, Some(s.now.before(secs(5.0))));
}

#[test]
fn through_a_proxy_no_reachability_check_is_asked_for() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Proxied {
        target: Some("10.0.0.9:22".into()),
    });
    s.ev(Event::Begin);
    let jump_down = || {
        said(Complaint::Network(
            "ssh: connect to host 10.0.0.1 port 22: Connection refused".into(),
        ))
    };
    s.ev(jump_down());
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    s.ev(jump_down());
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
    assert_eq!(s.sup.timers.get(Timer::ReachCheck), None);
}

//! Unit tests: held forwards (where connections go), make-before-break, ssh on demand.

use super::*;

fn held(poll: f64, handover: bool) -> Config {
    Config {
        held: true,
        handover,
        drain_time: secs(30.0),
        ..monitored(poll)
    }
}

/// Proves the new ssh: its first confirmation probe comes back.
fn prove(s: &mut Sim) -> Vec<Action> {
    let seq = s.next_probe();
    s.now = s.now + secs(0.002);
    s.ev(Event::ProbeEchoed { seq })
}

#[test]
fn connections_go_to_an_ssh_once_it_is_proven() {
    let mut s = Sim::new(held(600.0, false));
    assert_eq!(s.ev(Event::Begin), [SPAWN]);
    assert_eq!(prove(&mut s), [Action::Serve { gen: 1 }]);
    // A failure: the next ssh is number 2, and is served only once proven again.
    let seq = s.next_probe();
    let a = s.ev(Event::ProbeFailed {
        seq,
        why: ProbeFailure::Closed,
    });
    assert!(a.contains(&Action::TermSsh), "{a:?}");
    s.exit(SshEnd::Signaled(15));
    assert_eq!(s.settle(), [SPAWN]);
    assert_eq!(s.gens, [1, 2]);
    assert_eq!(prove(&mut s), [Action::Serve { gen: 2 }]);
}

#[test]
fn a_planned_restart_starts_the_new_ssh_before_the_old_one_stops() {
    let mut s = Sim::new(held(600.0, true));
    s.ev(Event::Begin);
    prove(&mut s);
    let a = s.ev(Event::Signal(Sig::Restart));
    assert_eq!(
        a,
        [Action::Detach, SPAWN],
        "no SIGTERM: the old one serves on"
    );
    assert!(s.sup.healthy(), "the tunnel stays up through it");
    assert_eq!(s.sup.stats().restarts, 1);
    // The new one proven: connections go to it, the old one drains, then stops.
    assert_eq!(
        prove(&mut s),
        [Action::Serve { gen: 2 }, Action::Drain { gen: 1 }]
    );
    assert_eq!(s.ev(Event::Drained), [Action::StopOld]);
    // It does not go within the grace: SIGKILL.
    assert_eq!(s.advance(3.0), [Action::KillOld]);
    assert!(s.ev(Event::OldExited(SshEnd::Signaled(9))).is_empty());
    // Another planned restart may follow.
    assert_eq!(s.ev(Event::Signal(Sig::Restart)), [Action::Detach, SPAWN]);
}

#[test]
fn the_old_ssh_stops_when_the_drain_time_is_over() {
    let mut s = Sim::new(held(600.0, true));
    s.ev(Event::Begin);
    prove(&mut s);
    s.ev(Event::Signal(Sig::Restart));
    prove(&mut s);
    assert!(s.advance(29.0).iter().all(|a| *a != Action::StopOld));
    assert_eq!(s.advance(1.0), [Action::StopOld]);
    assert!(s.ev(Event::OldExited(SshEnd::Exited(0))).is_empty());
    assert!(s.advance(5.0).iter().all(|a| *a != Action::KillOld));
}

#[test]
fn a_new_ssh_that_does_not_come_up_gives_the_old_one_up_too() {
    let mut s = Sim::new(held(4.0, true));
    s.ev(Event::Begin);
    prove(&mut s);
    s.ev(Event::Signal(Sig::Restart));
    // The new ssh dies before it is proven.
    let a = s.exit(SshEnd::Exited(255));
    assert!(a.contains(&Action::StopOld), "{a:?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Serve { .. })));
}

#[test]
fn without_make_before_break_a_planned_restart_stops_ssh_first() {
    let mut s = Sim::new(held(600.0, false));
    s.ev(Event::Begin);
    prove(&mut s);
    assert_eq!(s.ev(Event::Signal(Sig::Restart)), [Action::TermSsh]);
}

#[test]
fn on_demand_ssh_starts_with_a_connection_and_stops_when_idle() {
    let mut s = Sim::new(Config {
        on_demand: Some(secs(60.0)),
        ..held(600.0, false)
    });
    assert!(s.ev(Event::Begin).is_empty(), "no ssh yet");
    assert_eq!(s.readies, 1, "ready: autossh listens");
    assert_eq!(s.sup.phase_name(), "idle");
    assert!(s.sup.healthy());
    assert_eq!(s.ev(Event::Busy(true)), [SPAWN]);
    assert_eq!(prove(&mut s), [Action::Serve { gen: 1 }]);
    // The last connection closes; one comes back before the idle time: ssh stays.
    s.ev(Event::Busy(false));
    s.advance(30.0);
    s.ev(Event::Busy(true));
    assert!(!s.advance(40.0).contains(&Action::TermSsh));
    s.ev(Event::Busy(false));
    let a = s.advance(60.0);
    assert!(a.contains(&Action::TermSsh), "{a:?}");
    assert!(s.exit(SshEnd::Signaled(15)).is_empty());
    assert_eq!(s.sup.phase_name(), "idle");
    assert_eq!(s.ev(Event::Busy(true)), [SPAWN]);
}

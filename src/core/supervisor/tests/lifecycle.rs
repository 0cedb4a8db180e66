//! Unit tests: ssh's exits, signals, MAXSTART, MAXLIFETIME, the gate.

use super::*;

#[test]
fn begin_spawns_and_exit_0_exits_0() {
    let mut s = Sim::new(cfg());
    assert_eq!(s.ev(Event::Begin), [SPAWN]);
    s.advance(40.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(0))), Some(0));
    assert!(matches!(s.sup.state(), State::Done(_)));
}

#[test]
fn exit_within_gate_on_first_run_exits_1() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.advance(29.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(1));
}

#[test]
fn exit_255_after_gate_restarts_at_once() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.advance(31.0);
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    assert_eq!(s.sup.start_count(), 2);
    // Second run: exit 1 restarts, even quickly (after a check of the server).
    s.advance(1.0);
    s.exit(SshEnd::Exited(1));
    assert_eq!(s.settle(), [SPAWN]);
    s.advance(1.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(3))), Some(1));
}

#[test]
fn exit_1_after_gate_on_first_run_exits_1() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.advance(31.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(1))), Some(1));
}

#[test]
fn sigkill_of_ssh_stops_autossh_other_signals_restart() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.advance(1.0);
    assert_eq!(s.exit(SshEnd::Signaled(15)), [SPAWN]);
    s.advance(1.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Signaled(9))), Some(0));
}

#[test]
fn maxstart_counts_starts() {
    let mut s = Sim::new(Config {
        max_start: Some(2),
        gate_time: Duration::ZERO,
        ..cfg()
    });
    assert_eq!(s.ev(Event::Begin), [SPAWN]);
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    // The last start failed: exit at once, no backoff wait for a start that cannot come.
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Exit(0)]);
    assert_eq!(s.sup.start_count(), 2);
    let mut s = Sim::new(Config {
        max_start: Some(0),
        ..cfg()
    });
    assert_eq!(s.ev(Event::Begin), [Action::Exit(0)]);
}

#[test]
fn maxlifetime_stops_ssh_and_exits_0() {
    let mut s = Sim::new(Config {
        max_lifetime: Some(secs(20.0)),
        ..cfg()
    });
    s.ev(Event::Begin);
    assert!(s.advance(19.0).is_empty());
    assert_eq!(s.advance(1.0), [Action::TermSsh]);
    assert_eq!(exit_code(&s.exit(SshEnd::Signaled(15))), Some(0));
}

#[test]
fn sigterm_in_every_state_exits_0_without_orphans() {
    // Running: TERM ssh, then exit once it is gone.
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    assert_eq!(s.ev(Event::Signal(Sig::Terminate(15))), [Action::TermSsh]);
    assert_eq!(exit_code(&s.exit(SshEnd::Signaled(15))), Some(0));
    // Waiting for the server: nothing runs, exit at once.
    let mut s = waiting();
    assert_eq!(
        s.ev(Event::Signal(Sig::Terminate(2))),
        [Action::StopReach, Action::Exit(0)]
    );
    // Before the first start.
    let mut s = Sim::new(cfg());
    assert_eq!(s.ev(Event::Signal(Sig::Terminate(3))), [Action::Exit(0)]);
}

#[test]
fn ssh_ignoring_term_gets_killed_after_the_grace() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.ev(Event::Signal(Sig::Terminate(15)));
    assert!(s.advance(KILL_GRACE.as_secs_f64() - 0.1).is_empty());
    assert_eq!(s.advance(0.1), [Action::KillSsh]);
    // Our own SIGKILL is not "killed on purpose by someone else": exit code is ours.
    assert_eq!(exit_code(&s.exit(SshEnd::Signaled(9))), Some(0));
}

#[test]
fn second_sigterm_kills_at_once() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    s.ev(Event::Signal(Sig::Terminate(15)));
    assert_eq!(s.ev(Event::Signal(Sig::Terminate(15))), [Action::KillSsh]);
}

#[test]
fn sigusr1_restarts_now_and_sigterm_while_stopping_wins() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    assert_eq!(s.ev(Event::Signal(Sig::Restart)), [Action::TermSsh]);
    assert_eq!(s.exit(SshEnd::Signaled(15)), [SPAWN]);
    assert_eq!(s.sup.start_count(), 2);
    s.ev(Event::Signal(Sig::Restart));
    s.ev(Event::Signal(Sig::Terminate(15)));
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(0));
}

#[test]
fn first_spawn_failure_exits_1_later_ones_back_off() {
    let mut s = Sim::new(cfg());
    s.ev(Event::Begin);
    assert_eq!(
        exit_code(&s.ev(Event::SpawnFailed("no such file".into()))),
        Some(1)
    );
    let mut s = Sim::new(Config {
        gate_time: Duration::ZERO,
        ..cfg()
    });
    s.ev(Event::Begin);
    s.exit(SshEnd::Exited(255));
    s.ev(Event::SpawnFailed("EAGAIN".into()));
    assert_eq!(s.settle(), [SPAWN]);
}

#[test]
fn one_of_many_waits_for_a_handshake_slot() {
    let mut s = Sim::new(Config {
        gated: true,
        ..cfg()
    });
    assert_eq!(s.ev(Event::Begin), [Action::AwaitSlot]);
    assert_eq!(s.sup.phase_name(), "waiting");
    assert_eq!(s.sup.start_count(), 0);
    // Nothing happens while it waits: no timers run out into a start.
    assert!(s.advance(60.0).is_empty());
    assert_eq!(s.ev(Event::SlotGranted), [SPAWN]);
    assert_eq!(s.sup.start_count(), 1);
    // After a restart it asks again.
    s.advance(31.0);
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::AwaitSlot]);
    assert_eq!(s.ev(Event::SlotGranted), [SPAWN]);
}

#[test]
fn a_waiting_tunnel_stops_at_once() {
    let mut s = Sim::new(Config {
        gated: true,
        ..cfg()
    });
    s.ev(Event::Begin);
    let acts = s.ev(Event::Signal(Sig::Terminate(15)));
    assert_eq!(exit_code(&acts), Some(0));
    assert!(!acts.contains(&Action::TermSsh));
    // A slot granted too late starts nothing.
    assert!(s.ev(Event::SlotGranted).is_empty());
}

#[test]
fn one_of_many_confirms_quickly_to_free_its_handshake_slot() {
    let mut s = Sim::new(Config {
        gated: true,
        ..monitored(600.0)
    });
    s.ev(Event::Begin);
    assert_eq!(s.ev(Event::SlotGranted), [SPAWN]);
    assert!(s.advance(0.05).contains(&Action::SendProbe { seq: 1 }));
    // Not there yet (ssh still authenticating): again 50 ms later, not 400.
    let failed = Event::ProbeFailed {
        seq: 1,
        why: ProbeFailure::Refused("refused".into()),
    };
    s.ev(failed);
    assert!(s.advance(0.05).contains(&Action::SendProbe { seq: 2 }));
}

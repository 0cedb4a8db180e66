//! Unit tests of the supervisor with a fake clock: no processes, no sockets.

use super::*;
use crate::core::ssh_stderr::Complaint;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn cfg() -> Config {
    Config {
        gate_time: secs(30.0),
        max_start: None,
        max_lifetime: None,
        poll: secs(600.0),
        first_poll: secs(600.0),
        net_timeout: secs(15.0),
        monitored: false,
        session_probe: false,
        seed: 1,
    }
}

fn monitored(poll: f64) -> Config {
    Config {
        poll: secs(poll),
        first_poll: secs(poll),
        net_timeout: secs((poll / 2.0).min(15.0)),
        monitored: true,
        gate_time: Duration::ZERO,
        ..cfg()
    }
}

/// A supervisor and a fake clock.
struct Sim {
    sup: Supervisor,
    now: Time,
    /// Answer the once-a-second stall inspection with "not stalled", out of sight.
    auto_stall: bool,
    /// `Action::Ready` is counted here rather than returned.
    readies: usize,
}

impl Sim {
    fn new(cfg: Config) -> Sim {
        Sim {
            sup: Supervisor::new(cfg),
            now: Time::from_origin(secs(1000.0)),
            auto_stall: true,
            readies: 0,
        }
    }

    fn ev(&mut self, e: Event) -> Vec<Action> {
        let out = self.sup.handle(e, self.now);
        self.without_ready(out)
    }

    fn without_ready(&mut self, acts: Vec<Action>) -> Vec<Action> {
        let before = acts.len();
        let rest: Vec<Action> = acts.into_iter().filter(|a| *a != Action::Ready).collect();
        self.readies += before - rest.len();
        rest
    }

    /// Advances the clock by `s` seconds, firing deadlines on the way, in order.
    fn advance(&mut self, s: f64) -> Vec<Action> {
        let end = self.now + secs(s);
        let mut out = Vec::new();
        while let Some(next) = self.sup.timers.next().filter(|&t| t <= end) {
            self.now = self.now.max(next);
            let acts = self.sup.on_time(self.now);
            for a in self.without_ready(acts) {
                if a == Action::InspectStall && self.auto_stall {
                    let more = self.sup.handle(Event::Stall(false), self.now);
                    out.extend(self.without_ready(more));
                } else {
                    out.push(a);
                }
            }
        }
        self.now = end;
        out
    }

    fn exit(&mut self, end: SshEnd) -> Vec<Action> {
        self.ev(Event::SshExited(end))
    }

    /// Lets a restart run its course with a reachable server: answers checks, waits out
    /// the backoff. Returns the actions other than the checks (a Spawn or an Exit).
    fn settle(&mut self) -> Vec<Action> {
        for _ in 0..1000 {
            let mut acts = self.advance(0.05);
            let mut rest = Vec::new();
            while let Some(a) = acts.pop() {
                match a {
                    Action::CheckReach => acts.extend(self.ev(Event::Reachable(true))),
                    Action::StopReach => {}
                    other => rest.push(other),
                }
            }
            if !rest.is_empty() {
                return rest;
            }
        }
        panic!("nothing happened in 50 s")
    }

    /// When `t` is due next, from now.
    fn until(&self, t: Timer) -> Duration {
        self.sup.timers.get(t).expect("armed").since(self.now)
    }

    /// Advances to the next probe, which must be sent; returns its number.
    fn next_probe(&mut self) -> u64 {
        let wait = self.until(Timer::Probe);
        match self.advance(wait.as_secs_f64())[..] {
            [Action::SendProbe { seq }] => seq,
            ref other => panic!("expected a probe, got {other:?}"),
        }
    }

    /// Answers every SendProbe in `acts` with an echo after `rtt` seconds.
    fn echo_all(&mut self, acts: &[Action], rtt: f64) {
        for a in acts {
            if let Action::SendProbe { seq } = a {
                self.now = self.now + secs(rtt);
                let out = self.ev(Event::ProbeEchoed { seq: *seq });
                assert!(out.is_empty(), "{out:?}");
            }
        }
    }
}

fn exit_code(acts: &[Action]) -> Option<i32> {
    acts.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

#[test]
fn begin_spawns_and_exit_0_exits_0() {
    let mut s = Sim::new(cfg());
    assert_eq!(s.ev(Event::Begin), [Action::Spawn]);
    s.advance(40.0);
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(0))), Some(0));
    assert_eq!(*s.sup.state(), State::Done);
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
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Spawn]);
    assert_eq!(s.sup.start_count(), 2);
    // Second run: exit 1 restarts, even quickly (after a check of the server).
    s.advance(1.0);
    s.exit(SshEnd::Exited(1));
    assert_eq!(s.settle(), [Action::Spawn]);
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
    assert_eq!(s.exit(SshEnd::Signaled(15)), [Action::Spawn]);
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
    assert_eq!(s.ev(Event::Begin), [Action::Spawn]);
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Spawn]);
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
    assert_eq!(s.exit(SshEnd::Signaled(15)), [Action::Spawn]);
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
    assert_eq!(s.settle(), [Action::Spawn]);
}

// ---- the monitor's schedule ----

/// Starts a monitored supervisor and proves the tunnel; returns the sim.
fn up(poll: f64) -> Sim {
    let mut s = Sim::new(monitored(poll));
    s.ev(Event::Begin);
    let acts = s.advance(0.2);
    assert_eq!(acts, [Action::SendProbe { seq: 1 }]);
    s.echo_all(&acts, 0.002);
    assert_eq!(*s.sup.state(), State::Running { phase: Phase::Up });
    s
}

#[test]
fn confirmation_retries_quickly_until_the_tunnel_answers() {
    let mut s = Sim::new(monitored(600.0));
    s.ev(Event::Begin);
    let a = s.advance(0.2);
    assert_eq!(a, [Action::SendProbe { seq: 1 }]);
    let r = s.ev(Event::ProbeFailed {
        seq: 1,
        why: ProbeFailure::Refused("refused".into()),
    });
    assert_eq!(r, [Action::DropProbe]);
    // Next attempt 0.4 s later, not a whole poll.
    assert!(s.advance(0.39).is_empty());
    let a = s.advance(0.01);
    assert_eq!(a, [Action::SendProbe { seq: 2 }]);
    s.echo_all(&a, 0.003);
    assert_eq!(*s.sup.state(), State::Running { phase: Phase::Up });
    assert_eq!(s.sup.stats().last_rtt, Some(secs(0.003)));
}

#[test]
fn unconfirmed_tunnel_is_restarted_after_first_poll_plus_net_timeout_at_least_15_s() {
    let mut s = Sim::new(monitored(4.0));
    s.ev(Event::Begin);
    let mut restarted = false;
    for _ in 0..300 {
        let acts = s.advance(0.1);
        for a in &acts {
            if let Action::SendProbe { seq } = a {
                let seq = *seq;
                s.ev(Event::ProbeFailed {
                    seq,
                    why: ProbeFailure::Closed,
                });
            }
        }
        if acts.contains(&Action::TermSsh) {
            restarted = true;
            break;
        }
    }
    assert!(restarted);
    // first_poll 4 + net timeout 2 is under the 15 s floor a handshake gets.
    assert_eq!(s.now.since(Time::from_origin(secs(1000.0))), secs(15.0));
}

#[test]
fn probes_run_every_poll_once_up() {
    let mut s = up(4.0);
    for _ in 0..5 {
        let a = s.advance(4.0);
        assert_eq!(a.len(), 1, "{a:?}");
        s.echo_all(&a, 0.001);
    }
    assert_eq!(s.sup.stats().restarts, 0);
}

#[test]
fn silent_server_is_detected_at_the_patience_floor() {
    let mut s = up(4.0);
    let a = s.advance(4.0);
    assert!(matches!(a[..], [Action::SendProbe { .. }]));
    // No echo. After one second (the floor) the loop is asked to look at the path.
    assert!(s.advance(0.99).is_empty());
    assert_eq!(s.advance(0.01), [Action::InspectPath]);
    let r = s.ev(Event::Path(PathState::Quiet));
    assert_eq!(r, [Action::DropProbe, Action::TermSsh]);
    s.exit(SshEnd::Signaled(15));
    assert_eq!(s.settle(), [Action::Spawn]);
    assert_eq!(s.sup.stats().restarts, 1);
}

#[test]
fn busy_path_waits_for_the_net_timeout() {
    let mut s = up(4.0);
    s.advance(4.0);
    assert_eq!(s.advance(1.0), [Action::InspectPath]);
    assert!(s.ev(Event::Path(PathState::Busy)).is_empty());
    assert!(s.advance(0.99).is_empty());
    // At the net timeout one more look; nothing from the server: the probe failed.
    assert_eq!(s.advance(0.01), [Action::InspectPath]);
    let r = s.ev(Event::Path(PathState::Busy));
    assert!(r.contains(&Action::TermSsh), "{r:?}");
}

#[test]
fn a_full_link_gets_more_time_while_the_server_sends() {
    let mut s = up(4.0);
    let seq = s.next_probe();
    assert_eq!(s.advance(1.0), [Action::InspectPath]);
    assert!(s.ev(Event::Path(PathState::Alive)).is_empty());
    for _ in 0..3 {
        let a = s.advance(s.until(Timer::ProbeHard).as_secs_f64());
        assert_eq!(a, [Action::InspectPath]);
        assert!(s.ev(Event::Path(PathState::Alive)).is_empty(), "extended");
    }
    // The echo arrives 6.5 s late (soft 1 s, hard 2 s, then 2 s more twice): a success.
    s.advance(0.5);
    assert!(s.ev(Event::ProbeEchoed { seq }).is_empty());
    assert_eq!(s.sup.stats().restarts, 0);
    assert_eq!(s.sup.stats().last_rtt, Some(secs(6.5)));
}

#[test]
fn a_full_link_is_not_waited_for_forever() {
    let mut s = up(4.0);
    s.next_probe();
    s.advance(1.0);
    s.ev(Event::Path(PathState::Alive));
    let mut restarted = false;
    for _ in 0..100 {
        let a = s.advance(s.until(Timer::ProbeHard).as_secs_f64());
        assert_eq!(a, [Action::InspectPath]);
        if s.ev(Event::Path(PathState::Alive))
            .contains(&Action::TermSsh)
        {
            restarted = true;
            break;
        }
    }
    assert!(restarted);
    assert!(s.now.since(Time::from_origin(secs(1000.0))) <= secs(70.0));
}

#[test]
fn a_late_echo_before_the_net_timeout_is_a_success() {
    let mut s = up(4.0);
    let seq = s.next_probe();
    assert_eq!(s.advance(1.0), [Action::InspectPath]);
    assert!(s.ev(Event::Path(PathState::Unknown)).is_empty());
    s.advance(0.5);
    assert!(s.ev(Event::ProbeEchoed { seq }).is_empty());
    assert_eq!(s.sup.stats().restarts, 0);
    assert_eq!(s.sup.stats().last_rtt, Some(secs(1.5)));
}

#[test]
fn wrong_bytes_fail_the_probe_and_stale_echoes_are_ignored() {
    let mut s = up(4.0);
    let a = s.advance(4.0);
    let Action::SendProbe { seq } = a[0] else {
        panic!()
    };
    // An echo of an older probe is not this probe.
    assert!(s.ev(Event::ProbeEchoed { seq: seq - 1 }).is_empty());
    let r = s.ev(Event::ProbeFailed {
        seq,
        why: ProbeFailure::WrongBytes,
    });
    assert_eq!(r, [Action::DropProbe, Action::TermSsh]);
}

#[test]
fn slow_tunnel_raises_the_patience() {
    let mut s = up(4.0);
    for _ in 0..8 {
        let seq = s.next_probe();
        s.advance(0.9);
        s.ev(Event::ProbeEchoed { seq });
    }
    assert_eq!(s.sup.stats().last_rtt, Some(secs(0.9)));
    s.next_probe();
    // 2·0.9 + 4·var > 1.8 s: no inspection at the one-second floor.
    assert!(s.advance(1.7).is_empty());
}

#[test]
fn monitor_port_busy_moves_the_port_and_restarts_without_backoff() {
    let mut s = Sim::new(monitored(4.0));
    s.sup.set_remote_monitor_port(Some(20000));
    s.ev(Event::Begin);
    // A complaint about another port (the user's own -R) is not ours.
    assert!(s
        .ev(Event::SshSaid(Complaint::RemoteForwardFailed(8080)))
        .is_empty());
    let r = s.ev(Event::SshSaid(Complaint::RemoteForwardFailed(20000)));
    assert_eq!(
        r,
        [Action::RelocateMonitor(Relocation::Busy), Action::TermSsh]
    );
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Spawn]);
    let why = &s.sup.stats().recent_restarts.back().unwrap().reason;
    assert!(!why.contains("our own"), "{why}");
    // The same number as our local -L port: a server on this host sees our own forward.
    let mut s = Sim::new(monitored(4.0));
    s.sup.set_remote_monitor_port(Some(20000));
    s.sup.set_local_monitor_port(Some(20000));
    s.ev(Event::Begin);
    s.ev(Event::SshSaid(Complaint::RemoteForwardFailed(20000)));
    let why = &s.sup.stats().recent_restarts.back().unwrap().reason;
    assert!(why.contains("by our own -L 20000"), "{why}");
}

#[test]
fn relocation_gives_up_after_many_busy_ports() {
    let mut s = Sim::new(monitored(4.0));
    s.sup.set_remote_monitor_port(Some(20000));
    s.ev(Event::Begin);
    for _ in 0..MAX_RELOCATIONS {
        assert!(s
            .ev(Event::SshSaid(Complaint::RemoteForwardFailed(20000)))
            .contains(&Action::RelocateMonitor(Relocation::Busy)));
        s.exit(SshEnd::Exited(255));
    }
    assert!(s
        .ev(Event::SshSaid(Complaint::RemoteForwardFailed(20000)))
        .is_empty());
}

#[test]
fn sighup_while_up_probes_now() {
    let mut s = up(600.0);
    s.ev(Event::Signal(Sig::Retry));
    assert_eq!(s.advance(0.0), [Action::SendProbe { seq: 2 }]);
}

#[test]
fn a_failed_loop_tunnel_moves_the_remote_port_before_restarting() {
    let mut s = Sim::new(monitored(4.0));
    s.sup.set_remote_monitor_port(Some(20000));
    s.ev(Event::Begin);
    let a = s.advance(0.2);
    s.echo_all(&a, 0.001);
    let seq = s.next_probe();
    let r = s.ev(Event::ProbeFailed {
        seq,
        why: ProbeFailure::Closed,
    });
    assert_eq!(
        r,
        [
            Action::RelocateMonitor(Relocation::AfterFailure),
            Action::DropProbe,
            Action::TermSsh
        ]
    );
}

// ---- recovery: backoff, reachability checks, stalls ----

fn gate0() -> Config {
    Config {
        gate_time: Duration::ZERO,
        ..cfg()
    }
}

/// ssh refused twice quickly: autossh is waiting for the server, a check under way.
fn waiting() -> Sim {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    let refused = || Event::SshSaid(Complaint::Network("Connection refused".into()));
    s.ev(refused());
    assert_eq!(
        s.exit(SshEnd::Exited(255)),
        [],
        "network trouble: check before spawning"
    );
    assert_eq!(*s.sup.state(), State::WaitingForServer);
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    s
}

#[test]
fn a_returning_server_is_tried_at_once_whatever_the_backoff() {
    let mut s = waiting();
    s.ev(Event::Reachable(false));
    // Checks every 250 ms while the server is away.
    assert_eq!(s.advance(0.25), [Action::CheckReach]);
    s.ev(Event::Reachable(false));
    assert_eq!(s.advance(0.25), [Action::CheckReach]);
    assert_eq!(
        s.ev(Event::Reachable(true)),
        [Action::StopReach, Action::Spawn]
    );
    assert_eq!(s.sup.start_count(), 2);
}

#[test]
fn a_server_reachable_all_along_waits_out_the_backoff() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Spawn]);
    // Second quick death: 0.25-0.5 s backoff; the server answers TCP at once.
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    assert_eq!(s.ev(Event::Reachable(true)), [Action::StopReach]);
    assert_eq!(*s.sup.state(), State::BackingOff);
    let wait = s.until(Timer::Restart);
    assert!(wait >= secs(0.25) && wait <= secs(0.5), "{wait:?}");
    assert_eq!(s.advance(wait.as_secs_f64()), [Action::Spawn]);
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
                Action::Spawn => spawns.push(s.now.since(start)),
                _ => {}
            }
        }
        if matches!(s.sup.state(), State::Running { .. }) {
            s.ev(Event::SshSaid(Complaint::Network(
                "Connection timed out".into(),
            )));
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
    s.ev(Event::SshSaid(Complaint::Config(
        "Permission denied (publickey).".into(),
    )));
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(1));

    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    s.ev(Event::SshSaid(Complaint::Config(
        "Host key verification failed.".into(),
    )));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
    assert_eq!(s.until(Timer::Restart), secs(30.0));
}

#[test]
fn unknown_server_address_falls_back_to_the_backoff() {
    let mut s = waiting();
    assert_eq!(
        s.ev(Event::ReachUnknown),
        [Action::StopReach, Action::Spawn]
    );
    // From now on no checks are asked for.
    s.ev(Event::SshSaid(Complaint::Network(
        "Connection refused".into(),
    )));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
}

#[test]
fn sighup_and_sigusr1_skip_the_wait() {
    let mut s = waiting();
    assert_eq!(
        s.ev(Event::Signal(Sig::Retry)),
        [Action::StopReach, Action::Spawn]
    );
    let mut s = waiting();
    assert!(s.ev(Event::Signal(Sig::Restart)).contains(&Action::Spawn));
}

#[test]
fn maxlifetime_while_waiting_exits() {
    let mut s = Sim::new(Config {
        max_lifetime: Some(secs(0.9)),
        ..gate0()
    });
    s.ev(Event::Begin);
    s.ev(Event::SshSaid(Complaint::Network(
        "No route to host".into(),
    )));
    s.exit(SshEnd::Exited(255));
    let acts = s.advance(0.9);
    assert_eq!(exit_code(&acts), Some(0), "{acts:?}");
}

#[test]
fn a_stalled_connection_is_replaced_once_the_server_answers_again() {
    let mut s = Sim::new(gate0());
    s.auto_stall = false;
    s.ev(Event::Begin);
    assert_eq!(s.advance(1.0), [Action::InspectStall]);
    assert!(s.ev(Event::Stall(false)).is_empty());
    assert_eq!(s.advance(1.0), [Action::InspectStall]);
    assert!(s.ev(Event::Stall(true)).is_empty());
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    s.ev(Event::Reachable(false));
    let a = s.advance(0.25);
    assert!(a.contains(&Action::CheckReach), "{a:?}");
    let r = s.ev(Event::Reachable(true));
    assert!(r.contains(&Action::TermSsh), "{r:?}");
    // Restarted without backoff.
    assert!(s.exit(SshEnd::Signaled(15)).contains(&Action::Spawn));
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
    assert!(!a.contains(&Action::Spawn), "{a:?}");
    assert_eq!(*s.sup.state(), State::WaitingForServer);
    let a = s.advance(0.25);
    assert!(a.contains(&Action::CheckReach), "{a:?}");
    let a = s.ev(Event::Reachable(true));
    assert!(a.contains(&Action::Spawn), "{a:?}");
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
    assert!(s.exit(SshEnd::Signaled(9)).contains(&Action::Spawn));
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
    assert_eq!(*s.sup.state(), State::WaitingForServer);
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    // The server (frozen session, live host) answers TCP: spawn now.
    assert_eq!(
        s.ev(Event::Reachable(true)),
        [Action::StopReach, Action::Spawn]
    );
}

#[test]
fn ready_once_when_the_tunnel_is_first_proven() {
    let mut s = up(4.0);
    assert_eq!(s.readies, 1);
    s.ev(Event::Signal(Sig::Restart));
    s.exit(SshEnd::Signaled(15));
    let a = s.advance(0.2);
    s.echo_all(&a, 0.001);
    assert_eq!(*s.sup.state(), State::Running { phase: Phase::Up });
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

fn app_waits(app: f64, server_recv: f64) -> Event {
    Event::Traffic(Traffic {
        server_sent: Some(secs(app)),
        server_recv: Some(secs(server_recv)),
        waiting: Waiting::For {
            waited: secs(app),
            sure: true,
        },
    })
}

#[test]
fn an_unanswered_request_draws_a_probe_whatever_the_poll_and_a_silent_session_restarts() {
    let mut s = up(600.0);
    s.advance(10.0);
    // 0.3 s unanswered: not yet; 0.5 s with the server silent as long: probe now.
    assert!(s.ev(app_waits(0.3, 0.5)).is_empty());
    assert!(s.advance(0.2).is_empty());
    let a = s.ev(app_waits(0.5, 0.7));
    assert!(matches!(a[..], [Action::SendProbe { .. }]), "{a:?}");
    // Judged after 0.4 s, not the periodic probe's 1 s: acknowledged and silent is dead.
    assert_eq!(s.advance(0.4), [Action::InspectPath]);
    let a = s.ev(Event::Path(PathState::Quiet));
    assert!(a.contains(&Action::TermSsh), "{a:?}");
    // The outage counts from the server's last data (0.7 s before the probe left), not
    // from the verdict.
    assert_eq!(s.sup.down_since, Some(s.now.before(secs(1.1))));
}

#[test]
fn a_slow_answer_draws_a_few_probes_and_no_restart() {
    let mut s = up(600.0);
    s.advance(10.0);
    let mut probes = 0;
    // A query unanswered for 30 s while the session answers every probe at once.
    for i in 5..300 {
        let w = i as f64 / 10.0;
        let acts = s.ev(app_waits(w, 0.6));
        probes += acts.len();
        s.echo_all(&acts, 0.001);
        s.advance(0.1);
    }
    assert_eq!(*s.sup.state(), State::Running { phase: Phase::Up });
    assert!((3..=6).contains(&probes), "{probes} probes");
}

#[test]
fn unanswered_requests_are_ignored_while_confirming() {
    let mut s = Sim::new(monitored(600.0));
    s.ev(Event::Begin);
    assert!(s.ev(app_waits(5.0, 5.0)).is_empty());
}

#[test]
fn an_ssh_started_blind_is_replaced_when_the_server_answers_while_it_connects() {
    let mut s = waiting();
    s.auto_stall = false;
    s.ev(Event::Reachable(false));
    // No answer: the backoff's blind retry starts ssh anyway, and checks go on.
    let mut spawned = false;
    for _ in 0..200 {
        for a in s.advance(0.25) {
            match a {
                Action::CheckReach => {
                    s.ev(Event::Reachable(false));
                }
                Action::Spawn => spawned = true,
                Action::InspectStall => {
                    s.ev(Event::Connected(false));
                    s.ev(Event::Stall(false));
                }
                _ => {}
            }
        }
        if spawned {
            break;
        }
    }
    assert!(spawned);
    let a = s.advance(0.25);
    assert!(a.contains(&Action::CheckReach), "checks go on: {a:?}");
    let r = s.ev(Event::Reachable(true));
    assert!(
        r.contains(&Action::TermSsh) && r.contains(&Action::KillSsh),
        "{r:?}"
    );
}

#[test]
fn a_blind_ssh_that_connects_stops_the_checks() {
    let mut s = waiting();
    s.auto_stall = false;
    s.ev(Event::Reachable(false));
    for _ in 0..200 {
        let acts = s.advance(0.25);
        if acts.contains(&Action::Spawn) {
            break;
        }
        for a in acts {
            if a == Action::CheckReach {
                s.ev(Event::Reachable(false));
            }
        }
    }
    assert_eq!(s.ev(Event::Connected(true)), [Action::StopReach]);
    assert!(s.ev(Event::Reachable(true)).is_empty());
}

#[test]
fn an_ssh_that_ends_by_itself_counts_the_outage_from_the_last_proof() {
    let mut s = up(600.0);
    s.advance(5.0);
    // ssh exits by itself (the server closed the session), 5 s after the last echo.
    s.exit(SshEnd::Exited(255));
    assert_eq!(s.sup.down_since, Some(s.now.before(secs(5.0))));
}

// ---- through a jump host or a proxy command ----

#[test]
fn through_a_proxy_no_reachability_check_is_asked_for() {
    let mut s = Sim::new(gate0());
    s.ev(Event::Proxied {
        target: Some("10.0.0.9:22".into()),
    });
    s.ev(Event::Begin);
    let jump_down = || {
        Event::SshSaid(Complaint::Network(
            "ssh: connect to host 10.0.0.1 port 22: Connection refused".into(),
        ))
    };
    s.ev(jump_down());
    assert_eq!(s.exit(SshEnd::Exited(255)), [Action::Spawn]);
    s.ev(jump_down());
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(*s.sup.state(), State::BackingOff);
    assert_eq!(s.sup.timers.get(Timer::ReachCheck), None);
}

/// What OpenSSH 9.2 prints through `-J jump` when the jump host cannot reach the target.
fn target_refused() -> [Complaint; 4] {
    [
        Complaint::ChannelRefused(
            "channel 0: open failed: connect failed: Connection refused".into(),
        ),
        Complaint::StdioForwardFailed,
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
        Complaint::Ended("Connection closed by UNKNOWN port 65535".into()),
    ]
}

/// ... and when the jump host itself is down.
fn jump_refused() -> [Complaint; 3] {
    [
        Complaint::Network("ssh: connect to host 10.0.0.1 port 22: Connection refused".into()),
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
        Complaint::Ended("Connection closed by UNKNOWN port 65535".into()),
    ]
}

/// A supervisor whose ssh goes through a jump host, after its first start.
fn proxied(cfg: Config) -> Sim {
    let mut s = Sim::new(cfg);
    s.ev(Event::Proxied {
        target: Some("10.0.0.9:22".into()),
    });
    assert_eq!(s.ev(Event::Begin), [Action::Spawn]);
    s
}

/// Runs `secs` of an outage where every handshake fails after `lasts` seconds saying
/// `lines`; returns the start times of the handshakes, from now.
fn failing_handshakes(s: &mut Sim, lines: &[Complaint], lasts: f64, secs_: f64) -> Vec<f64> {
    let start = s.now;
    let mut spawns = Vec::new();
    let mut running_since = Some(s.now);
    while s.now.since(start) < secs(secs_) {
        match running_since {
            Some(at) if s.now.since(at) >= secs(lasts) => {
                for l in lines {
                    s.ev(Event::SshSaid(l.clone()));
                }
                let acts = s.exit(SshEnd::Exited(255));
                running_since = None;
                if acts.contains(&Action::Spawn) {
                    spawns.push(s.now.since(start).as_secs_f64());
                    running_since = Some(s.now);
                }
            }
            _ => {
                for a in s.advance(0.05) {
                    match a {
                        Action::Spawn => {
                            spawns.push(s.now.since(start).as_secs_f64());
                            running_since = Some(s.now);
                        }
                        Action::CheckReach => panic!("no check through a proxy"),
                        _ => {}
                    }
                }
            }
        }
    }
    spawns
}

#[test]
fn a_target_unreachable_from_the_jump_host_is_retried_at_a_steady_bounded_pace() {
    let mut s = proxied(gate0());
    let spawns = failing_handshakes(&mut s, &target_refused(), 0.2, 120.0);
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    // One handshake every 1.5 s from the start of the previous one, however long the
    // outage: no growing backoff, and never faster.
    assert!(
        gaps.iter().all(|&g| (1.5..1.5 + 0.06).contains(&g)),
        "{gaps:?}"
    );
    assert!((78..=81).contains(&spawns.len()), "{}", spawns.len());
    // Logged once; the status says the target is away.
    assert!(s.sup.quiet());
    assert!(s.sup.unreachable_since().is_some());
    assert_eq!(s.sup.phase_name(), "reconnecting");
}

#[test]
fn a_slow_failing_handshake_through_the_jump_host_is_followed_at_once_not_sooner() {
    // A target that times out behind the jump host: each handshake takes 5 s.
    let mut s = proxied(gate0());
    let spawns = failing_handshakes(&mut s, &target_refused(), 5.0, 60.0);
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| (5.0..5.1).contains(&g)), "{gaps:?}");
}

#[test]
fn the_target_back_behind_the_jump_host_ends_the_outage() {
    let mut s = proxied(gate0());
    failing_handshakes(&mut s, &target_refused(), 0.2, 10.0);
    // The next handshake comes within 1.5 s and works: ssh runs past the gate.
    let mut spawned = false;
    for _ in 0..40 {
        if s.advance(0.05).contains(&Action::Spawn) {
            spawned = true;
            break;
        }
    }
    assert!(spawned);
    assert!(s.sup.quiet(), "its lines are not logged one by one yet");
    s.advance(1.0);
    assert!(!s.sup.quiet());
    assert_eq!(s.sup.unreachable_since(), None);
    assert!(s.sup.healthy());
}

#[test]
fn the_jump_host_down_backs_off_as_before() {
    let mut s = proxied(gate0());
    let spawns = failing_handshakes(&mut s, &jump_refused(), 0.05, 120.0);
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.last().unwrap() >= &15.0, "reaches the cap: {gaps:?}");
    assert!(spawns.len() < 20, "{spawns:?}");
    assert!(!s.sup.quiet());
}

#[test]
fn a_configuration_error_at_the_jump_host_is_one() {
    let denied = [
        Complaint::Config("root@10.0.0.1: Permission denied (publickey).".into()),
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
        Complaint::Ended("Connection closed by UNKNOWN port 65535".into()),
    ];
    // Inside the gate: exit 1.
    let mut s = proxied(cfg());
    for c in &denied {
        s.ev(Event::SshSaid(c.clone()));
    }
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(1));
    // After it: the cap, not the steady pace.
    let mut s = proxied(gate0());
    for c in &denied {
        s.ev(Event::SshSaid(c.clone()));
    }
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(s.until(Timer::Restart), secs(30.0));
    // A jump host that forbids the forward.
    let mut s = proxied(gate0());
    s.ev(Event::SshSaid(Complaint::ChannelRefused(
        "channel 0: open failed: administratively prohibited: open failed".into(),
    )));
    s.ev(Event::SshSaid(Complaint::StdioForwardFailed));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(s.until(Timer::Restart), secs(30.0));
}

#[test]
fn a_proxy_command_that_cannot_reach_the_target_is_retried_at_the_same_pace() {
    let nc = [
        Complaint::Network(
            "nc: connect to 10.0.0.9 port 22 (tcp) failed: Connection refused".into(),
        ),
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
    ];
    let mut s = proxied(gate0());
    let spawns = failing_handshakes(&mut s, &nc, 0.01, 30.0);
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| (1.5..1.56).contains(&g)), "{gaps:?}");
    // Without a proxy the same lines mean the server is down: checks, not handshakes.
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    for c in &nc {
        s.ev(Event::SshSaid(c.clone()));
    }
    s.exit(SshEnd::Exited(255));
    assert_eq!(*s.sup.state(), State::WaitingForServer);
}

#[test]
fn after_the_target_returns_another_failure_backs_off_from_the_count() {
    let mut s = proxied(gate0());
    failing_handshakes(&mut s, &target_refused(), 0.2, 10.0);
    // The target is back but refuses the key: a configuration error, logged and paced
    // as one.
    let mut spawned = false;
    for _ in 0..40 {
        if s.advance(0.05).contains(&Action::Spawn) {
            spawned = true;
            break;
        }
    }
    assert!(spawned);
    s.advance(0.3);
    s.ev(Event::SshSaid(Complaint::Config(
        "root@10.0.0.9: Permission denied (publickey).".into(),
    )));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert!(!s.sup.quiet());
    assert_eq!(s.until(Timer::Restart), secs(30.0));
}

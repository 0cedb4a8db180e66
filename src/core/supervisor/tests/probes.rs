//! Unit tests: confirmation, the poll, late probes and their verdicts, port moves, unanswered requests.

use super::*;

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
    assert_eq!(
        *s.sup.state(),
        State::Running {
            phase: Phase::Up,
            probe: None
        }
    );
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
    let a = s.advance(0.01);
    assert!(inspects(&a), "{a:?}");
    let r = s.ev(Event::Path(PathState::Quiet));
    assert_eq!(r, [Action::DropProbe, Action::TermSsh]);
    s.exit(SshEnd::Signaled(15));
    assert_eq!(s.settle(), [SPAWN]);
    assert_eq!(s.sup.stats().restarts, 1);
}

#[test]
fn busy_path_waits_for_the_net_timeout() {
    let mut s = up(4.0);
    s.advance(4.0);
    let a = s.advance(1.0);
    assert!(inspects(&a), "{a:?}");
    assert!(s.ev(Event::Path(PathState::Busy)).is_empty());
    assert!(s.advance(0.99).is_empty());
    // At the net timeout one more look; nothing from the server: the probe failed.
    let a = s.advance(0.01);
    assert!(inspects(&a), "{a:?}");
    let r = s.ev(Event::Path(PathState::Busy));
    assert!(r.contains(&Action::TermSsh), "{r:?}");
}

#[test]
fn a_full_link_gets_more_time_while_the_server_sends() {
    let mut s = up(4.0);
    let seq = s.next_probe();
    let a = s.advance(1.0);
    assert!(inspects(&a), "{a:?}");
    assert!(s.ev(Event::Path(PathState::Alive)).is_empty());
    for _ in 0..3 {
        let a = s.advance(s.until(Timer::ProbeHard).as_secs_f64());
        assert!(inspects(&a), "{a:?}");
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
        assert!(inspects(&a), "{a:?}");
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
    let a = s.advance(1.0);
    assert!(inspects(&a), "{a:?}");
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

/// Loop mode on local port 20000, the other tunnels binding `reserved`.
fn looped(reserved: &[u16]) -> Config {
    Config {
        loop_monitor: Some(LoopMonitor {
            local: 20000,
            reserved: reserved.to_vec(),
        }),
        ..monitored(4.0)
    }
}

fn relocated(acts: &[Action]) -> Option<u16> {
    acts.iter().find_map(|a| match a {
        Action::RelocateMonitor { to } => Some(*to),
        _ => None,
    })
}

#[test]
fn monitor_port_busy_moves_the_port_and_restarts_without_backoff() {
    let mut s = Sim::new(looped(&[]));
    s.ev(Event::Begin);
    // A complaint about another port (the user's own -R) is not ours.
    assert!(s.ev(said(Complaint::RemoteForwardFailed(8080))).is_empty());
    // The same number as our local -L port: a server on this host sees our own forward.
    let r = s.ev(said(Complaint::RemoteForwardFailed(20000)));
    assert_eq!(r, [Action::TermSsh, Action::RelocateMonitor { to: 20002 }]);
    let why = &s.sup.stats().recent_restarts.back().unwrap().reason;
    assert!(why.contains("by our own -L 20000"), "{why}");
    assert_eq!(s.exit(SshEnd::Exited(255)), [SPAWN]);
    let r = s.ev(said(Complaint::RemoteForwardFailed(20002)));
    assert_eq!(relocated(&r), Some(20004));
    let why = &s.sup.stats().recent_restarts.back().unwrap().reason;
    assert!(!why.contains("our own"), "{why}");
}

#[test]
fn the_remote_port_steps_over_the_other_tunnels_ports_and_wraps() {
    let mut s = Sim::new(looped(&[20002, 20004]));
    s.ev(Event::Begin);
    let r = s.ev(said(Complaint::RemoteForwardFailed(20000)));
    assert_eq!(relocated(&r), Some(20006));
    let ports = LoopPorts {
        local: 20000,
        remote: 65532,
        reserved: vec![65534],
        moves: 0,
    };
    assert_eq!(
        ports.next_remote(),
        20002,
        "wraps, and not onto our own pair"
    );
}

#[test]
fn relocation_gives_up_after_many_busy_ports() {
    let mut s = Sim::new(looped(&[]));
    s.ev(Event::Begin);
    let mut port = 20000;
    for _ in 0..MAX_RELOCATIONS {
        let r = s.ev(said(Complaint::RemoteForwardFailed(port)));
        port = relocated(&r).expect("moved");
        s.exit(SshEnd::Exited(255));
    }
    assert!(s.ev(said(Complaint::RemoteForwardFailed(port))).is_empty());
}

#[test]
fn sighup_while_up_probes_now() {
    let mut s = up(600.0);
    s.ev(Event::Signal(Sig::Retry));
    assert_eq!(s.advance(0.0), [Action::SendProbe { seq: 2 }]);
}

#[test]
fn a_failed_loop_tunnel_moves_the_remote_port_for_the_next_ssh() {
    let mut s = Sim::new(looped(&[]));
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
            Action::DropProbe,
            Action::TermSsh,
            Action::RelocateMonitor { to: 20002 }
        ]
    );
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
    let a = s.advance(0.4);
    assert!(inspects(&a), "{a:?}");
    let a = s.ev(Event::Path(PathState::Quiet));
    assert!(a.contains(&Action::TermSsh), "{a:?}");
    // The outage counts from the server's last data (0.7 s before the probe left), not
    // from the verdict.
    assert_eq!(s.sup.health.down_since, Some(s.now.before(secs(1.1))));
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
    assert_eq!(
        *s.sup.state(),
        State::Running {
            phase: Phase::Up,
            probe: None
        }
    );
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
                Action::Spawn { .. } => spawned = true,
                Action::InspectStall { .. } => {
                    s.ev(Event::Link(SshLink::Unseen));
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
fn a_probes_own_exchange_does_not_speed_up_the_looks() {
    let mut s = up(600.0);
    // The probe of `up` came back just now; its channel closes 10 ms later.
    let traffic = |sent: f64, recv: f64| {
        Event::Traffic(Traffic {
            server_sent: Some(secs(sent)),
            server_recv: Some(secs(recv)),
            waiting: Waiting::NotLooked,
        })
    };
    s.advance(0.05);
    s.ev(traffic(0.04, 0.04));
    assert!(
        s.until(Timer::Watch) > secs(0.5),
        "{:?}",
        s.until(Timer::Watch)
    );
    // An application's bytes after it: looks every 250 ms.
    s.advance(0.5);
    s.ev(traffic(0.2, 0.19));
    assert!(
        s.until(Timer::Watch) <= secs(0.25),
        "{:?}",
        s.until(Timer::Watch)
    );
}

#[test]
fn looks_at_ssh_carry_the_unanswered_threshold_once_up() {
    let mut s = up(600.0);
    s.auto_stall = false;
    let a = s.advance(1.0);
    assert_eq!(
        a,
        [Action::InspectStall {
            proxied: false,
            threshold: Some(unanswered::FLOOR)
        }]
    );
    // Through a proxy the shell is told so, and never asked to inspect a path of ssh's.
    let mut s = Sim::new(Config {
        proxied: true,
        ..monitored(4.0)
    });
    s.auto_stall = false;
    s.ev(Event::Begin);
    let a = s.advance(1.0);
    assert!(a.contains(&Action::InspectStall {
        proxied: true,
        threshold: None
    }));
}

#[test]
fn a_new_ssh_that_bound_its_sockets_is_probed_at_once_and_only_once() {
    let mut s = Sim::new(monitored(600.0));
    s.ev(Event::Begin);
    assert!(s.advance(0.05).is_empty());
    // Past authentication: the first try does not wait for its 0.2 s, only for ssh's
    // listen(2) to follow its bind(2).
    assert!(s.ev(Event::SshBound).is_empty());
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
    // A second socket bound while that probe is out changes nothing.
    assert!(s.ev(Event::SshBound).is_empty());
    assert!(s.advance(0.01).is_empty());
    s.echo_all(&[Action::SendProbe { seq: 1 }], 0.002);
    assert!(s.sup.healthy());
    // Once up, a late word of a bound socket draws no extra probe.
    assert!(s.ev(Event::SshBound).is_empty());
}

#[test]
fn a_session_probe_waiting_for_its_socket_goes_out_when_ssh_binds_it() {
    let mut s = Sim::new(Config {
        session_probe: true,
        ..gate0()
    });
    s.ev(Event::Begin);
    assert!(s.advance(0.01).is_empty());
    assert!(s.ev(Event::SshBound).is_empty());
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
}

/// Milliseconds after now at which each FlushAcks came, stepping the clock by 0.5 ms.
fn flush_times(s: &mut Sim, for_ms: u32) -> Vec<f64> {
    let mut at = Vec::new();
    for step in 1..=for_ms * 2 {
        let acts = s.advance(0.0005);
        let n = acts.iter().filter(|a| **a == Action::FlushAcks).count();
        at.extend(std::iter::repeat_n(f64::from(step) / 2.0, n));
    }
    at
}

#[test]
fn a_probe_out_has_ssh_flush_its_acknowledgements_at_doubling_gaps_until_it_is_back() {
    let flushing = Config {
        flush_acks: true,
        ..monitored(600.0)
    };
    let mut s = Sim::new(flushing.clone());
    s.ev(Event::Begin);
    s.ev(Event::SshBound);
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
    // Unanswered: 1, 2, 4 … 128 ms after it left, then no more.
    assert_eq!(
        flush_times(&mut s, 400),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    );
    // The next try is answered after 3 ms: the flushes stop with it.
    let mut s = Sim::new(flushing.clone());
    s.ev(Event::Begin);
    s.ev(Event::SshBound);
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
    assert_eq!(flush_times(&mut s, 3), [1.0, 2.0]);
    s.echo_all(&[Action::SendProbe { seq: 1 }], 0.0);
    assert!(s.sup.healthy());
    assert_eq!(flush_times(&mut s, 300), [] as [f64; 0]);
    // Through a proxy ssh holds no server connection of its own: nothing to flush.
    let mut s = Sim::new(Config {
        proxied: true,
        ..flushing
    });
    s.ev(Event::Begin);
    s.ev(Event::SshBound);
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
    assert_eq!(flush_times(&mut s, 300), [] as [f64; 0]);
    // Where ssh's connection cannot be reached, none are asked for.
    let mut s = Sim::new(monitored(600.0));
    s.ev(Event::Begin);
    s.ev(Event::SshBound);
    assert_eq!(s.advance(0.005), [Action::SendProbe { seq: 1 }]);
    assert_eq!(flush_times(&mut s, 300), [] as [f64; 0]);
}

//! Unit tests: through a jump host or a proxy command.

use super::*;

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
        // Retried in an outage already logged: quiet.
        if s.advance(0.05).contains(&Action::Spawn {
            quiet: true,
            gen: 0,
        }) {
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
        s.ev(said(c.clone()));
    }
    assert_eq!(exit_code(&s.exit(SshEnd::Exited(255))), Some(1));
    // After it: the cap, not the steady pace.
    let mut s = proxied(gate0());
    for c in &denied {
        s.ev(said(c.clone()));
    }
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert_eq!(s.until(Timer::Restart), secs(30.0));
    // A jump host that forbids the forward.
    let mut s = proxied(gate0());
    s.ev(said(Complaint::ChannelRefused(
        "channel 0: open failed: administratively prohibited: open failed".into(),
    )));
    s.ev(said(Complaint::StdioForwardFailed));
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
        s.ev(said(c.clone()));
    }
    s.exit(SshEnd::Exited(255));
    assert!(
        matches!(s.sup.state(), State::WaitingForServer(_)),
        "{:?}",
        s.sup.state()
    );
}

#[test]
fn after_the_target_returns_another_failure_backs_off_from_the_count() {
    let mut s = proxied(gate0());
    failing_handshakes(&mut s, &target_refused(), 0.2, 10.0);
    // The target is back but refuses the key: a configuration error, logged and paced
    // as one.
    let mut spawned = false;
    for _ in 0..40 {
        // Retried in an outage already logged: quiet.
        if s.advance(0.05).contains(&Action::Spawn {
            quiet: true,
            gen: 0,
        }) {
            spawned = true;
            break;
        }
    }
    assert!(spawned);
    s.advance(0.3);
    s.ev(said(Complaint::Config(
        "root@10.0.0.9: Permission denied (publickey).".into(),
    )));
    assert!(s.exit(SshEnd::Exited(255)).is_empty());
    assert!(!s.sup.quiet());
    assert_eq!(s.until(Timer::Restart), secs(30.0));
}

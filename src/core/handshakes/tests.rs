//! Fake-clock tests of the handshake slots: the window, first come first served, the hold
//! limit, and backing off when the server cuts handshakes before their banner.

use super::*;

fn t0() -> Time {
    Time::from_origin(Duration::from_secs(1))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn at_most_n_per_server_and_first_come_first_served() {
    let mut h = Handshakes::new(2, HOLD, PAUSE);
    let now = t0();
    assert!(h.ask("a:22", 1, now));
    assert!(h.ask("a:22", 2, now));
    assert!(!h.ask("a:22", 3, now));
    assert!(!h.ask("a:22", 4, now));
    // Another server has its own slots.
    assert!(h.ask("b:22", 5, now));
    assert!(h.grants(now).is_empty());
    assert_eq!(h.finish(2, Ended::Failed, now), None);
    assert_eq!(h.grants(now), vec![3]);
    assert!(h.is_waiting(4));
    h.forget(1);
    assert_eq!(h.grants(now), vec![4]);
    assert!(!h.is_waiting(4));
}

#[test]
fn eight_at_once_by_default() {
    let mut h = Handshakes::default();
    let now = t0();
    let granted = (0..12).filter(|&t| h.ask("a:22", t, now)).count();
    assert_eq!(granted, MOST);
    assert_eq!(MOST, 8);
    assert_eq!(h.holders().len(), 8);
    assert!(h.grants(now).is_empty());
}

#[test]
fn a_slot_held_too_long_is_freed() {
    let mut h = Handshakes::new(1, Duration::from_secs(10), PAUSE);
    let now = t0();
    assert!(h.ask("a:22", 1, now));
    assert!(!h.ask("a:22", 2, now));
    assert_eq!(h.next_deadline(), Some(now + Duration::from_secs(10)));
    assert!(h.grants(now + Duration::from_secs(9)).is_empty());
    assert_eq!(h.grants(now + Duration::from_secs(10)), vec![2]);
    assert_eq!(h.holders(), vec![2]);
}

#[test]
fn a_newcomer_does_not_jump_the_queue() {
    let mut h = Handshakes::new(1, HOLD, PAUSE);
    let now = t0();
    assert!(h.ask("a:22", 1, now));
    assert!(!h.ask("a:22", 2, now));
    h.forget(1);
    // 2 waits for grants(); 3 asking now must queue behind it.
    assert!(!h.ask("a:22", 3, now));
    assert_eq!(h.grants(now), vec![2]);
}

#[test]
fn a_cut_halves_the_window_and_pauses_the_server_once_per_burst() {
    let mut h = Handshakes::new(8, HOLD, ms(500));
    let now = t0();
    for t in 0..12 {
        h.ask("a:22", t, now);
    }
    // sshd drops three of the eight at once: one halving, one pause.
    assert_eq!(h.finish(0, Ended::Cut, now + ms(50)), Some(4));
    assert_eq!(h.finish(1, Ended::Cut, now + ms(51)), None);
    assert_eq!(h.finish(2, Ended::Cut, now + ms(52)), None);
    assert_eq!(h.window("a:22"), 4);
    // Paused: nothing starts, although 5 < 8 are in flight, and the loop wakes at its end.
    assert!(h.grants(now + ms(100)).is_empty());
    assert_eq!(h.next_deadline(), Some(now + ms(550)));
    // Another server is not paused.
    assert!(h.ask("b:22", 99, now + ms(100)));
    // After the pause: 5 are still in flight, above the window of 4: nothing yet.
    assert!(h.grants(now + ms(550)).is_empty());
    h.finish(3, Ended::Proven, now + ms(600));
    h.finish(4, Ended::Proven, now + ms(600));
    // 3 in flight, the window still 4 (two proven of four): one goes.
    assert_eq!(h.window("a:22"), 4);
    assert_eq!(h.grants(now + ms(600)), vec![8]);
}

#[test]
fn a_cut_after_the_pause_halves_again_down_to_one() {
    let mut h = Handshakes::new(4, HOLD, ms(500));
    let now = t0();
    for t in 0..8 {
        h.ask("a:22", t, now);
    }
    assert_eq!(h.finish(0, Ended::Cut, now), Some(2));
    assert_eq!(h.finish(1, Ended::Cut, now + ms(600)), Some(1));
    assert_eq!(h.finish(2, Ended::Cut, now + ms(1200)), Some(1));
    assert_eq!(h.window("a:22"), 1);
}

#[test]
fn a_windowful_proven_widens_it_by_one_back_to_the_most() {
    let mut h = Handshakes::new(8, HOLD, ms(500));
    let mut now = t0();
    for t in 0..100 {
        h.ask("a:22", t, now);
    }
    h.finish(0, Ended::Cut, now);
    for t in h.holders() {
        h.finish(t, Ended::Failed, now);
    }
    now = now + ms(600);
    // One handshake at a time proven; the window after each.
    let mut widths = Vec::new();
    while widths.len() < 30 {
        for t in h.grants(now) {
            h.finish(t, Ended::Proven, now);
            widths.push(h.window("a:22"));
        }
        now = now + ms(100);
    }
    let count = |w| widths.iter().filter(|&&x| x == w).count();
    // 4 proven at 4 make it 5; 5 at 5 make it 6; ... 8 is the most.
    assert_eq!(widths[..3], [4, 4, 4]);
    assert_eq!(widths[3], 5);
    assert_eq!((count(5), count(6), count(7)), (5, 6, 7));
    assert_eq!(widths[29], 8);
    // A failed handshake (refused, auth) neither widens nor narrows it.
    let mut h = Handshakes::new(8, HOLD, ms(500));
    h.ask("a:22", 1, now);
    h.finish(1, Ended::Cut, now);
    h.ask("a:22", 2, now + ms(600));
    h.grants(now + ms(600));
    assert_eq!(h.finish(2, Ended::Failed, now + ms(700)), None);
    assert_eq!(h.window("a:22"), 4);
}

#[test]
fn a_server_backed_off_is_remembered_while_idle() {
    let mut h = Handshakes::new(2, HOLD, ms(500));
    let now = t0();
    assert!(h.ask("a:22", 1, now));
    h.finish(1, Ended::Cut, now);
    // The tunnel asks again at once: the pause holds it back.
    assert!(!h.ask("a:22", 1, now + ms(10)));
    assert_eq!(h.next_deadline(), Some(now + ms(500)));
    assert_eq!(h.grants(now + ms(500)), vec![1]);
    h.finish(1, Ended::Proven, now + ms(700));
    // Window 1, one proven: 2, the most; then the server is forgotten.
    assert_eq!(h.window("a:22"), 2);
    // Finishing a tunnel that holds no slot changes nothing.
    assert_eq!(h.finish(7, Ended::Cut, now + ms(800)), None);
    assert_eq!(h.window("a:22"), 2);
}

/// What ssh says when sshd drops it past `MaxStartups` counts as a cut; a refused connection,
/// a failed login, or a proxy's target away does not.
#[test]
fn what_counts_as_a_cut() {
    use crate::core::ssh_stderr::{classify, Story};
    let story = |lines: &[&str]| {
        let mut s = Story::default();
        for l in lines {
            if let Some(c) = classify(l) {
                s.hear(&c);
            }
        }
        s
    };
    let closed = "kex_exchange_identification: Connection closed by remote host";
    let reset = "kex_exchange_identification: read: Connection reset by peer";
    assert!(story(&[closed]).cut_before_banner(false));
    assert!(story(&[reset]).cut_before_banner(false));
    let refused = "ssh: connect to host 10.0.0.1 port 22: Connection refused";
    assert!(!story(&[refused]).cut_before_banner(false));
    assert!(!story(&["root@h: Permission denied (publickey)."]).cut_before_banner(false));
    assert!(!story(&[]).cut_before_banner(false));
    // Through a proxy, a stream that ends before any banner says the target is away.
    assert!(!story(&[closed]).cut_before_banner(true));
    let jump = [
        "channel 0: open failed: connect failed: Connection refused",
        "stdio forwarding failed",
        closed,
    ];
    assert!(!story(&jump).cut_before_banner(false));
}

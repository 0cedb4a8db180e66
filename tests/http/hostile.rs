//! Slow and garbage clients while a tunnel is watched: slowloris connections (more than the
//! endpoint keeps) trickling their heads, and 10,000 garbage requests from four threads. A
//! health probe answers within a second throughout, a request through the tunnel works,
//! the tunnel's own probes keep their pace and none fails, ssh is never restarted.

use super::single::Single;
use super::web;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use test_support::*;

/// Slowloris connections: more than the endpoint's 128.
const SLOW: usize = 300;
const GARBAGE_THREADS: usize = 4;
const GARBAGE_EACH: usize = 2500;

/// What a garbage client sends (its index picks one).
fn garbage(i: usize) -> Vec<u8> {
    match i % 7 {
        0 => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        1 => b"\r\n\r\n".to_vec(),
        2 => b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        3 => {
            let mut v = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
            v.resize(9000 + i % 100, b'z');
            v
        }
        4 => b"GET /../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        5 => b"GET /metrics HTTP/1.1\r\nHost".to_vec(),
        _ => Vec::new(),
    }
}

/// Connects `SLOW` clients that send a head a few bytes at a time, until `stop`.
fn slowloris(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..SLOW)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
            .collect();
        for c in &mut conns {
            let _ = c.set_nonblocking(true);
            let _ = c.write(b"GET /metrics HTTP/1.1\r\n");
        }
        let opened = conns.len();
        let end = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            for c in &mut conns {
                let _ = c.write(b"X");
            }
            thread::sleep(Duration::from_millis(200));
        }
        opened
    })
}

/// Garbage kinds that always get their 4xx: an empty head, a POST, a path that is not ours
/// (the others: no blank line before the client's end, so no answer; an oversized head,
/// whose 431 may be lost to the reset of its unread rest).
const ANSWERED_KINDS: [usize; 3] = [1, 2, 4];

/// `GARBAGE_EACH` garbage requests, each read to its end; counts the 4xx answers by kind.
fn garbage_client(port: u16, t: usize, answered: Arc<[AtomicUsize; 7]>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for i in 0..GARBAGE_EACH {
            let n = t * GARBAGE_EACH + i;
            if let Some(text) = web::send_and_close(port, &garbage(n), Duration::from_secs(6)) {
                if text.starts_with("HTTP/1.1 4") {
                    answered[n % 7].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

/// The tunnel's probe round trips logged so far (`probe N ok, rtt X ms`, debug level).
fn probe_rtts(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split(" ok, rtt ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn slow_and_garbage_clients_stall_neither_the_loop_nor_a_probe() {
    let s = Single::start(&[("AUTOSSH_POLL", "1"), ("AUTOSSH_DEBUG", "1")]);
    let start_log = s.log();
    let before = probe_rtts(&start_log).len();
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<[AtomicUsize; 7]> = Arc::new(Default::default());
    let slow = slowloris(s.http, stop.clone());
    let garbage: Vec<_> = (0..GARBAGE_THREADS)
        .map(|t| garbage_client(s.http, t, answered.clone()))
        .collect();
    let t0 = Instant::now();
    let (mut asked, mut worst) = (0, Duration::ZERO);
    while !garbage.iter().all(|g| g.is_finished()) || t0.elapsed() < Duration::from_secs(6) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the attack never ended\n{}",
            s.story()
        );
        let t = Instant::now();
        let a = web::get_within(s.http, "/healthz", Duration::from_secs(1));
        assert!(
            matches!(&a, Ok(a) if a.code == 200),
            "health probe {asked} during the attack: {a:?}\n{}",
            s.story()
        );
        worst = worst.max(t.elapsed());
        asked += 1;
        if asked % 10 == 0 {
            assert!(
                tunnel_works(s.tunnel),
                "the tunnel failed during the attack\n{}",
                s.story()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    let window = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for g in garbage {
        g.join().unwrap();
    }
    let opened = slow.join().unwrap();
    assert_eq!(opened, SLOW, "slowloris could not open its connections");
    let by_kind: Vec<usize> = answered.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    for k in ANSWERED_KINDS {
        let sent = (0..GARBAGE_THREADS * GARBAGE_EACH)
            .filter(|n| n % 7 == k)
            .count();
        assert_eq!(
            by_kind[k], sent,
            "garbage kind {k}: 4xx answers by kind {by_kind:?}"
        );
    }
    let refused: usize = by_kind.iter().sum();
    let log = s.log();
    let rtts = probe_rtts(&log);
    let during = rtts.len() - before;
    let expected = window.as_secs() as usize;
    assert!(
        during + 2 >= expected,
        "{during} probes in {window:?} (POLL=1)\n{}",
        s.story()
    );
    let slowest = rtts[before..].iter().cloned().fold(0.0, f64::max);
    assert!(slowest < 500.0, "a probe took {slowest} ms\n{}", s.story());
    let during_log = &log[start_log.len()..];
    assert!(!during_log.contains("restarting ssh"), "{}", s.story());
    let m = web::get(s.http, "/metrics").unwrap().body;
    assert!(m.contains("autossh_probe_failures_total 0\n"), "{m}");
    eprintln!("{asked} health probes, the slowest {worst:?}; {during} tunnel probes in {window:?}, the slowest {slowest} ms; {refused} garbage requests refused");
    s.finish();
}

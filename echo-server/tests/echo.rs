//! The echo itself, run through the real binary: verbatim bytes, many clients, back-pressure,
//! connection limits, idle timeout, half-close.

mod common;

use common::{connect, pattern, roundtrip, wait_until, Echo};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use test_support::json;

#[test]
fn echoes_binary_bytes_verbatim() {
    let echo = Echo::start(&[]);
    let mut s = echo.connect();
    let all: Vec<u8> = (0..=255u8).cycle().take(4 * 256).collect();
    roundtrip(&mut s, &all);
    roundtrip(&mut s, b"\r\n\0\r\r\n\n\xff\xfe");
    roundtrip(&mut s, b"x");
    // Probe-looking lines come back exactly as sent too, CR and all.
    roundtrip(&mut s, b"gw1 autossh 4242 1804289383 \r\n");
}

#[test]
fn echoes_a_one_mib_payload() {
    let echo = Echo::start(&[]);
    let mut s = echo.connect();
    let data = pattern(1024 * 1024, 1);
    // Write from a thread while reading here: the server holds at most --max-buffer.
    let writer = {
        let mut w = s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || w.write_all(&data))
    };
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap().unwrap();
    assert!(got == data, "1 MiB echo differs");
}

#[test]
fn two_hundred_concurrent_clients_get_their_own_bytes() {
    let echo = Echo::start(&[]);
    let addr = echo.addr();
    let n = 200;
    let barrier = Arc::new(Barrier::new(n));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    let s = std::net::TcpStream::connect(addr);
                    // All connected at once before anyone talks (wait even if connect failed).
                    barrier.wait();
                    let mut s = s.unwrap_or_else(|e| panic!("client {i}: {e}"));
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    for round in 0..3 {
                        let mut data = format!("client {i} round {round}\n").into_bytes();
                        data.extend(pattern(4096, (i * 10 + round) as u64));
                        roundtrip(&mut s, &data);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    let echo = Echo::start(&["--max-buffer", "65536"]);
    let hog = echo.connect();
    hog.set_nonblocking(true).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Far more than kernel buffers can absorb: without back-pressure the server would have to
    // hold it, and the writer would finish.
    const TRY: usize = 256 * 1024 * 1024;
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        let mut hog = hog.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = pattern(64 * 1024, 7);
            while written.load(Ordering::SeqCst) < TRY && !stop.load(Ordering::SeqCst) {
                match hog.write(&chunk) {
                    Ok(n) => {
                        written.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("hog write: {e}"),
                }
            }
        })
    };
    // Wait until the writer is stuck: nothing more accepted for 500 ms.
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let stalled = wait_until(Duration::from_secs(20), || {
        let w = written.load(Ordering::SeqCst);
        if w != last {
            (last, since) = (w, Instant::now());
        }
        w >= TRY || since.elapsed() > Duration::from_millis(500)
    });
    let total = written.load(Ordering::SeqCst);
    assert!(stalled);
    assert!(
        total < TRY,
        "the server read all {total} bytes of a client that never reads"
    );
    let rss = echo.rss_kib();
    assert!(
        rss < 64 * 1024,
        "server RSS {rss} KiB after {total} unread bytes"
    );

    // Everyone else is still served.
    let mut other = echo.connect();
    roundtrip(&mut other, b"still there?\n");
    roundtrip(&mut other, &pattern(100_000, 3));
    assert!(echo.rss_kib() < 64 * 1024);

    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
}

#[test]
fn excess_connections_are_closed_and_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let echo = Echo::start(&[
        "--max-connections",
        "3",
        "--status-file",
        status.to_str().unwrap(),
        "--status-interval",
        "1",
    ]);
    let mut kept: Vec<_> = (0..3).map(|_| echo.connect()).collect();
    for (i, s) in kept.iter_mut().enumerate() {
        roundtrip(s, format!("kept {i}\n").as_bytes());
    }
    // The fourth is accepted and closed at once: EOF (or a reset), never an echo.
    let mut excess = echo.connect();
    let _ = excess.write_all(b"hello?\n");
    let mut buf = [0u8; 16];
    match excess.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("excess connection got {other:?}"),
    }
    for (i, s) in kept.iter_mut().enumerate() {
        roundtrip(s, format!("still kept {i}\n").as_bytes());
    }
    // One leaves: a newcomer is served once the server has seen it go.
    drop(kept.pop());
    let served = wait_until(Duration::from_secs(10), || {
        let mut s = echo.connect();
        s.write_all(b"newcomer\n").is_ok() && {
            let mut got = [0u8; 9];
            s.read_exact(&mut got).is_ok() && &got == b"newcomer\n"
        }
    });
    assert!(served, "no room made after a client left");
    // And the refusals were counted.
    let counted = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| json::parse(&t).ok())
            .is_some_and(|v| v["refused_total"].as_u64().is_some_and(|n| n >= 1))
    });
    assert!(
        counted,
        "refused_total not in {:?}",
        std::fs::read_to_string(&status)
    );
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let echo = Echo::start(&["--idle-timeout", "1"]);
    let mut idle = echo.connect();
    let mut busy = echo.connect();
    roundtrip(&mut idle, b"hi\n");
    idle.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    // The busy one talks every 100 ms for 2.5 s, well past the timeout.
    while start.elapsed() < Duration::from_millis(2500) {
        roundtrip(&mut busy, b"ping\n");
        if closed_after.is_none() {
            let mut buf = [0u8; 8];
            match idle.read(&mut buf) {
                Ok(0) => closed_after = Some(start.elapsed()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("idle connection got {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = closed_after.expect("idle connection still open after 2.5 s");
    assert!(
        after >= Duration::from_millis(700),
        "closed too early: {after:?}"
    );
    roundtrip(&mut busy, b"still here\n");
}

#[test]
fn half_close_echoes_what_is_pending_then_closes() {
    let echo = Echo::start(&[]);
    let mut s = echo.connect();
    let data = pattern(200_000, 9);
    let mut w = s.try_clone().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn listens_on_several_addresses_including_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipping");
        return;
    }
    let echo = Echo::start(&["--listen", "[::1]:0", "--listen", "127.0.0.1:0"]);
    assert_eq!(echo.addrs.len(), 2, "{}", echo.log());
    assert!(echo.addrs[0].is_ipv6() && echo.addrs[1].is_ipv4());
    for a in &echo.addrs {
        roundtrip(&mut connect(*a), format!("via {a}\n").as_bytes());
    }
}

//! autossh-echo under abuse, through the real binary: random bytes, mebibyte lines without a
//! newline, half-open clients, slow readers, and a flood of 20,000 connection attempts against
//! `--max-connections 1000`. Memory stays bounded, well-behaved clients keep their echoes, and
//! the server still exits 0 on SIGTERM.

mod common;

use common::{connect, pattern, raise_nofile, roundtrip, set_linger_zero, wait_until, Echo};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::json;

/// The server's resident memory must stay below this (KiB).
const RSS_LIMIT_KIB: u64 = 100 * 1024;

/// Samples the server's RSS into `max` until `stop` (bounded: 60 s).
fn watch_rss(pid: u32, stop: Arc<AtomicBool>, max: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            if let Some(kib) = rss_of(pid) {
                max.fetch_max(kib, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn rss_of(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// SIGTERM: the server must still run, exit 0 and say so.
fn stop_cleanly(mut echo: Echo) {
    let early = echo.wait_exit(Duration::ZERO);
    assert!(
        early.is_none(),
        "autossh-echo is gone ({early:?}); log:\n{}",
        echo.log()
    );
    echo.signal(libc::SIGTERM);
    let st = echo.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "exit on SIGTERM: {st:?}; log:\n{}",
        echo.log()
    );
}

/// Sends `data` from a writer thread in chunks of random sizes while reading the echo here;
/// returns what came back.
fn echo_through(s: &TcpStream, data: Vec<u8>, seed: u64) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let len = data.len();
    let writer = std::thread::spawn(move || {
        let sizes = pattern(data.len() / 64 + 8, seed);
        let mut off = 0;
        let mut i = 0;
        while off < data.len() {
            let n = (1 + sizes[i % sizes.len()] as usize * 32).min(data.len() - off);
            w.write_all(&data[off..off + n])?;
            off += n;
            i += 1;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut r = s.try_clone().unwrap();
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).unwrap();
    writer.join().unwrap().unwrap();
    got
}

#[test]
fn random_bytes_are_echoed_verbatim() {
    let echo = Echo::start(&[]);
    let addr = echo.addr();
    std::thread::scope(|sc| {
        for i in 0..8u64 {
            sc.spawn(move || {
                let s = connect(addr);
                for round in 0..3 {
                    let len = 1 + (pattern(4, i * 7 + round)[0] as usize) * 1024;
                    let data = pattern(len, 1000 + i * 10 + round);
                    let got = echo_through(&s, data.clone(), i ^ round);
                    assert!(got == data, "client {i} round {round}: {len} bytes differ");
                }
            });
        }
    });
    // Every byte value, and the line endings a probe parser might trip on.
    let mut s = echo.connect();
    let all: Vec<u8> = (0..=255u8).rev().cycle().take(3 * 256 + 7).collect();
    roundtrip(&mut s, &all);
    roundtrip(&mut s, b"\n\n\r\r\n\x00");
    stop_cleanly(echo);
}

#[test]
fn mebibyte_lines_without_newline_are_echoed_with_bounded_memory() {
    let echo = Echo::start(&[]);
    let addr = echo.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let watcher = watch_rss(echo.pid(), stop.clone(), max_rss.clone());
    // A client that writes 16 MiB and never reads: the server must stop reading it, not
    // buffer it.
    let hog = connect(addr);
    let hog_writer = {
        let mut w = hog.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 16 << 20 {
                match w.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break, // blocked past the timeout: back-pressure works
                }
            }
            sent
        })
    };
    std::thread::scope(|sc| {
        for i in 0..6u64 {
            sc.spawn(move || {
                let s = connect(addr);
                let mut data = pattern(1 << 20, 77 + i);
                for b in &mut data {
                    if *b == b'\n' {
                        *b = b'.';
                    }
                }
                let got = echo_through(&s, data.clone(), i);
                assert!(got == data, "client {i}: 1 MiB line differs");
            });
        }
    });
    let hog_sent = hog_writer.join().unwrap();
    assert!(
        hog_sent < 16 << 20,
        "the server took 16 MiB from a client that never reads"
    );
    drop(hog);
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let max = max_rss.load(Ordering::SeqCst);
    assert!(
        max > 0 && max < RSS_LIMIT_KIB,
        "server RSS peaked at {max} KiB"
    );
    // Still serving.
    roundtrip(&mut echo.connect(), b"still here\n");
    stop_cleanly(echo);
}

#[test]
fn half_open_clients_get_the_rest_then_eof() {
    let echo = Echo::start(&[]);
    let addr = echo.addr();
    std::thread::scope(|sc| {
        for i in 0..40u64 {
            sc.spawn(move || {
                let mut s = connect(addr);
                let len = (pattern(2, i)[0] as usize) * 600 + i as usize;
                let data = pattern(len, 500 + i);
                // Small enough to sit in the socket buffers: write all, then half-close.
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got)
                    .unwrap_or_else(|e| panic!("client {i}: {e} after {} bytes", got.len()));
                assert!(
                    got == data,
                    "client {i}: {} of {len} bytes, differ",
                    got.len()
                );
            });
        }
    });
    // A half-close with nothing sent is answered by EOF at once.
    let mut s = echo.connect();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    stop_cleanly(echo);
}

#[test]
fn slow_readers_do_not_hold_up_the_others() {
    let echo = Echo::start(&["--max-buffer", "4096"]);
    let addr = echo.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let watcher = watch_rss(echo.pid(), stop.clone(), max_rss.clone());
    let slow_reading = Arc::new(AtomicBool::new(true));
    let slow: Vec<_> = (0..3u64)
        .map(|i| {
            let slow_reading = slow_reading.clone();
            std::thread::spawn(move || {
                let s = connect(addr);
                let data = pattern(512 * 1024, 900 + i);
                let writer = {
                    let mut w = s.try_clone().unwrap();
                    let data = data.clone();
                    std::thread::spawn(move || w.write_all(&data))
                };
                let mut r = s.try_clone().unwrap();
                let mut got = Vec::with_capacity(data.len());
                let mut byte = [0u8; 1];
                // One byte at a time, with pauses, while the fast clients run (bounded).
                let started = Instant::now();
                while slow_reading.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(10)
                {
                    r.read_exact(&mut byte).unwrap();
                    got.push(byte[0]);
                    if got.len() % 16 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                // Then the rest, in big reads.
                let mut rest = vec![0u8; data.len() - got.len()];
                r.read_exact(&mut rest).unwrap();
                got.extend_from_slice(&rest);
                writer.join().unwrap().unwrap();
                assert!(got == data, "slow client {i}: echo differs");
            })
        })
        .collect();
    // Fast clients: many small round trips, each quick.
    let worst = Mutex::new(Duration::ZERO);
    std::thread::scope(|sc| {
        for i in 0..4u64 {
            let worst = &worst;
            sc.spawn(move || {
                let mut s = connect(addr);
                for round in 0..100 {
                    let data = pattern(2048, i * 1000 + round);
                    let t = Instant::now();
                    roundtrip(&mut s, &data);
                    let took = t.elapsed();
                    let mut w = worst.lock().unwrap();
                    *w = (*w).max(took);
                }
            });
        }
    });
    slow_reading.store(false, Ordering::SeqCst);
    for h in slow {
        h.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let worst = *worst.lock().unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "a fast client waited {worst:?} behind slow readers"
    );
    let max = max_rss.load(Ordering::SeqCst);
    assert!(max < RSS_LIMIT_KIB, "server RSS peaked at {max} KiB");
    stop_cleanly(echo);
}

/// Opens `n` non-blocking connections to `addr`; waits (bounded) until each has an answer:
/// connected then closed by the server (refused: counted), or failed. Returns the sockets
/// still open and the number refused.
fn connect_batch(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    wait: Duration,
) -> (Vec<mio::net::TcpStream>, usize) {
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        match mio::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                set_linger_zero(s.as_raw_fd());
                poll.registry()
                    .register(&mut s, Token(i), Interest::READABLE)
                    .unwrap();
                socks.push(Some(s));
            }
            Err(_) => socks.push(None),
        }
    }
    let mut refused = 0;
    let mut done = vec![false; n];
    let mut pending = socks.iter().filter(|s| s.is_some()).count();
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + wait;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        poll.poll(&mut events, Some(left)).unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            if done[i] {
                continue;
            }
            let Some(s) = socks[i].as_mut() else { continue };
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Ok(0) | Err(_) => {
                    done[i] = true;
                    pending -= 1;
                    refused += 1;
                    let mut s = socks[i].take().unwrap();
                    let _ = poll.registry().deregister(&mut s);
                }
                Ok(_) => {}
            }
        }
    }
    let open: Vec<mio::net::TcpStream> = socks
        .into_iter()
        .flatten()
        .map(|mut s| {
            let _ = poll.registry().deregister(&mut s);
            s
        })
        .collect();
    (open, refused)
}

#[test]
fn twenty_thousand_connection_attempts_against_a_limit_of_a_thousand() {
    let limit = raise_nofile();
    assert!(
        limit >= 4096,
        "open file limit {limit} too low for this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let echo = Echo::start(&[
        "--max-connections",
        "1000",
        "--status-file",
        status.to_str().unwrap(),
        "--status-interval",
        "1",
    ]);
    let addr = echo.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let watcher = watch_rss(echo.pid(), stop.clone(), max_rss.clone());

    // Clients connected before the flood: they keep talking through it.
    let veterans: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = connect(addr);
            roundtrip(&mut s, b"before\n");
            s
        })
        .collect();
    let rounds = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let talkers: Vec<_> = veterans
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let (stop, rounds, worst) = (stop.clone(), rounds.clone(), worst.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                    let data = pattern(512, i as u64 * 100_000 + n);
                    let t = Instant::now();
                    roundtrip(&mut s, &data);
                    let took = t.elapsed();
                    let mut w = worst.lock().unwrap();
                    *w = (*w).max(took);
                    drop(w);
                    rounds.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                s
            })
        })
        .collect();

    let mut poll = Poll::new().unwrap();
    // The first 995 fill the server up to its limit and stay open. Batches of 100: the
    // listen backlog is 128, and a SYN dropped on a full queue waits a second to be resent.
    let mut held = Vec::new();
    for _ in 0..10 {
        let n = (995 - held.len()).min(100);
        let (open, refused0) = connect_batch(&mut poll, addr, n, Duration::from_millis(50));
        assert_eq!(refused0, 0, "refused below the limit");
        held.extend(open);
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&status)
                .ok()
                .and_then(|t| json::parse(&t).ok())
                .is_some_and(|v| v["connections"] == 1000)
        }),
        "the server never had 1000 connections; status: {:?}",
        std::fs::read_to_string(&status)
    );
    let rounds_before = rounds.load(Ordering::SeqCst);
    // The rest, in batches: each is accepted and closed at once.
    let started = Instant::now();
    let mut attempts = held.len();
    let mut refused = 0;
    while attempts < 20_000 && started.elapsed() < Duration::from_secs(20) {
        let n = (20_000 - attempts).min(100);
        let (open, r) = connect_batch(&mut poll, addr, n, Duration::from_millis(1500));
        attempts += n;
        refused += r;
        drop(open);
    }
    let flood_took = started.elapsed();
    let rounds_during = rounds.load(Ordering::SeqCst) - rounds_before;
    assert_eq!(attempts, 20_000, "flood not done in {flood_took:?}");
    assert!(
        refused >= 19_000 * 9 / 10,
        "only {refused} of 19005 attempts over the limit were closed by the server"
    );
    assert!(
        rounds_during > 0,
        "no veteran round trip during the {flood_took:?} flood"
    );

    // After the flood: the veterans still talk, and once the held ones go, newcomers are
    // served again.
    let rounds_after_flood = rounds.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || rounds.load(Ordering::SeqCst)
            >= rounds_after_flood + 10),
        "veterans stopped getting echoes after the flood"
    );
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 3];
            s.write_all(b"new").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"new"
        }),
        "no newcomer served after the flood"
    );
    stop.store(true, Ordering::SeqCst);
    for t in talkers {
        let mut s = t.join().expect("a veteran lost its echo");
        roundtrip(&mut s, b"after\n");
    }
    watcher.join().unwrap();
    let worst = *worst.lock().unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "a veteran waited {worst:?} for an echo"
    );
    let max = max_rss.load(Ordering::SeqCst);
    assert!(
        max > 0 && max < RSS_LIMIT_KIB,
        "server RSS peaked at {max} KiB"
    );
    // The status file (rewritten every second) counts every refusal.
    let read_status = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| json::parse(&t).ok())
    };
    assert!(
        wait_until(Duration::from_secs(5), || read_status()
            .is_some_and(|v| v["refused_total"]
                .as_u64()
                .is_some_and(|n| n >= refused as u64))),
        "refused_total below {refused}: {:?}",
        read_status()
    );
    eprintln!(
        "flood: {attempts} attempts, {refused} refused, in {flood_took:?}; veterans made \
         {rounds_during} round trips during it (worst {worst:?}); peak RSS {max} KiB"
    );
    stop_cleanly(echo);
}

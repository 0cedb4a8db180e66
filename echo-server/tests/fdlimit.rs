//! The open-files limit: autossh-echo raises its soft limit to the hard one and takes as many
//! connections as that allows (less a reserve), instead of a fixed 4096; an explicit
//! `--max-connections` above what the limit allows is capped, with one warning.

mod common;

use common::{connect, raise_nofile, set_linger_zero, Echo};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Writes a distinct line into every stream, then reads each back before `deadline`.
/// Returns how many did not come back intact, and the first such failure.
fn unanswered(streams: &mut [TcpStream], deadline: Instant) -> (usize, Option<String>) {
    let n = streams.len();
    let line = |i: usize| format!("probe {i} of {n}\n");
    let mut failed = 0;
    let mut first = None;
    let mut fail = |why: String| {
        failed += 1;
        first.get_or_insert(why);
    };
    let mut written = vec![false; n];
    for (i, s) in streams.iter_mut().enumerate() {
        match s.write_all(line(i).as_bytes()) {
            Ok(()) => written[i] = true,
            Err(e) => fail(format!("connection {i}: write: {e}")),
        }
    }
    for (i, s) in streams.iter_mut().enumerate() {
        if !written[i] {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            fail(format!("connection {i}: no time left to read its echo"));
            continue;
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_secs(10))));
        let want = line(i);
        let mut got = vec![0u8; want.len()];
        match s.read_exact(&mut got) {
            Ok(()) if got == want.as_bytes() => {}
            Ok(()) => fail(format!(
                "connection {i}: echoed {:?}",
                String::from_utf8_lossy(&got)
            )),
            Err(e) => fail(format!("connection {i}: read: {e}")),
        }
    }
    (failed, first)
}

/// Connects `n` clients to `echo`, all kept open; they close with RST (no TIME_WAIT left).
fn clients(echo: &Echo, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = connect(echo.addr());
            set_linger_zero(s.as_raw_fd());
            s
        })
        .collect()
}

#[test]
fn default_maximum_follows_the_hard_limit_and_serves_6000_clients_at_once() {
    const CLIENTS: usize = 6000;
    let ours = raise_nofile();
    assert!(
        ours >= CLIENTS as u64 + 100,
        "this test needs {} open files, the hard limit allows {ours}",
        CLIENTS + 100
    );
    let started = Instant::now();
    // Soft 1024 (a usual default), hard 12000: the server must raise it itself.
    let echo = Echo::start_with_nofile(1024, 12_000, &[]);
    // 12000 less the 64 kept for other files, less one listener.
    let want = "up to 11935 connections (derived from the open-files limit";
    assert!(
        echo.wait_log(want, Duration::from_secs(5)),
        "no {want:?} in the log:\n{}",
        echo.log()
    );
    assert!(echo
        .log()
        .contains("open-files limit 12000 (raised from 1024)"));

    let mut streams = clients(&echo, CLIENTS);
    let (failed, first) = unanswered(&mut streams, started + Duration::from_secs(25));
    assert_eq!(
        failed,
        0,
        "{failed} of {CLIENTS} clients not echoed; first: {}\nlog:\n{}",
        first.unwrap_or_default(),
        echo.log()
    );
    // All of them still open together: a second round on every one.
    let (failed, first) = unanswered(&mut streams, started + Duration::from_secs(25));
    assert_eq!(failed, 0, "second round: {failed} failed; first: {first:?}");
    assert!(!echo.log().contains("WARN"), "{}", echo.log());
}

#[test]
fn explicit_maximum_above_the_limit_is_capped_with_one_warning() {
    // 256 less 64 kept, less one listener: 191 connections.
    let echo = Echo::start_with_nofile(256, 256, &["--max-connections", "5000"]);
    assert!(
        echo.wait_log("up to 191 connections", Duration::from_secs(5)),
        "{}",
        echo.log()
    );
    let warning = "--max-connections 5000 capped to 191";
    assert_eq!(echo.log().matches(warning).count(), 1, "{}", echo.log());

    let mut kept = clients(&echo, 191);
    let (failed, first) = unanswered(&mut kept, Instant::now() + Duration::from_secs(15));
    assert_eq!(failed, 0, "first failure: {first:?}\n{}", echo.log());
    // The 192nd is accepted and closed at once: EOF or a reset, never an echo.
    let mut extra = connect(echo.addr());
    let _ = extra.write_all(b"one too many\n");
    let mut buf = [0u8; 16];
    assert!(
        !matches!(extra.read(&mut buf), Ok(n) if n > 0),
        "the connection over the maximum was served"
    );
    // The warning is not repeated per refused connection.
    assert_eq!(echo.log().matches(warning).count(), 1, "{}", echo.log());
}

//! Checking the tunnel from inside the client namespace.

use super::*;

pub(crate) static PROBE_SEQ: AtomicU64 = AtomicU64::new(1);

/// One echo round trip through 127.0.0.1:`port` in the calling thread's
/// namespace: connect (1 s), send a line, read it back (within `wait`).
/// Returns the time from sending the line to reading it back.
pub(crate) fn echo_rtt(port: u16, wait: Duration) -> Option<Duration> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let line = format!(
        "probe {} {}\n",
        std::process::id(),
        PROBE_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let sent = Instant::now();
    s.write_all(line.as_bytes()).ok()?;
    let deadline = sent + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < line.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    (got == line.as_bytes()).then(|| sent.elapsed())
}

pub(crate) fn echo_once(port: u16) -> bool {
    echo_rtt(port, Duration::from_secs(1)).is_some()
}

/// The echo round trip of one short line through 127.0.0.1:`port` inside
/// namespace `ns`, waiting up to `wait` for the answer; None if none came.
pub fn echo_rtt_in(ns: &str, port: u16, wait: Duration) -> Option<Duration> {
    run_in_netns(ns, move || echo_rtt(port, wait)).unwrap_or(None)
}

/// A read or write on a socket with a timeout that may simply be tried again.
pub fn retryable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// True if 127.0.0.1:`port` inside namespace `ns` echoes a line back within
/// ~2 s (connect 1 s, echo 1 s). About a millisecond when the tunnel works.
pub fn tunnel_works_in(ns: &str, port: u16) -> bool {
    run_in_netns(ns, move || echo_once(port)).unwrap_or(false)
}

/// Measures how long until the tunnel works: starts an attempt
/// ([`tunnel_works_in`]) every `every`, overlapping, so that one attempt stuck
/// on a dead connection does not hide a recovery; returns the time from the
/// call to the end of the first successful attempt, or None after `timeout`.
/// Waits (≤ ~2 s) for the attempts still running before returning.
pub fn time_until_tunnel_works(
    ns: &str,
    port: u16,
    every: Duration,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Option<Duration>>();
    let mut attempts: Vec<JoinHandle<()>> = Vec::new();
    let max_attempts = (timeout.as_millis() / every.as_millis().max(1)) as usize + 2;
    let mut found = None;
    let mut next = start;
    while attempts.len() < max_attempts {
        let now = Instant::now();
        if now >= start + timeout {
            break;
        }
        if now >= next {
            let (tx, ns) = (tx.clone(), ns.to_string());
            let h = std::thread::Builder::new()
                .name("tunnel-attempt".into())
                .spawn(move || {
                    let ok = tunnel_works_in(&ns, port);
                    let _ = tx.send(ok.then(|| start.elapsed()));
                })
                .expect("spawn attempt");
            attempts.push(h);
            next += every;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if let Ok(Some(t)) = rx.recv_timeout(wait) {
            found = Some(t);
            break;
        }
    }
    // A success may have landed right at the deadline.
    if found.is_none() {
        wait_until(Duration::from_secs(3), || {
            attempts.iter().all(|h| h.is_finished())
        });
        while let Ok(r) = rx.try_recv() {
            if let Some(t) = r {
                if t <= timeout {
                    found = Some(found.map_or(t, |f: Duration| f.min(t)));
                }
            }
        }
    }
    for h in attempts {
        let _ = h.join();
    }
    found
}

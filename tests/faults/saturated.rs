//! 4. Saturated slow link.

use super::*;

/// The byte stream the transfer sends: xorshift64 output.
pub(crate) struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Transfer {
    sent: usize,
    received: usize,
    /// Offset of the first byte that came back different.
    first_mismatch: Option<usize>,
    elapsed: Duration,
    error: Option<String>,
}

/// Sends `total` bytes through 127.0.0.1:`port` (in the calling thread's
/// namespace) to the echo service from one thread and reads them back in
/// this one, comparing every byte; gives up at `limit`.
pub(crate) fn echo_transfer(port: u16, total: usize, limit: Duration) -> Transfer {
    let start = Instant::now();
    let deadline = start + limit;
    let mut t = Transfer::default();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut rd = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            t.error = Some(format!("connect: {e}"));
            return t;
        }
    };
    let mut wr = rd.try_clone().expect("clone stream");
    let seed = 0x9E37_79B9_7F4A_7C15u64;
    let writer = std::thread::spawn(move || -> (usize, Option<String>) {
        let _ = wr.set_write_timeout(Some(Duration::from_secs(1)));
        let mut gen = Stream(seed);
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0usize;
        while sent < total {
            let n = buf.len().min(total - sent);
            gen.fill(&mut buf[..n]);
            let mut off = 0;
            while off < n {
                if Instant::now() >= deadline {
                    return (sent + off, Some("writer: time limit".into()));
                }
                match wr.write(&buf[off..n]) {
                    Ok(0) => return (sent + off, Some("writer: closed".into())),
                    Ok(k) => off += k,
                    Err(e) if retryable(&e) => {}
                    Err(e) => return (sent + off, Some(format!("writer: {e}"))),
                }
            }
            sent += n;
        }
        let _ = wr.shutdown(std::net::Shutdown::Write);
        (sent, None)
    });
    let _ = rd.set_read_timeout(Some(Duration::from_secs(1)));
    let mut gen = Stream(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    // Bytes of the expected stream generated but not yet compared.
    let mut pending: Vec<u8> = Vec::new();
    while t.received < total {
        if Instant::now() >= deadline {
            t.error = Some("reader: time limit".into());
            break;
        }
        match rd.read(&mut buf) {
            Ok(0) => {
                t.error = Some("reader: EOF before all bytes came back".into());
                break;
            }
            Ok(n) => {
                while pending.len() < n {
                    gen.fill(&mut want);
                    pending.extend_from_slice(&want);
                }
                if t.first_mismatch.is_none() {
                    if let Some(i) = (0..n).find(|&i| buf[i] != pending[i]) {
                        t.first_mismatch = Some(t.received + i);
                    }
                }
                pending.drain(..n);
                t.received += n;
            }
            Err(e) if retryable(&e) => {}
            Err(e) => {
                t.error = Some(format!("reader: {e}"));
                break;
            }
        }
    }
    let _ = rd.shutdown(std::net::Shutdown::Both);
    let (sent, werr) = writer.join().unwrap_or((0, Some("writer panicked".into())));
    t.sent = sent;
    if t.error.is_none() {
        t.error = werr;
    }
    t.elapsed = start.elapsed();
    t
}

pub(crate) fn scenario_rate_limited_saturated(notes: &Notes) {
    let rig = match NsRig::start_loop("rate_limited_saturated_no_restart") {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let base = rig.churn();
    let offset = rig.log_len();
    let fault = rig.net.rate_limit("1mbit", "32kbit", "400ms");
    notes.note("fault: tbf rate 1mbit burst 32kbit latency 400ms on both veth ends");
    // 1 Mbit/s each way: 5 MiB takes ~44 s plus protocol overhead.
    let total = 5 * 1024 * 1024;
    // Alongside: how long a short line takes through the saturated tunnel
    // (what a probe riding the same ssh connection would see), every ~2 s.
    let done = Arc::new(AtomicBool::new(false));
    let (done2, cli) = (done.clone(), rig.cli().to_string());
    let sampler = std::thread::spawn(move || {
        let mut samples: Vec<Option<Duration>> = Vec::new();
        for _ in 0..200 {
            if done2.load(Ordering::SeqCst) {
                break;
            }
            let t0 = Instant::now();
            samples.push(echo_rtt_in(&cli, TUNNEL_PORT, Duration::from_secs(20)));
            let pause = Duration::from_secs(2).saturating_sub(t0.elapsed());
            wait_until(pause, || done2.load(Ordering::SeqCst));
        }
        samples
    });
    let t = run_in_netns(rig.cli(), move || {
        echo_transfer(TUNNEL_PORT, total, Duration::from_secs(120))
    })
    .unwrap_or_else(|e| panic!("transfer thread: {e}"));
    done.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap_or_default();
    let w = rig.end_window(base, offset, || fault.lift());
    let rate = t.received as f64 * 8.0 / t.elapsed.as_secs_f64().max(0.001) / 1e6;
    notes.note(format!(
        "transfer: sent {} B, got back {} B in {:.1} s ({rate:.2} Mbit/s each way), first \
         mismatch {:?}, error {:?}",
        t.sent,
        t.received,
        t.elapsed.as_secs_f64(),
        t.first_mismatch,
        t.error
    ));
    let answered: Vec<u128> = samples.iter().flatten().map(|d| d.as_millis()).collect();
    notes.note(format!(
        "short-line echo through the saturated tunnel: {} of {} answered, round trips (ms) \
         {answered:?}",
        answered.len(),
        samples.len()
    ));
    notes.note(format!(
        "during the saturated transfer: ssh starts {}, \"restarting ssh\" lines {}; {}",
        w.starts,
        w.restarts,
        rtt_summary(&w.log)
    ));
    w.assert_no_restart(notes, &rig, "saturated", t.error.is_some());
    assert!(
        t.error.is_none() && t.received == total && t.sent == total,
        "transfer incomplete: {t:?}\n{}",
        rig.story()
    );
    assert_eq!(
        t.first_mismatch,
        None,
        "echoed bytes differ\n{}",
        rig.story()
    );
    rig.finish(notes);
}

#[test]
pub(crate) fn rate_limited_saturated_no_restart() {
    run_ns(
        "rate_limited_saturated_no_restart",
        scenario_rate_limited_saturated,
    );
}

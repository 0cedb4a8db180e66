//! 1. Black hole.

use super::*;

/// A black hole of `length` over a settled tunnel (loop mode at POLL=4, or
/// `-M 0` when `m0`), used through the tunnel once as it begins; `must_detect`:
/// a restart must be logged within POLL + net timeout.
pub(crate) fn black_hole(
    notes: &Notes,
    name: &str,
    length: Duration,
    m0: Option<&str>,
    must_detect: bool,
) {
    let m0_probe = m0.map(|p| ("AUTOSSH_SESSION_PROBE", p));
    let rig = if let Some(probe) = m0_probe {
        NsRig::start(
            name,
            "0",
            &[("AUTOSSH_GATETIME", "0"), ("AUTOSSH_LOGLEVEL", "7"), probe],
        )
    } else {
        NsRig::start_loop(name)
    };
    let rig = match rig {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let starts0 = rig.count(STARTING);
    let restarts0 = rig.count("restarting ssh");
    let offset = rig.log_len();

    // With -M 0, bulk uploads as well, on channels opened before the fault
    // (a channel opened during it is never confirmed, so ssh reads nothing
    // from it): four channels (2 MiB window each) fill ssh's socket buffer
    // (up to 4 MiB), so that after the lift only the kernel's backed-off
    // retries would move it.
    let (ready_tx, ready_rx) = mpsc::channel();
    let uploads: Vec<_> = (0..if m0.is_some() { 4 } else { 0 })
        .map(|_| {
            let (cli, ready, (go, go_rx)) =
                (rig.cli().to_string(), ready_tx.clone(), mpsc::channel());
            (
                go,
                std::thread::spawn(move || upload_in(&cli, TUNNEL_PORT, ready, go_rx)),
            )
        })
        .collect();
    for _ in &uploads {
        let ok = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or(false);
        assert!(ok, "an upload channel did not open\n{}", rig.story());
    }
    let fault = rig.net.black_hole();
    for (go, _) in &uploads {
        let _ = go.send(());
    }
    let applied = fault.applied_at();
    // The fault took effect (checked alongside, so the detection time below
    // stays exact): nothing answers through the tunnel.
    let cli = rig.cli().to_string();
    let check = std::thread::spawn(move || tunnel_works_in(&cli, TUNNEL_PORT));
    let detected = wait_out(&rig, applied, length, "restarting ssh", restarts0);
    let worked = check.join().unwrap_or(true);
    if !uploads.is_empty() {
        let bytes: Vec<usize> = uploads
            .into_iter()
            .map(|(_, u)| u.join().unwrap_or(0))
            .collect();
        notes.note(format!(
            "bytes written into the tunnel during the fault: {bytes:?}"
        ));
    }
    assert!(
        !worked,
        "tunnel works through the black hole\n{}",
        rig.story()
    );
    let starts_during = rig.count(STARTING) - starts0;
    let lifted = fault.lift();
    let gap = lifted.elapsed();
    let since_lift = rig.time_to_tunnel(Duration::from_secs(60)).map(|t| t + gap);
    let during = rig.log_since(offset);
    notes.note(format!(
        "black hole {} s: outage detected after {}, ssh starts during the fault: {starts_during}",
        length.as_secs(),
        detected.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
    ));
    notes.note(match since_lift {
        Some(t) => format!("tunnel works again {:.2} s after the lift", t.as_secs_f64()),
        None => "tunnel did not work within 60 s of the lift".to_string(),
    });
    notes.note(format!(
        "autossh log since the fault:\n{}",
        key_lines(&during)
    ));

    assert!(rig.autossh.is_running(), "autossh exited\n{}", rig.story());
    let t = since_lift
        .unwrap_or_else(|| panic!("tunnel never came back after the lift\n{}", rig.story()));
    assert!(
        t <= RECOVERY_LIMIT,
        "tunnel back {:.2} s after the lift (limit {:?})\n{}",
        t.as_secs_f64(),
        RECOVERY_LIMIT,
        rig.story()
    );
    if must_detect {
        let d = detected.unwrap_or_else(|| {
            panic!(
                "no \"restarting ssh\" during a {length:?} black hole\n{}",
                rig.story()
            )
        });
        // AUTOSSH_POLL (4 s) + net timeout (2 s), plus 1 s for log polling.
        assert!(
            d <= Duration::from_secs(7),
            "outage detected only after {:.2} s (want ≤ POLL 4 s + net timeout 2 s)\n{}",
            d.as_secs_f64(),
            rig.story()
        );
    }
    rig.finish(notes);
}

/// An upload through the tunnel whose channel is open before a fault: opens
/// 127.0.0.1:`port` in namespace `ns` and sees one line echoed, answers on
/// `ready`, waits for `go`, then writes until the writes have blocked for 3 s
/// (or 10 s or 64 MiB passed); returns the bytes written.
pub(crate) fn upload_in(
    ns: &str,
    port: u16,
    ready: mpsc::Sender<bool>,
    go: mpsc::Receiver<()>,
) -> usize {
    run_in_netns(ns, move || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(_) => return ready.send(false).map_or(0, |_| 0),
        };
        let mut line = [0u8; 6];
        let echoed = s.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
            && s.write_all(b"ready\n").is_ok()
            && s.read_exact(&mut line).is_ok();
        let _ = ready.send(echoed);
        if !echoed || go.recv_timeout(Duration::from_secs(30)).is_err() {
            return 0;
        }
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let chunk = [0x5au8; 16 * 1024];
        let (start, mut written, mut last_progress) = (Instant::now(), 0usize, Instant::now());
        while written < 64 << 20
            && start.elapsed() < Duration::from_secs(10)
            && last_progress.elapsed() < Duration::from_secs(3)
        {
            match s.write(&chunk) {
                Ok(0) => break,
                Ok(n) => {
                    written += n;
                    last_progress = Instant::now();
                }
                Err(e) if retryable(&e) => {}
                Err(_) => break,
            }
        }
        written
    })
    .unwrap_or(0)
}

pub(crate) fn scenario_black_hole_5s(notes: &Notes) {
    black_hole(notes, "black_hole_5s", Duration::from_secs(5), None, false);
}

pub(crate) fn scenario_black_hole_60s(notes: &Notes) {
    black_hole(notes, "black_hole_60s", Duration::from_secs(60), None, true);
}

/// `-M 0` with the session probe (the default). The black hole drops in
/// the client's own OUTPUT chain, so what ssh writes during it is never sent
/// at all (nothing unacknowledged); once uploads have filled ssh's socket
/// buffer, the kernel alone retries it, at backed-off zero-window probe times
/// (≈25 s, 51 s after the start). Without the stall watch's unsendable-data
/// rule the tunnel came back ≈20 s after the lift.
pub(crate) fn scenario_m0_black_hole_30s(notes: &Notes) {
    black_hole(
        notes,
        "m0_black_hole_30s",
        Duration::from_secs(30),
        Some("yes"),
        false,
    );
}

/// `-M 0` without the session probe (1.4g's `-M 0`: ServerAlive and the stall
/// watch only). The ssh that dies during the fault must not be replaced blind
/// by one that sits in SYN retries when the fault lifts: checks run, and the
/// server's answer starts (or replaces) ssh at once.
pub(crate) fn scenario_m0_plain_black_hole_20s(notes: &Notes) {
    black_hole(
        notes,
        "m0_plain_black_hole_20s",
        Duration::from_secs(20),
        Some("no"),
        false,
    );
}

#[test]
pub(crate) fn black_hole_5s() {
    run_ns("black_hole_5s", scenario_black_hole_5s);
}

#[test]
pub(crate) fn black_hole_60s() {
    run_ns("black_hole_60s", scenario_black_hole_60s);
}

#[test]
pub(crate) fn m0_black_hole_30s() {
    run_ns("m0_black_hole_30s", scenario_m0_black_hole_30s);
}

#[test]
pub(crate) fn m0_plain_black_hole_20s() {
    run_ns("m0_plain_black_hole_20s", scenario_m0_plain_black_hole_20s);
}

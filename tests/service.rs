//! Running as a service: systemd's notify protocol spoken to a socket the test owns, the JSON
//! status file and the Prometheus metrics file.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use test_support::*;

const T: Duration = Duration::from_secs(10);

/// A notify socket in the test dir, collecting what autossh says.
struct Systemd {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    got: Vec<(Instant, String)>,
}

impl Systemd {
    fn new(dir: &TestDir) -> Systemd {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Systemd {
            sock,
            path,
            got: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.got.push((Instant::now(), msg));
        }
    }

    /// Waits for a message containing `needle`; returns when it came.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self.got.iter().find(|(_, m)| m.contains(needle)) {
                return Some(*at);
            }
            if Instant::now() > end {
                return None;
            }
            self.pump();
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.got.iter().filter(|(_, m)| m.contains(needle)).count()
    }

    fn all(&self) -> String {
        self.got.iter().map(|(_, m)| format!("{m}\n")).collect()
    }
}

#[test]
fn notify_ready_after_the_gate_watchdog_while_up_and_stopping() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let mut sd = Systemd::new(&dir);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "2")
        .env("NOTIFY_SOCKET", &sd.path)
        .env("WATCHDOG_USEC", "200000")
        .args(["-M", "0", "h"])
        .spawn(&dir);
    assert!(fake.wait_for_runs(1, T));
    let started = Instant::now();
    let ready = sd
        .wait_for("READY=1", T)
        .unwrap_or_else(|| panic!("{}\n{}", sd.all(), p.describe()));
    // -M 0: ready once ssh has lived past the gate (2 s), not before.
    assert!(
        ready.duration_since(started) >= Duration::from_millis(1800),
        "{}",
        sd.all()
    );
    assert_eq!(sd.count("READY=1"), 1);
    assert!(sd.all().contains("STATUS=up"), "{}", sd.all());
    // Watchdog every 100 ms while up.
    assert!(wait_until(T, || {
        sd.pump();
        sd.count("WATCHDOG=1") >= 5
    }));
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    sd.pump();
    assert!(sd.count("STOPPING=1") >= 1, "{}", sd.all());
    let _ = no_process_left(&dir.marker());
}

#[test]
fn watchdog_pauses_while_ssh_keeps_failing() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 255"]);
    let mut sd = Systemd::new(&dir);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0")
        .env("NOTIFY_SOCKET", &sd.path)
        .env("WATCHDOG_USEC", "100000")
        .args(["-M", "0", "h"])
        .spawn(&dir);
    assert!(fake.wait_for_runs(4, T), "{}", p.describe());
    sd.pump();
    assert_eq!(sd.count("READY=1"), 0, "{}", sd.all());
    assert_eq!(sd.count("WATCHDOG=1"), 0, "{}", sd.all());
    assert!(sd.all().contains("STATUS="), "{}", sd.all());
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
}

#[test]
fn status_file_is_valid_json_at_every_look_while_restarts_happen() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["sleep 0.2 exit 255"]);
    let status = dir.join("status.json");
    let metrics = dir.join("autossh.prom");
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_STATUSFILE", &status)
        .env("AUTOSSH_METRICSFILE", &metrics)
        .args(["-M", "0", "h"])
        .spawn(&dir);
    assert!(wait_until(T, || status.exists()), "{}", p.describe());
    let mut looks = 0;
    let mut restarts_seen = 0;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let text = std::fs::read_to_string(&status).expect("the file is always there");
        let v = json::parse(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
        let restarts = v["restarts"].as_u64();
        restarts_seen = restarts_seen.max(restarts.unwrap_or_else(|| panic!("restarts:\n{text}")));
        let state = v["state"]
            .as_str()
            .unwrap_or_else(|| panic!("state:\n{text}"));
        assert!(
            ["starting", "up", "reconnecting", "backing-off"].contains(&state),
            "{state}"
        );
        assert_eq!(v["monitor"]["mode"], "off");
        assert!(v["state_since"].is_number(), "{text}");
        looks += 1;
    }
    assert!(looks > 50, "only {looks} looks");
    assert!(restarts_seen >= 2, "restarts never showed: {restarts_seen}");
    let v = json::parse(&std::fs::read_to_string(&status).unwrap()).unwrap();
    let recent = v["recent_restarts"].as_array().expect("recent_restarts");
    assert!(!recent.is_empty());
    assert!(recent.len() <= 10);
    // Metrics: Prometheus text, every sample line "name{labels} value".
    let prom = std::fs::read_to_string(&metrics).unwrap();
    check_prometheus(&prom);
    for name in [
        "autossh_up ",
        "autossh_restarts_total{reason=\"ssh_exit\"}",
        "autossh_probe_failures_total",
        "autossh_tunnel_up_seconds",
    ] {
        assert!(prom.contains(name), "{name} missing:\n{prom}");
    }
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    let last = json::parse(&std::fs::read_to_string(&status).unwrap()).unwrap();
    assert_eq!(last["state"], "stopped");
}

/// Every line is a comment (`# HELP`/`# TYPE`) or `metric{labels} number`.
fn check_prometheus(text: &str) {
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        if let Some(labels) = name.strip_prefix(bare) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')));
        }
    }
}

#[test]
fn ready_waits_for_a_proven_tunnel_in_loop_mode() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let mut sd = Systemd::new(&dir);
    let status = dir.join("status.json");
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_POLL", "2")
        .env("AUTOSSH_GATETIME", "0")
        .env("NOTIFY_SOCKET", &sd.path)
        .env("AUTOSSH_STATUSFILE", &status)
        .args(["-M", &free_loop_ports().to_string(), "-N"])
        .args(sshd.client_args())
        .spawn(&dir);
    assert!(
        sd.wait_for("READY=1", Duration::from_secs(15)).is_some(),
        "{}\n{}",
        sd.all(),
        p.describe()
    );
    // READY came with or after the first successful probe.
    assert!(p.stderr_text().contains("tunnel up"), "{}", p.describe());
    assert!(wait_until(T, || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| json::parse(&t).ok())
            .is_some_and(|v| v["last_rtt_ms"].is_number())
    }));
    let v = json::parse(&std::fs::read_to_string(&status).unwrap()).unwrap();
    assert_eq!(v["monitor"]["mode"], "loop");
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    let marker = dir.marker();
    drop(sshd);
    let _ = no_process_left(&marker);
}

#[test]
fn status_and_metrics_files_are_readable_by_others_under_umask_0077() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let status = dir.join("status.json");
    let metrics = dir.join("autossh.prom");
    // As under the units' UMask=0077: node_exporter (another user) must still read the metrics.
    let p = Cmd::new("/bin/sh")
        .args(["-c", "umask 0077 && exec \"$0\" \"$@\""])
        .arg(autossh_bin!())
        .args(["-M", "0", "h"])
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_STATUSFILE", &status)
        .env("AUTOSSH_METRICSFILE", &metrics)
        .spawn(&dir);
    assert!(
        wait_until(T, || status.exists() && metrics.exists()),
        "{}",
        p.describe()
    );
    for f in [&status, &metrics] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{} has mode {mode:o}", f.display());
    }
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
}

//! Fault injection: autossh against a real sshd on a test host in a network
//! namespace, through black holes, server outages, loss, latency and a
//! saturated slow link; plus restart churn (leaks) and SIGKILL of autossh.
//!
//! The namespace scenarios (see tests/netns/mod.rs for the topology) each
//! wait out a fault of up to 60 s. So that the file does not take 6 × 70 s
//! when libtest runs only as many tests at once as there are cores, the first
//! namespace test to run starts every namespace scenario at once in
//! background threads, and each test then waits for its own scenario's
//! outcome. That happens only when the whole file runs (no test name filter,
//! no --skip or --ignored; each scenario is then waited for by its own test);
//! otherwise, or with AUTOSSH_FAULTS_SERIAL set, each test runs its scenario
//! when its turn comes.
//!
//! Measured numbers are printed on stderr (`--nocapture` to see them).
//! Where network namespaces cannot be created (not root), the namespace tests
//! print "skipped: ..." and pass.

mod netns;
mod util;

use netns::*;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use util::*;

/// The service the tunnel leads to (127.0.0.1 in the server namespace).
const SERVICE_PORT: u16 = 7007;
/// The tunnel's local end (127.0.0.1 in the client namespace).
const TUNNEL_PORT: u16 = 8022;
/// Loop-mode monitor port (N and N+1, in the namespaces).
const MONITOR_PORT: u16 = 20000;
/// The log line of every ssh start ("restarting ssh" lines do not match).
const STARTING: &str = "starting ssh (count";
/// After the server is reachable again the tunnel must work within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Scenario bookkeeping
// ---------------------------------------------------------------------------

/// What a scenario measured, printed as it goes and kept for the summary.
#[derive(Clone)]
struct Notes {
    name: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    skipped: Arc<Mutex<Option<String>>>,
}

impl Notes {
    fn new(name: &'static str) -> Notes {
        Notes {
            name,
            lines: Arc::new(Mutex::new(Vec::new())),
            skipped: Arc::new(Mutex::new(None)),
        }
    }

    fn note(&self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        eprintln!("[{}] {msg}", self.name);
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.to_string());
    }

    fn skip(&self, why: &str) {
        *self.skipped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    fn skipped(&self) -> Option<String> {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn summary(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| format!("  {l}\n"))
            .collect()
    }
}

type Scenario = fn(&Notes);

/// The namespace scenarios, by test name.
const NS_SCENARIOS: &[(&str, Scenario)] = &[
    ("black_hole_5s", scenario_black_hole_5s),
    ("black_hole_60s", scenario_black_hole_60s),
    ("m0_black_hole_30s", scenario_m0_black_hole_30s),
    ("m0_plain_black_hole_20s", scenario_m0_plain_black_hole_20s),
    ("server_down_60s", scenario_server_down_60s),
    ("loss_20pct_no_restart", scenario_loss),
    ("latency_300ms_no_restart", scenario_latency),
    (
        "rate_limited_saturated_no_restart",
        scenario_rate_limited_saturated,
    ),
];

struct Running {
    notes: Notes,
    handle: JoinHandle<()>,
}

fn pool() -> &'static Mutex<HashMap<&'static str, Running>> {
    static POOL: OnceLock<Mutex<HashMap<&'static str, Running>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(HashMap::new()))
}

fn spawn_scenario(name: &'static str) -> Running {
    let f = NS_SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let notes = Notes::new(name);
    let n2 = notes.clone();
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || f(&n2))
        .expect("spawn scenario thread");
    Running { notes, handle }
}

/// True when this run selects every test of the file (so that every scenario
/// started early is waited for by its test): only flags libtest is known to
/// take, no filter, no --skip, --ignored or --list.
fn whole_file_selected() -> bool {
    if std::env::var_os("AUTOSSH_FAULTS_SERIAL").is_some() {
        return false;
    }
    const FLAGS: &[&str] = &[
        "--nocapture",
        "--no-capture",
        "--show-output",
        "-q",
        "--quiet",
        "--include-ignored",
        "--report-time",
        "--ensure-time",
        "--shuffle",
        "--exact",
    ];
    const WITH_VALUE: &[&str] = &[
        "--test-threads",
        "--color",
        "--format",
        "-Z",
        "--shuffle-seed",
        "--logfile",
    ];
    let mut args = std::env::args().skip(1);
    for _ in 0..100 {
        let Some(a) = args.next() else {
            return true;
        };
        let key = a.split('=').next().unwrap_or("");
        if FLAGS.contains(&a.as_str()) {
            continue;
        }
        if WITH_VALUE.contains(&key) {
            if !a.contains('=') {
                args.next();
            }
            continue;
        }
        return false;
    }
    false
}

/// Runs (or joins, if it was started early) the scenario `name` and turns
/// its outcome into this test's outcome.
fn run_ns(name: &'static str) {
    static EAGER: std::sync::Once = std::sync::Once::new();
    let running = {
        let mut map = pool().lock().unwrap_or_else(|e| e.into_inner());
        EAGER.call_once(|| {
            if whole_file_selected() {
                for (n, _) in NS_SCENARIOS {
                    map.insert(n, spawn_scenario(n));
                }
            }
        });
        map.remove(name)
    }
    .unwrap_or_else(|| spawn_scenario(name));
    let result = running.handle.join();
    let notes = running.notes;
    if let Some(why) = notes.skipped() {
        eprintln!("{name}: skipped: {why}");
        return;
    }
    if let Err(payload) = result {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".to_string());
        panic!(
            "{name} failed: {msg}\n--- measured ---\n{}",
            notes.summary()
        );
    }
    eprintln!("=== {name} ===\n{}", notes.summary());
}

// ---------------------------------------------------------------------------
// The rig: sshd + echo service in SRV, autossh in CLI
// ---------------------------------------------------------------------------

/// Field order is drop order: autossh first, the test dir last.
struct NsRig {
    autossh: Proc,
    sshd: NsSshd,
    echo: EchoService,
    net: TestNet,
    dir: TestDir,
    loop_mode: bool,
}

impl NsRig {
    /// `monitor`: the `-M` value. `Err`: namespaces unavailable (skip).
    fn start(name: &str, monitor: &str, env: &[(&str, &str)]) -> Result<NsRig, String> {
        let net = TestNet::create()?;
        let dir = TestDir::named(name);
        let sshd = NsSshd::start(&dir, &net);
        let echo = EchoService::start_in(net.srv(), SERVICE_PORT);
        let mut cmd = Cmd::new("ip")
            .args(["netns", "exec", net.cli()])
            .arg(autossh_bin())
            .args(["-M", monitor, "-N", "-L"])
            .arg(format!("{TUNNEL_PORT}:127.0.0.1:{SERVICE_PORT}"))
            .args(["-F", "/dev/null", "-i"])
            .arg(sshd.client_key())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg(sshd.destination())
            .name("autossh");
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let autossh = cmd.spawn(&dir);
        Ok(NsRig {
            autossh,
            sshd,
            echo,
            net,
            dir,
            loop_mode: monitor != "0",
        })
    }

    /// Loop mode on MONITOR_PORT with AUTOSSH_POLL=4, GATETIME=0 and debug
    /// logging (one line per probe with its round trip).
    fn start_loop(name: &str) -> Result<NsRig, String> {
        NsRig::start(
            name,
            &MONITOR_PORT.to_string(),
            &[
                ("AUTOSSH_POLL", "4"),
                ("AUTOSSH_GATETIME", "0"),
                ("AUTOSSH_LOGLEVEL", "7"),
            ],
        )
    }

    fn cli(&self) -> &str {
        self.net.cli()
    }

    fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    fn log_len(&self) -> usize {
        self.log().len()
    }

    fn log_since(&self, offset: usize) -> String {
        let l = self.log();
        l.get(offset..).unwrap_or("").to_string()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// (ssh starts, "restarting ssh" decisions) logged so far.
    fn churn(&self) -> (usize, usize) {
        let log = self.log();
        (
            log.matches(STARTING).count(),
            log.matches("restarting ssh").count(),
        )
    }

    /// Starts and restart decisions since `base` (from [`NsRig::churn`]).
    fn churn_since(&self, base: (usize, usize)) -> (usize, usize) {
        let now = self.churn();
        (now.0 - base.0, now.1 - base.1)
    }

    fn tunnel_works(&self) -> bool {
        tunnel_works_in(self.cli(), TUNNEL_PORT)
    }

    /// Time until the tunnel works, attempting every 100 ms.
    /// Ends a fault window that began at `base` (churn) and `offset` (log):
    /// counts what happened in it, lifts the fault with `lift`, then times the
    /// tunnel (up to 10 s).
    fn end_window<T>(
        &self,
        base: (usize, usize),
        offset: usize,
        lift: impl FnOnce() -> T,
    ) -> Window {
        let (starts, restarts) = self.churn_since(base);
        let log = self.log_since(offset);
        lift();
        Window {
            starts,
            restarts,
            log,
            after_lift: self.time_to_tunnel(Duration::from_secs(10)),
        }
    }

    fn time_to_tunnel(&self, timeout: Duration) -> Option<Duration> {
        time_until_tunnel_works(self.cli(), TUNNEL_PORT, Duration::from_millis(100), timeout)
    }

    /// Everything for a failure message: autossh (command, env, log,
    /// children), the sshd logs (tails), the namespaces.
    fn story(&self) -> String {
        let sshd_logs = self.sshd.all_logs(&self.dir);
        let tail: Vec<&str> = sshd_logs.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "namespaces {:?}, server {}\n{}\n--- sshd logs (last 60 lines) ---\n{}",
            self.net.names(),
            self.net.srv_ip(),
            self.autossh.describe(),
            tail.join("\n")
        )
    }

    /// Waits for the first working tunnel and, in loop mode, the first
    /// "tunnel up" line.
    fn settle(&self, notes: &Notes) {
        let t = self.time_to_tunnel(Duration::from_secs(30));
        let Some(t) = t else {
            panic!("the tunnel never worked\n{}", self.story());
        };
        notes.note(format!("first tunnel after {:.2} s", t.as_secs_f64()));
        if self.loop_mode {
            let up = wait_until(Duration::from_secs(20), || self.count("tunnel up") >= 1);
            assert!(up, "no \"tunnel up\" line within 20 s\n{}", self.story());
        }
        assert!(self.autossh.is_running(), "{}", self.story());
    }

    /// Live (non-zombie) children of autossh.
    fn ssh_children(&self) -> Vec<i32> {
        self.autossh
            .children()
            .into_iter()
            .filter(|&p| process_exists(p))
            .collect()
    }

    /// Checks one ssh child, stops autossh with SIGTERM, tears everything
    /// down and checks that nothing is left (processes, namespaces).
    fn finish(self, notes: &Notes) {
        let one = wait_until(Duration::from_secs(5), || self.ssh_children().len() == 1);
        assert!(
            one,
            "expected exactly one ssh child, got {:?}\n{}",
            self.ssh_children(),
            self.story()
        );
        self.autossh.signal(Signal::SIGTERM);
        let status = self.autossh.wait_timeout(Duration::from_secs(10));
        assert!(
            status.is_some(),
            "autossh ignored SIGTERM\n{}",
            self.story()
        );
        let NsRig {
            autossh,
            sshd,
            echo,
            net,
            dir,
            ..
        } = self;
        let marker = dir.marker();
        let names = net.names();
        drop(autossh);
        drop(sshd);
        drop(echo);
        drop(net);
        drop(dir);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        notes.note(format!(
            "cleanup: autossh exited ({}), no process left, namespaces {names:?} removed",
            status.map(|s| s.to_string()).unwrap_or_default()
        ));
    }
}

/// Round trips (ms) of the probe lines in `log` ("... rtt N ms").
fn rtts(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("rtt ")? + 4..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            num.parse().ok()
        })
        .collect()
}

fn rtt_summary(log: &str) -> String {
    let v = rtts(log);
    if v.is_empty() {
        return "no probe rtt lines".into();
    }
    let max = v.iter().max().copied().unwrap_or(0);
    let min = v.iter().min().copied().unwrap_or(0);
    let mut sorted = v.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    format!(
        "{} probes, rtt min {min} ms, median {median} ms, max {max} ms",
        v.len()
    )
}

/// The lines of `log` that mention ssh starts, restarts and the tunnel state.
fn key_lines(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.contains(STARTING)
                || l.contains("restarting")
                || l.contains("tunnel up")
                || l.contains("down")
                || l.contains("timeout")
                || l.contains("failed")
        })
        .take(80)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits out `length` (the fault's duration), polling the log every 100 ms;
/// returns when (after `from`) the count of `needle` first grew past `base`.
fn wait_out(
    rig: &NsRig,
    from: Instant,
    length: Duration,
    needle: &str,
    base: usize,
) -> Option<Duration> {
    let end = from + length;
    let mut seen = None;
    let max_rounds = length.as_millis() / 100 + 20;
    for _ in 0..max_rounds {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if seen.is_none() && rig.count(needle) > base {
            seen = Some(from.elapsed());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
    if seen.is_none() && rig.count(needle) > base {
        seen = Some(from.elapsed());
    }
    seen
}

// ---------------------------------------------------------------------------
// 1. Black hole
// ---------------------------------------------------------------------------

/// A black hole of `length` over a settled tunnel (loop mode at POLL=4, or
/// `-M 0` when `m0`), used through the tunnel once as it begins; `must_detect`:
/// a restart must be logged within POLL + net timeout.
fn black_hole(notes: &Notes, name: &str, length: Duration, m0: Option<&str>, must_detect: bool) {
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
fn upload_in(ns: &str, port: u16, ready: mpsc::Sender<bool>, go: mpsc::Receiver<()>) -> usize {
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

fn scenario_black_hole_5s(notes: &Notes) {
    black_hole(notes, "black_hole_5s", Duration::from_secs(5), None, false);
}

fn scenario_black_hole_60s(notes: &Notes) {
    black_hole(notes, "black_hole_60s", Duration::from_secs(60), None, true);
}

/// `-M 0` with the session probe (the default). The black hole drops in
/// the client's own OUTPUT chain, so what ssh writes during it is never sent
/// at all (nothing unacknowledged); once uploads have filled ssh's socket
/// buffer, the kernel alone retries it, at backed-off zero-window probe times
/// (≈25 s, 51 s after the start). Without the stall watch's unsendable-data
/// rule the tunnel came back ≈20 s after the lift.
fn scenario_m0_black_hole_30s(notes: &Notes) {
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
fn scenario_m0_plain_black_hole_20s(notes: &Notes) {
    black_hole(
        notes,
        "m0_plain_black_hole_20s",
        Duration::from_secs(20),
        Some("no"),
        false,
    );
}

#[test]
fn black_hole_5s() {
    run_ns("black_hole_5s");
}

#[test]
fn black_hole_60s() {
    run_ns("black_hole_60s");
}

#[test]
fn m0_black_hole_30s() {
    run_ns("m0_black_hole_30s");
}

#[test]
fn m0_plain_black_hole_20s() {
    run_ns("m0_plain_black_hole_20s");
}

// ---------------------------------------------------------------------------
// 2. Server down
// ---------------------------------------------------------------------------

fn scenario_server_down_60s(notes: &Notes) {
    let mut rig = match NsRig::start("server_down_60s", "0", &[("AUTOSSH_GATETIME", "0")]) {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let starts0 = rig.count(STARTING);
    let offset = rig.log_len();

    let down_at = Instant::now();
    let killed = rig.sshd.kill();
    notes.note(format!(
        "killed sshd listener and sessions: {killed} processes"
    ));
    // The fault took effect: nothing answers through the tunnel.
    let dead = !rig.tunnel_works();
    notes.note(format!("tunnel dead during the outage: {dead}"));
    assert!(dead, "tunnel still works with sshd down\n{}", rig.story());
    // The outage itself: a fixed 60 s.
    std::thread::sleep(
        (down_at + Duration::from_secs(60)).saturating_duration_since(Instant::now()),
    );
    let starts_during = rig.count(STARTING) - starts0;
    let up_at = {
        let NsRig { sshd, dir, .. } = &mut rig;
        sshd.restart(dir)
    };
    let gap = up_at.elapsed();
    let since_up = rig.time_to_tunnel(Duration::from_secs(90)).map(|t| t + gap);
    let during = rig.log_since(offset);
    notes.note(format!(
        "server down 60 s: ssh starts during the outage: {starts_during}"
    ));
    notes.note(match since_up {
        Some(t) => format!(
            "tunnel works again {:.2} s after sshd listens again",
            t.as_secs_f64()
        ),
        None => "tunnel did not work within 90 s of sshd's restart".to_string(),
    });
    notes.note(format!(
        "autossh log since the outage:\n{}",
        key_lines(&during)
    ));
    assert!(rig.autossh.is_running(), "autossh exited\n{}", rig.story());
    let t = since_up.unwrap_or_else(|| panic!("tunnel never came back\n{}", rig.story()));
    assert!(
        t <= RECOVERY_LIMIT,
        "tunnel back {:.2} s after sshd listens again (limit {:?})\n{}",
        t.as_secs_f64(),
        RECOVERY_LIMIT,
        rig.story()
    );
    rig.finish(notes);
}

#[test]
fn server_down_60s() {
    run_ns("server_down_60s");
}

// ---------------------------------------------------------------------------
// 3. Loss and latency: no restart
// ---------------------------------------------------------------------------

/// What a fault window saw: ssh starts and "restarting ssh" lines, the log,
/// and how soon after the lift the tunnel worked.
struct Window {
    starts: usize,
    restarts: usize,
    log: String,
    after_lift: Option<Duration>,
}

impl Window {
    /// Notes the recovery (and the log when anything restarted or `show_log`),
    /// then asserts that nothing restarted on this `link` (slow, saturated:
    /// working) and that the tunnel works after the lift.
    fn assert_no_restart(&self, notes: &Notes, rig: &NsRig, link: &str, show_log: bool) {
        notes.note(match self.after_lift {
            Some(t) => format!("tunnel works {:.2} s after the lift", t.as_secs_f64()),
            None => "tunnel did not work within 10 s of the lift".into(),
        });
        if self.starts + self.restarts > 0 || show_log {
            notes.note(format!(
                "autossh log during the fault:\n{}",
                key_lines(&self.log)
            ));
        }
        assert_eq!(
            (self.starts, self.restarts),
            (0, 0),
            "autossh restarted ssh on a {link} but working link (new starts, restart lines)\n{}",
            rig.story()
        );
        assert!(
            self.after_lift.is_some(),
            "tunnel dead after the lift\n{}",
            rig.story()
        );
    }
}

/// Applies `fault` for `length` to a settled loop-mode tunnel; checks the
/// tunnel every ~3 s meanwhile (informational), then asserts no new ssh start
/// and a working tunnel after the lift.
fn no_restart_under(notes: &Notes, name: &str, length: Duration, fault: fn(&TestNet) -> Fault) {
    let rig = match NsRig::start_loop(name) {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let base = rig.churn();
    let offset = rig.log_len();
    let f = fault(&rig.net);
    let applied = f.applied_at();
    let (mut ok, mut tried) = (0u32, 0u32);
    let end = applied + length;
    for _ in 0..(length.as_secs() + 10) {
        if Instant::now() + Duration::from_secs(3) > end {
            break;
        }
        let t0 = Instant::now();
        tried += 1;
        if rig.tunnel_works() {
            ok += 1;
        }
        let next = t0 + Duration::from_secs(3);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let w = rig.end_window(base, offset, || f.lift());
    notes.note(format!(
        "{} s of fault: ssh starts during it: {}, \"restarting ssh\" lines: {}; echo checks \
         through the tunnel during it: {ok}/{tried} ok; {}",
        length.as_secs(),
        w.starts,
        w.restarts,
        rtt_summary(&w.log)
    ));
    w.assert_no_restart(notes, &rig, "slow", false);
    rig.finish(notes);
}

fn scenario_loss(notes: &Notes) {
    notes.note("fault: 20% random loss on each end's egress (iptables statistic)");
    no_restart_under(
        notes,
        "loss_20pct_no_restart",
        Duration::from_secs(60),
        |net| net.loss(20),
    );
}

fn scenario_latency(notes: &Notes) {
    notes.note("fault: +300 ms on every client-to-server packet (NFQUEUE delayer)");
    no_restart_under(
        notes,
        "latency_300ms_no_restart",
        Duration::from_secs(60),
        |net| net.delay(Duration::from_millis(300)),
    );
}

#[test]
fn loss_20pct_no_restart() {
    run_ns("loss_20pct_no_restart");
}

#[test]
fn latency_300ms_no_restart() {
    run_ns("latency_300ms_no_restart");
}

// ---------------------------------------------------------------------------
// 4. Saturated slow link
// ---------------------------------------------------------------------------

/// The byte stream the transfer sends: xorshift64 output.
struct Stream(u64);

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
struct Transfer {
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
fn echo_transfer(port: u16, total: usize, limit: Duration) -> Transfer {
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

fn scenario_rate_limited_saturated(notes: &Notes) {
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
fn rate_limited_saturated_no_restart() {
    run_ns("rate_limited_saturated_no_restart");
}

// ---------------------------------------------------------------------------
// 5. Restart churn: no leak
// ---------------------------------------------------------------------------

/// Like [`wait_until`], polling every 2 ms (for tight restart loops).
fn wait_fast(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    for _ in 0..1_000_000 {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    cond()
}

fn live_children(p: &Proc) -> Vec<i32> {
    p.children()
        .into_iter()
        .filter(|&c| process_exists(c))
        .collect()
}

fn zombie_children(p: &Proc) -> Vec<i32> {
    p.children().into_iter().filter(|&c| is_zombie(c)).collect()
}

/// fd count and RSS (KiB) of `pid`, sampled once the fd count has stayed the
/// same for 0.5 s (waiting at most 5 s), so that a restart or a reachability
/// check in flight does not count.
fn steady_sample(pid: i32) -> (usize, u64) {
    let mut last = usize::MAX;
    let mut since = Instant::now();
    wait_until(Duration::from_secs(5), || {
        let n = count_open_fds(pid);
        if n != last {
            last = n;
            since = Instant::now();
        }
        since.elapsed() >= Duration::from_millis(500)
    });
    (count_open_fds(pid), rss_kib(pid))
}

/// Checks an autossh after churn: fds back to `fds0` (bounded wait), RSS
/// growth, no zombie child, exactly one live child; returns a report line.
fn check_after_churn(
    label: &str,
    p: &Proc,
    fds0: usize,
    rss0: u64,
    story: &dyn Fn() -> String,
) -> String {
    let mut fds1 = 0;
    let mut rss1 = 0;
    let back = wait_until(Duration::from_secs(5), || {
        (fds1, rss1) = steady_sample(p.pid());
        fds1 == fds0
    });
    let no_zombie = wait_until(Duration::from_secs(3), || zombie_children(p).is_empty());
    let one = wait_until(Duration::from_secs(5), || live_children(p).len() == 1);
    let line = format!(
        "{label}: fds {fds0} -> {fds1}, VmRSS {rss0} KiB -> {rss1} KiB ({:+} KiB), zombie \
         children {:?}, live children {:?}",
        rss1 as i64 - rss0 as i64,
        zombie_children(p),
        live_children(p)
    );
    assert!(
        back && fds1 == fds0,
        "{line}: fd count changed\n{}",
        story()
    );
    assert!(
        rss1 < rss0 + 2048,
        "{line}: RSS grew by 2 MiB or more\n{}",
        story()
    );
    assert!(no_zombie, "{line}: zombie children\n{}", story());
    assert!(one, "{line}: not exactly one ssh child\n{}", story());
    line
}

/// Prints a churn report line at once and keeps it for the summary.
fn note(report: &mut Vec<String>, line: String) {
    eprintln!("[thousand_forced_restarts_no_leak] {line}");
    report.push(line);
}

/// 1000 SIGUSR1 restarts of a fake ssh that hangs.
fn fake_churn(dir: &TestDir, restarts: usize, deadline: Instant) -> Vec<String> {
    let mut report = Vec::new();
    let fake = FakeSsh::new(dir, &["hang"]);
    let p = Cmd::autossh()
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "churn.invalid"])
        .name("autossh-fake")
        .spawn(dir);
    let runs = fake.state_dir().join("runs");
    let run_done = |n: usize| {
        fs::read_to_string(runs.join(format!("{n}.pid")))
            .map(|s| s.ends_with('\n'))
            .unwrap_or(false)
    };
    let story = || format!("{}\n{}", p.describe(), fake.describe());
    assert!(
        wait_fast(Duration::from_secs(10), || run_done(1)),
        "fake ssh never started\n{}",
        story()
    );
    let warmup = 100.min(restarts);
    let mut resent = 0;
    let mut fds0 = 0;
    let mut rss0 = 0;
    let started = Instant::now();
    for n in 1..=restarts {
        assert!(
            Instant::now() < deadline,
            "time budget spent after {} of {restarts} restarts\n{}",
            n - 1,
            story()
        );
        // Settle: the current ssh runs before the next signal.
        p.signal(Signal::SIGUSR1);
        let mut ok = wait_fast(Duration::from_secs(3), || run_done(n + 1));
        if !ok {
            resent += 1;
            p.signal(Signal::SIGUSR1);
            ok = wait_fast(Duration::from_secs(5), || run_done(n + 1));
        }
        assert!(ok, "restart {n}: no new ssh after SIGUSR1\n{}", story());
        if n == warmup {
            let one = wait_until(Duration::from_secs(5), || live_children(&p).len() == 1);
            assert!(
                one,
                "after warm-up: children {:?}\n{}",
                p.children(),
                story()
            );
            (fds0, rss0) = steady_sample(p.pid());
        }
    }
    let took = started.elapsed();
    note(
        &mut report,
        format!(
            "fake ssh: {restarts} SIGUSR1 restarts in {:.1} s ({:.1} ms each); signals re-sent: \
         {resent}; samples after {warmup} (warm-up) and {restarts}",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / restarts as f64
        ),
    );
    note(
        &mut report,
        check_after_churn("fake ssh", &p, fds0, rss0, &story),
    );
    let last = fake.pids().last().copied().unwrap_or(0);
    assert_eq!(live_children(&p), vec![last], "{}", story());
    p.signal(Signal::SIGTERM);
    assert!(
        p.wait_timeout(Duration::from_secs(10)).is_some(),
        "{}",
        story()
    );
    let gone = wait_until(Duration::from_secs(5), || fake.live_pids().is_empty());
    assert!(gone, "fake ssh left after SIGTERM: {:?}", fake.live_pids());
    note(
        &mut report,
        format!(
            "fake ssh: starts logged {}, runs recorded {}, none left after SIGTERM",
            p.stderr_text().matches(STARTING).count(),
            fake.run_count()
        ),
    );
    report
}

/// `kills` real ssh sessions killed on the server (SIGKILL of the sshd
/// session processes); SIGUSR1 cuts a backoff wait short.
fn real_churn(dir: &TestDir, kills: usize, deadline: Instant) -> Vec<String> {
    let mut report = Vec::new();
    let sshd = Sshd::start(dir);
    let svc = Service::start();
    let tport = free_port();
    let p = Cmd::autossh()
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tport}:127.0.0.1:{}", svc.port()))
        .args(sshd.client_args())
        .name("autossh-real")
        .spawn(dir);
    let story = || format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log());
    assert!(
        wait_until(Duration::from_secs(20), || tunnel_works(tport)),
        "tunnel never worked\n{}",
        story()
    );
    let warmup = 3.min(kills);
    let (mut fds0, mut rss0) = (0, 0);
    let mut hastened = 0;
    let started = Instant::now();
    for i in 1..=kills {
        assert!(
            Instant::now() < deadline,
            "time budget spent after {} of {kills} kills\n{}",
            i - 1,
            story()
        );
        let mut old = Vec::new();
        let ready = wait_until(Duration::from_secs(10), || {
            old = live_children(&p);
            old.len() == 1 && !sshd.logged_in_pids().is_empty()
        });
        assert!(ready, "kill {i}: no single logged-in ssh\n{}", story());
        let old = old[0];
        assert!(
            sshd.stop_sessions(Signal::SIGKILL) > 0,
            "kill {i}: no session"
        );
        let new_child = |p: &Proc| live_children(p).iter().any(|&c| c != old);
        if !wait_until(Duration::from_millis(300), || new_child(&p)) {
            hastened += 1;
            p.signal(Signal::SIGUSR1);
        }
        let back = wait_until(Duration::from_secs(10), || {
            new_child(&p) && tunnel_works(tport)
        });
        assert!(back, "kill {i}: tunnel not back within 10 s\n{}", story());
        if i == warmup {
            (fds0, rss0) = steady_sample(p.pid());
        }
    }
    note(
        &mut report,
        format!(
            "real ssh: {kills} server sessions killed in {:.1} s; backoff waits cut short with \
         SIGUSR1: {hastened}",
            started.elapsed().as_secs_f64()
        ),
    );
    note(
        &mut report,
        check_after_churn("real ssh", &p, fds0, rss0, &story),
    );
    let ssh = live_children(&p);
    p.signal(Signal::SIGTERM);
    assert!(
        p.wait_timeout(Duration::from_secs(10)).is_some(),
        "{}",
        story()
    );
    let gone = wait_until(Duration::from_secs(5), || {
        ssh.iter().all(|&s| !process_exists(s))
    });
    assert!(gone, "ssh {ssh:?} left after SIGTERM");
    note(&mut report, "real ssh: none left after SIGTERM".into());
    report
}

#[test]
fn thousand_forced_restarts_no_leak() {
    let dir = TestDir::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    let (fake, real) = std::thread::scope(|s| {
        let f = s.spawn(|| fake_churn(&dir, 1000, deadline));
        let r = s.spawn(|| real_churn(&dir, 50, deadline));
        let f = f.join();
        let r = r.join();
        match (f, r) {
            (Ok(f), Ok(r)) => (f, r),
            (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
        }
    });
    eprintln!("=== thousand_forced_restarts_no_leak ===");
    for l in fake.iter().chain(real.iter()) {
        eprintln!("  {l}");
    }
    eprintln!(
        "[thousand_forced_restarts_no_leak] total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let marker = dir.marker();
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

// ---------------------------------------------------------------------------
// 6. SIGKILL of autossh
// ---------------------------------------------------------------------------

#[test]
fn sigkill_of_autossh_leaves_no_ssh() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let svc = Service::start();
    let tport = free_port();
    let p = Cmd::autossh()
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tport}:127.0.0.1:{}", svc.port()))
        .args(sshd.client_args())
        .spawn(&dir);
    let story = || format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log());
    assert!(
        wait_until(Duration::from_secs(20), || tunnel_works(tport)),
        "tunnel never worked\n{}",
        story()
    );
    let kids = live_children(&p);
    assert_eq!(kids.len(), 1, "{}", story());
    let ssh = kids[0];
    let ssh_cmd = cmdline_string(ssh);
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(Duration::from_secs(5)).is_some());
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(5), || !process_exists(ssh));
    let took = killed.elapsed();
    eprintln!(
        "[sigkill_of_autossh_leaves_no_ssh] ssh {} {:.2} s after SIGKILL of autossh",
        if gone { "gone" } else { "still running" },
        took.as_secs_f64()
    );
    assert!(
        gone,
        "ssh (pid {ssh}: {ssh_cmd}) still runs 5 s after autossh was SIGKILLed\n{}",
        describe_pids(&[ssh])
    );
    drop(p);
    drop(sshd);
    let marker = dir.marker();
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

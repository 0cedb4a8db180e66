//! The application's view, at default settings (AUTOSSH_POLL unset: 600 s), against a real
//! private sshd: a client doing request/response through the tunnel every 200 ms must get
//! answers again within seconds of the server's session freezing, in every mode (`-M 0` as
//! the article writes it, loop and echo mode); a slow answer is not a dead tunnel; `-M 0`'s
//! session probe works on a server that forbids forwarding and stays out of autossh's log.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use test_support::*;

const UP: Duration = Duration::from_secs(20);
/// The test's bound for a frozen session (the benchmark holds the real goal, 1.5 s). Built
/// portable (the BSDs' and macOS's detectors), ssh's connection is out of sight: the probe an
/// unanswered request draws fails only at the net timeout (15 s at the defaults).
const FREEZE_BOUND: Duration = if cfg!(feature = "portable") {
    Duration::from_secs(25)
} else {
    Duration::from_secs(5)
};
/// No thread here outlives this.
const MAX_RUN: Duration = Duration::from_secs(120);

/// A line service on 127.0.0.1: answers every line with itself; a line "sleep N ..." is
/// answered after N seconds (a slow query).
struct LineService {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineService {
    fn start() -> LineService {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
                match listener.accept() {
                    Ok((s, _)) => {
                        let stop = stop2.clone();
                        std::thread::spawn(move || serve_lines(s, stop, started));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        LineService {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LineService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_lines(stream: TcpStream, stop: Arc<AtomicBool>, started: Instant) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut out = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                if let Some(n) = line
                    .strip_prefix("sleep ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let until = Instant::now() + Duration::from_secs(n);
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                if out.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// An application through the tunnel: one connection, a request every 200 ms, each waited
/// for as long as it takes (a database driver's default), reconnecting on error.
struct App {
    stop: Arc<AtomicBool>,
    /// (sent, answered) of every request that was answered.
    answered: Arc<Mutex<Vec<(Instant, Instant)>>>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    fn start(port: u16, first: Option<&'static str>) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let (stop2, answered2) = (stop.clone(), answered.clone());
        let thread = std::thread::spawn(move || app_loop(port, first, stop2, answered2));
        App {
            stop,
            answered,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// The first request sent at or after `t` that was answered: (sent, answered).
    fn first_sent_after(&self, t: Instant) -> Option<(Instant, Instant)> {
        self.answered
            .lock()
            .unwrap()
            .iter()
            .find(|(sent, _)| *sent >= t)
            .copied()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn app_loop(
    port: u16,
    mut first: Option<&'static str>,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<(Instant, Instant)>>>,
) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => {
                    // Short read timeouts only so that the test can stop the thread.
                    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                    let r = BufReader::new(s.try_clone().expect("clone"));
                    conn = Some((s, r));
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let (s, r) = conn.as_mut().unwrap();
        n += 1;
        let req = match first.take() {
            Some(f) => format!("{f} {n}\n"),
            None => format!("req {n}\n"),
        };
        let sent = Instant::now();
        let ok = s.write_all(req.as_bytes()).is_ok() && read_answer(r, &stop, started) == req;
        if !ok {
            conn = None;
            continue;
        }
        answered.lock().unwrap().push((sent, Instant::now()));
        let next = sent + Duration::from_millis(200);
        while Instant::now() < next && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One answer line, waited for until the connection ends or the test stops.
fn read_answer(r: &mut BufReader<TcpStream>, stop: &AtomicBool, started: Instant) -> String {
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
        match r.read_line(&mut line) {
            Ok(0) => return String::new(),
            Ok(_) if line.ends_with('\n') => return line,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return String::new(),
        }
    }
    String::new()
}

/// sshd, the line service, autossh with `-L tunnel:127.0.0.1:service` at default settings.
struct Rig {
    dir: TestDir,
    sshd: Sshd,
    _service: LineService,
    _echo: Option<Proc>,
    tunnel: u16,
    autossh: Proc,
}

#[derive(Clone, Copy, Debug)]
enum Monitor {
    /// The article's `-M 0 -N -o "ServerAliveInterval 60" -o "ServerAliveCountMax 3"`.
    Article,
    Loop,
    Echo,
}

fn echo_bin() -> PathBuf {
    autossh_bin!().parent().unwrap().join("autossh-echo")
}

/// The test server's client options at ssh's default log level (INFO), so that ssh prints
/// what it prints for a user.
fn client_args_info_level(sshd: &Sshd) -> Vec<String> {
    let mut v = sshd.client_args();
    if let Some(i) = v.iter().position(|a| a == "LogLevel=ERROR") {
        v.drain(i - 1..=i);
    }
    v
}

impl Rig {
    fn start(mode: Monitor, sshd_extra: &str, env: &[(&str, &str)]) -> Rig {
        let dir = TestDir::new();
        let sshd = Sshd::start_with(&dir, sshd_extra);
        let service = LineService::start();
        let tunnel = free_port();
        let mut echo = None;
        let monitor: Vec<String> = match mode {
            Monitor::Article => [
                "-M",
                "0",
                "-N",
                "-o",
                "ServerAliveInterval 60",
                "-o",
                "ServerAliveCountMax 3",
            ]
            .map(String::from)
            .to_vec(),
            Monitor::Loop => vec!["-M".into(), free_loop_ports().to_string(), "-N".into()],
            Monitor::Echo => {
                let e = free_port();
                let p = Cmd::new(echo_bin())
                    .args(["--listen", &format!("127.0.0.1:{e}")])
                    .spawn(&dir);
                assert!(
                    wait_until(UP, || TcpStream::connect(("127.0.0.1", e)).is_ok()),
                    "{}",
                    p.describe()
                );
                echo = Some(p);
                vec!["-M".into(), format!("{}:{e}", free_port()), "-N".into()]
            }
        };
        let mut cmd = Cmd::new(autossh_bin!())
            .env_remove("AUTOSSH_POLL")
            .env("AUTOSSH_GATETIME", "0")
            .args(monitor)
            .arg("-L")
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port))
            .args(client_args_info_level(&sshd));
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let autossh = cmd.spawn(&dir);
        let rig = Rig {
            dir,
            sshd,
            _service: service,
            _echo: echo,
            tunnel,
            autossh,
        };
        assert!(
            wait_until(UP, || rig.log().contains("tunnel up")),
            "never up\n{}",
            rig.story()
        );
        rig
    }

    fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    fn story(&self) -> String {
        format!(
            "{}\n--- sshd log ---\n{}",
            self.autossh.describe(),
            self.sshd.log()
        )
    }

    fn finish(self) {
        self.autossh.signal(Signal::SIGTERM);
        let st = self.autossh.wait_timeout(UP).expect("autossh exits");
        assert_eq!(st.code(), Some(0), "{}", self.story());
        let marker = self.dir.marker();
        drop(self.autossh);
        drop(self.sshd);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
    }
}

impl Rig {
    /// Asserts that a new ssh started since `starts` were counted (the answers came through
    /// a replaced session, not a frozen one that woke), then finishes.
    fn finish_replaced(self, starts: usize) {
        assert!(
            self.log().matches("starting ssh").count() > starts,
            "answered without a new ssh: was it frozen?\n{}",
            self.story()
        );
        self.finish();
    }

    /// Runs the application until it gets answers, freezes the server's session, and
    /// asserts that a request sent after the freeze is answered within [`FREEZE_BOUND`].
    fn freeze_under_the_application(&self, mode: Monitor) -> App {
        let app = App::start(self.tunnel, None);
        assert!(
            wait_until(UP, || app.count() >= 5),
            "the application never got answers\n{}",
            self.story()
        );
        let frozen = Instant::now();
        assert!(self.sshd.stop_sessions(Signal::SIGSTOP) > 0);
        let back = wait_until(FREEZE_BOUND, || app.first_sent_after(frozen).is_some());
        let first = app.first_sent_after(frozen).map(|(_, a)| a - frozen);
        assert!(
            back,
            "{mode:?}: nothing answered within {FREEZE_BOUND:?} of the freeze ({first:?})\n{}",
            self.story()
        );
        eprintln!("{mode:?}: answered again {first:?} after the freeze");
        app
    }
}

/// Freezes the server's session while the application uses the tunnel; the application's
/// next request must be answered within [`FREEZE_BOUND`] of the freeze.
fn frozen_session_is_noticed_by_the_application(mode: Monitor) {
    let rig = Rig::start(mode, "", &[]);
    let app = rig.freeze_under_the_application(mode);
    assert!(
        rig.log().contains("starting ssh (count 2)"),
        "{}",
        rig.story()
    );
    let log = rig.log();
    assert!(
        !log.contains("open failed"),
        "ssh's messages about the session probe reached the log:\n{log}"
    );
    drop(app);
    rig.finish();
}

#[test]
fn frozen_session_article_command_line() {
    frozen_session_is_noticed_by_the_application(Monitor::Article);
}

#[test]
fn frozen_session_loop_mode() {
    frozen_session_is_noticed_by_the_application(Monitor::Loop);
}

#[test]
fn frozen_session_echo_mode() {
    frozen_session_is_noticed_by_the_application(Monitor::Echo);
}

/// A query answered after 30 s through a live session is not a dead tunnel: the probes it
/// draws come back and nothing restarts.
fn slow_answer_is_not_a_dead_tunnel(mode: Monitor) {
    let rig = Rig::start(mode, "", &[("AUTOSSH_DEBUG", "1")]);
    let app = App::start(rig.tunnel, Some("sleep 30"));
    assert!(
        wait_until(Duration::from_secs(45), || app.count() >= 3),
        "{mode:?}: the slow query or the ones after it never came back\n{}",
        rig.story()
    );
    let log = rig.log();
    // (Loop mode on a server that is this host may restart once before the tunnel is up:
    // its first remote monitor port is our own -L port.)
    let after_up = &log[log.find("tunnel up").expect("up")..];
    assert!(!after_up.contains("starting ssh"), "{}", rig.story());
    let drawn = log.matches("probing now").count();
    assert!(
        (2..=8).contains(&drawn),
        "{mode:?}: {drawn} probes drawn by the slow query\n{}",
        rig.story()
    );
    drop(app);
    rig.finish();
}

#[test]
fn slow_answer_article_command_line() {
    slow_answer_is_not_a_dead_tunnel(Monitor::Article);
}

#[test]
fn slow_answer_loop_mode() {
    slow_answer_is_not_a_dead_tunnel(Monitor::Loop);
}

/// A server that forbids forwarding anything but local TCP: `-M 0`'s session probe is
/// refused ("administratively prohibited"), which still proves the session, and a frozen
/// session is still noticed. ssh's refusal lines stay out of autossh's log; the server logs
/// one line per probe.
#[test]
fn session_probe_works_where_forwarding_is_forbidden() {
    let rig = Rig::start(
        Monitor::Article,
        "Match all\n  AllowTcpForwarding local\n  AllowStreamLocalForwarding no\n",
        &[],
    );
    assert!(rig.log().contains("session probe rtt"), "{}", rig.story());
    // Three more probes on demand (SIGHUP probes a proven tunnel now).
    for n in 2..=4 {
        rig.autossh.signal(Signal::SIGHUP);
        assert!(
            wait_until(UP, || rig
                .sshd
                .log()
                .matches("refused streamlocal port forward")
                .count()
                >= n),
            "probe {n} never reached the server\n{}",
            rig.story()
        );
    }
    assert!(
        rig.sshd.log().contains("/dev/null/autossh-session-probe"),
        "{}",
        rig.story()
    );
    let app = rig.freeze_under_the_application(Monitor::Article);
    let log = rig.log();
    assert!(!log.contains("open failed"), "{log}");
    assert!(!log.contains("prohibited"), "{log}");
    drop(app);
    rig.finish();
}

/// A client that gives up on each request after 300 ms and tries again on a new connection
/// (a health checker): no single request ever waits as long as the threshold, but requests
/// keep going out while the server says nothing. A frozen session is still noticed.
#[test]
fn frozen_session_under_an_impatient_client() {
    let rig = Rig::start(Monitor::Loop, "", &[]);
    let attempt = |port: u16| -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        s.write_all(b"ping\n").is_ok() && r.read_line(&mut line).is_ok() && line == "ping\n"
    };
    assert!(wait_until(UP, || attempt(rig.tunnel)), "{}", rig.story());
    let starts = rig.log().matches("starting ssh").count();
    let frozen = Instant::now();
    assert!(rig.sshd.stop_sessions(Signal::SIGSTOP) > 0);
    // Attempts every 50 ms or so (each gives up after 300 ms), bounded by FREEZE_BOUND.
    let back = wait_until(FREEZE_BOUND, || attempt(rig.tunnel));
    eprintln!(
        "impatient client: answered again {:?} after the freeze",
        frozen.elapsed()
    );
    assert!(
        back,
        "no answer within {FREEZE_BOUND:?} of the freeze\n{}",
        rig.story()
    );
    rig.finish_replaced(starts);
}

/// A health checker that starts a check every 50 ms, each on a new connection and given
/// 450 ms, then reset (checks overlap): no one request waits the 0.5 s that draws a probe,
/// and there is always an open one that has waited less. They all spoke after the server last did, so
/// they wait as long as the server has been silent: the frozen session is replaced within
/// [`FREEZE_BOUND`], not at the next poll (600 s).
#[test]
fn frozen_session_under_overlapping_checks() {
    let rig = Rig::start(Monitor::Loop, "", &[]);
    let port = rig.tunnel;
    let check = move || -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(450)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(450)));
        // Given up, it aborts: its close is a reset (as the benchmark's checker does).
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        s.write_all(b"check\n").is_ok() && r.read_line(&mut line).is_ok() && line == "check\n"
    };
    assert!(wait_until(UP, check), "{}", rig.story());
    let starts = rig.log().matches("starting ssh").count();
    let frozen = Instant::now();
    assert!(rig.sshd.stop_sessions(Signal::SIGSTOP) > 0);
    let answered: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    // One check every 50 ms, each on its own thread, until one is answered (bounded).
    while answered.lock().unwrap().is_none() && frozen.elapsed() < FREEZE_BOUND {
        let a = answered.clone();
        threads.push(std::thread::spawn(move || {
            if check() {
                a.lock().unwrap().get_or_insert(frozen.elapsed());
            }
        }));
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in threads {
        let _ = t.join();
    }
    let first = *answered.lock().unwrap();
    eprintln!("overlapping checks: answered again {first:?} after the freeze");
    assert!(
        first.is_some_and(|f| f <= FREEZE_BOUND),
        "no check answered within {FREEZE_BOUND:?} of the freeze ({first:?})\n{}",
        rig.story()
    );
    rig.finish_replaced(starts);
}

//! The monitor against garbage, through the real binary and a real private sshd.
//!
//! Echo mode (`-M N:E`) with a hostile "echo service" on E: garbage, a partial echo, an echo
//! later than the net timeout, the echo with extra bytes, the echo of another sequence
//! number. None of these may count as a working tunnel, and autossh must keep going.
//!
//! Loop mode (`-M N`): while the tunnel is up, any local process can connect to the monitor
//! listener on N+1. Garbage, random bytes, fake probe lines, a thousand quick connections or
//! a mebibyte there must not crash autossh nor make it restart ssh, and the tunnel stays up.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use util::*;

/// Longest wait for anything that should happen (a tunnel coming up, restarts).
const LONG: Duration = Duration::from_secs(40);
/// No hostile thread runs longer than this, whatever happens.
const MAX_LIFE: Duration = Duration::from_secs(120);

/// xorshift64*: random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// A hostile echo service
// ---------------------------------------------------------------------------

/// How the hostile service answers a probe.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Random bytes at once, without waiting for the probe.
    Garbage,
    /// The first half of the probe line, then silence.
    Partial,
    /// The exact echo, but this long after the probe arrived.
    Late(Duration),
    /// The exact echo followed by more bytes, in one write.
    Extra,
    /// The probe line with its sequence number changed.
    WrongSeq,
}

/// A TCP service on 127.0.0.1 that answers probes the wrong way. Stopped on drop.
struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    /// The probe lines received (complete lines only).
    lines: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(answer: Answer) -> Hostile {
        let (listener, port) = (0..20)
            .find_map(|_| {
                let port = free_port();
                TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                    .ok()
                    .map(|l| (l, port))
            })
            .expect("hostile service: no port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, connections, lines) = (stop.clone(), connections.clone(), lines.clone());
            std::thread::Builder::new()
                .name(format!("hostile-{port}"))
                .spawn(move || {
                    let started = Instant::now();
                    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFE {
                        match listener.accept() {
                            // Bounded: at most 500 connections served.
                            Ok((s, _)) if connections.load(Ordering::SeqCst) < 500 => {
                                connections.fetch_add(1, Ordering::SeqCst);
                                let (stop, lines) = (stop.clone(), lines.clone());
                                handlers.push(std::thread::spawn(move || {
                                    serve_hostile(s, answer, &stop, &lines)
                                }));
                                handlers.retain(|h| !h.is_finished());
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                    stop.store(true, Ordering::SeqCst);
                    for h in handlers {
                        let _ = h.join();
                    }
                })
                .unwrap()
        };
        Hostile {
            port,
            stop,
            connections,
            lines,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads up to the first '\n' (at most 4 KiB, at most 5 s). None on EOF or timeout.
fn read_probe(s: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) && line.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if line.contains(&b'\n') {
                    return Some(line);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// Keeps the connection open, discarding input, until the peer closes, `until`, or stop.
/// Returns false if the peer closed.
fn hold(s: &mut TcpStream, stop: &AtomicBool, until: Instant) -> bool {
    let mut buf = [0u8; 512];
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn serve_hostile(mut s: TcpStream, answer: Answer, stop: &AtomicBool, lines: &Mutex<Vec<String>>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let hold_max = Instant::now() + Duration::from_secs(15);
    if let Answer::Garbage = answer {
        let mut rng = Rng::new();
        let _ = s.write_all(&rng.bytes(300));
        hold(&mut s, stop, hold_max);
        return;
    }
    let Some(line) = read_probe(&mut s, stop) else {
        return;
    };
    lines
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&line).into_owned());
    let reply = match answer {
        Answer::Garbage => unreachable!(),
        Answer::Partial => line[..line.len() / 2].to_vec(),
        Answer::Late(d) => {
            if !hold(&mut s, stop, Instant::now() + d) {
                return;
            }
            line
        }
        Answer::Extra => {
            let mut v = line;
            v.extend_from_slice(b"and some more\r\n");
            v
        }
        Answer::WrongSeq => {
            // <host> autossh <pid> <seq> <ms> <nonce> <message>\r\n
            let text = String::from_utf8_lossy(&line).into_owned();
            let mut f: Vec<String> = text.split(' ').map(str::to_string).collect();
            match f.get(3).and_then(|x| x.parse::<u64>().ok()) {
                Some(seq) => f[3] = (seq + 1).to_string(),
                None => f.push("x".into()),
            }
            f.join(" ").into_bytes()
        }
    };
    let _ = s.write_all(&reply);
    hold(&mut s, stop, hold_max);
}

// ---------------------------------------------------------------------------
// Echo mode against the hostile service
// ---------------------------------------------------------------------------

fn count(p: &Proc, needle: &str) -> usize {
    p.stderr_text().matches(needle).count()
}

fn story(p: &Proc, sshd: &Sshd) -> String {
    format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log())
}

/// SIGTERM: autossh must still be running, exit 0, and leave nothing behind.
fn finish(dir: TestDir, sshd: Sshd, autossh: Proc) {
    assert!(
        autossh.is_running(),
        "autossh is gone\n{}",
        story(&autossh, &sshd)
    );
    autossh.signal(Signal::SIGTERM);
    let st = autossh.wait_timeout(Duration::from_secs(15));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "exit on SIGTERM\n{}",
        story(&autossh, &sshd)
    );
    let marker = dir.marker();
    drop(autossh);
    drop(sshd);
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

/// Runs autossh in echo mode against a hostile service until it restarted ssh twice: no
/// "tunnel up" may appear, `why` (the probe failure) must, and SIGTERM still exits 0.
fn echo_mode_against(answer: Answer, why: &str) {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let hostile = Hostile::start(answer);
    let monitor = format!("{}:{}", free_port(), hostile.port);
    let autossh = Cmd::autossh()
        .env("AUTOSSH_POLL", "2")
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_LOGLEVEL", "7")
        .args(["-M", &monitor, "-N"])
        .args(sshd.client_args())
        .spawn(&dir);
    let restarted = wait_until(LONG, || {
        count(&autossh, "restarting ssh") >= 2 || !autossh.is_running()
    });
    let log = autossh.stderr_text();
    assert!(
        restarted && autossh.is_running(),
        "expected two restarts, autossh running\n{}",
        story(&autossh, &sshd)
    );
    assert!(
        !log.contains("tunnel up"),
        "{answer:?} counted as a working tunnel\n{}",
        story(&autossh, &sshd)
    );
    assert!(
        log.contains(why),
        "{answer:?}: expected {why:?} in the log\n{}",
        story(&autossh, &sshd)
    );
    assert!(hostile.connections() >= 2, "the service saw no probe");
    if !matches!(answer, Answer::Garbage) {
        let lines = hostile.lines();
        assert!(
            lines.iter().any(|l| l.contains(" autossh ")),
            "no probe line reached the service: {lines:?}"
        );
    }
    drop(hostile);
    finish(dir, sshd, autossh);
}

#[test]
fn echo_mode_garbage_is_not_an_echo() {
    echo_mode_against(Answer::Garbage, "wrong bytes came back on the monitor");
}

#[test]
fn echo_mode_partial_echo_then_silence_is_not_an_echo() {
    echo_mode_against(Answer::Partial, "probe timed out");
}

#[test]
fn echo_mode_echo_later_than_the_net_timeout_is_not_an_echo() {
    // POLL=2: the net timeout is 1 s.
    echo_mode_against(Answer::Late(Duration::from_millis(1800)), "probe timed out");
}

#[test]
fn echo_mode_echo_of_another_sequence_number_is_not_an_echo() {
    echo_mode_against(Answer::WrongSeq, "wrong bytes came back on the monitor");
}

#[test]
fn echo_mode_echo_with_extra_bytes_is_not_an_echo() {
    // Only the exact bytes count (probe::compare): trailing bytes make it wrong.
    echo_mode_against(Answer::Extra, "wrong bytes came back on the monitor");
}

// ---------------------------------------------------------------------------
// Loop mode: strangers on the monitor listener
// ---------------------------------------------------------------------------

/// Serialises the abuse windows of the loop-mode tests.
static ABUSE_WINDOW: Mutex<()> = Mutex::new(());

/// autossh in loop mode with a user tunnel to a [`Service`], up and probing.
struct LoopRig {
    dir: TestDir,
    sshd: Sshd,
    _service: Service,
    tunnel: u16,
    /// The monitor port N; strangers connect to N+1.
    port: u16,
    autossh: Proc,
}

impl LoopRig {
    fn start() -> LoopRig {
        let dir = TestDir::new();
        let sshd = Sshd::start(&dir);
        let service = Service::start();
        let tunnel = free_port();
        let port = free_port_pair();
        let autossh = Cmd::autossh()
            .env("AUTOSSH_POLL", "2")
            .env("AUTOSSH_GATETIME", "0")
            .env("AUTOSSH_LOGLEVEL", "7")
            .args(["-M", &port.to_string(), "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
            .args(sshd.client_args())
            .spawn(&dir);
        let rig = LoopRig {
            dir,
            sshd,
            _service: service,
            tunnel,
            port,
            autossh,
        };
        assert!(
            wait_until(LONG, || rig.count("tunnel up") >= 1),
            "tunnel never up\n{}",
            rig.story()
        );
        // One regular probe after the start-up, so the tunnel is in its steady state.
        assert!(
            wait_until(LONG, || rig.probes_ok() >= 1),
            "no regular probe\n{}",
            rig.story()
        );
        assert!(tunnel_works(tunnel), "tunnel broken\n{}", rig.story());
        rig
    }

    fn count(&self, needle: &str) -> usize {
        count(&self.autossh, needle)
    }

    /// Regular probes that succeeded ("probe K ok, rtt ..." at LOGLEVEL 7).
    fn probes_ok(&self) -> usize {
        self.count(" ok, rtt ")
    }

    fn story(&self) -> String {
        story(&self.autossh, &self.sshd)
    }

    fn stranger_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port + 1))
    }

    /// Runs `abuse` against 127.0.0.1:N+1 in a thread for as long as it takes three more
    /// probes to succeed (bounded), then checks that ssh was never restarted and the tunnel
    /// still works. `abuse` gets the address and a stop flag, and returns how many
    /// connections it made.
    fn survives(
        self,
        abuse: impl FnOnce(SocketAddr, &AtomicBool) -> usize + Send + 'static,
        min_connections: usize,
    ) {
        // One abuse window at a time in this binary: a flood's CPU load must not make
        // another test's probes late (POLL=2 gives a probe 1 s).
        let _window = ABUSE_WINDOW.lock().unwrap_or_else(|e| e.into_inner());
        let starts = self.count("starting ssh");
        let restarts = self.count("restarting ssh");
        let ok = self.probes_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.stranger_addr();
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || abuse(addr, &stop))
        };
        // About three polls (POLL=2), with slack for a loaded machine.
        let three_more = wait_until(Duration::from_secs(20), || {
            self.probes_ok() >= ok + 3 || !self.autossh.is_running()
        });
        stop.store(true, Ordering::SeqCst);
        let made = worker.join().expect("abuse thread panicked");
        assert!(self.autossh.is_running(), "autossh died\n{}", self.story());
        assert!(
            three_more,
            "probes stopped succeeding during the abuse\n{}",
            self.story()
        );
        assert_eq!(
            (self.count("starting ssh"), self.count("restarting ssh")),
            (starts, restarts),
            "ssh was restarted during the abuse\n{}",
            self.story()
        );
        assert!(
            made >= min_connections,
            "only {made} connections made (wanted {min_connections})"
        );
        assert!(
            tunnel_works(self.tunnel),
            "tunnel broken after the abuse\n{}",
            self.story()
        );
        finish(self.dir, self.sshd, self.autossh);
    }
}

/// Connects (1 s timeout); None if refused.
fn stranger(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    Some(s)
}

/// Calls `each` about every 50 ms until stopped (at most 600 times, 60 s).
fn every_50ms(stop: &AtomicBool, mut each: impl FnMut()) -> usize {
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && n < 600 && started.elapsed() < Duration::from_secs(60) {
        each();
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    n
}

#[test]
fn loop_mode_garbage_from_a_stranger_is_ignored() {
    LoopRig::start().survives(
        |addr, stop| {
            let mut made = 0;
            every_50ms(stop, || {
                if let Some(mut s) = stranger(addr) {
                    made += 1;
                    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\ngarbage\x00\xff\r\n\n\n");
                }
            });
            made
        },
        10,
    );
}

#[test]
fn loop_mode_random_bytes_from_a_stranger_are_ignored() {
    LoopRig::start().survives(
        |addr, stop| {
            let mut rng = Rng::new();
            let mut made = 0;
            let mut held = Vec::new();
            every_50ms(stop, || {
                if let Some(mut s) = stranger(addr) {
                    made += 1;
                    let n = 1 + (rng.next() % 2048) as usize;
                    let _ = s.write_all(&rng.bytes(n));
                    // Every other one stays open.
                    if made % 2 == 0 && held.len() < 50 {
                        held.push(s);
                    }
                }
            });
            made
        },
        10,
    );
}

#[test]
fn loop_mode_fake_probe_lines_are_ignored() {
    let rig = LoopRig::start();
    let pid = rig.autossh.pid();
    rig.survives(
        move |addr, stop| {
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into());
            let mut rng = Rng::new();
            let mut made = 0;
            let mut held = Vec::new();
            // Right in every way (host, pid, plausible sequence numbers, a timestamp) but
            // the per-process nonce, which a stranger cannot know.
            every_50ms(stop, || {
                let Some(mut s) = stranger(addr) else { return };
                made += 1;
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let seq = 1 + made % 20;
                let line = format!("{host} autossh {pid} {seq} {ms} {:016x} \r\n", rng.next());
                if made % 3 == 0 && held.len() < 50 {
                    // A plausible start of a probe, then nothing: held open.
                    let _ = s.write_all(&line.as_bytes()[..host.len() + 9]);
                    held.push(s);
                } else {
                    let _ = s.write_all(line.as_bytes());
                }
            });
            made
        },
        10,
    );
}

/// Opens and closes (RST: no TIME_WAIT pile-up) `n` connections to `addr` from two threads,
/// as fast as they go (bounded: 20 s, or `stop`). Returns how many connected.
fn quick_connections(addr: SocketAddr, n: usize, stop: &AtomicBool) -> usize {
    let made = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                let mut tries = 0;
                while made.load(Ordering::SeqCst) < n
                    && tries < 2 * n
                    && !stop.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(20)
                {
                    tries += 1;
                    if let Some(s) = stranger(addr) {
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    made.load(Ordering::SeqCst)
}

/// A thousand quick connections, right after a probe succeeded (so between two probes),
/// then three more probes must succeed without a restart.
#[test]
fn loop_mode_a_thousand_quick_connections_are_ignored() {
    let rig = LoopRig::start();
    let log = rig.autossh.stderr_path().to_path_buf();
    rig.survives(
        move |addr, stop| {
            let ok_lines = || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches(" ok, rtt ")
                    .count()
            };
            let before = ok_lines();
            wait_until(Duration::from_secs(5), || {
                ok_lines() > before || stop.load(Ordering::SeqCst)
            });
            quick_connections(addr, 1000, stop)
        },
        1000,
    );
}

#[test]
fn loop_mode_a_mebibyte_from_a_stranger_is_ignored() {
    LoopRig::start().survives(
        |addr, stop| {
            let mut rng = Rng::new();
            let mib = rng.bytes(1 << 20);
            let mut made = 0;
            let started = Instant::now();
            // A few times over the window; autossh may close on us mid-way (fine).
            while made < 5
                && !stop.load(Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(15)
            {
                if let Some(mut s) = stranger(addr) {
                    made += 1;
                    let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
                    let _ = s.write_all(&mib);
                }
                wait_until(Duration::from_millis(700), || stop.load(Ordering::SeqCst));
            }
            made
        },
        1,
    );
}

// ---------------------------------------------------------------------------
// Loop mode, library level: strangers queued behind the real probe connection
// ---------------------------------------------------------------------------

/// Drives autossh's loop-mode monitor directly (no ssh): sends a probe to a stand-in for
/// ssh's `-L` port, then plays ssh's part of the loop (a connection to N+1 carrying the
/// probe) with `strangers` connections queued right behind it, as happens when a local
/// process floods N+1 while autossh waits for the CPU. True if the echo was recognised.
fn real_probe_survives_strangers_behind_it(strangers: usize) -> bool {
    use autossh::core::supervisor::Event;
    use autossh::shell::monitor::{Mode, Monitor};
    let port = free_port_pair();
    let ssh_l = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mon_l = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).unwrap();
    let mut poll = mio::Poll::new().unwrap();
    let mut events = mio::Events::with_capacity(64);
    let prober = autossh::core::probe::Prober::new("host".into(), 1, 0xaa, "x".into());
    let probe = b"host autossh 1 1 1700000000000 00000000000000aa x\r\n".to_vec();
    assert_eq!(prober.line(1, 1_700_000_000_000), probe);
    let mut m = Monitor::new(Mode::Loop, port, Some(mon_l), prober);
    m.register(poll.registry()).unwrap();
    let (len, outcome) = m.send(poll.registry(), 1, 1_700_000_000_000);
    assert!(outcome.is_none());
    assert_eq!(len, probe.len() as u64);
    let (mut ssh_side, _) = ssh_l.accept().unwrap();
    ssh_side.set_nonblocking(true).unwrap();
    // Let the monitor write the probe; read it where ssh would.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < probe.len() && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            if Monitor::owns(ev.token()) {
                let e = m.ready(poll.registry(), ev.token());
                assert!(e.is_none(), "unexpected {e:?} while sending");
            }
        }
        let mut buf = [0u8; 256];
        match ssh_side.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("probe connection: {e}"),
        }
    }
    assert_eq!(got, probe, "the monitor did not send the probe");
    // ssh's side of the loop: the probe comes back on a connection to N+1 ...
    let mut real = TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1)).unwrap();
    real.write_all(&probe).unwrap();
    // ... and strangers connect right behind it, before the monitor runs again.
    let _strangers: Vec<TcpStream> = (0..strangers)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1)).unwrap())
        .collect();
    let mut echoed = false;
    let deadline = Instant::now() + Duration::from_secs(1);
    while !echoed && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            if Monitor::owns(ev.token()) {
                match m.ready(poll.registry(), ev.token()) {
                    Some(Event::ProbeEchoed { seq: 1 }) => echoed = true,
                    None => {}
                    Some(e) => panic!("unexpected {e:?}"),
                }
            }
        }
    }
    m.drop_probe(poll.registry());
    echoed
}

#[test]
fn loop_monitor_finds_its_probe_among_seven_strangers() {
    assert!(real_probe_survives_strangers_behind_it(0));
    assert!(real_probe_survives_strangers_behind_it(7));
}

/// With 8 or more strangers accepted in the same batch after it, the real connection is
/// dropped from the monitor's 8 inbound slots (oldest first) before it is read: the probe
/// is lost, and in the binary a working tunnel is restarted. Seen through the real binary
/// under load as "monitor connection closed before the echo, restarting ssh" during a
/// connection flood on N+1.
#[test]
fn loop_monitor_finds_its_probe_among_eight_strangers() {
    assert!(
        real_probe_survives_strangers_behind_it(8),
        "the probe's echo was lost behind 8 stranger connections"
    );
    // More strangers than the monitor has slots.
    assert!(
        real_probe_survives_strangers_behind_it(40),
        "the probe's echo was lost behind 40 stranger connections"
    );
}

//! Loop mode: strangers on the monitor listener.

use super::*;

/// Serialises the abuse windows of the loop-mode tests.
pub(crate) static ABUSE_WINDOW: Mutex<()> = Mutex::new(());

/// autossh in loop mode with a user tunnel to a [`Service`], up and probing.
pub(crate) struct LoopRig {
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
        let port = free_loop_ports();
        let autossh = Cmd::new(autossh_bin!())
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
pub(crate) fn stranger(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    Some(s)
}

/// Calls `each` about every 50 ms until stopped (at most 600 times, 60 s).
pub(crate) fn every_50ms(stop: &AtomicBool, mut each: impl FnMut()) -> usize {
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
pub(crate) fn loop_mode_garbage_from_a_stranger_is_ignored() {
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
pub(crate) fn loop_mode_random_bytes_from_a_stranger_are_ignored() {
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
pub(crate) fn loop_mode_fake_probe_lines_are_ignored() {
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
pub(crate) fn quick_connections(addr: SocketAddr, n: usize, stop: &AtomicBool) -> usize {
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
pub(crate) fn loop_mode_a_thousand_quick_connections_are_ignored() {
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
pub(crate) fn loop_mode_a_mebibyte_from_a_stranger_is_ignored() {
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

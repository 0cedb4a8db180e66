//! Shared harness for the autossh-echo integration tests: run the real binary, wait with a
//! deadline, read its log.
//!
//! Rules: waits are bounded polling ([`wait_until`]), never fixed sleeps; only loopback
//! addresses; every server started is killed when its [`Echo`] is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds (true) or `timeout` passed (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - now));
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autossh-echo"))
}

/// A running autossh-echo; killed on drop.
pub struct Echo {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// The bound addresses, from its "listening on" log lines.
    pub addrs: Vec<SocketAddr>,
    status: Option<ExitStatus>,
}

impl Echo {
    /// Starts it on a free loopback port (`--listen 127.0.0.1:0`) unless `args` has `--listen`.
    pub fn start(args: &[&str]) -> Echo {
        Echo::spawn(Command::new(bin()), args)
    }

    /// [`Echo::start`] with the open-files limit set to `soft` and `hard` (set between fork and
    /// exec, as `prlimit` or a systemd unit would).
    pub fn start_with_nofile(soft: u64, hard: u64, args: &[&str]) -> Echo {
        let mut cmd = Command::new(bin());
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Echo::spawn(cmd, args)
    }

    /// [`Echo::start`] under umask `mask` (set between fork and exec, as a unit's `UMask=`).
    pub fn start_with_umask(mask: libc::mode_t, args: &[&str]) -> Echo {
        let mut cmd = Command::new(bin());
        // SAFETY: only umask, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
        Echo::spawn(cmd, args)
    }

    fn spawn(mut cmd: Command, args: &[&str]) -> Echo {
        let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.contains(&"--listen") {
            argv.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        let listeners = argv.iter().filter(|a| *a == "--listen").count();
        let mut child = cmd
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn autossh-echo");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        };
        let mut echo = Echo {
            child,
            log,
            reader: Some(reader),
            addrs: Vec::new(),
            status: None,
        };
        let up = wait_until(Duration::from_secs(10), || {
            echo.log().matches("listening on ").count() >= listeners
        });
        assert!(
            up,
            "autossh-echo {argv:?} did not start; log:\n{}",
            echo.log()
        );
        echo.addrs = echo
            .log()
            .lines()
            .filter_map(|l| l.split("listening on ").nth(1))
            .map(|a| a.trim().parse().expect("listen address in log"))
            .collect();
        echo
    }

    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until its log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// A blocking connection with 10 s timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr())
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .expect("VmRSS")
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for it to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_some() {
            self.status = status;
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
        status
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Connects with 10 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `bytes` and reads the same number back; they must be equal.
pub fn roundtrip(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
    let mut got = vec![0u8; bytes.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == bytes, "echo differs: sent {bytes:?}, got {got:?}");
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the binary to completion (at most 10 s; killed past that) and returns its status,
/// stdout and stderr.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    let exited = wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "autossh-echo {args:?} did not exit; stderr: {}",
            err_t.join().unwrap()
        );
    }
    (
        status.unwrap(),
        out_t.join().unwrap(),
        err_t.join().unwrap(),
    )
}

/// Raises this process's open-file limit (the server inherits it) as far as allowed, towards
/// 65536. Returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let want = 65536;
        if lim.rlim_max < want {
            // Raising the hard limit needs CAP_SYS_RESOURCE; fall back to the hard limit.
            let up = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(want);
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
            0,
            "setrlimit: {}",
            std::io::Error::last_os_error()
        );
        lim.rlim_cur
    }
}

/// Close with RST instead of FIN: 20,000 closed connections leave no TIME_WAIT behind.
pub fn set_linger_zero(fd: i32) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a pointer to a local linger of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

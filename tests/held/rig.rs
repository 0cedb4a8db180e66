//! A private sshd, services behind it, and autossh holding `-L tunnel:127.0.0.1:service`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
pub use test_support::*;

pub const UP: Duration = Duration::from_secs(20);

pub struct Rig {
    pub dir: TestDir,
    pub sshd: Sshd,
    pub service: Service,
    pub tunnel: u16,
    pub autossh: Proc,
}

impl Rig {
    /// `-M 0` (the session probe) holding one forward to a [`Service`]; `env` on top of
    /// GATETIME=0.
    pub fn start(env: &[(&str, &str)]) -> Rig {
        Rig::start_with(env, &[])
    }

    /// ... with `extra` ssh arguments before the destination.
    pub fn start_with(env: &[(&str, &str)], extra: &[&str]) -> Rig {
        let dir = TestDir::new();
        let sshd = Sshd::start(&dir);
        let service = Service::start();
        let tunnel = free_port();
        let mut cmd = Cmd::new(autossh_bin!())
            .env("AUTOSSH_GATETIME", "0")
            .env("AUTOSSH_DEBUG", "1")
            .args(["-M", "0", "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
            .args(extra)
            .args(sshd.client_args());
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let autossh = cmd.spawn(&dir);
        let rig = Rig {
            dir,
            sshd,
            service,
            tunnel,
            autossh,
        };
        rig.wait_works();
        rig
    }

    pub fn wait_works(&self) {
        assert!(
            wait_until(UP, || tunnel_works(self.tunnel)),
            "tunnel never worked\n{}",
            self.story()
        );
    }

    pub fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    pub fn wait_log(&self, needle: &str) {
        assert!(
            self.autossh.wait_for_stderr(needle, UP),
            "never saw {needle:?}\n{}",
            self.story()
        );
    }

    pub fn story(&self) -> String {
        format!(
            "{}\n--- sshd log ---\n{}",
            self.autossh.describe(),
            self.sshd.log()
        )
    }

    /// The ssh processes autossh runs (not its `ssh -G` look-ups).
    pub fn sshs(&self) -> Vec<i32> {
        self.autossh.ssh_children()
    }

    /// SIGTERM, exit 0, nothing left running, no socket file left.
    pub fn finish(self) {
        self.autossh.signal(Signal::SIGTERM);
        let st = self
            .autossh
            .wait_timeout(UP)
            .expect("autossh exits on SIGTERM");
        assert_eq!(st.code(), Some(0), "{}", self.story());
        let marker = self.dir.marker();
        let pid = self.autossh.pid();
        drop(self.autossh);
        drop(self.sshd);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
        assert_eq!(
            private_dirs_of(pid),
            Vec::<String>::new(),
            "private directory left"
        );
    }
}

/// The private directories of autossh `pid` in $TMPDIR and /tmp.
pub fn private_dirs_of(pid: i32) -> Vec<String> {
    let prefix = format!("autossh-{pid}-");
    let mut found = Vec::new();
    for base in [std::env::temp_dir(), "/tmp".into()] {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A client of the tunnel: connected, reading with a bound.
pub struct Client {
    pub s: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(UP))?;
        s.set_write_timeout(Some(UP))?;
        Ok(Client { s })
    }

    /// Reads exactly `n` bytes (bounded by the read timeout).
    pub fn read_n(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.s.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The service's greeting, then one line echoed.
    pub fn greeted_and_echoed(&mut self, line: &str) -> std::io::Result<()> {
        let g = self.read_n(GREETING.len())?;
        assert_eq!(g, GREETING.as_bytes());
        self.echo(line)
    }

    pub fn echo(&mut self, line: &str) -> std::io::Result<()> {
        self.s.write_all(line.as_bytes())?;
        let back = self.read_n(line.len())?;
        assert_eq!(back, line.as_bytes());
        Ok(())
    }

    /// What comes before the end of the stream (bounded).
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.s.read_to_end(&mut v)?;
        Ok(v)
    }

    pub fn half_close(&self) {
        let _ = self.s.shutdown(Shutdown::Write);
    }
}

/// Waits (bounded) for `f` to hold, for at most `t`; panics with `story` otherwise.
pub fn must(t: Duration, what: &str, story: impl Fn() -> String, f: impl FnMut() -> bool) {
    let start = Instant::now();
    assert!(
        wait_until(t, f),
        "{what} (waited {:.1} s)\n{}",
        start.elapsed().as_secs_f64(),
        story()
    );
}

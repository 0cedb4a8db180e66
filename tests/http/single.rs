//! The command line's single tunnel with `AUTOSSH_HTTP`: `-M N -N -L T:127.0.0.1:SERVICE`
//! through the private sshd, its endpoint on a free port.

use super::web;
use std::time::Duration;
use test_support::*;

/// A tunnel must be up (answering end to end, `/healthz` 200) within this.
pub const UP: Duration = Duration::from_secs(20);

pub struct Single {
    pub dir: TestDir,
    pub sshd: Sshd,
    pub _service: Service,
    /// The `-L` port.
    pub tunnel: u16,
    /// The endpoint's port.
    pub http: u16,
    pub autossh: Proc,
}

impl Single {
    /// autossh with POLL=2, GATETIME=0, `AUTOSSH_HTTP` and `env`; waits until it is up.
    pub fn start(env: &[(&str, &str)]) -> Single {
        let dir = TestDir::new();
        let sshd = Sshd::start(&dir);
        let service = Service::start();
        let (tunnel, http) = (free_port(), free_port());
        let mut cmd = Cmd::new(autossh_bin!())
            .name("autossh")
            .env("AUTOSSH_POLL", "2")
            .env("AUTOSSH_GATETIME", "0")
            .env("AUTOSSH_HTTP", format!("127.0.0.1:{http}"))
            .args(["-M", &free_loop_ports().to_string(), "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
            .args(sshd.client_args());
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let autossh = cmd.spawn(&dir);
        let s = Single {
            dir,
            sshd,
            _service: service,
            tunnel,
            http,
            autossh,
        };
        s.wait_healthz(200, UP, "up at start");
        assert!(
            wait_until(UP, || tunnel_works(tunnel)),
            "the tunnel does not answer\n{}",
            s.story()
        );
        s
    }

    /// Polls `/healthz` (every 20 ms) until it answers `code`; panics past `limit`. Returns
    /// how long it took.
    pub fn wait_healthz(&self, code: u16, limit: Duration, what: &str) -> Duration {
        let t0 = std::time::Instant::now();
        let ok = wait_until(limit, || web::code(self.http, "/healthz") == Some(code));
        assert!(
            ok,
            "{what}: /healthz never answered {code} within {limit:?}: last {:?}\n{}",
            web::get(self.http, "/healthz"),
            self.story()
        );
        t0.elapsed()
    }

    pub fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    pub fn story(&self) -> String {
        let log = self.sshd.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "{}\n--- sshd log (tail) ---\n{}",
            self.autossh.describe(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// SIGTERM: exit 0, and nothing of the test but sshd's listener left running.
    pub fn finish(self) {
        assert!(self.autossh.signal(Signal::SIGTERM), "{}", self.story());
        let st = self.autossh.wait_timeout(Duration::from_secs(20));
        assert_eq!(st.and_then(|s| s.code()), Some(0), "exit\n{}", self.story());
        let marker = self.dir.marker();
        let listener = self.sshd.pid();
        let mut left = Vec::new();
        let clean = wait_until(Duration::from_secs(10), || {
            left = pids_with_cmdline_containing(&marker);
            left.retain(|&p| p != listener);
            left.is_empty()
        });
        assert!(
            clean,
            "left behind:\n{}\n{}",
            describe_pids(&left),
            self.story()
        );
    }
}

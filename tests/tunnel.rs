//! End to end against a real private sshd on loopback: tunnels held, frozen and killed server
//! sessions recovered, stale sessions holding the monitor port, wrong echoes detected.

use std::path::PathBuf;
use std::time::Duration;
use test_support::*;

const UP: Duration = Duration::from_secs(15);

/// The monitor modes under test.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Loop,
    Echo,
}

/// A private sshd, a service behind it, and autossh holding `-L tunnel:127.0.0.1:service`.
struct Rig {
    dir: TestDir,
    sshd: Sshd,
    _service: Service,
    _echo: Option<Proc>,
    tunnel: u16,
    autossh: Proc,
}

fn echo_bin() -> PathBuf {
    let p = autossh_bin!().parent().unwrap().join("autossh-echo");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

impl Rig {
    /// `monitor`: the `-M` value; `extra_env` on top of POLL=2, GATETIME=0.
    fn start(mode: Option<Mode>, extra_env: &[(&str, &str)]) -> Rig {
        let dir = TestDir::new();
        let sshd = Sshd::start(&dir);
        let service = Service::start();
        let tunnel = free_port();
        let (monitor, echo) = match mode {
            None => ("0".to_string(), None),
            Some(Mode::Loop) => (free_loop_ports().to_string(), None),
            Some(Mode::Echo) => {
                let e = free_port();
                let echo = Cmd::new(echo_bin())
                    .args(["--listen", &format!("127.0.0.1:{e}")])
                    .spawn(&dir);
                assert!(
                    wait_until(UP, || std::net::TcpStream::connect(("127.0.0.1", e))
                        .is_ok()),
                    "{}",
                    echo.describe()
                );
                (format!("{}:{e}", free_port()), Some(echo))
            }
        };
        let mut cmd = Cmd::new(autossh_bin!())
            .env("AUTOSSH_POLL", "2")
            .env("AUTOSSH_GATETIME", "0")
            .args(["-M", &monitor, "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
            .args(sshd.client_args());
        for (k, v) in extra_env {
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
            wait_until(UP, || tunnel_works(tunnel)),
            "tunnel never worked\n{}",
            rig.story()
        );
        if mode.is_some() {
            rig.wait_log("tunnel up", 1);
        }
        rig
    }

    fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    fn wait_log(&self, needle: &str, n: usize) {
        assert!(
            wait_until(UP, || self.count(needle) >= n),
            "never saw {n}× {needle:?}\n{}",
            self.story()
        );
    }

    fn story(&self) -> String {
        format!(
            "{}\n--- sshd log ---\n{}",
            self.autossh.describe(),
            self.sshd.log()
        )
    }

    fn ssh_children(&self) -> Vec<String> {
        self.autossh
            .ssh_children()
            .into_iter()
            .map(cmdline_string)
            .collect()
    }

    fn finish(self) {
        self.autossh.signal(Signal::SIGTERM);
        let st = self
            .autossh
            .wait_timeout(UP)
            .expect("autossh exits on SIGTERM");
        assert_eq!(st.code(), Some(0), "{}", self.story());
        let marker = self.dir.marker();
        drop(self.autossh);
        drop(self.sshd);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
    }
}

#[test]
fn m0_holds_a_tunnel_with_serveralive_and_survives_a_killed_session() {
    let rig = Rig::start(None, &[]);
    let ssh = rig.ssh_children().join(" ");
    assert!(ssh.contains("ServerAliveInterval=60"), "{ssh}");
    assert!(ssh.contains("ServerAliveCountMax=3"), "{ssh}");
    assert!(ssh.contains("ExitOnForwardFailure=yes"), "{ssh}");
    assert!(rig.sshd.stop_sessions(Signal::SIGKILL) > 0);
    rig.wait_log("starting ssh (count 2)", 1);
    assert!(
        wait_until(UP, || tunnel_works(rig.tunnel)),
        "{}",
        rig.story()
    );
    rig.finish();
}

/// Freezes the server session: the tunnel stops moving bytes while TCP looks fine. autossh
/// must notice, restart ssh, and then leave the new tunnel alone even though the frozen
/// session still holds its ports on the server.
fn frozen_session_recovers_without_flapping(mode: Mode) {
    let rig = Rig::start(Some(mode), &[]);
    let starts = rig.count("starting ssh");
    assert!(rig.sshd.stop_sessions(Signal::SIGSTOP) > 0);
    rig.wait_log("restarting ssh", 1);
    rig.wait_log("tunnel up", 2);
    assert!(
        wait_until(UP, || tunnel_works(rig.tunnel)),
        "{}",
        rig.story()
    );
    // Three more polls: no further restart while the stale session stays frozen.
    let after = rig.count("starting ssh");
    assert!(after > starts);
    let flapped = wait_until(Duration::from_secs(7), || rig.count("starting ssh") > after);
    assert!(!flapped, "restarted a working tunnel\n{}", rig.story());
    assert!(tunnel_works(rig.tunnel), "{}", rig.story());
    rig.finish();
}

#[test]
fn loop_mode_frozen_session() {
    frozen_session_recovers_without_flapping(Mode::Loop);
}

#[test]
fn echo_mode_frozen_session() {
    frozen_session_recovers_without_flapping(Mode::Echo);
}

fn killed_session_restarts(mode: Mode) {
    let rig = Rig::start(Some(mode), &[]);
    assert!(rig.sshd.stop_sessions(Signal::SIGKILL) > 0);
    rig.wait_log("tunnel up", 2);
    assert!(
        wait_until(UP, || tunnel_works(rig.tunnel)),
        "{}",
        rig.story()
    );
    rig.finish();
}

#[test]
fn loop_mode_killed_session() {
    killed_session_restarts(Mode::Loop);
}

#[test]
fn echo_mode_killed_session() {
    killed_session_restarts(Mode::Echo);
}

#[test]
fn probes_measure_the_round_trip() {
    let rig = Rig::start(Some(Mode::Loop), &[("AUTOSSH_LOGLEVEL", "7")]);
    // Three regular probes after the confirmation, each with its round-trip time.
    rig.wait_log(" ok, rtt ", 3);
    // No port move either: with the forward held, loop mode's local end is a private
    // socket, so the server (this host) finds the remote monitor port free.
    assert_eq!(rig.count("restarting ssh"), 0, "{}", rig.story());
    rig.finish();
}

#[test]
fn a_wrong_echo_is_detected() {
    // The "echo service" is the greeting service: it answers other bytes than it gets.
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    let monitor = format!("{}:{}", free_port(), service.port());
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_POLL", "2")
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", &monitor, "-N"])
        .args(sshd.client_args())
        .spawn(&dir);
    // A new ssh gets at least 15 s to prove its tunnel.
    assert!(
        wait_until(Duration::from_secs(30), || autossh
            .stderr_text()
            .contains("restarting ssh")),
        "{}",
        autossh.describe()
    );
    let log = autossh.stderr_text();
    assert!(log.contains("wrong bytes"), "{log}");
    assert!(!log.contains("tunnel up"), "{log}");
    autossh.signal(Signal::SIGTERM);
    assert_eq!(autossh.wait_timeout(UP).and_then(|s| s.code()), Some(0));
    let marker = dir.marker();
    drop(sshd);
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

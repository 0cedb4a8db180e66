//! Through a jump host or a proxy command, against two real private sshds on loopback (a
//! jump host and a target): while the target is down and the jump host up, autossh retries
//! the handshake through the jump host at a steady, bounded pace (no growing backoff), says
//! that the target is unreachable from the jump host, and has the tunnel back within a couple
//! of seconds of the target's return.
//!
//! Measured numbers are printed on stderr (`--nocapture` to see them).

use std::fs;
use std::time::{Duration, Instant};
use test_support::*;

const UP: Duration = Duration::from_secs(15);
/// How long the target stays down.
const OUTAGE: Duration = Duration::from_secs(15);
/// The first seconds of the outage are not counted for the pace (the old session's end).
const SETTLE: Duration = Duration::from_secs(2);
/// After the target is back the tunnel must work within this (the goal is 2 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(4);
/// What the jump host's sshd logs for every handshake that reaches it.
const HANDSHAKE: &str = "Accepted publickey for ";

/// How the client reaches the target through the jump host.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// `ProxyJump jump` in the ssh_config file.
    ConfigProxyJump,
    /// `-J jump` on autossh's command line.
    CommandLineJ,
    /// `ProxyCommand ssh -W %h:%p jump` in the ssh_config file.
    ProxyCommand,
}

/// A jump host, a target, a service behind the target and autossh `-M 0` holding
/// `-L tunnel:127.0.0.1:service` to the target through the jump host.
struct Rig {
    dir: TestDir,
    jump: Sshd,
    target: Sshd,
    _service: Service,
    tunnel: u16,
    autossh: Proc,
}

/// The client's ssh_config: `jump` and `target` with their own keys; known hosts in the
/// test dir (each host key is added once), ssh's default log level (its "open failed"
/// lines show).
fn ssh_config(dir: &TestDir, jump: &Sshd, target: &Sshd, route: Route) -> String {
    let cfg = dir.join("ssh_config");
    let through = match route {
        Route::ConfigProxyJump => "  ProxyJump jump\n".to_string(),
        Route::CommandLineJ => String::new(),
        Route::ProxyCommand => format!(
            "  ProxyCommand {SSH_BIN} -F {} -W %h:%p jump\n",
            cfg.display()
        ),
    };
    let text = format!(
        "Host jump\n  HostName 127.0.0.1\n  Port {jp}\n  IdentityFile {jk}\n\
         Host target\n  HostName 127.0.0.1\n  Port {tp}\n  IdentityFile {tk}\n{through}\
         Host *\n  User {user}\n  IdentitiesOnly yes\n  BatchMode yes\n  ConnectTimeout 5\n  \
         StrictHostKeyChecking accept-new\n  UserKnownHostsFile {known}\n",
        jp = jump.port(),
        jk = jump.client_key().display(),
        tp = target.port(),
        tk = target.client_key().display(),
        user = jump.user(),
        known = dir.join("known_hosts").display(),
    );
    fs::write(&cfg, text).unwrap_or_else(|e| panic!("write {}: {e}", cfg.display()));
    cfg.to_string_lossy().into_owned()
}

impl Rig {
    fn start(route: Route) -> Rig {
        let dir = TestDir::new();
        let jump = Sshd::start(&dir);
        let target = Sshd::start(&dir);
        let service = Service::start();
        let tunnel = free_port();
        let cfg = ssh_config(&dir, &jump, &target, route);
        let mut cmd = Cmd::new(autossh_bin!())
            .env("AUTOSSH_GATETIME", "0")
            .args(["-M", "0", "-N", "-L"])
            .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
            .args(["-F", &cfg]);
        if let Route::CommandLineJ = route {
            cmd = cmd.args(["-J", "jump"]);
        }
        let autossh = cmd.arg("target").spawn(&dir);
        let rig = Rig {
            dir,
            jump,
            target,
            _service: service,
            tunnel,
            autossh,
        };
        assert!(
            wait_until(UP, || tunnel_works(tunnel)),
            "tunnel never worked\n{}",
            rig.story()
        );
        assert!(
            rig.autossh.wait_for_stderr("tunnel up", UP),
            "{}",
            rig.story()
        );
        rig
    }

    fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    fn handshakes(&self) -> usize {
        self.jump.log().matches(HANDSHAKE).count()
    }

    fn story(&self) -> String {
        format!(
            "{}\n--- jump sshd log ---\n{}\n--- target sshd log ---\n{}",
            self.autossh.describe(),
            self.jump.log(),
            self.target.log()
        )
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
        drop(self.target);
        drop(self.jump);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
    }
}

/// Takes the target down (listener first, then its sessions) for [`OUTAGE`] while the jump
/// host stays up; checks the pace of handshakes to the jump host, the log, and the time from
/// the target's return to a working tunnel.
fn target_down_and_back(route: Route) {
    let mut rig = Rig::start(route);
    let log_before = rig.log().len();
    rig.target.stop();
    assert!(
        rig.target.stop_sessions(Signal::SIGKILL) > 0,
        "{}",
        rig.story()
    );
    let down = Instant::now();
    // When each handshake reached the jump host (to within the 20 ms polling).
    let mut seen = rig.handshakes();
    let mut times = Vec::new();
    let mut record = |n: usize| {
        for _ in seen..n {
            times.push(down.elapsed());
        }
        seen = seen.max(n);
    };
    wait_until(OUTAGE, || {
        record(rig.handshakes());
        false
    });
    // The worst moment for the target to return: just after a handshake found it away
    // (the jump host's sshd logs the failed connect), so the next one is a whole pace away.
    let refused = format!("connect_to 127.0.0.1 port {}: failed", rig.target.port());
    let before = rig.jump.log().matches(&refused).count();
    let found = wait_until(Duration::from_secs(40), || {
        let log = rig.jump.log();
        record(log.matches(HANDSHAKE).count());
        log.matches(&refused).count() > before
    });
    assert!(found, "no handshake reached the jump host\n{}", rig.story());
    let outage = down.elapsed();
    rig.target.restart();
    let back = Instant::now();
    let recovered = wait_until(Duration::from_secs(40), || tunnel_works(rig.tunnel));
    let took = back.elapsed();

    let counted: Vec<f64> = times
        .iter()
        .filter(|t| **t >= SETTLE)
        .map(|t| t.as_secs_f64())
        .collect();
    let window = (outage - SETTLE).as_secs_f64();
    // The longest stretch of the outage without a handshake (to its end included).
    let mut longest_quiet = 0.0f64;
    let mut last = SETTLE.as_secs_f64();
    for &t in counted.iter().chain(std::iter::once(&outage.as_secs_f64())) {
        longest_quiet = longest_quiet.max(t - last);
        last = t;
    }
    let gaps: Vec<String> = counted
        .windows(2)
        .map(|w| format!("{:.2}", w[1] - w[0]))
        .collect();
    eprintln!(
        "{route:?}: {} handshakes to the jump host in the {window:.1} s after the first \
         {} s of a {:.1} s outage (gaps {}); longest quiet {longest_quiet:.2} s; tunnel \
         works {:.2} s after the target's return",
        counted.len(),
        SETTLE.as_secs(),
        outage.as_secs_f64(),
        gaps.join(" "),
        took.as_secs_f64()
    );
    assert!(recovered, "tunnel never came back\n{}", rig.story());
    // The session probe proves the tunnel soon after the -L port works.
    let proven = wait_until(UP, || rig.log()[log_before..].contains("tunnel up"));
    let outage_log = rig.log()[log_before..].to_string();
    eprintln!("--- autossh's log from the outage on ---\n{outage_log}--- end ---");
    assert!(proven, "no \"tunnel up\" after the outage\n{}", rig.story());
    assert!(
        took <= RECOVERY_LIMIT,
        "tunnel back {took:.2?} after the target's return (limit {RECOVERY_LIMIT:?})\n{}",
        rig.story()
    );
    // Bounded: at most one handshake every 1.5 s (with 0.3 s of slack for the measurement).
    assert!(
        counted.len() as f64 <= window / 1.2 + 1.0,
        "{} handshakes in {window:.1} s\n{}",
        counted.len(),
        rig.story()
    );
    // Steady: no growing backoff while the jump host answers.
    assert!(
        longest_quiet <= 3.0,
        "{longest_quiet:.2} s without a handshake during the outage\n{}",
        rig.story()
    );
    assert!(
        outage_log.contains("unreachable from the jump host"),
        "the log does not say the target is unreachable from the jump host\n{}",
        rig.story()
    );
    assert_eq!(
        outage_log.matches("unreachable from the jump host").count(),
        1,
        "one line per outage\n{}",
        rig.story()
    );
    assert!(outage_log.contains("(down for "), "{}", rig.story());
    rig.finish();
}

#[test]
fn target_down_behind_a_proxyjump_from_ssh_config() {
    target_down_and_back(Route::ConfigProxyJump);
}

#[test]
fn target_down_behind_a_jump_host_given_with_dash_j() {
    target_down_and_back(Route::CommandLineJ);
}

#[test]
fn target_down_behind_a_proxycommand() {
    target_down_and_back(Route::ProxyCommand);
}

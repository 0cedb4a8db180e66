//! Keys with a passphrase, unattended (docs/operations.md, "Keys"), against
//! a real private sshd: the passphrase is asked once (counted: SSH_ASKPASS calls) over a start
//! and several restarts, before `-f` detaches and never after; a wrong passphrase, or no way to
//! ask, is one line and exit 1 with nothing left running; an agent that dies is started again
//! and refilled; systemd's credentials are identities; nothing is left after SIGTERM or SIGKILL.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::*;

const UP: Duration = Duration::from_secs(20);
const PASS: &str = "open sesame";

/// A private sshd that takes a passphrase-protected ed25519 key made here, an askpass that
/// counts its calls, and a service behind the tunnel.
struct Rig {
    dir: TestDir,
    sshd: Sshd,
    service: Service,
    key: PathBuf,
    askpass: PathBuf,
    calls: PathBuf,
    tunnel: u16,
}

impl Rig {
    /// `answers`: what the askpass says, call after call (the last one repeats).
    fn new(answers: &[&str]) -> Rig {
        let dir = TestDir::new();
        let sshd = Sshd::start(&dir);
        let key = dir.join("enc_key");
        let st = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                PASS,
                "-C",
                "autossh-test-enc",
                "-f",
            ])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let authorized = sshd.client_key().parent().unwrap().join("authorized_keys");
        let mut text = fs::read_to_string(&authorized).unwrap();
        text.push_str(&fs::read_to_string(key.with_extension("pub")).unwrap());
        fs::write(&authorized, text).unwrap();
        let calls = dir.join("askpass.calls");
        let askpass = dir.join("askpass.sh");
        let mut script = format!(
            "#!/bin/sh\necho call >> '{}'\nn=$(wc -l < '{}')\n",
            calls.display(),
            calls.display()
        );
        for (i, a) in answers.iter().enumerate() {
            script.push_str(&format!(
                "[ \"$n\" -le {} ] && {{ echo '{a}'; exit 0; }}\n",
                i + 1
            ));
        }
        script.push_str(&format!("echo '{}'\n", answers.last().unwrap_or(&"")));
        fs::write(&askpass, script).unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).unwrap();
        Rig {
            dir,
            sshd,
            service: Service::start(),
            key,
            askpass,
            calls,
            tunnel: free_port(),
        }
    }

    fn calls(&self) -> usize {
        fs::read_to_string(&self.calls).map_or(0, |t| t.lines().count())
    }

    /// autossh, without a terminal (its own session), with `-i` the key.
    fn cmd(&self, askpass: bool) -> Cmd {
        let mut c = Cmd::new(autossh_bin!())
            .new_session()
            .env("AUTOSSH_GATETIME", "0")
            .env("AUTOSSH_DEBUG", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DISPLAY");
        if askpass {
            c = c
                .env("SSH_ASKPASS", &self.askpass)
                .env("SSH_ASKPASS_REQUIRE", "force");
        }
        c
    }

    fn ssh_args(&self, key: Option<&Path>) -> Vec<String> {
        let mut v = vec![
            "-M".into(),
            "0".into(),
            "-N".into(),
            "-L".into(),
            format!("{}:127.0.0.1:{}", self.tunnel, self.service.port()),
            "-F".into(),
            "/dev/null".into(),
            "-p".into(),
            self.sshd.port().to_string(),
        ];
        if let Some(k) = key {
            v.push("-i".into());
            v.push(k.display().to_string());
        }
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v.push(self.sshd.destination());
        v
    }

    fn works(&self, p: &Proc) {
        assert!(
            wait_until(UP, || tunnel_works(self.tunnel)),
            "tunnel never worked\n{}\n{}",
            p.describe(),
            self.sshd.log()
        );
    }
}

fn agents() -> Vec<i32> {
    pids_with_cmdline_containing("ssh-agent -D -a /")
}

/// The agents among `pids` that are children of autossh `pid`.
fn agent_of(pid: i32) -> Vec<i32> {
    agents()
        .into_iter()
        .filter(|&a| proc_stat(a).is_some_and(|s| s.ppid == pid))
        .collect()
}

#[test]
fn the_passphrase_is_asked_once_over_a_start_and_restarts() {
    let rig = Rig::new(&[PASS]);
    let p = rig
        .cmd(true)
        .args(rig.ssh_args(Some(&rig.key)))
        .spawn(&rig.dir);
    rig.works(&p);
    assert_eq!(rig.calls(), 1, "{}", p.describe());
    let pid = p.pid();
    // The agent holds decrypted keys: it may not dump core.
    let agent = agent_of(pid);
    assert_eq!(agent.len(), 1, "{}", p.describe());
    let limits = fs::read_to_string(format!("/proc/{}/limits", agent[0])).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
    for restart in 1..=3 {
        let before = p.stderr_text().matches("starting ssh").count();
        rig.sshd.stop_sessions(Signal::SIGKILL);
        assert!(
            wait_until(UP, || p.stderr_text().matches("starting ssh").count()
                > before),
            "restart {restart}\n{}",
            p.describe()
        );
        rig.works(&p);
    }
    assert_eq!(rig.calls(), 1, "asked again on a restart\n{}", p.describe());
    let argv = p
        .ssh_children()
        .first()
        .map(|&s| cmdline_string(s))
        .unwrap_or_default();
    assert!(argv.contains("IdentityAgent=/"), "{argv}");
    assert_eq!(agent_of(pid), agent);
    // SIGKILL of autossh: its agent goes too (by pid: once orphaned it is no child of
    // autossh's), and its socket.
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(UP).is_some());
    assert!(
        wait_until(Duration::from_secs(5), || !process_exists(agent[0])
            && !dir_left(pid)),
        "left: agent {} ({}), private directory {}",
        agent[0],
        cmdline_string(agent[0]),
        dir_left(pid)
    );
}

/// Whether autossh `pid`'s private directory is still there.
fn dir_left(pid: i32) -> bool {
    let prefix = format!("autossh-{pid}-");
    [std::env::temp_dir(), PathBuf::from("/tmp")]
        .iter()
        .any(|b| {
            fs::read_dir(b).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            })
        })
}

/// Runs autossh expecting it to fail at once: one line, exit 1, no ssh run, no agent left.
fn fails(rig: &Rig, askpass: bool) -> String {
    let p = rig
        .cmd(askpass)
        .args(rig.ssh_args(Some(&rig.key)))
        .spawn(&rig.dir);
    let st = p.wait_timeout(UP).expect("exits");
    assert_eq!(st.code(), Some(1), "{}", p.describe());
    let err: Vec<String> = p
        .stderr_text()
        .lines()
        .filter(|l| l.starts_with("autossh: "))
        .map(str::to_string)
        .collect();
    assert_eq!(err.len(), 1, "{}", p.describe());
    assert!(
        !p.stderr_text().contains("starting ssh"),
        "{}",
        p.describe()
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent_of(p.pid()).is_empty()),
        "agent left"
    );
    err[0].clone()
}

#[test]
fn a_wrong_passphrase_or_no_way_to_ask_is_one_line_and_exit_1() {
    // A wrong passphrase, then the prompt cancelled (an empty answer).
    let rig = Rig::new(&["wrong", ""]);
    let e = fails(&rig, true);
    assert!(e.contains(&rig.key.display().to_string()), "{e}");
    assert!(
        e.contains("the passphrase was wrong, or the prompt was cancelled"),
        "{e}"
    );
    // No terminal and no SSH_ASKPASS.
    let e = fails(&rig, false);
    assert!(
        e.contains("no terminal") && e.contains("SSH_ASKPASS"),
        "{e}"
    );
}

#[test]
fn an_agent_that_dies_is_started_again_and_refilled() {
    let rig = Rig::new(&[PASS]);
    let p = rig
        .cmd(true)
        .args(rig.ssh_args(Some(&rig.key)))
        .spawn(&rig.dir);
    rig.works(&p);
    let first = agent_of(p.pid());
    assert_eq!(first.len(), 1);
    assert!(signal_pid(first[0], Signal::SIGKILL));
    assert!(
        wait_until(UP, || rig.calls() == 2
            && agent_of(p.pid()).iter().any(|a| !first.contains(a))),
        "not refilled\n{}",
        p.describe()
    );
    assert!(
        p.wait_for_stderr("holds the keys again", UP),
        "{}",
        p.describe()
    );
    // The new ssh authenticates through the new agent.
    let before = p.stderr_text().matches("starting ssh").count();
    rig.sshd.stop_sessions(Signal::SIGKILL);
    assert!(wait_until(UP, || p
        .stderr_text()
        .matches("starting ssh")
        .count()
        > before));
    rig.works(&p);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(UP).and_then(|s| s.code()), Some(0));
}

#[test]
fn with_dash_f_the_passphrase_is_asked_before_detaching_and_never_after() {
    let rig = Rig::new(&[PASS]);
    let pidfile = rig.dir.join("autossh.pid");
    let mut args = vec!["-f".to_string()];
    args.extend(rig.ssh_args(Some(&rig.key)));
    let parent = rig
        .cmd(true)
        .env("AUTOSSH_PIDFILE", &pidfile)
        .args(args)
        .spawn(&rig.dir);
    let st = parent.wait_timeout(UP).expect("the parent returns");
    assert_eq!(st.code(), Some(0), "{}", parent.describe());
    assert_eq!(rig.calls(), 1, "asked before the parent returned");
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_until(UP, || tunnel_works(rig.tunnel)));
    let agent = agent_of(pid);
    assert_eq!(agent.len(), 1, "the daemon runs the agent");
    rig.sshd.stop_sessions(Signal::SIGKILL);
    // The restart: one more ssh child of the daemon (no -G look-up), working again.
    assert!(wait_until(UP, || tunnel_works(rig.tunnel)));
    assert_eq!(rig.calls(), 1, "asked after detaching");
    assert!(signal_pid(pid, Signal::SIGTERM));
    assert!(wait_until(UP, || !process_exists(pid)));
    assert!(
        wait_until(Duration::from_secs(5), || !process_exists(agent[0])
            && !dir_left(pid)),
        "the agent or the private directory left"
    );
}

#[test]
fn a_systemd_credential_is_an_identity() {
    let rig = Rig::new(&[PASS]);
    let creds = rig.dir.join("credentials");
    fs::create_dir(&creds).unwrap();
    // An unencrypted key, as systemd decrypts a credential into its private directory.
    fs::copy(rig.sshd.client_key(), creds.join("ssh-identity")).unwrap();
    fs::set_permissions(
        creds.join("ssh-identity"),
        fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let p = rig
        .cmd(false)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .args(rig.ssh_args(None))
        .spawn(&rig.dir);
    rig.works(&p);
    let argv = p
        .ssh_children()
        .first()
        .map(|&s| cmdline_string(s))
        .unwrap_or_default();
    assert!(
        argv.contains(&format!("-i {}", creds.join("ssh-identity").display())),
        "{argv}"
    );
    assert!(
        agent_of(p.pid()).is_empty(),
        "no agent for a key without a passphrase"
    );
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(UP).and_then(|s| s.code()), Some(0));
}

/// The fingerprint `ssh-keygen -lf` gives for a public key file.
fn fingerprint(public: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_unknown_host_key_is_named_with_its_fingerprint_and_the_command_that_pins_it() {
    let rig = Rig::new(&[PASS]);
    let known = rig.dir.join("known_hosts");
    fs::write(&known, "").unwrap();
    let mut args: Vec<String> = rig.ssh_args(Some(rig.sshd.client_key()));
    let strict = args
        .iter()
        .position(|a| a == "StrictHostKeyChecking=no")
        .unwrap();
    args[strict] = "StrictHostKeyChecking=yes".into();
    args[strict + 2] = format!("UserKnownHostsFile={}", known.display());
    let p = rig.cmd(false).args(&args).spawn(&rig.dir);
    assert!(p.wait_for_stderr("pin it: ", UP), "{}", p.describe());
    let err = p.stderr_text();
    let line = err.lines().find(|l| l.contains("pin it: ")).unwrap();
    let host_pub = rig
        .sshd
        .client_key()
        .parent()
        .unwrap()
        .join("host_ed25519_key.pub");
    let at = format!(
        "127.0.0.1 port {} (it offers ED25519 {})",
        rig.sshd.port(),
        fingerprint(&host_pub)
    );
    assert!(line.contains(&at), "{line}");
    // The command as logged, run as it is: the next ssh gets through.
    let pin = line
        .split("pin it: ")
        .nth(1)
        .unwrap()
        .split(" (then")
        .next()
        .unwrap();
    assert!(pin.ends_with(&format!(">> {}", known.display())), "{pin}");
    let st = std::process::Command::new("sh")
        .args(["-c", pin])
        .status()
        .unwrap();
    assert!(st.success(), "{pin}");
    let retry = format!("(then `kill -USR1 {}` retries at once;", p.pid());
    assert!(line.contains(&retry), "{line}");
    p.signal(Signal::SIGUSR1);
    rig.works(&p);
    assert_eq!(
        err.matches("pin it: ").count(),
        1,
        "one hint per outage\n{err}"
    );
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(UP).and_then(|s| s.code()), Some(0));
}

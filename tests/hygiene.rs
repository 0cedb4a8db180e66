//! Key hygiene at start, from the real `ssh -G`: a group-readable key and host key checking
//! turned off are each warned about once, from the one look-up autossh makes before ssh starts
//! (shared with its agent's identities and its reachability checks: no second look-up); a
//! private key and pinned host keys draw no warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use test_support::*;

const T: Duration = Duration::from_secs(10);
const KEY_WARNING: &str = "is readable by group or others (mode 0640)";
const HOST_WARNING: &str = "host key checking is off (StrictHostKeyChecking no, \
                            UserKnownHostsFile /dev/null)";

/// A key pair in the test dir with `mode` on the private key.
fn key(dir: &TestDir, mode: u32) -> std::path::PathBuf {
    let key = dir.join("id_ed25519");
    keygen(&key, "hygiene test");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    key
}

/// autossh `-M 0` with the fake ssh (which hangs) and `ssh -G` answered by `g_plan`.
fn start(dir: &TestDir, g_plan: &str, ssh_args: &[&str]) -> (FakeSsh, Proc) {
    let fake = FakeSsh::new(dir, &["hang"]);
    fake.set_g_plan(g_plan);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_LOGLEVEL", "7")
        .args(["-M", "0", "-F", "/dev/null"])
        .args(ssh_args)
        .arg("tunnel.invalid")
        .spawn(dir);
    (fake, p)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_open_key_and_unchecked_host_keys_are_warned_once_and_ssh_starts_first() {
    let dir = TestDir::new();
    let key = key(&dir, 0o640);
    // The look-up takes 1 s (a slow ssh_config), then the real ssh -G answers.
    let (fake, p) = start(
        &dir,
        "sleep 1 ; real-ssh",
        &[
            "-i",
            path_str(&key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ],
    );
    assert!(fake.wait_for_runs(1, T), "{}", p.describe());
    // One look-up served everything, before ssh started.
    assert_eq!(fake.g_pids().len(), 1, "{}", fake.describe());
    assert!(p.wait_for_stderr(HOST_WARNING, T), "{}", p.describe());
    assert!(p.wait_for_stderr(KEY_WARNING, T), "{}", p.describe());
    let err = p.stderr_text();
    assert!(
        err.contains(&format!("run chmod 600 {}", key.display())),
        "{err}"
    );
    assert!(err.contains("ssh-keyscan -H tunnel.invalid >>"), "{err}");
    // A new ssh (SIGUSR1) brings no second warning.
    assert!(p.signal(Signal::SIGUSR1));
    assert!(fake.wait_for_runs(2, T), "{}", p.describe());
    let err = p.stderr_text();
    assert_eq!(err.matches(KEY_WARNING).count(), 1, "{err}");
    assert_eq!(err.matches(HOST_WARNING).count(), 1, "{err}");
    assert_eq!(fake.g_pids().len(), 1, "{}", fake.describe());
    assert!(p.is_running(), "{}", p.describe());
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_private_key_and_pinned_host_keys_draw_no_warning() {
    let dir = TestDir::new();
    let key = key(&dir, 0o600);
    let known = dir.join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let (fake, p) = start(
        &dir,
        "real-ssh",
        &[
            "-i",
            path_str(&key),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known.display()),
        ],
    );
    // The debug line says the look-up was checked.
    assert!(
        p.wait_for_stderr("key hygiene: 1 identity file(s) looked at", T),
        "{}",
        p.describe()
    );
    assert!(fake.wait_for_runs(1, T), "{}", p.describe());
    let err = p.stderr_text();
    assert!(!err.contains("identity file /"), "{err}");
    assert!(!err.contains("host key checking is off"), "{err}");
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_failing_or_nonsensical_look_up_changes_nothing() {
    for g_plan in [
        "stderr ssh: bad config ; exit 255",
        "stdout identityfile ; stdout \u{1}",
    ] {
        let dir = TestDir::new();
        let (fake, p) = start(&dir, g_plan, &[]);
        assert!(fake.wait_for_runs(1, T), "{g_plan}: {}", p.describe());
        // The look-up ends (its pid file entry, then it is reaped).
        assert!(wait_until(T, || fake
            .g_pids()
            .first()
            .is_some_and(|&g| !process_exists(g))));
        assert!(p.is_running(), "{g_plan}: {}", p.describe());
        let err = p.stderr_text();
        // (The debug summary "key hygiene: 0 identity file(s) looked at" is not a warning.)
        assert!(!err.contains("identity file /"), "{g_plan}: {err}");
        assert!(!err.contains("host key checking is off"), "{g_plan}: {err}");
        p.signal(Signal::SIGTERM);
        assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    }
}

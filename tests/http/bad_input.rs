//! Bad `AUTOSSH_HTTP` or `AUTOSSH_HOOK`: one line on stderr, exit 1, before any ssh (not
//! even `ssh -G`); a non-loopback address is served, with a warning.

use super::rig::{run, Out};
use super::web;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use test_support::*;

/// An `ssh` that only notes it ran.
fn marker_ssh(dir: &TestDir) -> (String, std::path::PathBuf) {
    let ran = dir.join("ssh-ran");
    let ssh = dir.join("ssh");
    std::fs::write(
        &ssh,
        format!("#!/bin/sh\necho \"$@\" >> {}\nsleep 30\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    (ssh.to_string_lossy().into_owned(), ran)
}

fn refused(out: &Out, ran: &Path, what: &str, says: &str) {
    assert_eq!(out.code, Some(1), "{what}: {out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{what}: one line: {out:?}");
    assert!(out.stderr.starts_with("autossh: "), "{what}: {out:?}");
    assert!(out.stderr.contains(says), "{what}: {says:?} not in {out:?}");
    assert!(
        !ran.exists(),
        "{what}: ssh ran: {:?}",
        std::fs::read_to_string(ran)
    );
}

#[test]
fn a_bad_address_a_port_in_use_or_a_hook_that_cannot_run_exits_1_before_any_ssh() {
    let dir = TestDir::new();
    let (ssh, ran) = marker_ssh(&dir);
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_at = busy.local_addr().unwrap().to_string();
    let plain = dir.join("plain-hook");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let tunnels = dir.join("t.toml");
    std::fs::write(&tunnels, "[tunnel.a]\nssh = \"-N h\"\nmonitor = \"0\"\n").unwrap();
    let sock = dir.join("ctl.sock");
    let single = ["-M", "0", "-N", "somehost"];
    let fleet = [
        "--tunnels",
        tunnels.to_str().unwrap(),
        "--control-socket",
        sock.to_str().unwrap(),
    ];
    let cases: [(&str, &str, &[&str], &str); 6] = [
        (
            "AUTOSSH_HTTP",
            "not-an-address",
            &single,
            "AUTOSSH_HTTP: invalid value \"not-an-address\"",
        ),
        ("AUTOSSH_HTTP", &busy_at, &single, "Address already in use"),
        ("AUTOSSH_HTTP", &busy_at, &fleet, "Address already in use"),
        (
            "AUTOSSH_HOOK",
            plain.to_str().unwrap(),
            &single,
            "not executable",
        ),
        (
            "AUTOSSH_HOOK",
            "/nonexistent/hook",
            &fleet,
            "AUTOSSH_HOOK: /nonexistent/hook: not found",
        ),
        ("AUTOSSH_HOOK", "no-such-hook-on-path", &single, "not found"),
    ];
    for (var, value, args, says) in cases {
        let cmd = Cmd::new(autossh_bin!())
            .env("AUTOSSH_PATH", &ssh)
            .env(var, value)
            .args(args);
        let out = run(&dir, cmd);
        refused(&out, &ran, &format!("{var}={value} {args:?}"), says);
        assert!(!sock.exists(), "the control socket was left behind");
    }
    drop(busy);
}

#[test]
fn a_non_loopback_address_is_served_with_a_warning() {
    let dir = TestDir::new();
    let (ssh, _ran) = marker_ssh(&dir);
    let port = free_port();
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", &ssh)
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_HTTP", format!("0.0.0.0:{port}"))
        .args(["-M", "0", "-N", "somehost"])
        .spawn(&dir);
    assert!(
        p.wait_for_stderr("not a loopback address", std::time::Duration::from_secs(10)),
        "{}",
        p.describe()
    );
    assert!(
        wait_until(std::time::Duration::from_secs(10), || web::code(
            port, "/healthz"
        )
        .is_some()),
        "{}",
        p.describe()
    );
    assert!(p.signal(Signal::SIGTERM));
    assert!(
        p.wait_timeout(std::time::Duration::from_secs(10)).is_some(),
        "{}",
        p.describe()
    );
}

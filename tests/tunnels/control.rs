//! The control socket (docs/tunnels.md, "Status and control"): made in a 0700 directory,
//! mode 0600, and a client of another uid is refused (by the socket's mode, and by autossh's
//! own check when the mode is opened up); `autossh restart NAME` replaces exactly that
//! tunnel's ssh; one daemon per socket, a stale socket file replaced; no daemon, an error.

use super::rig::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use test_support::*;

const NOBODY: &str = "65534";

/// `autossh ARGS --control-socket SOCK` as uid/gid 65534 (nobody), no supplementary groups.
fn ctl_as_nobody(rig: &Rig, args: &[&str]) -> Out {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "/usr/bin/setpriv (util-linux) is needed"
    );
    let cmd = Cmd::new("/usr/bin/setpriv")
        .name("nobody")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(autossh_bin!())
        .args(args)
        .arg("--control-socket")
        .arg(&rig.sock)
        .current_dir("/");
    run(&rig.dir, cmd)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Refused: non-zero exit; a status shows no tunnel (name or pid), a restart no "restarting".
fn assert_refused(out: &Out, args: &[&str], what: &str, pids: &[(String, i32)]) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "{args:?} {what}: not refused: {out:?}"
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    if args[0] == "status" {
        for (name, pid) in pids {
            assert!(
                !all.contains(name.as_str()) && !all.contains(&pid.to_string()),
                "{args:?} {what}: the refused client learnt about {name} ({pid}): {out:?}"
            );
        }
    } else {
        assert!(
            !out.stdout.contains("restarting") && !out.stdout.contains("reloaded"),
            "{args:?} {what}: {out:?}"
        );
    }
}

#[test]
fn the_socket_is_0600_and_other_uids_are_refused() {
    let mut rig = Rig::new();
    let ts = [
        rig.tunnel("alpha", Mon::Zero),
        rig.tunnel("beta", Mon::Zero),
    ];
    rig.write(&ts);
    rig.start(&[]);
    let pids = rig.wait_up(&ts);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();

    let meta = fs::metadata(&rig.sock).unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    assert!(meta.file_type().is_socket(), "not a socket: {meta:?}");
    assert_eq!(mode(&rig.sock), 0o600, "socket mode\n{}", rig.story());
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw(), "socket owner");
    let ctl_dir = rig.sock.parent().unwrap().to_path_buf();
    assert_eq!(
        mode(&ctl_dir),
        0o700,
        "the socket's directory, made by autossh"
    );

    // 1. As it is: nobody cannot even reach the socket.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["restart", "alpha"],
        &["reload"],
    ] {
        let out = ctl_as_nobody(&rig, args);
        assert_refused(&out, args, "as nobody, socket 0600", &pids);
    }

    // 2. The path opened up (directories traversable, socket 0666): autossh's own uid check
    // is all that is left, and it must refuse too.
    fs::set_permissions(rig.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&ctl_dir, fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&rig.sock, fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["restart", "alpha"],
        &["reload"],
    ] {
        let out = ctl_as_nobody(&rig, args);
        assert_refused(&out, args, "as nobody, socket 0666", &pids);
    }

    // Nothing happened, and the owner is still served.
    assert!(rig.autossh().is_running(), "{}", rig.story());
    let now = rig
        .status()
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    for (name, pid) in &pids {
        assert_eq!(
            pid_of(&now, name),
            *pid,
            "{name} restarted by nobody\n{}",
            rig.story()
        );
    }
    assert!(ids.iter().all(|i| !gone(*i)), "{}", rig.story());
    assert_eq!(
        rig.log().matches("alpha: starting ssh").count(),
        1,
        "{}",
        rig.story()
    );
    rig.finish();
}

#[test]
fn restart_name_replaces_exactly_that_tunnels_ssh() {
    let mut rig = Rig::new();
    let ts = [
        rig.tunnel("one", Mon::Zero),
        rig.tunnel("two", Mon::Loop),
        rig.tunnel("three", Mon::Echo),
    ];
    rig.write(&ts);
    rig.start(&[]);
    let pids = rig.wait_up(&ts);
    let ids: Vec<(i32, u64)> = pids.iter().map(|p| ident(p.1)).collect();

    let out = rig.ctl(&["restart", "two"]);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", rig.story());
    assert_eq!(out.stdout.trim_end(), "restarting two", "{out:?}");
    let old_two = ids[1];
    let after = rig.wait_status(UP, "two restarted", |v| {
        v.iter()
            .any(|s| s.name == "two" && s.up && s.ssh_pid.is_some_and(|p| p != old_two.0))
    });
    assert!(wait_until(T, || gone(old_two)), "{}", rig.story());
    for (k, (name, pid)) in pids.iter().enumerate() {
        if name != "two" {
            assert_eq!(
                pid_of(&after, name),
                *pid,
                "{name} was touched\n{}",
                rig.story()
            );
            assert!(!gone(ids[k]), "{name}\n{}", rig.story());
        }
    }
    rig.wait_up(&ts);

    // An unknown name: exit 1, said on stderr, nothing touched.
    let out = rig.ctl(&["restart", "four"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("four"), "{out:?}");
    let now = rig
        .status()
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    for s in &after {
        assert_eq!(pid_of(&now, &s.name), s.ssh_pid.unwrap(), "{}", rig.story());
    }
    rig.assert_no_zombie();
    rig.finish();
}

#[test]
fn one_daemon_per_socket_and_a_stale_socket_is_replaced() {
    let mut rig = Rig::new();
    // A stale socket file: bound once, its listener gone.
    fs::create_dir_all(rig.sock.parent().unwrap()).unwrap();
    fs::set_permissions(
        rig.sock.parent().unwrap(),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(&rig.sock).expect("bind a stale socket"));
    assert!(rig.sock.exists());
    let t = rig.tunnel("solo", Mon::Zero);
    rig.write(std::slice::from_ref(&t));
    rig.start(&[]);
    let pids = rig.wait_up(std::slice::from_ref(&t));

    // A second daemon on the same socket: an error, and the first one is untouched.
    let other_file = rig.dir.join("other.toml");
    let t2 = rig.tunnel("second", Mon::Zero);
    fs::write(&other_file, t2.toml()).unwrap();
    let second = Cmd::new(autossh_bin!())
        .name("second")
        .env("AUTOSSH_GATETIME", "0")
        .arg("--tunnels")
        .arg(&other_file)
        .arg("--control-socket")
        .arg(&rig.sock)
        .spawn(&rig.dir);
    let st = second.wait_timeout(T);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(1),
        "a second daemon on a socket in use\n{}",
        second.describe()
    );
    assert!(
        !tunnel_works(t2.local),
        "the second daemon started its tunnel"
    );
    assert!(
        second.stderr_text().contains(&*rig.sock.to_string_lossy()),
        "the error does not name the socket\n{}",
        second.describe()
    );
    let now = rig
        .status()
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(pid_of(&now, "solo"), pids[0].1);
    rig.finish();
}

#[test]
fn commands_without_a_daemon_fail_with_a_message() {
    let dir = TestDir::new();
    let sock = dir.join("none").join("ctl.sock");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["restart", "x"],
        &["reload"],
    ] {
        let cmd = Cmd::new(autossh_bin!())
            .args(args)
            .arg("--control-socket")
            .arg(&sock);
        let out = run(&dir, cmd);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with("autossh: ") && out.stderr.trim_end().lines().count() == 1,
            "{args:?}: {out:?}"
        );
    }
}

/// Without --control-socket: `$XDG_RUNTIME_DIR/autossh/autossh.sock` (RUNTIME_DIRECTORY unset),
/// its directory made 0700, found by the commands with the same environment.
#[test]
fn the_default_socket_is_under_xdg_runtime_dir() {
    let mut rig = Rig::new();
    let t = rig.tunnel("xdg", Mon::Zero);
    rig.write(std::slice::from_ref(&t));
    let xdg = rig.dir.join("xdg");
    fs::create_dir(&xdg).unwrap();
    let daemon = Cmd::new(autossh_bin!())
        .name("autossh")
        .env_remove("RUNTIME_DIRECTORY")
        .env("XDG_RUNTIME_DIR", &xdg)
        .env("AUTOSSH_GATETIME", "0")
        .arg("--tunnels")
        .arg(&rig.file)
        .spawn(&rig.dir);
    let sock = xdg.join("autossh").join("autossh.sock");
    assert!(
        wait_until(UP, || sock.exists()),
        "no socket at {}\n{}",
        sock.display(),
        daemon.describe()
    );
    assert_eq!(mode(&xdg.join("autossh")), 0o700);
    assert_eq!(mode(&sock), 0o600);
    let status = || {
        run(
            &rig.dir,
            Cmd::new(autossh_bin!())
                .args(["status", "--json"])
                .env_remove("RUNTIME_DIRECTORY")
                .env("XDG_RUNTIME_DIR", &xdg),
        )
    };
    let ok = poll(UP, std::time::Duration::from_millis(100), || {
        parse_status(&status().stdout).is_ok_and(|v| v.len() == 1 && v[0].name == "xdg" && v[0].up)
    });
    assert!(ok, "{:?}\n{}", status(), daemon.describe());
    assert!(daemon.signal(Signal::SIGTERM));
    let st = daemon.wait_timeout(T);
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", daemon.describe());
}

//! Tests of the test harness itself (the test-support crate), without autossh.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use test_support::*;

fn assert_clean(dir: &TestDir) {
    if let Err(e) = no_process_left(&dir.marker()) {
        panic!("{e}");
    }
}

#[test]
fn wait_until_is_bounded() {
    let start = Instant::now();
    assert!(!wait_until(Duration::from_millis(100), || false));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let mut calls = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        calls += 1;
        calls == 3
    }));
    assert_eq!(calls, 3);
}

/// That a port was free when it was handed out is checked in test-support's own tests with
/// ports it chose; binding it again here would race every other process on the machine.
#[test]
fn free_ports_are_distinct_and_in_range() {
    let a = free_port();
    let b = free_port();
    let p = free_port_pair();
    assert_ne!(a, b);
    assert!(p != a && p != b && p + 1 != a && p + 1 != b);
    for port in [a, b, p, p + 1] {
        assert!((20000..=60000).contains(&port), "{port}");
    }
}

#[test]
fn test_dir_is_named_after_the_test() {
    let dir = TestDir::new();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("autossh-test_dir_is_named_after_the_test-"),
        "{name}"
    );
    assert!(dir.path().is_dir());
    assert_eq!(dir.join("x"), dir.path().join("x"));
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn proc_describe_and_process_inspection() {
    let dir = TestDir::new();
    let p = Cmd::new("/bin/sh")
        .args(["-c", "echo out; echo err >&2; exec sleep 30", "sh"])
        .env("HARNESS_VAR", "a b")
        .spawn(&dir);
    assert!(
        p.wait_for_stderr("err", Duration::from_secs(5)),
        "{}",
        p.describe()
    );
    assert!(
        p.wait_for_stdout("out", Duration::from_secs(5)),
        "{}",
        p.describe()
    );
    let pid = p.pid();
    assert!(process_exists(pid));
    assert!(!is_zombie(pid));
    assert!(count_open_fds(pid) >= 3);
    assert!(rss_kib(pid) > 0);
    assert!(children_of(std::process::id() as i32).contains(&pid));
    let d = p.describe();
    assert!(d.contains("HARNESS_VAR='a b'"), "{d}");
    assert!(d.contains("still running"), "{d}");
    assert!(p.wait_timeout(Duration::from_millis(100)).is_none());
    assert!(p.signal(Signal::SIGTERM));
    let st = p
        .wait_timeout(Duration::from_secs(5))
        .expect("sleep did not die");
    assert_eq!(st.signal(), Some(15), "{}", p.describe());
    assert!(!process_exists(pid));
    assert!(p.describe().contains("signal: 15"), "{}", p.describe());
}

#[test]
fn proc_drop_kills_the_process_group() {
    let dir = TestDir::new();
    let marker = dir.join("grandchild-marker");
    let m = marker.to_string_lossy().into_owned();
    // sh -> sh (with the marker in its argv) -> sleep, all in one group.
    let p = Proc::spawn(
        &dir,
        "/bin/sh",
        &["-c", "/bin/sh -c 'sleep 30; :' \"$0\" & wait", m.as_str()],
        &[],
    );
    // Until the inner sh's child has exec'd sleep, that child carries the marker too.
    assert!(
        wait_until(Duration::from_secs(5), || p.descendants().len() == 2
            && pids_with_cmdline_containing(&m).len() == 2),
        "{} (marked: {:?})",
        p.describe(),
        pids_with_cmdline_containing(&m)
    );
    let all: Vec<i32> = std::iter::once(p.pid()).chain(p.descendants()).collect();
    drop(p);
    assert!(
        wait_until(Duration::from_secs(2), || all
            .iter()
            .all(|&q| !process_exists(q))),
        "{}",
        describe_pids(&all)
    );
    assert_clean(&dir);
}

#[test]
fn sshd_login_tunnel_and_session_kill() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    assert!(tunnel_works(service.port()), "service does not answer");

    // A plain login runs `true` and exits 0.
    let mut args = sshd.client_args();
    args.push("true".into());
    let login = Proc::spawn(&dir, SSH_BIN, &args, &[]);
    let st = login.wait_timeout(Duration::from_secs(10));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "{}\n--- sshd log ---\n{}",
        login.describe(),
        sshd.log()
    );
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());

    // A -L tunnel to the service.
    let local = free_port();
    let mut args = vec![
        "-N".to_string(),
        "-L".to_string(),
        format!("127.0.0.1:{local}:127.0.0.1:{}", service.port()),
    ];
    args.extend(sshd.client_args());
    let tunnel = Proc::spawn(&dir, SSH_BIN, &args, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || tunnel_works(local)),
        "{}\n--- sshd log ---\n{}",
        tunnel.describe(),
        sshd.log()
    );
    assert!(service.connections() >= 2);

    assert!(
        wait_until(Duration::from_secs(5), || sshd.logged_in_pids().len() == 1),
        "{}",
        describe_pids(&sshd.session_pids())
    );
    let sessions = sshd.session_pids();
    assert!(!sessions.is_empty(), "no session pids: {}", sshd.log());
    assert!(
        sessions
            .iter()
            .all(|&p| process_exists(p) && p != sshd.pid()),
        "{}",
        describe_pids(&sessions)
    );
    assert!(sshd.stop_sessions(Signal::SIGKILL) >= 1);
    let st = tunnel.wait_timeout(Duration::from_secs(10));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(255),
        "{}",
        tunnel.describe()
    );
    assert!(!tunnel_works(local));
    assert!(wait_until(Duration::from_secs(5), || sshd
        .session_pids()
        .is_empty()));

    drop(tunnel);
    drop(login);
    drop(sshd);
    drop(service);
    assert_clean(&dir);
}

#[test]
fn sshd_stop_and_restart_same_port() {
    let dir = TestDir::new();
    let mut sshd = Sshd::start(&dir);
    let port = sshd.port();
    let mut args = vec!["-N".to_string()];
    args.extend(sshd.client_args());
    let conn = Proc::spawn(&dir, SSH_BIN, &args, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || sshd.logged_in_pids().len() == 1),
        "{}\n{}",
        conn.describe(),
        sshd.log()
    );

    // Stopping the listener keeps the established session, still tracked.
    sshd.stop();
    assert!(!sshd.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(sshd.logged_in_pids().len(), 1);
    assert!(conn.is_running(), "{}", conn.describe());

    sshd.restart();
    assert!(sshd.is_running());
    assert_eq!(sshd.port(), port);
    let mut args = sshd.client_args();
    args.push("true".into());
    let login = Proc::spawn(&dir, SSH_BIN, &args, &[]);
    let st = login.wait_timeout(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", login.describe());

    drop(sshd); // kills the orphaned session too
    let st = conn.wait_timeout(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(255), "{}", conn.describe());
    drop(conn);
    drop(login);
    assert_clean(&dir);
}

#[test]
fn fake_ssh_records_argv_and_follows_plan() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 3", "kill-self KILL", "hang"]);
    let tricky: Vec<&str> = vec![
        "-o",
        "a b",
        "it's \"quoted\"",
        "",
        "$HOME `x` \\",
        "line1\nline2",
    ];

    let p1 = Proc::spawn(&dir, fake.path(), &tricky, &[("AUTOSSH_GATETIME", "0")]);
    let st = p1.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(3), "{}", p1.describe());

    let p2 = Proc::spawn(&dir, fake.path(), &["second"], &[]);
    let st = p2.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.signal()), Some(9), "{}", p2.describe());

    let no_args: [&str; 0] = [];
    let p3 = Proc::spawn(&dir, fake.path(), &no_args, &[]);
    assert!(
        fake.wait_for_runs(3, Duration::from_secs(5)),
        "{}",
        fake.describe()
    );
    assert!(p3.wait_timeout(Duration::from_millis(300)).is_none());
    assert!(p3.signal(Signal::SIGTERM));
    let st = p3.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.signal()), Some(15), "{}", p3.describe());

    // The last plan line repeats.
    let p4 = Proc::spawn(&dir, fake.path(), &["fourth"], &[]);
    assert!(fake.wait_for_runs(4, Duration::from_secs(5)));
    assert!(p4.wait_timeout(Duration::from_millis(200)).is_none());
    assert!(p4.signal(Signal::SIGKILL));
    assert!(p4.wait_timeout(Duration::from_secs(5)).is_some());

    let runs = fake.runs();
    assert_eq!(fake.run_count(), 4);
    assert_eq!(runs[0], tricky, "{}", fake.describe());
    assert_eq!(runs[1], vec!["second"]);
    assert!(runs[2].is_empty());
    assert_eq!(runs[3], vec!["fourth"]);
    assert_eq!(fake.pids(), vec![p1.pid(), p2.pid(), p3.pid(), p4.pid()]);
    assert_eq!(
        fake.envs()[0].get("AUTOSSH_GATETIME").map(String::as_str),
        Some("0")
    );
    let times = fake.start_times();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(fake.live_pids().is_empty());
    assert_clean(&dir);
}

#[test]
fn fake_ssh_other_steps() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(
        &dir,
        &[
            "stderr Permission denied (publickey). ; stdout a;b ; exit 255",
            "sleep 0.3 exit 7",
            "hang-exit 255",
            "hang-ignore-term",
            "kill-self TERM",
        ],
    );
    let p = Proc::spawn(&dir, fake.path(), &["x"], &[]);
    let st = p.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(255), "{}", p.describe());
    assert_eq!(p.stderr_text(), "Permission denied (publickey).\n");
    assert_eq!(p.stdout_text(), "a;b\n");

    let start = Instant::now();
    let p = Proc::spawn(&dir, fake.path(), &["x"], &[]);
    let st = p.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(7), "{}", p.describe());
    assert!(start.elapsed() >= Duration::from_millis(300));

    let p = Proc::spawn(&dir, fake.path(), &["x"], &[]);
    assert!(fake.wait_for_runs(3, Duration::from_secs(5)));
    assert!(p.wait_timeout(Duration::from_millis(200)).is_none());
    p.signal(Signal::SIGTERM);
    let st = p.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(255), "{}", p.describe());

    let p = Proc::spawn(&dir, fake.path(), &["x"], &[]);
    assert!(fake.wait_for_runs(4, Duration::from_secs(5)));
    p.signal(Signal::SIGTERM);
    assert!(p.wait_timeout(Duration::from_millis(300)).is_none());
    assert!(process_exists(p.pid()));
    // No helper child (no sleep) under the waiting script.
    assert!(p.children().is_empty(), "{}", describe_pids(&p.children()));
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(Duration::from_secs(5)).is_some());

    let p = Proc::spawn(&dir, fake.path(), &["x"], &[]);
    let st = p.wait_timeout(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.signal()), Some(15), "{}", p.describe());
    assert_clean(&dir);
}

#[test]
fn test_dir_drop_kills_leftovers() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang-ignore-term"]);
    // Spawned outside Proc, so nothing but TestDir's drop cleans it up.
    let mut child = std::process::Command::new(fake.path())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(fake.wait_for_runs(1, Duration::from_secs(5)));
    let marker = dir.marker();
    assert!(!pids_with_cmdline_containing(&marker).is_empty());
    drop(dir);
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9));
    assert!(!process_exists(pid));
    assert!(no_process_left(&marker).is_ok());
    drop(fake);
}

#[test]
fn service_stops() {
    let mut service = Service::start();
    let port = service.port();
    assert!(tunnel_works(port));
    assert!(tunnel_works(port));
    assert_eq!(service.connections(), 2);
    let start = Instant::now();
    service.stop();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!tunnel_works(port));
}

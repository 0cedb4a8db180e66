//! The real autossh binary against a scripted stand-in ssh: exit table, signals in each
//! state, argv handling, -f, pidfile, log file and bad input.

mod util;

use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(10);

/// autossh with the fake ssh, `-M 0` unless `args` says otherwise.
fn autossh(dir: &TestDir, fake: &FakeSsh, env: &[(&str, &str)], args: &[&str]) -> Proc {
    let mut cmd = Cmd::autossh().env("AUTOSSH_PATH", fake.path());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.args(args).spawn(dir)
}

/// Waits for the exit and returns its code, failing with the whole story otherwise.
fn exit_code(p: &Proc, fake: &FakeSsh) -> i32 {
    let st = p.wait_timeout(T).unwrap_or_else(|| {
        panic!(
            "autossh did not exit\n{}\n{}",
            p.describe(),
            fake.describe()
        )
    });
    st.code()
        .unwrap_or_else(|| panic!("autossh killed by a signal\n{}", p.describe()))
}

fn assert_clean(dir: &TestDir) {
    if let Err(e) = no_process_left(&dir.marker()) {
        panic!("processes left behind: {e}");
    }
}

// ---- the exit table ----

/// Runs autossh once with `plan` and returns (exit code, number of ssh runs).
fn outcome(plan: &[&str], env: &[(&str, &str)]) -> (i32, usize, String) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, plan);
    let p = autossh(&dir, &fake, env, &["-M", "0", "host"]);
    let code = exit_code(&p, &fake);
    assert_clean(&dir);
    (code, fake.run_count(), p.stderr_text())
}

#[test]
fn exit_0_exits_0() {
    let (code, runs, _) = outcome(&["exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 1));
}

#[test]
fn first_run_inside_the_gate_exits_1_prematurely() {
    let (code, runs, err) = outcome(&["exit 255"], &[]);
    assert_eq!((code, runs), (1, 1));
    assert!(err.contains("exited prematurely"), "{err}");
}

#[test]
fn exit_255_restarts() {
    let (code, runs, err) = outcome(
        &["exit 255", "exit 255", "exit 0"],
        &[("AUTOSSH_GATETIME", "0")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
    assert!(err.contains("starting ssh (count 3)"), "{err}");
}

#[test]
fn exit_1_after_the_gate_on_first_run_exits_1() {
    let (code, runs, _) = outcome(&["sleep 1.3 exit 1"], &[("AUTOSSH_GATETIME", "1")]);
    assert_eq!((code, runs), (1, 1));
}

#[test]
fn exit_1_and_2_on_later_runs_restart() {
    let plan = ["sleep 1.3 exit 255", "exit 1", "exit 2", "exit 0"];
    let (code, runs, err) = outcome(&plan, &[("AUTOSSH_GATETIME", "1")]);
    assert_eq!((code, runs), (0, 4), "{err}");
}

#[test]
fn exit_1_with_gate_0_restarts() {
    let (code, runs, _) = outcome(&["exit 1", "exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 2));
}

#[test]
fn exit_3_to_254_exits_1() {
    for status in ["3", "42", "254"] {
        let (code, runs, _) = outcome(&[&format!("exit {status}")], &[("AUTOSSH_GATETIME", "0")]);
        assert_eq!((code, runs), (1, 1), "status {status}");
    }
}

#[test]
fn ssh_killed_by_a_signal_is_restarted() {
    let (code, runs, err) = outcome(
        &["kill-self TERM", "kill-self SEGV", "exit 0"],
        &[("AUTOSSH_GATETIME", "0")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
}

#[test]
fn ssh_killed_with_sigkill_stops_autossh() {
    let (code, runs, err) = outcome(&["kill-self KILL", "exit 0"], &[("AUTOSSH_GATETIME", "0")]);
    assert_eq!((code, runs), (0, 1), "{err}");
    assert!(err.contains("SIGKILL"), "{err}");
}

#[test]
fn maxstart_limits_the_starts() {
    let (code, runs, err) = outcome(
        &["exit 255"],
        &[("AUTOSSH_GATETIME", "0"), ("AUTOSSH_MAXSTART", "3")],
    );
    assert_eq!((code, runs), (0, 3), "{err}");
    assert!(err.contains("count 3 of 3"), "{err}");
    // After the third start nothing announces a restart; the exit follows at once.
    let third = err.find("count 3 of 3").unwrap();
    assert!(!err[third..].contains("restarting ssh in"), "{err}");
    assert!(
        err[third..].contains("max start count reached; exiting"),
        "{err}"
    );
    let (code, runs, _) = outcome(&["hang"], &[("AUTOSSH_MAXSTART", "0")]);
    assert_eq!((code, runs), (0, 0));
}

#[test]
fn maxlifetime_kills_ssh_and_exits_0() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_MAXLIFETIME", "2")],
        &["-M", "0", "h"],
    );
    assert!(fake.wait_for_runs(1, T));
    let code = exit_code(&p, &fake);
    assert_eq!(code, 0);
    assert!(p.elapsed() >= Duration::from_secs(2) && p.elapsed() < Duration::from_secs(6));
    assert_clean(&dir);
}

// ---- signals, in each state ----

fn running(plan: &[&str]) -> (TestDir, FakeSsh, Proc) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, plan);
    let pidfile = dir.join("autossh.pid");
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_PIDFILE", pidfile.to_str().unwrap())],
        &["-M", "0", "h"],
    );
    assert!(fake.wait_for_runs(1, T), "{}", p.describe());
    (dir, fake, p)
}

#[test]
fn sigterm_sigint_sigquit_while_running_stop_ssh_and_exit_0() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let (dir, fake, p) = running(&["hang"]);
        assert!(dir.join("autossh.pid").exists());
        p.signal(sig);
        assert_eq!(exit_code(&p, &fake), 0, "{sig}");
        assert!(
            !dir.join("autossh.pid").exists(),
            "pidfile left after {sig}"
        );
        assert!(fake.live_pids().is_empty(), "ssh left after {sig}");
        assert_clean(&dir);
    }
}

#[test]
fn ssh_that_ignores_sigterm_is_killed() {
    let (dir, fake, p) = running(&["hang-ignore-term"]);
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert!(p.stderr_text().contains("SIGKILL"), "{}", p.describe());
    assert!(fake.live_pids().is_empty());
    assert_clean(&dir);
}

#[test]
fn sigusr1_restarts_ssh_now() {
    let (dir, fake, p) = running(&["hang"]);
    p.signal(Signal::SIGUSR1);
    assert!(fake.wait_for_runs(2, T), "{}", p.describe());
    assert!(wait_until(T, || fake.live_pids().len() == 1));
    assert!(!process_exists(fake.pids()[0]));
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sighup_and_sigusr2_while_running_change_nothing() {
    let (dir, fake, p) = running(&["hang"]);
    p.signal(Signal::SIGHUP);
    p.signal(Signal::SIGUSR2);
    assert!(!wait_until(Duration::from_millis(500), || fake.run_count()
        > 1
        || !p.is_running()));
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

/// autossh waiting out a backoff: the sixth quick death in a row waits 4 to 8 s.
fn backing_off() -> (TestDir, FakeSsh, Proc) {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 255"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], &["-M", "0", "h"]);
    assert!(
        fake.wait_for_runs(6, Duration::from_secs(15)),
        "{}",
        p.describe()
    );
    assert!(
        wait_until(T, || p.stderr_text().matches("restarting ssh in").count()
            >= 6),
        "{}",
        p.describe()
    );
    assert_eq!(fake.run_count(), 6);
    (dir, fake, p)
}

#[test]
fn sigterm_during_backoff_exits_0_at_once() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGTERM);
    let st = p
        .wait_timeout(Duration::from_secs(2))
        .expect("exit during backoff");
    assert_eq!(st.code(), Some(0));
    assert_eq!(fake.run_count(), 6);
    assert_clean(&dir);
}

#[test]
fn sighup_during_backoff_retries_now() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGHUP);
    assert!(
        fake.wait_for_runs(7, Duration::from_secs(2)),
        "{}",
        p.describe()
    );
    p.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sigusr1_during_backoff_restarts_now() {
    let (dir, fake, p) = backing_off();
    p.signal(Signal::SIGUSR1);
    assert!(
        fake.wait_for_runs(7, Duration::from_secs(2)),
        "{}",
        p.describe()
    );
    p.signal(Signal::SIGINT);
    assert_eq!(exit_code(&p, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn sigkill_of_autossh_takes_ssh_down() {
    let (dir, fake, p) = running(&["hang"]);
    let ssh = fake.pids()[0];
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(T).is_some());
    assert!(
        wait_until(T, || !process_exists(ssh)),
        "ssh outlived autossh"
    );
    assert_clean(&dir);
}

// ---- argv ----

fn argv_seen(args: &[&str]) -> Vec<String> {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], args);
    assert_eq!(exit_code(&p, &fake), 0, "{}", p.describe());
    without_session_probe(fake.runs().remove(0))
}

/// `-M 0`'s session probe forward (`-L <socket>:/dev/null/autossh-session-probe`) comes
/// first when it is on; these tests are about the user's arguments, so it is taken off.
fn without_session_probe(mut argv: Vec<String>) -> Vec<String> {
    if argv.len() >= 2 && argv[0] == "-L" && argv[1].ends_with(":/dev/null/autossh-session-probe") {
        argv.drain(..2);
    }
    argv
}

#[test]
fn m0_has_the_session_probe_unless_stdio_forwarding_or_turned_off() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["exit 0"]);
        let mut env = env.to_vec();
        env.push(("AUTOSSH_GATETIME", "0"));
        let p = autossh(&dir, &fake, &env, args);
        assert_eq!(exit_code(&p, &fake), 0, "{}", p.describe());
        fake.runs().remove(0)
    };
    let argv = run(&[], &["-M", "0", "-N", "host"]);
    assert_eq!(argv[0], "-L", "{argv:?}");
    assert!(
        argv[1].ends_with("/probe.sock:/dev/null/autossh-session-probe"),
        "{argv:?}"
    );
    let argv = run(&[], &["-M", "0", "-W", "db:5432", "host"]);
    assert!(
        !argv.iter().any(|a| a.contains("session-probe")),
        "{argv:?}"
    );
    let argv = run(
        &[("AUTOSSH_SESSION_PROBE", "no")],
        &["-M", "0", "-N", "host"],
    );
    assert!(
        !argv.iter().any(|a| a.contains("session-probe")),
        "{argv:?}"
    );
}

const KEEPALIVE: [&str; 10] = [
    "-o",
    "ServerAliveInterval=60",
    "-o",
    "ServerAliveCountMax=3",
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "ControlMaster=no",
    "-o",
    "ControlPath=none",
];

fn with_keepalive(rest: &[&str]) -> Vec<String> {
    KEEPALIVE
        .iter()
        .chain(rest)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn jump_host_bind_interface_and_stdio_forward_reach_ssh_intact() {
    assert_eq!(
        argv_seen(&["-M", "0", "-J", "jump", "-N", "host"]),
        with_keepalive(&["-J", "jump", "-N", "host"])
    );
    assert_eq!(
        argv_seen(&["-M", "0", "-B", "lo", "-W", "db:5432", "host"]),
        with_keepalive(&["-B", "lo", "-W", "db:5432", "host"])
    );
}

#[test]
fn remote_command_keeps_its_own_options() {
    assert_eq!(
        argv_seen(&["-M", "0", "host", "ls", "-l", "-M", "3"]),
        with_keepalive(&["host", "ls", "-l", "-M", "3"])
    );
}

#[test]
fn double_dash_and_arguments_with_spaces() {
    assert_eq!(
        argv_seen(&["-M0", "-o", "SendEnv=A B", "--", "host", "echo 'a b'"]),
        with_keepalive(&["-o", "SendEnv=A B", "--", "host", "echo 'a b'"])
    );
}

#[test]
fn loop_mode_adds_the_monitor_forwards() {
    let n = free_port_pair();
    let a = argv_seen(&[&format!("-M{n}"), "-N", "host"]);
    assert_eq!(
        a,
        [
            "-L".to_string(),
            format!("{n}:127.0.0.1:{n}"),
            "-R".into(),
            format!("{n}:127.0.0.1:{}", n + 1),
            "-o".into(),
            "ExitOnForwardFailure=yes".into(),
            "-o".into(),
            "ControlMaster=no".into(),
            "-o".into(),
            "ControlPath=none".into(),
            "-N".into(),
            "host".into(),
        ]
    );
}

#[test]
fn echo_mode_and_user_keepalive_settings() {
    let a = argv_seen(&["-M", "40000:7", "-o", "ExitOnForwardFailure=no", "host"]);
    assert_eq!(
        a,
        [
            "-L",
            "40000:127.0.0.1:7",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "ExitOnForwardFailure=no",
            "host"
        ]
    );
    let a = argv_seen(&["-M", "0", "-o", "ServerAliveInterval=5", "host"]);
    assert!(!a.contains(&"ServerAliveInterval=60".to_string()), "{a:?}");
}

#[test]
fn serveralive_variables_are_used() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let env = [
        ("AUTOSSH_GATETIME", "0"),
        ("AUTOSSH_SERVERALIVE_INTERVAL", "15"),
        ("AUTOSSH_SERVERALIVE_COUNT_MAX", "2"),
    ];
    let p = autossh(&dir, &fake, &env, &["-M", "0", "h"]);
    exit_code(&p, &fake);
    let a = fake.runs().remove(0);
    assert!(a.contains(&"ServerAliveInterval=15".to_string()), "{a:?}");
    assert!(a.contains(&"ServerAliveCountMax=2".to_string()), "{a:?}");
}

#[test]
fn without_a_monitor_port_a_free_pair_is_picked() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], &["h"]);
    exit_code(&p, &fake);
    let a = fake.runs().remove(0);
    assert_eq!(a[0], "-L", "{a:?}");
    assert!(
        p.stderr_text().contains("no monitor port given"),
        "{}",
        p.describe()
    );
}

#[test]
fn autossh_port_variable_is_used_when_m_is_absent() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let env = [("AUTOSSH_GATETIME", "0"), ("AUTOSSH_PORT", "40000:7")];
    let p = autossh(&dir, &fake, &env, &["h"]);
    exit_code(&p, &fake);
    assert_eq!(fake.runs()[0][..2], ["-L", "40000:127.0.0.1:7"]);
}

// ---- -f, pidfile, log file ----

#[test]
fn background_parent_exits_0_once_ssh_runs_and_the_daemon_is_stoppable() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let log = dir.join("a.log");
    let p = autossh(
        &dir,
        &fake,
        &[
            ("AUTOSSH_PIDFILE", "rel.pid"),
            ("AUTOSSH_LOGFILE", "rel.log"),
        ],
        &["-f", "-M", "0", "-fN", "h"],
    );
    assert_eq!(exit_code(&p, &fake), 0, "{}", p.describe());
    // The parent returned only after ssh was started (exec done; the script may still be
    // writing its record).
    assert!(fake.wait_for_runs(1, T), "{}", fake.describe());
    assert_eq!(fake.runs()[0].last().unwrap(), "h");
    assert!(fake.runs()[0].contains(&"-N".to_string()));
    // Relative paths were resolved before the daemon changed to /.
    let pidfile = dir.join("rel.pid");
    assert!(wait_until(T, || pidfile.exists()));
    let daemon_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(daemon_pid, p.pid());
    assert!(dir.join("rel.log").exists());
    let _ = log;
    signal_pid(daemon_pid, Signal::SIGTERM);
    assert!(wait_until(T, || !process_exists(daemon_pid)));
    assert!(wait_until(T, || !pidfile.exists()), "pidfile left behind");
    assert_clean(&dir);
}

#[test]
fn background_start_failure_reaches_the_caller() {
    let dir = TestDir::new();
    let p = Cmd::autossh()
        .env("AUTOSSH_PATH", dir.join("no-such-ssh"))
        .args(["-f", "-M", "0", "h"])
        .spawn(&dir);
    let st = p.wait_timeout(T).expect("parent exits");
    assert_eq!(st.code(), Some(1), "{}", p.describe());
    assert!(p.stderr_text().contains("no-such-ssh"), "{}", p.describe());
    assert_clean(&dir);
}

#[test]
fn a_locked_pidfile_refuses_a_second_autossh() {
    let (dir, fake, first) = running(&["hang"]);
    let second = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_PIDFILE", dir.join("autossh.pid").to_str().unwrap())],
        &["-M", "0", "h"],
    );
    let st = second.wait_timeout(T).expect("second exits");
    assert_eq!(st.code(), Some(1));
    let err = second.stderr_text();
    assert!(err.contains("locked by another autossh"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(fake.run_count(), 1, "second autossh must not start ssh");
    // The first one's pidfile is intact.
    let pid: i32 = std::fs::read_to_string(dir.join("autossh.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, first.pid());
    first.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&first, &fake), 0);
    assert_clean(&dir);
}

#[test]
fn log_file_lines_follow_1_4g_format_and_capture_ssh_stderr() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["stderr Permission denied (publickey). ; exit 255"]);
    let log = dir.join("autossh.log");
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_LOGFILE", log.to_str().unwrap())],
        &["-M", "0", "h"],
    );
    assert_eq!(exit_code(&p, &fake), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    let pid = p.pid();
    for line in text.lines() {
        let (stamp, rest) = line.split_at(19);
        assert!(
            stamp.as_bytes()[4] == b'/' && stamp.as_bytes()[13] == b':',
            "bad stamp: {line}"
        );
        assert!(rest.starts_with(&format!(" autossh[{pid}]: ")), "{line}");
    }
    assert!(
        text.contains("ssh: Permission denied (publickey)."),
        "{text}"
    );
    assert!(text.contains("starting ssh (count 1)"), "{text}");
}

#[test]
fn loglevel_filters_info_lines() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let p = autossh(
        &dir,
        &fake,
        &[("AUTOSSH_LOGLEVEL", "3"), ("AUTOSSH_GATETIME", "0")],
        &["-M", "0", "h"],
    );
    assert_eq!(exit_code(&p, &fake), 0);
    assert!(
        !p.stderr_text().contains("starting ssh"),
        "{}",
        p.describe()
    );
}

// ---- bad input ----

#[test]
fn bad_input_is_one_line_and_exit_1_before_anything_starts() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("AUTOSSH_POLL", "0")], &["-M", "0", "h"], "AUTOSSH_POLL"),
        (
            &[("AUTOSSH_POLL", "ten")],
            &["-M", "0", "h"],
            "AUTOSSH_POLL",
        ),
        (
            &[("AUTOSSH_GATETIME", "-1")],
            &["-M", "0", "h"],
            "AUTOSSH_GATETIME",
        ),
        (
            &[("AUTOSSH_LOGLEVEL", "9")],
            &["-M", "0", "h"],
            "AUTOSSH_LOGLEVEL",
        ),
        (
            &[("AUTOSSH_MAXSTART", "many")],
            &["-M", "0", "h"],
            "AUTOSSH_MAXSTART",
        ),
        (&[], &["-M", "abc", "h"], "-M"),
        (&[], &["-M", "70000", "h"], "-M"),
        (&[], &["-M", "20000:0", "h"], "-M"),
        (&[], &["-M", "0"], "destination"),
        (&[("AUTOSSH_PORT", "x")], &["h"], "AUTOSSH_PORT"),
        (
            &[("AUTOSSH_LOGFILE", "/nonexistent/dir/log")],
            &["-M", "0", "h"],
            "AUTOSSH_LOGFILE",
        ),
    ];
    for (env, args, needle) in cases {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["hang"]);
        let p = autossh(&dir, &fake, env, args);
        let st = p.wait_timeout(T).expect("exits");
        let err = p.stderr_text();
        assert_eq!(st.code(), Some(1), "{env:?} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{env:?} {args:?}: {err}");
        assert!(err.contains(needle), "{env:?} {args:?}: {err}");
        assert_eq!(fake.run_count(), 0, "ssh started for {env:?} {args:?}");
    }
}

#[test]
fn busy_loop_port_is_a_clear_error() {
    let dir = TestDir::new();
    let n = free_port_pair();
    let _hold = std::net::TcpListener::bind(("127.0.0.1", n + 1)).unwrap();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = autossh(&dir, &fake, &[], &["-M", &n.to_string(), "h"]);
    assert_eq!(exit_code(&p, &fake), 1);
    let err = p.stderr_text();
    assert!(err.contains(&format!("127.0.0.1:{}", n + 1)), "{err}");
    assert_eq!(fake.run_count(), 0);
}

#[test]
fn unrunnable_ssh_exits_1() {
    let dir = TestDir::new();
    let p = Cmd::autossh()
        .env("AUTOSSH_PATH", dir.join("missing"))
        .args(["-M", "0", "h"])
        .spawn(&dir);
    let st = p.wait_timeout(T).expect("exits");
    assert_eq!(st.code(), Some(1));
    assert!(
        p.stderr_text().contains("cannot run ssh"),
        "{}",
        p.describe()
    );
}

#[test]
fn version_flag() {
    let dir = TestDir::new();
    let p = Cmd::autossh().arg("-V").spawn(&dir);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    assert!(p.stdout_text().starts_with("autossh "), "{}", p.describe());
}

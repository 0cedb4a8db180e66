//! -f, the pid file and the log file.

use super::*;
use crate::signals::running;

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
    let p = Cmd::new(autossh_bin!())
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

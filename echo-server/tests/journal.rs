//! Under systemd (`JOURNAL_STREAM` names stderr) each log line is `<N>message`, so
//! `journalctl -p warning` finds a silent client; elsewhere the lines are as before.

mod common;

use common::{bin, wait_until};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// `"<st_dev>:<st_ino>"` of `path`, as systemd sets `JOURNAL_STREAM`.
fn dev_ino(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// autossh-echo with stderr to `stderr` (which must exist) and `JOURNAL_STREAM` set.
fn spawn(stderr: &Path, journal_stream: &str, args: &[&str]) -> Child {
    let err = std::fs::OpenOptions::new()
        .append(true)
        .open(stderr)
        .unwrap();
    Command::new(bin())
        .args(args)
        .env("JOURNAL_STREAM", journal_stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The address from the `listening on` line, once it is there.
fn listening(path: &Path) -> SocketAddr {
    let mut addr = None;
    wait_until(T, || {
        addr = text(path)
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .and_then(|a| a.trim().parse().ok());
        addr.is_some()
    });
    addr.unwrap_or_else(|| panic!("no listening line:\n{}", text(path)))
}

/// SIGTERM, then a bounded wait for the exit.
fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut st = None;
    wait_until(T, || {
        st = child.try_wait().unwrap();
        st.is_some()
    });
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("autossh-echo ignored SIGTERM");
    }
}

#[test]
fn under_journald_a_silent_client_is_a_warning_and_lines_have_no_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    std::fs::File::create(&err).unwrap();
    let args = ["--listen", "127.0.0.1:0", "--silent-after", "1"];
    let mut child = spawn(&err, &dev_ino(&err), &args);
    let addr = listening(&err);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"gw1 autossh 77 5 watch me\r\n").unwrap();
    let warn = "<4>client gw1 pid 77 (watch me) silent for ";
    let warned = wait_until(T, || text(&err).contains(warn));
    stop(&mut child);
    let log = text(&err);
    assert!(warned, "{log}");
    assert!(log.contains("<6>autossh-echo "), "{log}");
    assert!(
        log.contains("\n<6>received SIGTERM, shutting down\n"),
        "{log}"
    );
    for line in log.lines() {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&prio),
            "{line:?}\n{log}"
        );
        assert!(
            !line.contains("[INFO]") && !line.contains("[WARN]"),
            "{log}"
        );
    }
}

#[test]
fn a_journal_stream_naming_another_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let other = dir.path().join("other");
    std::fs::File::create(&err).unwrap();
    std::fs::File::create(&other).unwrap();
    let mut child = spawn(&err, &dev_ino(&other), &["--listen", "127.0.0.1:0"]);
    listening(&err);
    stop(&mut child);
    let log = text(&err);
    assert!(log.contains("[INFO] received SIGTERM"), "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with("20") && !l.starts_with('<')),
        "{log}"
    );
}

#[test]
fn under_journald_a_bad_command_line_is_priority_err() {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    std::fs::File::create(&err).unwrap();
    let mut child = spawn(&err, &dev_ino(&err), &["--listen", "not-an-address"]);
    let mut st = None;
    assert!(wait_until(T, || {
        st = child.try_wait().unwrap();
        st.is_some()
    }));
    assert_eq!(st.and_then(|s| s.code()), Some(1));
    let log = text(&err);
    assert!(log.starts_with("<3>autossh-echo: "), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}

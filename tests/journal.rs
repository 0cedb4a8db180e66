//! Under systemd (`JOURNAL_STREAM` names stderr), log lines carry journald's `<N>` priority
//! instead of our timestamp and ident; elsewhere, and in a log file, 1.4g's format stays.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use test_support::*;

const T: Duration = Duration::from_secs(10);

/// `"<st_dev>:<st_ino>"` of `path`, as systemd sets `JOURNAL_STREAM`.
fn dev_ino(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// An empty file in the test dir, to be a process's stderr.
fn stderr_file(dir: &TestDir, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap();
    p
}

/// `YYYY/MM/DD HH:MM:SS autossh[pid]: ` at the start of the line (1.4g's format).
fn is_1_4g_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    digits(0..4)
        && line.get(4..5) == Some("/")
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(17..19)
        && line.get(19..28) == Some(" autossh[")
        && line.contains("]: ")
}

/// A first ssh refused by the server: info lines, then the error that ends autossh.
fn refused_run(
    dir: &TestDir,
    stderr: &Path,
    journal_stream: &str,
    extra: &[(&str, &Path)],
) -> Proc {
    let fake = FakeSsh::new(dir, &["stderr Permission denied (publickey). ; exit 255"]);
    let mut cmd = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("JOURNAL_STREAM", journal_stream)
        .stderr_file(stderr)
        .args(["-M", "0", "h"]);
    for (k, v) in extra {
        cmd = cmd.env(k, v);
    }
    let p = cmd.spawn(dir);
    assert_eq!(
        p.wait_timeout(T).and_then(|s| s.code()),
        Some(1),
        "{}",
        p.describe()
    );
    p
}

#[test]
fn under_journald_each_line_carries_its_priority_and_no_prefix_of_ours() {
    let dir = TestDir::new();
    let err = stderr_file(&dir, "journal.stderr");
    let p = refused_run(&dir, &err, &dev_ino(&err), &[]);
    let text = p.stderr_text();
    assert!(text.lines().count() >= 3, "{}", p.describe());
    for line in text.lines() {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&prio),
            "{line:?}\n{text}"
        );
        assert!(!line.contains("autossh["), "our own prefix in {line:?}");
    }
    assert!(text.contains("\n<6>starting ssh (count 1)\n"), "{text}");
    assert!(
        text.contains("<6>ssh: Permission denied (publickey).\n"),
        "{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("<3>ssh exited prematurely") && last.contains("configuration error"),
        "{text}"
    );
}

#[test]
fn a_journal_stream_naming_another_file_changes_nothing() {
    let dir = TestDir::new();
    let err = stderr_file(&dir, "plain.stderr");
    let other = stderr_file(&dir, "other");
    let p = refused_run(&dir, &err, &dev_ino(&other), &[]);
    let text = p.stderr_text();
    assert!(text.lines().count() >= 3, "{}", p.describe());
    assert!(text.lines().all(is_1_4g_line), "{text}");
    // Not a number pair at all: the same.
    let err2 = stderr_file(&dir, "garbage.stderr");
    let p = refused_run(&dir, &err2, "journal", &[]);
    assert!(
        p.stderr_text().lines().all(is_1_4g_line),
        "{}",
        p.describe()
    );
}

#[test]
fn under_journald_the_log_file_keeps_1_4g_format() {
    let dir = TestDir::new();
    let err = stderr_file(&dir, "journal.stderr");
    let log = dir.join("autossh.log");
    // AUTOSSH_DEBUG copies every line to stderr as well.
    let p = refused_run(
        &dir,
        &err,
        &dev_ino(&err),
        &[("AUTOSSH_LOGFILE", &log), ("AUTOSSH_DEBUG", Path::new("1"))],
    );
    let file = std::fs::read_to_string(&log).unwrap();
    assert!(file.contains("starting ssh (count 1)"), "{file}");
    assert!(file.lines().all(is_1_4g_line), "{file}");
    let text = p.stderr_text();
    assert!(text.contains("<6>starting ssh (count 1)\n"), "{text}");
    assert!(!text.contains("autossh["), "{text}");
}

#[test]
fn under_journald_a_fatal_error_is_priority_err() {
    let dir = TestDir::new();
    let err = stderr_file(&dir, "journal.stderr");
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_POLL", "soon")
        .env("JOURNAL_STREAM", dev_ino(&err))
        .stderr_file(&err)
        .args(["-M", "0", "h"])
        .spawn(&dir);
    assert_eq!(
        p.wait_timeout(T).and_then(|s| s.code()),
        Some(1),
        "{}",
        p.describe()
    );
    let text = p.stderr_text();
    assert!(
        text.starts_with("<3>autossh: ") && text.contains("AUTOSSH_POLL"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

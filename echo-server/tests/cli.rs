//! The binary's edges: bad input, --version, exit codes, signals.

mod common;

use common::{roundtrip, run_to_exit, wait_until, Echo};
use std::io::Write;
use std::time::Duration;
use test_support::json;

/// Exit 1, nothing on stdout, exactly one line on stderr containing `needle`.
fn assert_usage_error(args: &[&str], needle: &str) {
    let (status, out, err) = run_to_exit(args);
    assert_eq!(
        status.code(),
        Some(1),
        "{args:?}: {status:?}, stderr {err:?}"
    );
    assert_eq!(out, "", "{args:?}");
    assert_eq!(err.lines().count(), 1, "{args:?}: stderr {err:?}");
    assert!(
        err.starts_with("autossh-echo: "),
        "{args:?}: stderr {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} lacks {needle:?}"
    );
}

#[test]
fn non_loopback_without_allow_remote_exits_1_with_one_line() {
    assert_usage_error(&["--listen", "0.0.0.0:7007"], "--allow-remote");
    assert_usage_error(
        &["--listen", "127.0.0.1:7007", "--listen", "[::]:7007"],
        "--allow-remote",
    );
}

#[test]
fn bad_arguments_exit_1_with_one_line() {
    assert_usage_error(&["--listen", "localhost"], "--listen");
    assert_usage_error(&["--max-buffer", "0"], "--max-buffer");
    assert_usage_error(&["--idle-timeout", "soon"], "--idle-timeout");
    assert_usage_error(&["--no-such-flag"], "--no-such-flag");
    assert_usage_error(
        &["--status-file", "/nonexistent/dir/status.json"],
        "does not exist",
    );
}

#[test]
fn cannot_listen_exits_2_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, err) = run_to_exit(&["--listen", &addr]);
    assert_eq!(status.code(), Some(2), "stderr {err:?}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot listen on {addr}")),
        "stderr {err:?}"
    );
}

#[test]
fn version_prints_name_and_version() {
    let (status, out, err) = run_to_exit(&["--version"]);
    assert!(status.success(), "{err}");
    assert_eq!(out, format!("autossh-echo {}\n", env!("CARGO_PKG_VERSION")));
    let (status, out, _) = run_to_exit(&["--help"]);
    assert!(status.success());
    for flag in [
        "--listen",
        "--allow-remote",
        "--max-buffer",
        "--max-connections",
        "--idle-timeout",
        "--max-clients",
        "--silent-after",
        "--status-file",
        "--metrics-file",
        "--status-interval",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
}

#[test]
fn help_says_where_the_default_maximum_comes_from() {
    for flag in ["-h", "--help"] {
        let (status, out, _) = run_to_exit(&[flag]);
        assert!(status.success());
        assert!(
            out.contains("[default: derived from the open-files limit]"),
            "{flag}:\n{out}"
        );
    }
}

#[test]
fn sigterm_exits_0_and_writes_a_final_status() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    // Reports every hour: only the one at start and the final one can be seen here.
    let mut echo = Echo::start(&[
        "--status-file",
        status.to_str().unwrap(),
        "--status-interval",
        "3600",
    ]);
    assert!(wait_until(Duration::from_secs(10), || status.exists()));
    let mut s = echo.connect();
    roundtrip(&mut s, b"gw9 autossh 99 1 before shutdown\r\n");
    assert!(echo.wait_log("new client gw9 pid 99", Duration::from_secs(10)));
    echo.signal(libc::SIGTERM);
    let code = echo.wait_exit(Duration::from_secs(10)).map(|s| s.code());
    assert_eq!(code, Some(Some(0)), "log:\n{}", echo.log());
    assert!(
        echo.log().contains("received SIGTERM, shutting down"),
        "{}",
        echo.log()
    );
    let v = json::parse(&std::fs::read_to_string(&status).unwrap()).unwrap();
    let clients = v["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 1, "{v:?}");
    assert_eq!(clients[0]["host"], "gw9");
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(echo.addr()).is_err());
}

#[test]
fn sigint_exits_0() {
    let mut echo = Echo::start(&[]);
    roundtrip(&mut echo.connect(), b"x");
    echo.signal(libc::SIGINT);
    let code = echo.wait_exit(Duration::from_secs(10)).map(|s| s.code());
    assert_eq!(code, Some(Some(0)), "log:\n{}", echo.log());
}

#[test]
fn allow_remote_listens_with_a_warning() {
    let echo = Echo::start(&["--listen", "0.0.0.0:0", "--allow-remote"]);
    assert!(
        echo.log().contains("not a loopback address"),
        "{}",
        echo.log()
    );
    let port = echo.addr().port();
    let mut s = common::connect(([127, 0, 0, 1], port).into());
    s.write_all(b"").unwrap();
    roundtrip(&mut s, b"through any address\n");
}

//! Who probes us, through the real binary: the status file, the metrics file, silence warnings.

mod common;

use common::{wait_until, Echo};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use test_support::json;

/// The status file, once it parses and `ok` holds for it.
fn status_when(path: &Path, ok: impl Fn(&Value) -> bool) -> Option<Value> {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = std::fs::read_to_string(path)
            .ok()
            .map(|t| json::parse(&t).unwrap_or_else(|e| panic!("invalid JSON ({e}): {t}")))
            .filter(&ok);
        found.is_some()
    });
    found
}

fn client<'a>(status: &'a Value, host: &str) -> Option<&'a Value> {
    status["clients"]
        .as_array()?
        .iter()
        .find(|c| c["host"] == host)
}

/// `v[key]`, which must be a non-negative integer.
fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} is no count in {v}"))
}

#[test]
fn status_and_metrics_files_list_the_probing_clients() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let metrics = dir.path().join("autossh_echo.prom");
    let echo = Echo::start(&[
        "--status-file",
        status.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--status-interval",
        "1",
    ]);
    let mut a = echo.connect();
    // Classic autossh 1.4g, empty message; junk; an overlong line; ours, with quotes and a
    // backslash to escape; then the classic client again, split across writes.
    a.write_all(b"gw-classic autossh 4242 1804289383 \r\n")
        .unwrap();
    a.write_all(b"GET / HTTP/1.0\r\nnot a probe at all\r\n")
        .unwrap();
    let mut long = b"longhost autossh 1 2 ".to_vec();
    long.extend(vec![b'x'; 600]);
    long.extend_from_slice(b"\r\n");
    a.write_all(&long).unwrap();
    let mut b = echo.connect();
    b.write_all(
        b"lap\"top\\1 autossh 31337 7 1700000000123 0123456789abcdef db \"main\" tunnel\r\n",
    )
    .unwrap();
    a.write_all(b"gw-classic autossh 4242 99 ").unwrap();
    a.write_all(b"second\r\n").unwrap();

    let s = status_when(&status, |s| {
        client(s, "gw-classic").is_some_and(|c| c["probes"] == 2)
            && client(s, "lap\"top\\1").is_some()
    })
    .unwrap_or_else(|| panic!("clients missing: {:?}", std::fs::read_to_string(&status)));

    assert_eq!(s["version"], 1);
    assert!(count(&s, "generated_at") > 1_600_000_000);
    assert_eq!(s["listen"][0], echo.addr().to_string());
    assert_eq!(s["connections"], 2);
    assert_eq!(s["refused_total"], 0);
    assert_eq!(
        s["clients"].as_array().map(Vec::len),
        Some(2),
        "junk and overlong lines are no clients: {s:?}"
    );

    let c = client(&s, "gw-classic").unwrap();
    let mut keys: Vec<&str> = c
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "first_seen",
            "format",
            "host",
            "last_seen",
            "message",
            "peer",
            "pid",
            "probes",
            "progname",
            "silent"
        ]
    );
    assert_eq!(c["pid"], 4242);
    assert_eq!(c["progname"], "autossh");
    assert_eq!(c["format"], "classic");
    assert_eq!(c["message"], "second");
    assert_eq!(c["silent"], false);
    assert!(count(c, "first_seen") <= count(c, "last_seen"));
    assert!(
        c["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{c}"
    );

    let r = client(&s, "lap\"top\\1").unwrap();
    assert_eq!(r["pid"], 31337);
    assert_eq!(r["format"], "autossh-rs");
    assert_eq!(r["message"], "db \"main\" tunnel");
    assert_eq!(r["probes"], 1);

    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        text = std::fs::read_to_string(&metrics).unwrap_or_default();
        text.contains("autossh_echo_client_probes_total{host=\"gw-classic\",pid=\"4242\"} 2")
    });
    assert!(ok, "metrics:\n{text}");
    for line in [
        "autossh_echo_connections 2",
        "autossh_echo_connections_refused_total 0",
        "autossh_echo_clients 2",
        "autossh_echo_client_probes_total{host=\"lap\\\"top\\\\1\",pid=\"31337\"} 1",
        "autossh_echo_client_silent{host=\"gw-classic\",pid=\"4242\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let last_seen = format!(
        "autossh_echo_client_last_seen_seconds{{host=\"gw-classic\",pid=\"4242\"}} {}",
        count(c, "last_seen")
    );
    assert!(
        text.lines().any(|l| l == last_seen),
        "no {last_seen:?} in\n{text}"
    );
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            l.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
            "bad sample {l:?}"
        );
    }
    // Only the two files: the temporary ones were renamed over them.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.contains(".tmp."))
        .collect();
    names.sort();
    assert_eq!(names, ["autossh_echo.prom", "status.json"]);
}

#[test]
fn silence_is_warned_once_and_the_return_logged() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    // Silent after 2 s, reports every 1 s: some report falls between the return and the next
    // silence.
    let echo = Echo::start(&[
        "--silent-after",
        "2",
        "--status-file",
        status.to_str().unwrap(),
        "--status-interval",
        "1",
    ]);
    let mut s = echo.connect();
    s.write_all(b"gw1 autossh 77 5 watch me\r\n").unwrap();
    let warn = "client gw1 pid 77 (watch me) silent for ";
    assert!(
        echo.wait_log(warn, Duration::from_secs(10)),
        "log:\n{}",
        echo.log()
    );
    assert!(echo.log().contains("WARN"), "log:\n{}", echo.log());
    // Silent in the status file; wait for two more reports (over a second): still one warning.
    let first = status_when(&status, |v| {
        client(v, "gw1").is_some_and(|c| c["silent"] == true)
    })
    .expect("status never showed the client silent");
    let t0 = count(&first, "generated_at");
    status_when(&status, |v| count(v, "generated_at") >= t0 + 2).expect("status not rewritten");
    assert_eq!(echo.log().matches(warn).count(), 1, "log:\n{}", echo.log());

    // It comes back: one INFO line, not silent any more.
    s.write_all(b"gw1 autossh 77 6 watch me\r\n").unwrap();
    assert!(
        echo.wait_log(
            "client gw1 pid 77 (watch me) is back after ",
            Duration::from_secs(10)
        ),
        "log:\n{}",
        echo.log()
    );
    status_when(&status, |v| {
        client(v, "gw1").is_some_and(|c| c["silent"] == false)
    })
    .expect("status still shows the client silent");
    // And a new silence is a new warning.
    assert!(wait_until(Duration::from_secs(10), || echo
        .log()
        .matches(warn)
        .count()
        == 2));
}

#[test]
fn report_files_are_readable_by_others_under_umask_0077() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let metrics = dir.path().join("autossh_echo.prom");
    // As under a unit's UMask=0077: node_exporter (another user) must still read the metrics.
    let _echo = Echo::start_with_umask(
        0o077,
        &[
            "--status-file",
            status.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || status.exists()
        && metrics.exists()));
    for f in [&status, &metrics] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{} has mode {mode:o}", f.display());
    }
}

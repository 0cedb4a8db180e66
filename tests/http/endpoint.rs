//! `/healthz`, `/metrics`, `/status` and `autossh health` against running tunnels.

use super::rig::*;
use super::single::Single;
use super::web;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::*;

#[test]
fn healthz_turns_503_when_the_tunnel_goes_down_and_200_when_it_is_back() {
    let s = Single::start(&[]);
    let a = web::get(s.http, "/healthz").unwrap();
    assert_eq!(
        a.body, "{\"up\": true, \"tunnels\": 1, \"down\": []}\n",
        "{a:?}"
    );
    assert!(a.head.contains("Content-Type: application/json"), "{a:?}");

    // A scrape now: /metrics is kept for a second, unless a tunnel changes state.
    let m = web::get(s.http, "/metrics").unwrap().body;
    assert!(m.contains("\nautossh_up 1\n"), "{m}");

    // Every server session killed: ssh ends at once, autossh sees the tunnel down.
    let killed = s.sshd.stop_sessions(Signal::SIGKILL);
    assert!(killed > 0, "no session to kill\n{}", s.story());
    let took = s.wait_healthz(503, Duration::from_secs(5), "down");
    let m = web::get(s.http, "/metrics").unwrap().body;
    assert!(
        m.contains("\nautossh_up 0\n"),
        "/metrics still says up:\n{m}"
    );
    assert!(
        took <= Duration::from_secs(1),
        "503 only {took:?} after the kill\n{}",
        s.story()
    );
    let a = web::get(s.http, "/healthz").unwrap();
    let doc = test_support::json::parse(a.body.trim()).unwrap_or_else(|e| panic!("{e}: {a:?}"));
    let down = doc
        .get("down")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(down.len(), 1, "{a:?}");
    assert_eq!(
        down[0].get("state").and_then(|v| v.as_str()),
        Some("down"),
        "{a:?}"
    );
    assert!(
        down[0].get("down_for_s").and_then(|v| v.as_f64()).is_some(),
        "{a:?}"
    );

    // Back: a request goes through again, and /healthz says so within a second.
    assert!(
        wait_until(Duration::from_secs(20), || tunnel_works(s.tunnel)),
        "never back\n{}",
        s.story()
    );
    let took = s.wait_healthz(200, Duration::from_secs(5), "back");
    assert!(
        took <= Duration::from_secs(1),
        "200 only {took:?} after it worked\n{}",
        s.story()
    );
    let http = s.http;
    s.finish();
    assert!(
        web::get(http, "/healthz").is_err(),
        "the endpoint outlived autossh"
    );
}

/// The sample lines of a Prometheus text, values left out (they move with time).
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_string()))
        .collect()
}

fn promtool() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/promtool.sh"))
        .env("CARGO_TARGET_DIR", format!("{root}/target"))
        .output()
        .expect("bash scripts/promtool.sh");
    assert!(out.status.success(), "scripts/promtool.sh: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `promtool check metrics` on `text`: its complaints, empty when clean.
fn check_metrics(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("{}: {said}", out.status)
    }
}

#[test]
fn metrics_are_the_metrics_files_series_and_pass_promtool() {
    let mut rig = Rig::new();
    let ts = [
        rig.tunnel("alpha", Mon::Loop),
        rig.tunnel("beta", Mon::Zero),
    ];
    rig.write(&ts);
    let http = free_port();
    let file = rig.dir.join("autossh.prom");
    let at = format!("127.0.0.1:{http}");
    rig.start(&[
        ("AUTOSSH_HTTP", &at),
        ("AUTOSSH_METRICSFILE", file.to_str().unwrap()),
    ]);
    rig.wait_up(&ts);
    // Both say every tunnel is up.
    let up = |t: &str| t.contains("autossh_tunnels_up 2\n");
    assert!(wait_until(T, || std::fs::read_to_string(&file).is_ok_and(|t| up(&t))));
    let a = web::get(http, "/metrics").unwrap();
    assert_eq!(a.code, 200, "{a:?}");
    assert!(
        a.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{a:?}"
    );
    assert!(up(&a.body), "{}", a.body);
    let textfile = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        series(&a.body),
        series(&textfile),
        "HTTP vs file:\n{}\n{textfile}",
        a.body
    );
    assert!(
        a.body.contains("autossh_up{tunnel=\"beta\"} 1\n"),
        "{}",
        a.body
    );
    assert_eq!(
        check_metrics(&a.body),
        "",
        "promtool check metrics:\n{}",
        a.body
    );
    rig.finish();
}

/// (name, state) of each tunnel of a status.
fn states(list: &[St]) -> Vec<(String, String)> {
    list.iter()
        .map(|s| (s.name.clone(), s.state.clone()))
        .collect()
}

#[test]
fn status_healthz_per_tunnel_and_autossh_health_name_the_tunnel_that_is_not_up() {
    let mut rig = Rig::new();
    let stranger = rig.dir.join("stranger_key");
    keygen(&stranger, "not-authorized");
    // Its own gate: Permission denied on the first run is the end of it (failed).
    let beta = rig
        .tunnel_with_key("beta", Mon::Zero, &stranger)
        .key("gatetime = 30");
    let ts = [rig.tunnel("alpha", Mon::Zero), beta];
    rig.write(&ts);
    let http = free_port();
    let at = format!("127.0.0.1:{http}");
    rig.start(&[("AUTOSSH_HTTP", &at)]);
    rig.wait_up(&ts[..1]);
    rig.wait_status(UP, "beta failed", |v| {
        v.iter().any(|s| s.name == "beta" && s.state == "failed")
    });

    let a = web::get(http, "/status").unwrap();
    let over_http = parse_status(&a.body).unwrap_or_else(|e| panic!("{e}: {a:?}"));
    let listed = rig.status().unwrap();
    assert_eq!(
        states(&over_http),
        states(&listed),
        "/status vs autossh status --json"
    );

    let a = web::get(http, "/healthz").unwrap();
    assert_eq!(a.code, 503, "{a:?}");
    assert!(
        a.body.contains("\"name\": \"beta\", \"state\": \"failed\""),
        "{a:?}"
    );
    assert!(!a.body.contains("alpha"), "{a:?}");
    assert_eq!(web::code(http, "/healthz?tunnel=alpha"), Some(200));
    assert_eq!(web::code(http, "/healthz?tunnel=beta"), Some(503));
    assert_eq!(web::code(http, "/healthz?tunnel=gamma"), Some(404));

    // autossh health: the control socket without AUTOSSH_HTTP, the endpoint with it.
    assert_eq!(rig.ctl(&["health", "alpha"]).code, Some(0));
    let out = rig.ctl(&["health"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("beta"), "{out:?}");
    let by_http = |args: &[&str]| {
        let cmd = Cmd::new(autossh_bin!())
            .name("health")
            .args(args)
            .env("AUTOSSH_HTTP", &at);
        run(&rig.dir, cmd)
    };
    let out = by_http(&["health", "alpha"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = by_http(&["health", "beta"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("\"failed\""), "{out:?}");
    rig.finish();
}

#[test]
fn health_over_http_fails_when_nobody_listens() {
    let dir = TestDir::new();
    let at = format!("127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let out = run(
        &dir,
        Cmd::new(autossh_bin!())
            .args(["health"])
            .env("AUTOSSH_HTTP", &at),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains(&at), "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(6));
}

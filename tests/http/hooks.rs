//! `AUTOSSH_HOOK`: run on each change with the tunnel, the state, the reason and how long it
//! was down; a hook that hangs is killed after 10 s (its children too) and holds up nothing.

use super::rig::*;
use super::single::Single;
use super::web;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_support::*;

/// A hook script in `dir` that runs `pre` then appends `TUNNEL|STATE|REASON|DOWN_FOR` to
/// `dir/heard`.
fn hook(dir: &Path, pre: &str) -> PathBuf {
    let p = dir.join("hook.sh");
    let heard = dir.join("heard");
    let text = format!(
        "#!/bin/sh\n{pre}\necho \"$AUTOSSH_TUNNEL|$AUTOSSH_STATE|$AUTOSSH_REASON|$AUTOSSH_DOWN_FOR\" >> {}\n",
        heard.display()
    );
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// What the hook heard so far: one `[tunnel, state, reason, down_for]` per run.
fn heard(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("heard"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn states(h: &[Vec<String>]) -> Vec<&str> {
    h.iter().map(|l| l[1].as_str()).collect()
}

#[test]
fn the_hook_hears_up_down_up_stopping_stopped_with_its_environment() {
    let d = tempfile::tempdir().unwrap();
    let program = hook(d.path(), "");
    let s = Single::start(&[("AUTOSSH_HOOK", program.to_str().unwrap())]);
    assert!(
        wait_until(T, || states(&heard(d.path())) == ["up"]),
        "{:?}\n{}",
        heard(d.path()),
        s.story()
    );
    assert!(s.sshd.stop_sessions(Signal::SIGKILL) > 0);
    let back = |h: &[Vec<String>]| states(h) == ["up", "down", "up"];
    assert!(
        wait_until(UP, || back(&heard(d.path()))),
        "{:?}\n{}",
        heard(d.path()),
        s.story()
    );
    let h = heard(d.path());
    assert_eq!(h[0][..3], ["", "up", ""], "the first up: no reason");
    let took: f64 = h[0][3].parse().unwrap();
    assert!(
        took < 20.0,
        "the first up's DOWN_FOR is how long it took to come up: {h:?}"
    );
    assert!(!h[1][2].is_empty(), "down without a reason: {h:?}");
    let down_for: f64 = h[2][3].parse().unwrap();
    assert!(down_for > 0.0 && down_for < 20.0, "{h:?}");
    s.finish();
    let h = heard(d.path());
    assert_eq!(
        states(&h),
        ["up", "down", "up", "stopping", "stopped"],
        "{h:?}"
    );
}

#[test]
fn a_hook_that_hangs_is_killed_after_10_s_and_holds_nothing_up() {
    let d = tempfile::tempdir().unwrap();
    let pid_file = d.path().join("sleep.pid");
    let pre = format!(
        "if [ \"$AUTOSSH_STATE\" = up ]; then sleep 600 & echo $! > {}; wait; fi",
        pid_file.display()
    );
    let program = hook(d.path(), &pre);
    let s = Single::start(&[("AUTOSSH_HOOK", program.to_str().unwrap())]);
    assert!(wait_until(T, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|p| p.ends_with('\n'))));
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t0 = Instant::now();
    // The loop goes on meanwhile: /healthz answers at once, every 200 ms.
    while !s.log().contains("killed after 10 s") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "never killed\n{}",
            s.story()
        );
        let t = Instant::now();
        assert_eq!(web::code(s.http, "/healthz"), Some(200), "{}", s.story());
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "/healthz took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(8),
        "killed early: {:?}",
        t0.elapsed()
    );
    assert!(
        wait_until(T, || !process_exists(sleeper) || is_zombie(sleeper)),
        "the hook's child {sleeper} outlived the kill"
    );
    s.finish();
    assert_eq!(states(&heard(d.path())), ["stopping", "stopped"]);
}

#[test]
fn with_many_tunnels_the_hook_hears_each_by_name() {
    let mut rig = Rig::new();
    let d = tempfile::tempdir().unwrap();
    let program = hook(d.path(), "");
    let stranger = rig.dir.join("stranger_key");
    keygen(&stranger, "not-authorized");
    let beta = rig
        .tunnel_with_key("beta", Mon::Zero, &stranger)
        .key("gatetime = 30");
    let ts = [rig.tunnel("alpha", Mon::Loop), beta];
    rig.write(&ts);
    rig.start(&[("AUTOSSH_HOOK", program.to_str().unwrap())]);
    rig.wait_up(&ts[..1]);
    let both = |h: &[Vec<String>]| {
        h.iter().any(|l| l[0] == "alpha" && l[1] == "up")
            && h.iter().any(|l| l[0] == "beta" && l[1] == "failed")
    };
    assert!(
        wait_until(UP, || both(&heard(d.path()))),
        "{:?}\n{}",
        heard(d.path()),
        rig.story()
    );
    let h = heard(d.path());
    let failed = h.iter().find(|l| l[0] == "beta").unwrap();
    assert!(failed[2].contains("Permission denied"), "{h:?}");
    assert_eq!(
        h.iter().filter(|l| l[0] == "beta").count(),
        1,
        "beta: one change: {h:?}"
    );
    rig.finish();
    let h = heard(d.path());
    let alpha: Vec<&str> = h
        .iter()
        .filter(|l| l[0] == "alpha")
        .map(|l| l[1].as_str())
        .collect();
    assert_eq!(alpha, ["up", "stopping", "stopped"], "{h:?}");
}

/// A receiver of HTTP POSTs on 127.0.0.1: each body, answered 200.
fn receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten().take(20) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = c.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if text.ends_with('}') {
                    break;
                }
            }
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let text = String::from_utf8_lossy(&got).into_owned();
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
            if tx.send(body.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn the_webhook_example_posts_each_change_as_json() {
    let (port, bodies) = receiver();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/hooks/webhook.sh");
    let url = format!("http://127.0.0.1:{port}/hook");
    let s = Single::start(&[("AUTOSSH_HOOK", script), ("AUTOSSH_WEBHOOK_URL", &url)]);
    let body = bodies
        .recv_timeout(T)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.story()));
    let doc = test_support::json::parse(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        doc.get("state").and_then(|v| v.as_str()),
        Some("up"),
        "{body}"
    );
    assert_eq!(
        doc.get("tunnel").and_then(|v| v.as_str()),
        Some(""),
        "{body}"
    );
    assert!(
        doc.get("down_for_s").and_then(|v| v.as_f64()).is_some(),
        "{body}"
    );
    // The "up" hook has posted; it may still be running (curl ends after the answer), and
    // changes while a hook runs are coalesced: let it end first, so "stopping" is its own.
    let hook_done = wait_until(T, || {
        !s.autossh
            .descendants()
            .iter()
            .any(|&p| test_support::cmdline_string(p).contains("webhook.sh"))
    });
    assert!(hook_done, "the up hook still runs\n{}", s.story());
    s.finish();
    let mut states = Vec::new();
    while let Ok(b) = bodies.recv_timeout(Duration::from_secs(5)) {
        let doc = test_support::json::parse(&b).unwrap_or_else(|e| panic!("{e}: {b}"));
        states.push(
            doc.get("state")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string(),
        );
        if states.len() == 2 {
            break;
        }
    }
    assert_eq!(states, ["stopping", "stopped"]);
}

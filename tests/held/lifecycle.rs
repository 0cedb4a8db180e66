//! The held forwards over autossh's own life: on demand, socket activation, the maximum
//! lifetime, a killed autossh (nothing of it left), and the figures it reports.

use crate::rig::*;
use std::time::Duration;

#[test]
fn on_demand_ssh_starts_with_the_first_connection_and_stops_when_idle() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    let tunnel = free_port();
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_ON_DEMAND", "yes")
        .env("AUTOSSH_IDLE_TIME", "2")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
        .args(sshd.client_args())
        .spawn(&dir);
    let story = || format!("{}\n{}", autossh.describe(), sshd.log());
    assert!(autossh.wait_for_stderr("on demand: ssh starts with the first connection", UP));
    assert!(autossh.ssh_children().is_empty(), "no ssh yet\n{}", story());
    // The first connection waits for the ssh it starts.
    let mut c = Client::connect(tunnel).expect("autossh listens");
    c.greeted_and_echoed("first\n")
        .unwrap_or_else(|e| panic!("{e}\n{}", story()));
    assert_eq!(autossh.ssh_children().len(), 1, "{}", story());
    drop(c);
    must(UP, "ssh stopped once idle", story, || {
        autossh.stderr_text().contains("no connection for 2 s") && autossh.ssh_children().is_empty()
    });
    let mut again = Client::connect(tunnel).unwrap();
    again
        .greeted_and_echoed("again\n")
        .unwrap_or_else(|e| panic!("{e}\n{}", story()));
    drop(again);
    autossh.signal(Signal::SIGTERM);
    assert_eq!(autossh.wait_timeout(UP).and_then(|s| s.code()), Some(0));
}

#[test]
fn systemd_socket_activation_hands_autossh_its_listener() {
    let Some(activate) = [
        "/usr/bin/systemd-socket-activate",
        "/lib/systemd/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("skipped: no systemd-socket-activate");
        return;
    };
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    let tunnel = free_port();
    let autossh = Cmd::new(activate)
        .args([
            "-l",
            &format!("127.0.0.1:{tunnel}"),
            "-E",
            "AUTOSSH_GATETIME=0",
        ])
        .arg(autossh_bin!())
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("127.0.0.1:{tunnel}:127.0.0.1:{}", service.port()))
        .args(sshd.client_args())
        .spawn(&dir);
    let story = || format!("{}\n{}", autossh.describe(), sshd.log());
    // The activator listens before autossh runs: the first connection it takes waits.
    let mut early = None;
    must(UP, "the activator listening", story, || {
        early = Client::connect(tunnel).ok();
        early.is_some()
    });
    let mut early = early.unwrap();
    early
        .greeted_and_echoed("early\n")
        .unwrap_or_else(|e| panic!("{e}\n{}", story()));
    assert!(
        autossh
            .stderr_text()
            .contains("listening on what systemd passed"),
        "{}",
        story()
    );
    autossh.signal(Signal::SIGTERM);
    assert!(autossh.wait_timeout(UP).is_some(), "{}", story());
}

#[test]
fn at_its_maximum_lifetime_autossh_lets_open_connections_end_then_exits_0() {
    let rig = Rig::start(&[("AUTOSSH_MAXLIFETIME", "3"), ("AUTOSSH_DRAIN_TIME", "60")]);
    let mut open = Client::connect(rig.tunnel).unwrap();
    open.greeted_and_echoed("before\n").unwrap();
    rig.wait_log("maximum lifetime reached: taking no new connection");
    // New connections are not taken; the open one goes on.
    must(
        UP,
        "the listener closed",
        || rig.story(),
        || std::net::TcpStream::connect(("127.0.0.1", rig.tunnel)).is_err(),
    );
    open.echo("after the lifetime\n").unwrap();
    assert!(rig.autossh.is_running(), "{}", rig.story());
    drop(open);
    let st = rig
        .autossh
        .wait_timeout(UP)
        .expect("exits once the connection ended");
    assert_eq!(st.code(), Some(0), "{}", rig.story());
}

#[test]
fn sigkill_of_autossh_leaves_no_process_and_no_socket_file() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    let sock = dir.join("app.sock");
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{}:127.0.0.1:{}", sock.display(), service.port()))
        .args(sshd.client_args())
        .spawn(&dir);
    assert!(
        autossh.wait_for_stderr("tunnel up", UP),
        "{}",
        autossh.describe()
    );
    let pid = autossh.pid();
    assert_eq!(private_dirs_of(pid).len(), 1, "{}", autossh.describe());
    assert!(sock.exists());
    autossh.signal(Signal::SIGKILL);
    assert!(autossh.wait_timeout(UP).is_some());
    must(
        Duration::from_secs(5),
        "the private directory and the socket gone",
        || format!("{:?} {}", private_dirs_of(pid), sock.exists()),
        || private_dirs_of(pid).is_empty() && !sock.exists(),
    );
    let marker = dir.marker();
    drop(autossh);
    drop(sshd);
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

#[test]
fn the_figures_count_connections_and_bytes() {
    let dir_files = TestDir::new();
    let status = dir_files.join("status.json");
    let metrics = dir_files.join("metrics.prom");
    let rig = Rig::start(&[
        ("AUTOSSH_STATUSFILE", &status.display().to_string()),
        ("AUTOSSH_METRICSFILE", &metrics.display().to_string()),
    ]);
    let mut c = Client::connect(rig.tunnel).unwrap();
    c.greeted_and_echoed("counted\n").unwrap();
    let read = || std::fs::read_to_string(&status).unwrap_or_default();
    let field = |v: &serde_json::Value, k: &str| v["connections"][k].as_u64().unwrap_or(u64::MAX);
    // The file is refreshed every few seconds: the figures show once it is.
    must(
        UP,
        "this connection counted in the status file",
        read,
        || {
            test_support::json::parse(&read()).is_ok_and(|v| {
                field(&v, "open") == 1
                    && field(&v, "relayed_total") >= 2
                    && field(&v, "bytes_to_server") >= 8
                    && field(&v, "bytes_to_client") >= GREETING.len() as u64 + 8
            })
        },
    );
    let v = test_support::json::parse(&read()).unwrap();
    assert_eq!(field(&v, "waiting"), 0, "{v}");
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(m.contains("autossh_connections_open 1"), "{m}");
    assert!(
        m.contains("autossh_relay_bytes_total{direction=\"to_server\"}"),
        "{m}"
    );
    drop(c);
    rig.finish();
}

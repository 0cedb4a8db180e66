//! Reverse tunnels (`-R`, `-M 0`) against a real sshd in a network namespace made by the
//! test: an ssh started into a black hole is replaced once the server answers again, and a
//! remote port held on the server by a dead session of the tunnel (the client's address
//! changed; the server never saw a reset) is retried at a steady pace until it is free, in a
//! state of its own (log, status file, metrics file, hook).
//!
//! Timing goals (back within 1.5 s of a lift, within 1 s of the port's release) are measured
//! in `bench/field_bench.py` (cases `reverse` and `held`); these tests bound them loosely,
//! well below what the old behaviour took.

mod netns;

use netns::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_support::*;

/// The echo service behind the reverse tunnel (127.0.0.1 in the client namespace).
const SERVICE_PORT: u16 = 7007;
/// The remote forward's port (127.0.0.1 in the server namespace).
const REMOTE_PORT: u16 = 8022;
const STARTING: &str = "starting ssh (count";
const UP: Duration = Duration::from_secs(20);

/// sshd with `client_alive` (sshd_config lines), autossh `-M 0 -R` with ServerAlive
/// 2 s × 2 and LogLevel ERROR (ssh's "Timeout, server not responding" unsaid), the
/// tunnel proven from the server's side. `None`: namespaces cannot be made (skip).
fn start_rig(name: &str, client_alive: &str, env: &[(&str, &str)]) -> Option<NsTunnel> {
    let net = TestNet::create_or_skip()?;
    let dir = TestDir::named(name);
    let sshd = NsSshd::start_with(&dir, &net, client_alive);
    let echo = EchoService::start_in(net.cli(), SERVICE_PORT);
    let mut cmd = Cmd::new("ip")
        .args(["netns", "exec", net.cli()])
        .arg(autossh_bin!())
        .args(["-M", "0", "-N", "-R"])
        .arg(format!("127.0.0.1:{REMOTE_PORT}:127.0.0.1:{SERVICE_PORT}"))
        .args(["-F", "/dev/null", "-i"])
        .arg(sshd.client_key())
        .args(["-o", "StrictHostKeyChecking=no", "-o"])
        .args(["UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ServerAliveInterval=2"])
        .args(["-o", "ServerAliveCountMax=2", "-o", "LogLevel=ERROR"])
        .arg(sshd.destination())
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_LOGLEVEL", "7")
        .env_remove("AUTOSSH_POLL")
        .name("autossh");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let autossh = cmd.spawn(&dir);
    let rig = NsTunnel {
        autossh,
        sshd,
        echo,
        net,
        dir,
    };
    let up = wait_until(UP, || tunnel_works_in(rig.net.srv(), REMOTE_PORT));
    assert!(up, "never up\n{}", rig.story());
    Some(rig)
}

/// A 14 s black hole: ssh ends on ServerAlive within about 6 s, saying nothing of why, and
/// its successor starts at once into the hole, its SYN retried at 1, 3, 7, 15 s. The server
/// (no ClientAlive, sshd's default) keeps the old session, and its port, until it hears of
/// that ssh's end. Once the server answers again, the ssh still connecting must be replaced
/// and the dead one's connection reset (the server frees the port): back well before the
/// next SYN or the orphan's next retransmission.
#[test]
fn a_reverse_tunnel_is_back_soon_after_a_black_hole_that_its_ssh_started_into() {
    let alive = "ClientAliveInterval 0\n";
    let Some(rig) = start_rig("reverse_black_hole", alive, &[]) else {
        return;
    };
    let starts = rig.log().matches(STARTING).count();
    let fault = rig.net.black_hole();
    let applied = fault.applied_at();
    let restarted = wait_until(Duration::from_secs(12), || {
        rig.log().matches(STARTING).count() > starts
    });
    assert!(restarted, "no ssh started in the hole\n{}", rig.story());
    let left = (applied + Duration::from_secs(14)).saturating_duration_since(Instant::now());
    std::thread::sleep(left);
    fault.lift();
    let back = time_until_tunnel_works(
        rig.net.srv(),
        REMOTE_PORT,
        Duration::from_millis(100),
        Duration::from_secs(20),
    );
    eprintln!("reverse tunnel back {back:?} after the lift");
    let back = back.unwrap_or_else(|| panic!("never back\n{}", rig.story()));
    assert!(
        back < Duration::from_secs(2),
        "back only {back:?} after the lift\n{}",
        rig.story()
    );
    assert!(
        rig.log().contains("while ssh (started"),
        "not replaced by the rule\n{}",
        rig.story()
    );
    assert!(
        rig.log()
            .contains("reset the connection of the ssh that ended in the outage"),
        "{}",
        rig.story()
    );
    rig.finish(UP);
}

/// A hook that appends `STATE|REASON` to `dir/heard`.
fn hook(dir: &Path) -> PathBuf {
    let p = dir.join("hook.sh");
    let heard = dir.join("heard");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$AUTOSSH_STATE|$AUTOSSH_REASON\" >> {}\n",
            heard.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Moves the client to 10.204.n.2 behind a black hole of its old address 10.203.n.2 (kept
/// until the end): nothing of the old connection, not even the FIN of its killed ssh,
/// reaches the server, which keeps the old session and its `-R` port until ClientAlive
/// (2 s × 2) gives up. The server gets 10.204.n.1/24 beside its own to answer the new one.
fn move_client_behind_a_hole(rig: &NsTunnel) -> Fault {
    let n = rig.net.n;
    let (cli, srv) = (rig.net.cli().to_string(), rig.net.srv().to_string());
    let (cli_if, srv_if) = (rig.net.cli_if().to_string(), rig.net.srv_if().to_string());
    let (old, new) = (format!("10.203.{n}.2"), format!("10.204.{n}.2"));
    rig.ip(
        &srv,
        &["addr", "add", &format!("10.204.{n}.1/24"), "dev", &srv_if],
    );
    let mut hole = Fault::new("the old address's black hole");
    hole.iptables(&cli, &["OUTPUT", "-s", &old, "-j", "DROP"]);
    hole.iptables(&cli, &["INPUT", "-d", &old, "-j", "DROP"]);
    rig.ip(&cli, &["addr", "add", &format!("{new}/24"), "dev", &cli_if]);
    rig.ip(&cli, &["addr", "del", &format!("{old}/30"), "dev", &cli_if]);
    let route = format!("10.203.{n}.1/32");
    rig.ip(&cli, &["route", "add", &route, "dev", &cli_if, "src", &new]);
    hole
}

#[test]
fn a_remote_port_held_by_a_dead_session_is_its_own_state_and_retried_until_free() {
    let d = tempfile::tempdir().unwrap();
    let program = hook(d.path());
    let status = d.path().join("status.json");
    let metrics = d.path().join("autossh.prom");
    let env = [
        ("AUTOSSH_HOOK", program.to_str().unwrap()),
        ("AUTOSSH_STATUSFILE", status.to_str().unwrap()),
        ("AUTOSSH_METRICSFILE", metrics.to_str().unwrap()),
    ];
    let alive = "ClientAliveInterval 2\nClientAliveCountMax 2\n";
    let Some(rig) = start_rig("reverse_port_held", alive, &env) else {
        return;
    };
    let hole = move_client_behind_a_hole(&rig);
    let moved = Instant::now();
    // The new ssh is refused the port: the state is port-held, said in every report.
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let held = wait_until(Duration::from_secs(10), || {
        read(&status).contains("\"state\": \"port-held\"")
            && read(&status).contains(&format!("\"port_held\": {{\"port\": {REMOTE_PORT}"))
            && read(&metrics).contains("autossh_remote_port_held 1")
    });
    assert!(
        held,
        "no port-held state\n{}\n{}",
        read(&status),
        rig.story()
    );
    let starts = rig.log().matches(STARTING).count();
    let held_at = Instant::now();
    // The server's ClientAlive ends the old session: its log says so; the port is free.
    let timeout = wait_until(Duration::from_secs(20), || {
        rig.sshd.log().contains("Timeout, client not responding")
    });
    assert!(timeout, "the old session never timed out\n{}", rig.story());
    let freed = Instant::now();
    let back = time_until_tunnel_works(
        rig.net.srv(),
        REMOTE_PORT,
        Duration::from_millis(100),
        Duration::from_secs(15),
    );
    eprintln!(
        "port held {:.1} s after the move; back {back:?} after the server let it go",
        freed.duration_since(moved).as_secs_f64()
    );
    let back = back.unwrap_or_else(|| panic!("never back\n{}", rig.story()));
    assert!(
        back < Duration::from_secs(3),
        "back only {back:?} after the port was freed\n{}",
        rig.story()
    );
    // A steady pace meanwhile: no backoff (0.5, 1, 2 ... s), no hammering either.
    let tries = rig.log().matches(STARTING).count() - starts;
    let spell = freed.duration_since(held_at).as_secs_f64();
    assert!(
        tries as f64 >= spell / 1.2 - 1.0 && tries as f64 <= spell / 0.5 + 2.0,
        "{tries} starts in {spell:.1} s\n{}",
        rig.story()
    );
    // One line says what holds the port and the server's fix, with numbers.
    let log = rig.log();
    assert_eq!(
        log.matches("is held on the server by").count(),
        1,
        "{}",
        rig.story()
    );
    assert!(
        log.contains("ClientAliveInterval 10 and ClientAliveCountMax 3"),
        "{}",
        rig.story()
    );
    let told = wait_until(Duration::from_secs(5), || {
        rig.log()
            .contains(&format!("remote port {REMOTE_PORT} is free again"))
    });
    assert!(told, "{}", rig.story());
    let up_again = wait_until(Duration::from_secs(10), || {
        let h = read(&d.path().join("heard"));
        h.lines().last().is_some_and(|l| l.starts_with("up|"))
            && h.contains(&format!("port-held|remote port {REMOTE_PORT} held"))
    });
    assert!(
        up_again,
        "{}\n{}",
        read(&d.path().join("heard")),
        rig.story()
    );
    drop(hole);
    rig.finish(UP);
}

//! The network under the client changes (a laptop or cloud instance gets a new address):
//! autossh watches the kernel's address and route changes (rtnetlink) and does not wait for
//! the next poll. A client and a server in network namespaces made by the test (veth pair),
//! autossh at default settings (AUTOSSH_POLL 600 s).

mod netns;

use netns::*;
use std::time::{Duration, Instant};
use test_support::*;

const TUNNEL_PORT: u16 = 8022;
const SERVICE_PORT: u16 = 7007;
const UP: Duration = Duration::from_secs(20);
/// The test's bound (the goal is 2 s; the run prints what it measured).
const BACK_BOUND: Duration = Duration::from_secs(4);

/// `None`: network namespaces cannot be made here (the test is skipped).
fn start_rig(name: &str) -> Option<NsTunnel> {
    let net = TestNet::create_or_skip()?;
    let dir = TestDir::named(name);
    let sshd = NsSshd::start(&dir, &net);
    let echo = EchoService::start_in(net.srv(), SERVICE_PORT);
    let autossh = sshd
        .autossh_in(&net, "0", TUNNEL_PORT, SERVICE_PORT)
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_LOGLEVEL", "7")
        .env_remove("AUTOSSH_POLL")
        .spawn(&dir);
    let rig = NsTunnel {
        autossh,
        sshd,
        echo,
        net,
        dir,
    };
    assert!(
        wait_until(UP, || rig.log().contains("tunnel up")
            && tunnel_works_in(rig.net.cli(), TUNNEL_PORT)),
        "never up\n{}",
        rig.story()
    );
    Some(rig)
}

/// The client's address changes on an idle tunnel: 10.203.n.2 goes, 10.204.n.2 comes (the
/// server gets 10.204.n.1/24 beside its own, so it can answer the new address). ssh's
/// connection from the old address is dead; the tunnel must work again within seconds,
/// not at the next poll (600 s) or ServerAlive (minutes).
#[test]
fn a_new_client_address_brings_the_tunnel_back_at_once() {
    let Some(rig) = start_rig("roaming_new_address") else {
        return;
    };
    let n = rig.net.n;
    let (cli, srv) = (rig.net.cli().to_string(), rig.net.srv().to_string());
    let (cli_if, srv_if) = (rig.net.cli_if().to_string(), rig.net.srv_if().to_string());
    rig.ip(
        &srv,
        &["addr", "add", &format!("10.204.{n}.1/24"), "dev", &srv_if],
    );
    rig.ip(
        &cli,
        &["addr", "add", &format!("10.204.{n}.2/24"), "dev", &cli_if],
    );
    let changed = Instant::now();
    rig.ip(
        &cli,
        &["addr", "del", &format!("10.203.{n}.2/30"), "dev", &cli_if],
    );
    rig.ip(
        &cli,
        &[
            "route",
            "add",
            &format!("10.203.{n}.1/32"),
            "dev",
            &cli_if,
            "src",
            &format!("10.204.{n}.2"),
        ],
    );
    // Idle: nobody uses the tunnel (a request through it would draw a probe by itself);
    // autossh must replace ssh on its own, and prove the new tunnel.
    let back = wait_until(Duration::from_secs(20), || {
        rig.log().matches("tunnel up").count() >= 2
    });
    let took = changed.elapsed();
    eprintln!(
        "tunnel up again {:.2} s after the address changed",
        took.as_secs_f64()
    );
    assert!(back, "tunnel never came back by itself\n{}", rig.story());
    assert!(
        took <= BACK_BOUND,
        "tunnel back only {:.2} s after the address changed\n{}",
        took.as_secs_f64(),
        rig.story()
    );
    assert!(rig.log().contains("went away"), "{}", rig.story());
    assert!(tunnel_works_in(&cli, TUNNEL_PORT), "{}", rig.story());
    rig.finish(UP);
}

/// Another interface coming up does not touch the path to the server: nothing restarts.
#[test]
fn another_interface_coming_up_restarts_nothing() {
    let Some(rig) = start_rig("roaming_other_interface") else {
        return;
    };
    let cli = rig.net.cli().to_string();
    // A veth pair inside the client's namespace (this kernel may lack the dummy driver),
    // with TEST-NET-1 on it: nothing is ever sent there.
    rig.ip(
        &cli,
        &[
            "link", "add", "asv0", "type", "veth", "peer", "name", "asv1",
        ],
    );
    rig.ip(&cli, &["addr", "add", "192.0.2.1/24", "dev", "asv0"]);
    rig.ip(&cli, &["link", "set", "asv1", "up"]);
    rig.ip(&cli, &["link", "set", "asv0", "up"]);
    assert!(
        wait_until(Duration::from_secs(10), || rig
            .log()
            .contains("network change: ssh's path unchanged")),
        "the change was not looked at\n{}",
        rig.story()
    );
    assert!(tunnel_works_in(&cli, TUNNEL_PORT), "{}", rig.story());
    assert!(
        !rig.log().contains("starting ssh (count 2)"),
        "{}",
        rig.story()
    );
    rig.finish(UP);
}

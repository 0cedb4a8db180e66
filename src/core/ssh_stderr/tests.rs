use super::*;

fn kind(line: &str) -> &'static str {
    match classify(line) {
        Some(Complaint::Config(_)) => "config",
        Some(Complaint::Network(_)) => "network",
        Some(Complaint::Ended(_)) => "ended",
        Some(Complaint::RemoteForwardFailed(_)) => "forward",
        Some(Complaint::ChannelRefused(_)) => "channel",
        Some(Complaint::StdioForwardFailed) => "stdio",
        None => "-",
    }
}

#[test]
fn openssh_messages() {
    assert_eq!(
        kind("root@10.0.0.1: Permission denied (publickey)."),
        "config"
    );
    assert_eq!(kind("Host key verification failed."), "config");
    assert_eq!(
        kind("ssh: Could not resolve hostname nosuch: Name or service not known"),
        "config"
    );
    assert_eq!(
        kind("ssh: Could not resolve hostname h: Temporary failure in name resolution"),
        "network"
    );
    assert_eq!(
        kind("ssh: connect to host 10.0.0.1 port 22: Connection refused"),
        "network"
    );
    assert_eq!(
        kind("ssh: connect to host h port 22: Connection timed out"),
        "network"
    );
    assert_eq!(
        kind("ssh: connect to host h port 22: No route to host"),
        "network"
    );
    assert_eq!(
        kind("ssh: connect to host h port 22: Network is unreachable"),
        "network"
    );
    assert_eq!(kind("Timeout, server 10.0.0.1 not responding."), "network");
    assert_eq!(
        kind("Warning: remote port forwarding failed for listen port 20000"),
        "forward"
    );
    assert_eq!(
        classify("Error: remote port forwarding failed for listen port 8080"),
        Some(Complaint::RemoteForwardFailed(8080))
    );
    assert_eq!(
        kind("Warning: Permanently added '[h]:22' (ED25519) to the list"),
        "-"
    );
    assert_eq!(
        kind("kex_exchange_identification: Connection closed by remote host"),
        "ended"
    );
    assert_eq!(kind("Connection closed by UNKNOWN port 65535"), "ended");
    assert_eq!(kind("Connection reset by 10.0.0.1 port 22"), "ended");
    assert_eq!(kind("Connection timed out during banner exchange"), "ended");
    assert_eq!(
        kind("channel 0: open failed: connect failed: Connection refused"),
        "channel"
    );
    assert_eq!(kind("stdio forwarding failed"), "stdio");
    assert_eq!(kind("Connection to 10.0.0.1 closed by remote host."), "-");
}

#[test]
fn lines_that_only_repeat_an_outage() {
    let repeats = |l: &str| classify(l).is_some_and(|c| c.repeats_an_outage());
    assert!(repeats(
        "channel 0: open failed: connect failed: Connection refused"
    ));
    assert!(repeats("stdio forwarding failed"));
    assert!(repeats(KEX_CLOSED));
    assert!(repeats(PROXY_CLOSED));
    assert!(repeats(
        "ssh: connect to host 10.0.0.1 port 22: Connection refused"
    ));
    assert!(!repeats("root@10.0.0.9: Permission denied (publickey)."));
    assert!(!repeats("bind [127.0.0.1]:8022: Address already in use"));
}

/// The reason one ssh failed, from its stderr lines in order.
fn reason(lines: &[&str], proxied: bool) -> Option<Reason> {
    let mut story = Story::default();
    for l in lines {
        if let Some(c) = classify(l) {
            story.hear(&c);
        }
    }
    story.reason(proxied)
}

fn target(jump: bool, why: &str) -> Option<Reason> {
    Some(Reason::TargetUnreachable {
        jump,
        why: why.into(),
    })
}

// What OpenSSH 9.2 prints through `-J jump` (or `ProxyCommand ssh -W %h:%p jump`).
const KEX_CLOSED: &str = "kex_exchange_identification: Connection closed by remote host";
const PROXY_CLOSED: &str = "Connection closed by UNKNOWN port 65535";

#[test]
fn the_target_refusing_the_jump_host_is_not_a_closed_connection() {
    let refused = "channel 0: open failed: connect failed: Connection refused";
    let lines = [
        "Warning: Permanently added '[127.0.0.1]:2201' (ED25519) to the list of known hosts.",
        refused,
        "stdio forwarding failed",
        KEX_CLOSED,
        PROXY_CLOSED,
    ];
    assert_eq!(reason(&lines, true), target(true, refused));
    // Whether or not autossh knew about the proxy yet.
    assert_eq!(reason(&lines, false), target(true, refused));
    // With LogLevel ERROR the jump host's "open failed" line is not printed.
    assert_eq!(
        reason(&["stdio forwarding failed", KEX_CLOSED], true),
        target(true, "stdio forwarding failed")
    );
}

#[test]
fn the_jump_host_down_is_network_trouble_named_by_its_own_line() {
    let down = "ssh: connect to host 127.0.0.1 port 2201: Connection refused";
    assert_eq!(
        reason(&[down, KEX_CLOSED, PROXY_CLOSED], true),
        Some(Reason::Network(down.into()))
    );
    let dns = "ssh: Could not resolve hostname jump: Temporary failure in name resolution";
    assert_eq!(
        reason(&[dns, KEX_CLOSED, PROXY_CLOSED], true),
        Some(Reason::Network(dns.into()))
    );
}

#[test]
fn configuration_errors_win_even_when_said_by_the_jump_host() {
    let denied = "root@127.0.0.1: Permission denied (publickey).";
    assert_eq!(
        reason(&[denied, KEX_CLOSED, PROXY_CLOSED], true),
        Some(Reason::Config(denied.into()))
    );
    for refusal in [
        "channel 0: open failed: administratively prohibited: open failed",
        "channel 0: open failed: connect failed: Name or service not known",
    ] {
        assert_eq!(
            reason(&[refusal, "stdio forwarding failed", KEX_CLOSED], true),
            Some(Reason::Config(format!(
                "the jump host cannot open the target: {refusal}"
            ))),
        );
    }
    // A temporary DNS failure on the jump host passes.
    let dns = "channel 0: open failed: connect failed: Temporary failure in name resolution";
    assert_eq!(
        reason(&[dns, "stdio forwarding failed", KEX_CLOSED], true),
        target(true, dns)
    );
}

#[test]
fn a_proxy_command_that_cannot_reach_the_target() {
    // nc-style proxies say why in their own words, then ssh sees no banner.
    let nc = "nc: connect to 10.0.0.9 port 22 (tcp) failed: Connection refused";
    assert_eq!(
        reason(&[nc, KEX_CLOSED, PROXY_CLOSED], true),
        target(false, nc)
    );
    let socat = "2026/11/28 02:54:12 socat[14463] E connect(5, AF=2 10.0.0.9:22, 16): \
                 Connection refused";
    assert_eq!(
        reason(&[socat, KEX_CLOSED, PROXY_CLOSED], true),
        target(false, socat)
    );
    // A proxy that says nothing.
    assert_eq!(reason(&[KEX_CLOSED], true), target(false, KEX_CLOSED));
    // Without a proxy the same lines are network trouble, as before.
    assert_eq!(
        reason(&[nc, KEX_CLOSED], false),
        Some(Reason::Network(nc.into()))
    );
    assert_eq!(
        reason(&[KEX_CLOSED], false),
        Some(Reason::Network(KEX_CLOSED.into()))
    );
}

#[test]
fn a_line_that_says_why_wins_over_one_that_says_the_connection_ended() {
    let timeout = "Timeout, server 10.0.0.1 not responding.";
    assert_eq!(
        reason(&[timeout, "Connection reset by 10.0.0.1 port 22"], false),
        Some(Reason::Network(timeout.into()))
    );
    // A user's forward refused on the way is no reason for the ssh to end.
    assert_eq!(
        reason(
            &["channel 3: open failed: connect failed: Connection refused"],
            false
        ),
        None
    );
    // A session that ends mid-way through a jump host: not "unreachable".
    assert_eq!(
        reason(&["Connection to 127.0.0.1 closed by remote host."], true),
        None
    );
}

#[test]
fn the_session_probes_refusals_are_told_from_a_users_failed_forward() {
    assert!(is_session_probe_refusal(
        "channel 3: open failed: connect failed: open failed"
    ));
    assert!(is_session_probe_refusal(
        "channel 12: open failed: administratively prohibited: open failed"
    ));
    assert!(!is_session_probe_refusal(
        "channel 3: open failed: connect failed: Connection refused"
    ));
    assert!(!is_session_probe_refusal(
        "channel : open failed: connect failed: open failed"
    ));
    assert!(!is_session_probe_refusal("Permission denied (publickey)."));
}

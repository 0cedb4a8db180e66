//! What reaches ssh: monitor forwards, the session probe, keepalives, ssh's own grammar.

use super::*;

fn argv_seen(args: &[&str]) -> Vec<String> {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], args);
    assert_eq!(exit_code(&p, &fake), 0, "{}", p.describe());
    without_session_probe(fake.runs().remove(0))
}

/// `-M 0`'s session probe forward (`-L <socket>:/dev/null/autossh-session-probe`) comes
/// first when it is on; these tests are about the user's arguments, so it is taken off.
fn without_session_probe(mut argv: Vec<String>) -> Vec<String> {
    if argv.len() >= 2 && argv[0] == "-L" && argv[1].ends_with(":/dev/null/autossh-session-probe") {
        argv.drain(..2);
    }
    argv
}

#[test]
fn m0_has_the_session_probe_unless_stdio_forwarding_or_turned_off() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["exit 0"]);
        let mut env = env.to_vec();
        env.push(("AUTOSSH_GATETIME", "0"));
        let p = autossh(&dir, &fake, &env, args);
        assert_eq!(exit_code(&p, &fake), 0, "{}", p.describe());
        fake.runs().remove(0)
    };
    let argv = run(&[], &["-M", "0", "-N", "host"]);
    assert_eq!(argv[0], "-L", "{argv:?}");
    assert!(
        argv[1].ends_with("/probe-1.sock:/dev/null/autossh-session-probe"),
        "{argv:?}"
    );
    let argv = run(&[], &["-M", "0", "-W", "db:5432", "host"]);
    assert!(
        !argv.iter().any(|a| a.contains("session-probe")),
        "{argv:?}"
    );
    let argv = run(
        &[("AUTOSSH_SESSION_PROBE", "no")],
        &["-M", "0", "-N", "host"],
    );
    assert!(
        !argv.iter().any(|a| a.contains("session-probe")),
        "{argv:?}"
    );
}

const KEEPALIVE: [&str; 10] = [
    "-o",
    "ServerAliveInterval=60",
    "-o",
    "ServerAliveCountMax=3",
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "ControlMaster=no",
    "-o",
    "ControlPath=none",
];

fn with_keepalive(rest: &[&str]) -> Vec<String> {
    KEEPALIVE
        .iter()
        .chain(rest)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn jump_host_bind_interface_and_stdio_forward_reach_ssh_intact() {
    assert_eq!(
        argv_seen(&["-M", "0", "-J", "jump", "-N", "host"]),
        with_keepalive(&["-J", "jump", "-N", "host"])
    );
    assert_eq!(
        argv_seen(&["-M", "0", "-B", "lo", "-W", "db:5432", "host"]),
        with_keepalive(&["-B", "lo", "-W", "db:5432", "host"])
    );
}

#[test]
fn remote_command_keeps_its_own_options() {
    assert_eq!(
        argv_seen(&["-M", "0", "host", "ls", "-l", "-M", "3"]),
        with_keepalive(&["host", "ls", "-l", "-M", "3"])
    );
}

#[test]
fn double_dash_and_arguments_with_spaces() {
    assert_eq!(
        argv_seen(&["-M0", "-o", "SendEnv=A B", "--", "host", "echo 'a b'"]),
        with_keepalive(&["-o", "SendEnv=A B", "--", "host", "echo 'a b'"])
    );
}

#[test]
fn loop_mode_adds_the_monitor_forwards() {
    let n = free_port_pair();
    let a = argv_seen(&[&format!("-M{n}"), "-N", "host"]);
    assert_eq!(
        a,
        [
            "-L".to_string(),
            format!("{n}:127.0.0.1:{n}"),
            "-R".into(),
            format!("{n}:127.0.0.1:{}", n + 1),
            "-o".into(),
            "ExitOnForwardFailure=yes".into(),
            "-o".into(),
            "ControlMaster=no".into(),
            "-o".into(),
            "ControlPath=none".into(),
            "-N".into(),
            "host".into(),
        ]
    );
}

#[test]
fn echo_mode_and_user_keepalive_settings() {
    let a = argv_seen(&["-M", "40000:7", "-o", "ExitOnForwardFailure=no", "host"]);
    assert_eq!(
        a,
        [
            "-L",
            "40000:127.0.0.1:7",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "ExitOnForwardFailure=no",
            "host"
        ]
    );
    let a = argv_seen(&["-M", "0", "-o", "ServerAliveInterval=5", "host"]);
    assert!(!a.contains(&"ServerAliveInterval=60".to_string()), "{a:?}");
}

#[test]
fn serveralive_variables_are_used() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let env = [
        ("AUTOSSH_GATETIME", "0"),
        ("AUTOSSH_SERVERALIVE_INTERVAL", "15"),
        ("AUTOSSH_SERVERALIVE_COUNT_MAX", "2"),
    ];
    let p = autossh(&dir, &fake, &env, &["-M", "0", "h"]);
    exit_code(&p, &fake);
    let a = fake.runs().remove(0);
    assert!(a.contains(&"ServerAliveInterval=15".to_string()), "{a:?}");
    assert!(a.contains(&"ServerAliveCountMax=2".to_string()), "{a:?}");
}

#[test]
fn without_a_monitor_port_a_free_pair_is_picked() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let p = autossh(&dir, &fake, &[("AUTOSSH_GATETIME", "0")], &["h"]);
    exit_code(&p, &fake);
    let a = fake.runs().remove(0);
    assert_eq!(a[0], "-L", "{a:?}");
    assert!(
        p.stderr_text().contains("no monitor port given"),
        "{}",
        p.describe()
    );
}

#[test]
fn autossh_port_variable_is_used_when_m_is_absent() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["exit 0"]);
    let env = [("AUTOSSH_GATETIME", "0"), ("AUTOSSH_PORT", "40000:7")];
    let p = autossh(&dir, &fake, &env, &["h"]);
    exit_code(&p, &fake);
    assert_eq!(fake.runs()[0][..2], ["-L", "40000:127.0.0.1:7"]);
}

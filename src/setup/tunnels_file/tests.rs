//! Unit tests of the tunnels file: what it yields, and every error with its file, line and tunnel.

use super::*;

fn env(_: &str) -> Option<OsString> {
    None
}

fn load(text: &str) -> Result<Vec<TunnelDef>, FileError> {
    parse("t.toml", text, &env)
}

/// The file, line, table and fault of a file's error at a line.
fn located(text: &str) -> (String, usize, Table, Fault) {
    match load(text).expect_err("an error") {
        FileError::At {
            file,
            line,
            table,
            fault,
        } => (file, line, table, *fault),
        e => panic!("not at a line: {e:?}"),
    }
}

fn err(text: &str) -> String {
    load(text).expect_err("an error").to_string()
}

#[test]
fn tunnels_with_defaults() {
    let defs = load(
        r#"
[defaults]
poll = 60
ssh_options = ["-o", "ServerAliveInterval=15"]

[tunnel.db]
ssh = "-N -L 5432:localhost:5432 'me@db host'"
monitor = "0"

[tunnel.cache]
ssh = ["-N", "-L", "6379:localhost:6379", "cache", "-p", "2222"]
monitor = 20000
poll = "30"
session_probe = false
"#,
    )
    .unwrap();
    assert_eq!(defs.len(), 2);
    let db = &defs[0];
    assert_eq!((db.name.as_str(), db.line), ("db", 6));
    assert_eq!(db.settings.poll.as_secs(), 60);
    assert_eq!(db.settings.monitor, Some(MonitorSpec::Off));
    assert_eq!(
        db.settings.ssh_args.last().unwrap(),
        &OsString::from("me@db host")
    );
    assert_eq!(db.settings.ssh_args[0], OsString::from("-o"));
    let cache = &defs[1];
    assert_eq!(cache.settings.poll.as_secs(), 30);
    assert!(!cache.settings.session_probe);
    assert_eq!(cache.settings.monitor, Some(MonitorSpec::Loop(20000)));
    assert_eq!(cache.server, "cache:2222");
}

#[test]
fn errors_name_file_line_and_tunnel() {
    let e = err("[tunnel.db]\nssh = \"h\"\npoll = \"x\"\n");
    assert!(
        e.starts_with("t.toml:3: tunnel \"db\": poll: invalid value"),
        "{e}"
    );
    let e = err("[tunnel.db]\nssh = \"h\"\nfoo = 1\n");
    assert!(
        e.starts_with("t.toml:3: tunnel \"db\": unknown key \"foo\""),
        "{e}"
    );
    let e = err("[tunnel.db]\nmonitor = 0\n");
    assert!(e.starts_with("t.toml:1: tunnel \"db\": no ssh"), "{e}");
    let e = err("[tunnel.db]\nssh = \"h\"\n[tunnel.db]\nssh = \"i\"\n");
    assert!(
        e.starts_with("t.toml:3: tunnel \"db\": duplicate key"),
        "{e}"
    );
    let e = err("[tunnel.db]\nssh = \"-f h\"\n");
    assert!(e.starts_with("t.toml:2: tunnel \"db\": ssh: -f"), "{e}");
    let e = err("[defaults]\nlogfile = \"/tmp/x\"\n[tunnel.db]\nssh = \"h\"\n");
    assert!(
        e.contains("t.toml:2: [defaults]: logfile is for the whole process"),
        "{e}"
    );
    let e = err("# nothing\n");
    assert!(e.contains("no tunnels"), "{e}");
    let e = err("[tunnel.\"a b\"]\nssh = \"h\"\n");
    assert!(e.contains("a name is"), "{e}");
}

#[test]
fn clashing_ports_are_refused() {
    let e =
        err("[tunnel.a]\nssh = \"-L 5432:x:1 h\"\n[tunnel.b]\nssh = \"-L 127.0.0.1:5432:y:2 h\"\n");
    assert!(
        e.contains("t.toml:3: tunnel \"b\": its forward would bind local port 5432, as tunnel \"a\"'s forward does"),
        "{e}"
    );
    let e =
        err("[tunnel.a]\nssh = \"h\"\nmonitor = 20000\n[tunnel.b]\nssh = \"h\"\nmonitor = 20001\n");
    assert!(e.contains("local port 20001"), "{e}");
    let e =
        err("[tunnel.a]\nssh = \"-D 20000 h\"\n[tunnel.b]\nssh = \"h\"\nmonitor = \"20000:7\"\n");
    assert!(
        e.contains("tunnel \"b\": its monitor would bind local port 20000"),
        "{e}"
    );
    // Distinct ports are fine.
    load("[tunnel.a]\nssh = \"-L 1:x:1 h\"\nmonitor = 20000\n[tunnel.b]\nssh = \"-L 2:x:1 h\"\nmonitor = 20002\n")
        .unwrap();
}

#[test]
fn a_bad_monitor_and_a_duplicate_name_are_placed() {
    let e = err("[tunnel.db]\nssh = \"h\"\nmonitor = \"abc\"\n");
    assert!(e.starts_with("t.toml:3: tunnel \"db\": monitor"), "{e}");
    let e = err("[tunnel.a]\nssh = \"h\"\n[tunnel.db]\nssh = \"h\"\n\n[tunnel.db]\nssh = \"i\"\n");
    assert!(
        e.starts_with("t.toml:6: tunnel \"db\": duplicate key"),
        "{e}"
    );
}

#[test]
fn each_tunnel_knows_the_ports_of_the_others() {
    let defs = load(
        "[tunnel.a]\nssh = \"-L 5000:x:1 h\"\nmonitor = 20000\n[tunnel.b]\nssh = \"-D 6000 h\"\nmonitor = \"21000:7\"\n",
    )
    .unwrap();
    assert_eq!(defs[0].others, vec![6000, 21000]);
    assert_eq!(defs[1].others, vec![5000, 20000, 20001, 20000]);
}

#[test]
fn a_bad_setting_is_named_by_its_key_at_its_line() {
    let (file, line, table, fault) = located("[tunnel.db]\nssh = \"h\"\npoll = \"x\"\n");
    assert_eq!(
        (file.as_str(), line, table),
        ("t.toml", 3, Table::Tunnel("db".into()))
    );
    assert!(
        matches!(
            &fault,
            Fault::Setting(ConfigError {
                setting: "poll",
                problem: config::Problem::Number { value, min: 1, .. },
            }) if value == "x"
        ),
        "{fault:?}"
    );
    // Set in [defaults]: its key still, at its line there, in the tunnel it fails for.
    let text = "[defaults]\nport = \"70000\"\n[tunnel.db]\nssh = \"h\"\n";
    let (_, line, table, fault) = located(text);
    assert_eq!((line, table), (2, Table::Tunnel("db".into())));
    assert!(
        matches!(
            &fault,
            Fault::Setting(ConfigError {
                setting: "port",
                problem: config::Problem::Monitor(cli::MonitorError::LoopRange(70000)),
            })
        ),
        "{fault:?}"
    );
    let e = load(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2: tunnel \"db\": port: monitor port 70000 out of range (1-65534; port+1 is used too)"
    );
}

#[test]
fn a_bad_variable_from_the_environment_keeps_its_name() {
    let env = |k: &str| (k == "AUTOSSH_GATETIME").then(|| OsString::from("soon"));
    let e = parse("t.toml", "\n[tunnel.db]\nssh = \"h\"\n", &env).unwrap_err();
    let FileError::At { line, fault, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*line, 2);
    assert!(
        matches!(
            &**fault,
            Fault::Setting(ConfigError {
                setting: "AUTOSSH_GATETIME",
                ..
            })
        ),
        "{e:?}"
    );
    // The file's value wins over the environment's.
    let defs = parse("t.toml", "[tunnel.db]\nssh = \"h\"\ngatetime = 5\n", &env).unwrap();
    assert_eq!(defs[0].settings.gate_time.as_secs(), 5);
}

#[test]
fn faults_say_what_and_where() {
    let missing = super::load(Path::new("/nonexistent/t.toml"), &env).unwrap_err();
    assert!(
        matches!(&missing, FileError::Unreadable { file, .. } if file == "/nonexistent/t.toml"),
        "{missing:?}"
    );
    assert!(matches!(
        load("# nothing\n"),
        Err(FileError::NoTunnels { .. })
    ));
    let (_, line, table, f) = located("[defaults]\nssh = \"h\"\n[tunnel.a]\nssh = \"h\"\n");
    assert!(matches!(f, Fault::SshInDefaults), "{f:?}");
    assert_eq!((line, table), (2, Table::Defaults));
    let (_, line, table, f) = located("[tunnel.a]\nssh = \"h -L\"\n");
    assert!(
        matches!(f, Fault::Ssh(cli::CliError::NoValue('L'))),
        "{f:?}"
    );
    assert_eq!((line, table), (2, Table::Tunnel("a".into())));
    let (_, line, _, f) =
        located("[tunnel.a]\nssh = \"-D 20000 h\"\n[tunnel.b]\nssh = \"h\"\nmonitor = 20000\n");
    assert!(
        matches!(&f, Fault::Clash { what: "monitor", bind: Bind::Port(20000), other, other_what: "forward" } if other == "a"),
        "{f:?}"
    );
    assert_eq!(line, 3);
    let (_, line, table, f) = located("[tunnel.a]\nssh = \"h\"\n[tunnel.b\n");
    assert!(matches!(f, Fault::Toml(_)), "{f:?}");
    assert_eq!((line, table), (3, Table::Unnamed));
}

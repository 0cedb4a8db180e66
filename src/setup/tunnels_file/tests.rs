use super::*;

fn env(_: &str) -> Option<OsString> {
    None
}

fn load(text: &str) -> Result<Vec<TunnelDef>> {
    parse("t.toml", text, &env)
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

//! Three tunnels from one file (loop monitor, echo monitor, `-M 0`) all carry requests;
//! `autossh status` (table) and `status --json` describe them; `[defaults]` reach every tunnel;
//! log lines carry the tunnel's name.

use super::rig::*;
use serde_json::Value;
use std::time::Duration;
use test_support::*;

#[test]
fn three_tunnels_come_up_and_status_lists_them() {
    let mut rig = Rig::new();
    rig.head = "[defaults]\npoll = 5\nssh_options = [\"-o\", \"ServerAliveInterval=17\"]\n".into();
    let ts = [
        rig.tunnel("lp", Mon::Loop),
        rig.tunnel("ec", Mon::Echo),
        rig.tunnel("m0", Mon::Zero),
    ];
    rig.write(&ts);
    rig.start(&[]);
    let pids = rig.wait_up(&ts);
    let mut distinct: Vec<i32> = pids.iter().map(|p| p.1).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{pids:?}\n{}", rig.story());

    // [defaults] ssh_options come before each tunnel's own arguments, and count as the user's
    // own ServerAliveInterval (autossh adds its 60 only when the user set none).
    for t in &ts {
        let pid = pid_of_pair(&pids, &t.name);
        let cmd = cmdline(pid);
        let opt = cmd.iter().position(|a| a == "ServerAliveInterval=17");
        // The tunnel's own arguments: its -L is held (handed to ssh as a private socket,
        // first); its destination comes last.
        let own = cmd.iter().rposition(|a| Some(a) == t.ssh.last());
        assert!(
            matches!((opt, own), (Some(o), Some(f)) if o < f),
            "{}: ssh_options not before the tunnel's arguments: {cmd:?}",
            t.name
        );
        assert!(
            !cmd.iter().any(|a| a == "ServerAliveInterval=60"),
            "{}: ServerAliveInterval=60 added although [defaults] set it: {cmd:?}",
            t.name
        );
    }

    // The table: a header, then one line per tunnel: name, state, ..., its ssh pid.
    let out = rig.ctl(&["status"]);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", rig.story());
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 4, "header + 3 tunnels:\n{}", out.stdout);
    for col in [
        "TUNNEL",
        "STATE",
        "SINCE",
        "SSH PID",
        "RTT",
        "RESTARTS",
        "LAST REASON",
    ] {
        assert!(lines[0].contains(col), "{col} missing in {:?}", lines[0]);
    }
    assert!(lines[0].starts_with("TUNNEL"), "{:?}", lines[0]);
    for (name, pid) in &pids {
        let row = lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", out.stdout));
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words.get(1), Some(&"up"), "{name}: {row:?}");
        assert!(
            words.contains(&pid.to_string().as_str()),
            "{name}: ssh pid {pid} not in {row:?}"
        );
    }

    // The JSON: every documented field, with its type.
    let out = rig.ctl(&["status", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = json::parse(out.stdout.trim())
        .unwrap_or_else(|e| panic!("status --json: {e}\n{}", out.stdout));
    let list = doc
        .get("tunnels")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no tunnels array:\n{}", out.stdout));
    assert_eq!(list.len(), 3, "{}", out.stdout);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (name, pid) in &pids {
        let t = list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in {}", out.stdout));
        let field = |k: &str| {
            t.get(k)
                .unwrap_or_else(|| panic!("{name}: no {k:?} in {}", out.stdout))
        };
        assert_eq!(field("state").as_str(), Some("up"), "{name}");
        assert_eq!(field("up").as_bool(), Some(true), "{name}");
        assert_eq!(field("ssh_pid").as_f64(), Some(*pid as f64), "{name}");
        let since = field("since").as_f64().unwrap_or(-1.0);
        assert!(
            since > now - 120.0 && since <= now + 1.0,
            "{name}: since {since} is not an epoch second of this run (now {now})"
        );
        assert!(
            matches!(field("rtt_ms"), Value::Null | Value::Number(_)),
            "{name}: rtt_ms {:?}",
            field("rtt_ms")
        );
        assert!(field("restarts").as_f64().is_some(), "{name}: restarts");
        assert!(
            matches!(field("last_reason"), Value::Null | Value::String(_)),
            "{name}: last_reason {:?}",
            field("last_reason")
        );
    }

    // Log lines carry the tunnel's name: the monitored tunnels' proofs, and every start.
    for name in ["lp", "ec"] {
        let needle = format!("{name}: tunnel up");
        assert!(
            wait_until(UP, || rig.log().contains(&needle)),
            "{needle:?} never logged\n{}",
            rig.story()
        );
    }
    let log = rig.log();
    for name in ["lp", "ec", "m0"] {
        assert!(
            log.contains(&format!("{name}: starting ssh")),
            "{name}: no named start\n{log}"
        );
    }
    for line in log.lines().filter(|l| l.contains("starting ssh")) {
        assert!(
            ["lp: ", "ec: ", "m0: "].iter().any(|n| line.contains(n)),
            "a start without its tunnel's name: {line:?}\n{log}"
        );
    }
    rig.assert_no_zombie();
    rig.finish();
}

fn pid_of_pair(pids: &[(String, i32)], name: &str) -> i32 {
    pids.iter()
        .find(|p| p.0 == name)
        .map(|p| p.1)
        .unwrap_or_else(|| panic!("{name} not in {pids:?}"))
}

/// The same tunnels, given as one shell-like string, an integer monitor and per-tunnel keys,
/// come up too; a tunnel's own `poll` wins over [defaults].
#[test]
fn string_ssh_and_integer_monitor_work() {
    let mut rig = Rig::new();
    rig.head = "[defaults]\npoll = 600\n".into();
    let lp = rig.tunnel("str-loop", Mon::Loop);
    let m0 = rig.tunnel("str.m0", Mon::Zero);
    let as_string = |t: &Tunnel| {
        let words: Vec<String> = t.ssh.iter().map(|a| shell_quote(a)).collect();
        format!(
            "[tunnel.{}]\nssh = {}\nmonitor = {}\npoll = 3\n",
            toml_str(&t.name),
            toml_str(&words.join(" ")),
            t.monitor
        )
    };
    let text = format!("{}\n{}\n{}", rig.head, as_string(&lp), as_string(&m0));
    rig.write_text(&text);
    rig.start(&[("AUTOSSH_POLL", "900"), ("AUTOSSH_LOGLEVEL", "7")]);
    rig.wait_up(&[lp.clone(), m0.clone()]);
    // poll = 3 (the tunnel's own) rather than 600 ([defaults]) or 900 (the environment): after
    // its proof the loop tunnel is probed again within a few seconds.
    assert!(
        wait_until(UP, || rig.log().contains("str-loop: tunnel up")),
        "{}",
        rig.story()
    );
    let offset = rig.log().find("str-loop: tunnel up").unwrap_or(0);
    let again = wait_until(Duration::from_secs(10), || {
        rig.log()[offset..]
            .lines()
            .any(|l| l.contains("str-loop: probe") && l.contains(" ok, rtt "))
    });
    assert!(again, "no probe at the tunnel's poll = 3\n{}", rig.story());
    assert!(
        tunnel_works(lp.local) && tunnel_works(m0.local),
        "{}",
        rig.story()
    );
    rig.finish();
}

/// AUTOSSH_STATUSFILE holds `{"version": 1, "tunnels": [...]}` (each a single tunnel's document
/// plus its name); AUTOSSH_METRICSFILE labels every tunnel series with `tunnel="NAME"` and adds
/// `autossh_tunnels` and `autossh_tunnels_up`.
#[test]
fn the_status_and_metrics_files_hold_every_tunnel() {
    let mut rig = Rig::new();
    let ts = [rig.tunnel("sf-a", Mon::Zero), rig.tunnel("sf-b", Mon::Loop)];
    rig.write(&ts);
    let status = rig.dir.join("status.json");
    let metrics = rig.dir.join("metrics.prom");
    rig.start(&[
        ("AUTOSSH_STATUSFILE", status.to_str().unwrap()),
        ("AUTOSSH_METRICSFILE", metrics.to_str().unwrap()),
    ]);
    rig.wait_up(&ts);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut doc = None;
    let ok = wait_until(UP, || {
        doc = json::parse(read(&status).trim()).ok();
        let names: Vec<String> = doc
            .as_ref()
            .and_then(|d| d.get("tunnels"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        names.len() == 2 && names.contains(&"sf-a".into()) && names.contains(&"sf-b".into())
    });
    assert!(ok, "status file:\n{}\n{}", read(&status), rig.story());
    let doc = doc.unwrap();
    assert_eq!(
        doc.get("version").and_then(Value::as_f64),
        Some(1.0),
        "{doc:?}"
    );
    for t in doc.get("tunnels").and_then(Value::as_array).unwrap() {
        assert!(
            t.get("state").is_some(),
            "no state in a tunnel's document: {t:?}"
        );
    }
    let ok = wait_until(UP, || {
        let m = read(&metrics);
        m.lines().any(|l| l == "autossh_tunnels 2")
            && m.lines().any(|l| l == "autossh_tunnels_up 2")
    });
    assert!(ok, "metrics file:\n{}\n{}", read(&metrics), rig.story());
    let m = read(&metrics);
    for name in ["sf-a", "sf-b"] {
        let label = format!("tunnel=\"{name}\"");
        assert!(
            m.lines()
                .any(|l| l.starts_with("autossh_up{") && l.contains(&label)),
            "no autossh_up for {name}:\n{m}"
        );
    }
    for l in m
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if !l.starts_with("autossh_tunnels") {
            assert!(
                l.contains("tunnel=\""),
                "a series without its tunnel label: {l:?}\n{m}"
            );
        }
    }
    rig.finish();
}

/// `autossh -f --tunnels FILE`: the command returns 0 at once, the daemon runs the tunnels
/// (their ssh are its children) and answers the control socket; SIGTERM stops it and them.
#[test]
fn dash_f_runs_the_tunnels_in_the_background() {
    let mut rig = Rig::new();
    let ts = [rig.tunnel("bg-a", Mon::Zero), rig.tunnel("bg-b", Mon::Zero)];
    rig.write(&ts);
    let logfile = rig.dir.join("autossh.log");
    let fg = Cmd::new(autossh_bin!())
        .env("AUTOSSH_LOGFILE", &logfile)
        .env("AUTOSSH_POLL", "5")
        .arg("-f")
        .arg("--tunnels")
        .arg(&rig.file)
        .arg("--control-socket")
        .arg(&rig.sock)
        .spawn(&rig.dir);
    let st = fg.wait_timeout(T);
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", fg.describe());
    let log = || std::fs::read_to_string(&logfile).unwrap_or_default();
    let list = rig.wait_status(UP, "background tunnels up", |v| {
        v.len() == 2 && v.iter().all(|s| s.up && s.ssh_pid.is_some())
    });
    let ssh: Vec<(i32, u64)> = list.iter().map(|s| ident(s.ssh_pid.unwrap())).collect();
    let daemon = proc_stat(ssh[0].0).map(|s| s.ppid).unwrap_or(0);
    assert!(
        daemon > 1 && proc_stat(ssh[1].0).is_some_and(|s| s.ppid == daemon),
        "the ssh are not children of one daemon:\n{}",
        describe_pids(&[ssh[0].0, ssh[1].0])
    );
    assert!(
        cmdline_string(daemon).contains("--tunnels"),
        "{}",
        describe_pids(&[daemon])
    );
    for t in &ts {
        assert!(tunnel_works(t.local), "{}\n{}", t.name, log());
    }
    assert!(log().contains("bg-a: starting ssh"), "{}", log());
    let daemon_id = ident(daemon);
    assert!(signal_pid(daemon, Signal::SIGTERM));
    let all_gone = wait_until(T, || gone(daemon_id) && ssh.iter().all(|i| gone(*i)));
    assert!(
        all_gone,
        "after SIGTERM:\n{}\n{}",
        describe_pids(&[daemon, ssh[0].0, ssh[1].0]),
        log()
    );
}

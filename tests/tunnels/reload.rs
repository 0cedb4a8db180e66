//! Reload (docs/tunnels.md, "Reload"), by SIGHUP and by `autossh reload`: a tunnel whose whole
//! definition (after [defaults]) is unchanged keeps its ssh and an open connection through it;
//! a changed one is restarted, a removed one stopped (its ssh exited and reaped), an added one
//! started; a file that no longer parses or would clash changes nothing.

use super::rig::*;
use std::collections::BTreeSet;
use test_support::*;

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Sighup,
    Command,
}

/// Reloads; with the command, checks its exit status and returns its stdout.
fn reload(rig: &Rig, how: Trigger) -> String {
    match how {
        Trigger::Sighup => {
            assert!(rig.autossh().signal(Signal::SIGHUP), "{}", rig.story());
            String::new()
        }
        Trigger::Command => {
            let out = rig.ctl(&["reload"]);
            assert_eq!(
                out.code,
                Some(0),
                "autossh reload: {out:?}\n{}",
                rig.story()
            );
            out.stdout
        }
    }
}

fn names(list: &[St]) -> BTreeSet<String> {
    list.iter().map(|s| s.name.clone()).collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn reload_applies_the_changes(how: Trigger) {
    let mut rig = Rig::new();
    rig.head = "[defaults]\npoll = 5\n".into();
    let keep = rig.tunnel("keep", Mon::Loop);
    let change = rig.tunnel("change", Mon::Zero);
    let gone_t = rig.tunnel("gone", Mon::Echo);
    rig.write(&[keep.clone(), change.clone(), gone_t.clone()]);
    rig.start(&[]);
    let before = rig.wait_up(&[keep.clone(), change.clone(), gone_t.clone()]);
    let id = |name: &str| ident(before.iter().find(|p| p.0 == name).unwrap().1);
    let (keep_id, change_id, gone_id) = (id("keep"), id("change"), id("gone"));

    let mut held = Held::open(keep.local)
        .unwrap_or_else(|| panic!("cannot open a connection through keep\n{}", rig.story()));
    held.echo("before the reload")
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));

    // keep moves to the end of the file (its lines change, its definition does not); change
    // gets its own poll; gone goes; add comes.
    let change2 = change.clone().key("poll = 7");
    let add = rig.tunnel("add", Mon::Zero);
    rig.write(&[change2.clone(), add.clone(), keep.clone()]);
    let out = reload(&rig, how);
    if let Trigger::Command = how {
        assert!(
            out.contains("reloaded: 1 added, 1 changed, 1 removed, 1 unchanged"),
            "autossh reload said {out:?}\n{}",
            rig.story()
        );
    }

    let after = rig.wait_status(UP, "the reload applied", |v| {
        names(v) == set(&["keep", "change", "add"])
            && v.iter().all(|s| s.state == "up" && s.ssh_pid.is_some())
            && v.iter()
                .any(|s| s.name == "change" && s.ssh_pid != Some(change_id.0))
    });
    assert_eq!(
        pid_of(&after, "keep"),
        keep_id.0,
        "the unchanged tunnel's ssh was replaced\n{}",
        rig.story()
    );
    assert!(!gone(keep_id), "keep's ssh ended\n{}", rig.story());
    held.echo("after the reload").unwrap_or_else(|e| {
        panic!(
            "the connection through the unchanged tunnel broke: {e}\n{}",
            rig.story()
        )
    });
    for (what, old) in [("removed", gone_id), ("changed", change_id)] {
        let ok = wait_until(T, || gone(old));
        assert!(
            ok,
            "the {what} tunnel's old ssh {} is still there:\n{}\n{}",
            old.0,
            describe_pids(&[old.0]),
            rig.story()
        );
    }
    rig.wait_up(&[keep.clone(), change2.clone(), add.clone()]);
    assert!(
        !tunnel_works(gone_t.local),
        "the removed tunnel's port still answers\n{}",
        rig.story()
    );
    held.echo("still there")
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    rig.assert_no_zombie();
    rig.finish();
}

#[test]
fn sighup_reloads_the_file() {
    reload_applies_the_changes(Trigger::Sighup);
}

#[test]
fn autossh_reload_reloads_the_file_and_says_what_changed() {
    reload_applies_the_changes(Trigger::Command);
}

/// `[defaults]` are part of each tunnel's definition: a changed default restarts the tunnels
/// that take it and not the one that sets the key itself.
#[test]
fn a_changed_default_restarts_only_the_tunnels_it_reaches() {
    let mut rig = Rig::new();
    rig.head = "[defaults]\npoll = 5\n".into();
    let own = rig.tunnel("own", Mon::Zero).key("poll = 9");
    let inherits = rig.tunnel("inherits", Mon::Zero);
    rig.write(&[own.clone(), inherits.clone()]);
    rig.start(&[]);
    let before = rig.wait_up(&[own.clone(), inherits.clone()]);
    let own_id = ident(before[0].1);
    let inherits_id = ident(before[1].1);

    rig.head = "[defaults]\npoll = 6\n".into();
    rig.write(&[own.clone(), inherits.clone()]);
    let out = reload(&rig, Trigger::Command);
    assert!(
        out.contains("reloaded: 0 added, 1 changed, 0 removed, 1 unchanged"),
        "autossh reload said {out:?}\n{}",
        rig.story()
    );
    let after = rig.wait_status(UP, "inherits restarted", |v| {
        v.iter()
            .any(|s| s.name == "inherits" && s.up && s.ssh_pid.is_some_and(|p| p != inherits_id.0))
    });
    assert_eq!(pid_of(&after, "own"), own_id.0, "{}", rig.story());
    assert!(!gone(own_id), "{}", rig.story());
    assert!(wait_until(T, || gone(inherits_id)), "{}", rig.story());
    rig.finish();
}

/// A file that no longer parses, or parses but would clash, changes nothing: the command
/// exits 1 with the reason, SIGHUP logs it; every ssh stays; the good file then reloads as
/// "nothing changed".
#[test]
fn a_broken_file_changes_nothing() {
    let mut rig = Rig::new();
    let a = rig.tunnel("a", Mon::Zero);
    let b = rig.tunnel("b", Mon::Loop);
    let good = rig.text(&[a.clone(), b.clone()]);
    rig.write_text(&good);
    rig.start(&[]);
    let before = rig.wait_up(&[a.clone(), b.clone()]);
    let ids: Vec<(i32, u64)> = before.iter().map(|p| ident(p.1)).collect();
    let file = rig.file.to_string_lossy().into_owned();
    let unchanged = |rig: &Rig, what: &str| {
        let now = rig
            .status()
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", rig.story()));
        assert_eq!(names(&now), set(&["a", "b"]), "{what}\n{}", rig.story());
        for (name, pid) in &before {
            assert_eq!(
                pid_of(&now, name),
                *pid,
                "{what}: {name}'s ssh changed\n{}",
                rig.story()
            );
        }
        assert!(ids.iter().all(|i| !gone(*i)), "{what}\n{}", rig.story());
        assert!(rig.autossh().is_running(), "{what}\n{}", rig.story());
        assert!(
            tunnel_works(a.local) && tunnel_works(b.local),
            "{what}\n{}",
            rig.story()
        );
    };

    // A bad value (and a new tunnel in the same file: it must not start either).
    let c = rig.tunnel("c", Mon::Zero);
    let bad = rig.text(&[a.clone().key("poll = \"x\""), b.clone(), c.clone()]);
    rig.write_text(&bad);
    let out = rig.ctl(&["reload"]);
    assert_eq!(
        out.code,
        Some(1),
        "reload of a bad file: {out:?}\n{}",
        rig.story()
    );
    assert!(
        out.stderr.contains(&file) && out.stderr.contains("poll") && out.stderr.contains("\"a\""),
        "the reason (file, tunnel, key) is not given: {out:?}"
    );
    unchanged(&rig, "bad value");
    assert!(!tunnel_works(c.local), "c started from a rejected file");

    // A clash: b's -L on a's port.
    let mut b2 = b.clone();
    let fwd = b2.forward();
    let i = b2.ssh.iter().position(|x| *x == fwd).unwrap();
    b2.ssh[i] = fwd.replacen(&b.local.to_string(), &a.local.to_string(), 1);
    rig.write_text(&rig.text(&[a.clone(), b2]));
    let out = rig.ctl(&["reload"]);
    assert_eq!(
        out.code,
        Some(1),
        "reload of a clashing file: {out:?}\n{}",
        rig.story()
    );
    assert!(out.stderr.contains(&file), "{out:?}");
    unchanged(&rig, "clash");

    // A syntax error, by SIGHUP: the reason is logged (naming the file).
    let logged = rig.log().matches(file.as_str()).count();
    rig.write_text(&format!("{good}\n[tunnel.x\n"));
    assert!(rig.autossh().signal(Signal::SIGHUP));
    assert!(
        wait_until(T, || rig.log().matches(file.as_str()).count() > logged),
        "SIGHUP with a broken file logged no reason\n{}",
        rig.story()
    );
    unchanged(&rig, "syntax error");

    // Nothing was half-applied: the good file reloads as "nothing changed".
    rig.write_text(&good);
    let out = reload(&rig, Trigger::Command);
    assert!(
        out.contains("reloaded: 0 added, 0 changed, 0 removed, 2 unchanged"),
        "autossh reload said {out:?}\n{}",
        rig.story()
    );
    unchanged(&rig, "good file again");
    rig.assert_no_zombie();
    rig.finish();
}

/// A renamed tunnel (same definition, new name) is a removal and an addition: the new one
/// comes up on the very ports the old one held, once the old one is gone.
#[test]
fn a_renamed_tunnel_takes_over_its_old_ports() {
    let mut rig = Rig::new();
    let old = rig.tunnel("old-name", Mon::Loop);
    let other = rig.tunnel("other", Mon::Zero);
    rig.write(&[old.clone(), other.clone()]);
    rig.start(&[]);
    let before = rig.wait_up(&[old.clone(), other.clone()]);
    let old_id = ident(before[0].1);
    let other_id = ident(before[1].1);
    let mut renamed = old.clone();
    renamed.name = "new-name".into();
    rig.write(&[renamed.clone(), other.clone()]);
    let out = reload(&rig, Trigger::Command);
    assert!(
        out.contains("reloaded: 1 added, 0 changed, 1 removed, 1 unchanged"),
        "autossh reload said {out:?}\n{}",
        rig.story()
    );
    let list = rig.wait_status(UP, "renamed", |v| {
        names(v) == set(&["new-name", "other"]) && v.iter().all(|s| s.up)
    });
    assert!(wait_until(T, || gone(old_id)), "{}", rig.story());
    assert_eq!(pid_of(&list, "other"), other_id.0, "{}", rig.story());
    rig.wait_up(&[renamed, other]);
    rig.assert_no_zombie();
    rig.finish();
}

/// A changed tunnel whose forwards listen where they did is replaced in place,
/// make-before-break: its new ssh takes the new connections, an open one goes on through the
/// old ssh, which stops once it has none left.
#[test]
fn a_changed_tunnel_keeping_its_forwards_is_replaced_without_cutting_a_connection() {
    let mut rig = Rig::new();
    let t = rig.tunnel("t", Mon::Zero);
    rig.write(std::slice::from_ref(&t));
    rig.start(&[]);
    let before = rig.wait_up(std::slice::from_ref(&t));
    let old = ident(before[0].1);
    let mut held =
        Held::open(t.local).unwrap_or_else(|| panic!("no connection through t\n{}", rig.story()));
    held.echo("before the reload")
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.story()));
    let t2 = t.clone().key("poll = 7");
    rig.write(std::slice::from_ref(&t2));
    let out = rig.ctl(&["reload"]);
    assert!(out.stdout.contains("1 changed"), "{out:?}\n{}", rig.story());
    rig.wait_status(UP, "t replaced", |v| {
        v.iter()
            .any(|s| s.name == "t" && s.state == "up" && s.ssh_pid.is_some_and(|p| p != old.0))
    });
    assert!(
        rig.log().contains("a new ssh takes over"),
        "{}",
        rig.story()
    );
    held.echo("after the reload")
        .unwrap_or_else(|e| panic!("the connection was cut: {e}\n{}", rig.story()));
    assert!(
        !gone(old),
        "the old ssh stopped with a connection open\n{}",
        rig.story()
    );
    drop(held);
    assert!(
        wait_until(T, || gone(old)),
        "the old ssh stays\n{}",
        rig.story()
    );
    rig.wait_up(&[t2]);
    rig.finish();
}

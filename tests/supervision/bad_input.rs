//! Bad input: one clear line, a non-zero exit, nothing started.

use super::*;

#[test]
fn bad_input_is_one_line_and_exit_1_before_anything_starts() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("AUTOSSH_POLL", "0")], &["-M", "0", "h"], "AUTOSSH_POLL"),
        (
            &[("AUTOSSH_POLL", "ten")],
            &["-M", "0", "h"],
            "AUTOSSH_POLL",
        ),
        (
            &[("AUTOSSH_GATETIME", "-1")],
            &["-M", "0", "h"],
            "AUTOSSH_GATETIME",
        ),
        (
            &[("AUTOSSH_LOGLEVEL", "9")],
            &["-M", "0", "h"],
            "AUTOSSH_LOGLEVEL",
        ),
        (
            &[("AUTOSSH_MAXSTART", "many")],
            &["-M", "0", "h"],
            "AUTOSSH_MAXSTART",
        ),
        (&[], &["-M", "abc", "h"], "-M"),
        (&[], &["-M", "70000", "h"], "-M"),
        (&[], &["-M", "20000:0", "h"], "-M"),
        (&[], &["-M", "0"], "destination"),
        (&[("AUTOSSH_PORT", "x")], &["h"], "AUTOSSH_PORT"),
        (
            &[("AUTOSSH_LOGFILE", "/nonexistent/dir/log")],
            &["-M", "0", "h"],
            "AUTOSSH_LOGFILE",
        ),
    ];
    for (env, args, needle) in cases {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["hang"]);
        let p = autossh(&dir, &fake, env, args);
        let st = p.wait_timeout(T).expect("exits");
        let err = p.stderr_text();
        assert_eq!(st.code(), Some(1), "{env:?} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{env:?} {args:?}: {err}");
        assert!(err.contains(needle), "{env:?} {args:?}: {err}");
        assert_eq!(fake.run_count(), 0, "ssh started for {env:?} {args:?}");
    }
}

#[test]
fn busy_loop_port_is_a_clear_error() {
    let dir = TestDir::new();
    let n = free_port_pair();
    let _hold = std::net::TcpListener::bind(("127.0.0.1", n + 1)).unwrap();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = autossh(&dir, &fake, &[], &["-M", &n.to_string(), "h"]);
    assert_eq!(exit_code(&p, &fake), 1);
    let err = p.stderr_text();
    assert!(err.contains(&format!("127.0.0.1:{}", n + 1)), "{err}");
    assert_eq!(fake.run_count(), 0);
}

#[test]
fn unrunnable_ssh_exits_1() {
    let dir = TestDir::new();
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", dir.join("missing"))
        .args(["-M", "0", "h"])
        .spawn(&dir);
    let st = p.wait_timeout(T).expect("exits");
    assert_eq!(st.code(), Some(1));
    assert!(
        p.stderr_text().contains("cannot run ssh"),
        "{}",
        p.describe()
    );
}

#[test]
fn version_flag() {
    let dir = TestDir::new();
    let p = Cmd::new(autossh_bin!()).arg("-V").spawn(&dir);
    assert_eq!(p.wait_timeout(T).and_then(|s| s.code()), Some(0));
    assert!(p.stdout_text().starts_with("autossh "), "{}", p.describe());
}

//! 1. Nothing panics, and rejections are one line.

use super::*;

proptest! {
    #![proptest_config(cfg(600))]

    #[test]
    fn arbitrary_argv_never_panics(args in wild_argv(), env in wild_env()) {
        if let Err(msg) = whole_chain(&args, &env) {
            prop_assert!(!msg.is_empty(), "empty error for {}", show(&args));
        }
    }

    /// Argument errors (no environment): one line, naming the option, or the missing
    /// destination.
    #[test]
    fn argv_rejections_are_one_line_and_name_the_option(args in wild_argv()) {
        // A line break inside an argument is tested on its own (see below).
        prop_assume!(!args.iter().any(has_line_break));
        if let Err(e) = cli::parse(args.iter().cloned()) {
            let msg = e.to_string();
            prop_assert!(one_line(&msg), "{}: {msg:?}", show(&args));
            let named = msg.contains("-M") || msg.contains("option -") || msg.contains("destination");
            prop_assert!(named, "{}: {msg:?}", show(&args));
        }
    }

    /// One variable at a time with a wild value: accepted, or rejected in one line that names
    /// it.
    #[test]
    fn env_rejections_are_one_line_and_name_the_variable(
        var in proptest::sample::select(VARS.to_vec()),
        value in wild_value(),
    ) {
        prop_assume!(!has_line_break(&value));
        let env: HashMap<String, OsString> = [(var.to_string(), value.clone())].into();
        // No -M: AUTOSSH_PORT is read.
        for args in [vec![os("host")], vec![os("-M"), os("0"), os("-f"), os("host")]] {
            if let Err(msg) = whole_chain(&args, &env) {
                prop_assert!(one_line(&msg), "{var}={value:?}: {msg:?}");
                prop_assert!(msg.contains(var), "{var}={value:?}: {msg:?}");
            }
        }
    }

    /// All the variables at once: the rejection names one of those set.
    #[test]
    fn env_rejections_name_one_of_the_variables_set(env in wild_env()) {
        prop_assume!(!env.values().any(has_line_break));
        if let Err(msg) = whole_chain(&[os("host")], &env) {
            prop_assert!(one_line(&msg), "{env:?}: {msg:?}");
            prop_assert!(env.keys().any(|k| msg.contains(k.as_str())), "{env:?}: {msg:?}");
        }
    }
}

/// Every valid value accepted, exactly: numbers at the bounds of each variable.
#[test]
pub(crate) fn numbers_at_the_bounds() {
    let cases: &[(&str, &str, bool)] = &[
        ("AUTOSSH_POLL", "1", true),
        ("AUTOSSH_POLL", "0", false),
        ("AUTOSSH_POLL", "31536000", true),
        ("AUTOSSH_POLL", "31536001", false),
        ("AUTOSSH_FIRST_POLL", "0x10", true),
        ("AUTOSSH_GATETIME", "0", true),
        ("AUTOSSH_MAXSTART", "-1", true),
        ("AUTOSSH_MAXSTART", "-0x8000000000000000", false),
        ("AUTOSSH_MAXSTART", "99999999999999999999", false),
        ("AUTOSSH_MAXLIFETIME", "0", true),
        ("AUTOSSH_LOGLEVEL", "7", true),
        ("AUTOSSH_LOGLEVEL", "8", false),
        ("AUTOSSH_SERVERALIVE_INTERVAL", "86400", true),
        ("AUTOSSH_SERVERALIVE_INTERVAL", "86401", false),
        ("AUTOSSH_SERVERALIVE_COUNT_MAX", "1000", true),
        ("AUTOSSH_SERVERALIVE_COUNT_MAX", "1001", false),
        ("AUTOSSH_PORT", "65534", true),
        ("AUTOSSH_PORT", "65535", false),
        ("AUTOSSH_PORT", "65535:7", true),
        ("AUTOSSH_PORT", "", true),
        ("AUTOSSH_MESSAGE", "", true),
        ("AUTOSSH_PATH", "", false),
    ];
    let mut long = String::from("AUTOSSH_MESSAGE");
    long.push_str(&"x".repeat(64 - long.len()));
    for (var, value, ok) in cases
        .iter()
        .copied()
        .chain([("AUTOSSH_MESSAGE", long.as_str(), true)])
    {
        let env: HashMap<String, OsString> = [(var.to_string(), os(value))].into();
        let got = whole_chain(&[os("host")], &env);
        assert_eq!(got.is_ok(), ok, "{var}={value:?}: {got:?}");
        if let Err(msg) = got {
            assert!(msg.contains(var) && one_line(&msg), "{msg:?}");
        }
    }
}

/// A value with a line break in it must not turn the error into two lines: the message is
/// printed as one line on stderr (and to syslog), so the raw value must be escaped.
#[test]

pub(crate) fn a_line_break_in_a_rejected_value_keeps_the_error_on_one_line() {
    let mut bad = Vec::new();
    for value in ["1\n2", "1\r2"] {
        for var in VARS {
            let env: HashMap<String, OsString> = [(var.to_string(), os(value))].into();
            if let Err(msg) = whole_chain(&[os("host")], &env) {
                if !one_line(&msg) {
                    bad.push(format!("{var}={value:?}: {msg:?}"));
                }
            }
        }
        let attached = format!("-M{value}");
        for args in [vec!["-M", value, "h"], vec![attached.as_str(), "h"]] {
            if let Err(e) = cli::parse(args.clone()) {
                let msg = e.to_string();
                if !one_line(&msg) {
                    bad.push(format!("{args:?}: {msg:?}"));
                }
            }
        }
    }
    // And through the binary: two lines on stderr.
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_POLL", "1\n2")
        .args(["-M", "0", "host"])
        .spawn(&dir);
    let st = p.wait_timeout(T).expect("autossh exits");
    assert_eq!(st.code(), Some(1), "{}", p.describe());
    if p.stderr_text().lines().count() != 1 {
        bad.push(format!(
            "binary, AUTOSSH_POLL=\"1\\n2\": stderr {:?}",
            p.stderr_text()
        ));
    }
    assert!(bad.is_empty(), "multi-line errors:\n{}", bad.join("\n"));
}

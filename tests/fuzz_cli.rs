//! Bad input, fuzzed: arbitrary command lines and environment values thrown at the command
//! line splitter, the settings and the ssh argv builder (property tests), and a few through
//! the real binary with a scripted ssh.
//!
//! Properties:
//! - nothing panics, whatever the bytes (non-UTF-8, empty, `-`, `--`, `-M` variants);
//! - every rejection is one line and names the variable or option at fault;
//! - ssh options, the destination and the remote command reach ssh exactly as given, in
//!   order, with only autossh's own `-M` and `-f` taken out (and recorded).

mod util;

use autossh::setup::cli::{self, Cli, MonitorSpec};
use autossh::setup::config::{self, Settings};
use autossh::setup::ssh_argv::{self, Forwards};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, FileFailurePersistence};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;
use util::*;

/// ssh's options that take a value (OpenSSH's getopt string).
const SSH_VALUE_OPTS: &str = "bceilmopBDEFIJLOPQRSWw";
/// ssh's flags, less the three letters autossh keeps for itself (`-f`, `-M`, `-V`).
const SSH_FLAGS: &str = "1246agknqstvxACGKNTXYy";

/// Every variable autossh validates.
const VARS: [&str; 11] = [
    "AUTOSSH_POLL",
    "AUTOSSH_FIRST_POLL",
    "AUTOSSH_GATETIME",
    "AUTOSSH_MAXSTART",
    "AUTOSSH_MAXLIFETIME",
    "AUTOSSH_MESSAGE",
    "AUTOSSH_PORT",
    "AUTOSSH_LOGLEVEL",
    "AUTOSSH_PATH",
    "AUTOSSH_SERVERALIVE_INTERVAL",
    "AUTOSSH_SERVERALIVE_COUNT_MAX",
];

fn cfg(cases: u32) -> PtConfig {
    PtConfig {
        cases,
        // No regression files next to the sources: a failure prints its minimal case.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..PtConfig::default()
    }
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Any bytes (NUL and invalid UTF-8 included), short.
fn any_bytes() -> impl Strategy<Value = OsString> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec)
}

/// Number-ish text: what a port or a count might look like, and what it might not.
fn numberish() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..70000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u32..0x1_0000).prop_map(|n| format!("0x{n:x}")),
        (0u32..0o200000).prop_map(|n| format!("0{n:o}")),
        "[0-9]{0,25}",
        "[-+ ]?[0-9xX:a-f]{0,8}",
        Just(String::new()),
        Just("0".into()),
        Just("-1".into()),
        Just("0x".into()),
        Just(":".into()),
        Just("08".into()),
        Just("99999999999999999999999".into()),
        Just("18446744073709551616".into()),
        Just("65534".into()),
        Just("65535".into()),
        Just("65536".into()),
        Just("20000:0".into()),
        Just("20000:65535".into()),
        Just("20000:65536".into()),
        Just("0:7".into()),
        Just("1\n2".into()),
    ]
}

/// One argument of an arbitrary command line.
fn wild_arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        3 => any_bytes(),
        1 => Just(os("")),
        1 => Just(os("-")),
        1 => Just(os("--")),
        2 => Just(os("-M")),
        2 => numberish().prop_map(|n| os(&format!("-M{n}"))),
        2 => numberish().prop_map(OsString::from),
        1 => Just(os("-f")),
        1 => Just(os("-V")),
        1 => Just(os("--help")),
        1 => Just(os("--version")),
        1 => Just(os("-fM")),
        1 => Just(os("-NfM")),
        1 => Just(os("-o")),
        1 => Just(os("-oServerAliveInterval=5")),
        3 => "-[a-zA-Z0-9]{1,5}".prop_map(OsString::from),
        2 => ("-[a-zA-Z]{0,3}", any_bytes()).prop_map(|(a, b)| {
            let mut v = a.into_bytes();
            v.extend_from_slice(b.as_bytes());
            OsString::from_vec(v)
        }),
        2 => "[a-z@.]{1,8}".prop_map(OsString::from),
        1 => "\\PC{0,10}".prop_map(OsString::from),
    ]
}

fn wild_argv() -> impl Strategy<Value = Vec<OsString>> {
    proptest::collection::vec(wild_arg(), 0..10)
}

/// An arbitrary value for an environment variable.
fn wild_value() -> impl Strategy<Value = OsString> {
    prop_oneof![
        3 => numberish().prop_map(OsString::from),
        2 => any_bytes(),
        2 => "\\PC{0,80}".prop_map(OsString::from),
        1 => "[ -~]{60,70}".prop_map(OsString::from),
        1 => Just(os("")),
        1 => Just(os("\n")),
        1 => Just(os("a\rb")),
    ]
}

/// An environment: each variable absent or set to a wild value.
fn wild_env() -> impl Strategy<Value = HashMap<String, OsString>> {
    proptest::collection::vec(proptest::option::weighted(0.3, wild_value()), VARS.len()).prop_map(
        |vals| {
            VARS.iter()
                .zip(vals)
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect()
        },
    )
}

/// The monitor forwards `run` would build for these settings, plus one with the remote port
/// moved (as after a relocation).
fn forwards_for(s: &Settings) -> Vec<Forwards> {
    match s.monitor {
        None => vec![Forwards::Loop {
            local: 20000,
            remote: 20000,
        }],
        Some(MonitorSpec::Off) => vec![Forwards::Off],
        Some(MonitorSpec::Loop(p)) => {
            let moved = if p >= 65533 { 20000 } else { p + 2 };
            vec![
                Forwards::Loop {
                    local: p,
                    remote: p,
                },
                Forwards::Loop {
                    local: p,
                    remote: moved,
                },
            ]
        }
        Some(MonitorSpec::Echo { port, echo }) => vec![Forwards::Echo { local: port, echo }],
    }
}

/// True if it holds a CR or LF.
fn has_line_break(s: &OsString) -> bool {
    s.as_bytes().iter().any(|&b| b == b'\n' || b == b'\r')
}

fn one_line(msg: &str) -> bool {
    !msg.contains(['\n', '\r'])
}

/// parse → from_env → build, as `main` and `run` chain them. Returns the error message of a
/// rejection.
fn whole_chain(args: &[OsString], env: &HashMap<String, OsString>) -> Result<(), String> {
    let cli = cli::parse(args.iter().cloned()).map_err(|e| e.to_string())?;
    let settings = config::from_env(cli, |k| env.get(k).cloned()).map_err(|e| e.to_string())?;
    for f in forwards_for(&settings) {
        let argv = ssh_argv::build(&settings, &f);
        assert!(
            argv.ends_with(&settings.ssh_args),
            "build must end with the user's args"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Nothing panics, and rejections are one line
// ---------------------------------------------------------------------------

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
fn numbers_at_the_bounds() {
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

fn a_line_break_in_a_rejected_value_keeps_the_error_on_one_line() {
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
    let p = Cmd::autossh()
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

// ---------------------------------------------------------------------------
// 2. Round trip: ssh's arguments pass through untouched
// ---------------------------------------------------------------------------

/// A piece of a generated command line: what is typed, what ssh must get, and what autossh
/// must have recorded.
#[derive(Clone, Debug, Default)]
struct Piece {
    input: Vec<OsString>,
    to_ssh: Vec<OsString>,
    daemon: bool,
    monitor: Option<MonitorSpec>,
    o_values: Vec<String>,
}

/// An option value that does not start with '-' (may be empty, may hold `f`, `M`, spaces,
/// invalid UTF-8).
fn opt_value() -> impl Strategy<Value = OsString> {
    prop_oneof![
        3 => "[^-\\x00][^\\x00]{0,12}".prop_map(OsString::from),
        1 => Just(os("")),
        1 => Just(os("fM20000")),
        1 => Just(os("f-M")),
        1 => proptest::collection::vec(1u8..=255, 1..10).prop_map(|mut v| {
            if v[0] == b'-' {
                v[0] = b'x';
            }
            OsString::from_vec(v)
        }),
    ]
}

/// Some of ssh's flags with `f` sprinkled in: `-N`, `-fN`, `-NfT`, `-f`.
fn flag_cluster() -> impl Strategy<Value = (String, bool)> {
    (
        proptest::collection::vec(
            proptest::sample::select(SSH_FLAGS.as_bytes().to_vec()),
            0..4,
        ),
        proptest::collection::vec(any::<bool>(), 5),
    )
        .prop_map(|(letters, fs)| {
            let mut s = String::new();
            let mut daemon = false;
            for (i, l) in letters.iter().enumerate() {
                if fs[i] {
                    s.push('f');
                    daemon = true;
                }
                s.push(*l as char);
            }
            if fs[4] || s.is_empty() {
                s.push('f');
                daemon = true;
            }
            (s, daemon)
        })
}

fn without_f(cluster: &str) -> String {
    cluster.chars().filter(|&c| c != 'f').collect()
}

/// An ssh value option: `-L v`, `-Lv`, `-NfL v`, `-fLv`.
fn value_option() -> impl Strategy<Value = Piece> {
    (
        proptest::option::of(flag_cluster()),
        proptest::sample::select(SSH_VALUE_OPTS.as_bytes().to_vec()),
        opt_value(),
        any::<bool>(),
    )
        .prop_map(|(prefix, letter, value, attached)| {
            let letter = letter as char;
            let (prefix, daemon) = prefix.unwrap_or_default();
            let attached = attached && !value.is_empty();
            let mut head = format!("-{prefix}{letter}").into_bytes();
            let mut kept = format!("-{}{letter}", without_f(&prefix)).into_bytes();
            let mut p = Piece {
                daemon,
                ..Piece::default()
            };
            if letter == 'o' {
                p.o_values.push(value.to_string_lossy().into_owned());
            }
            if attached {
                head.extend_from_slice(value.as_bytes());
                kept.extend_from_slice(value.as_bytes());
                p.input.push(OsString::from_vec(head));
                p.to_ssh.push(OsString::from_vec(kept));
            } else {
                p.input.extend([OsString::from_vec(head), value.clone()]);
                p.to_ssh.extend([OsString::from_vec(kept), value]);
            }
            p
        })
}

/// Flags only: `-N`, `-fNT` (ssh gets `-NT`), `-f` (ssh gets nothing).
fn flag_option() -> impl Strategy<Value = Piece> {
    flag_cluster().prop_map(|(cluster, daemon)| {
        let kept = without_f(&cluster);
        Piece {
            input: vec![os(&format!("-{cluster}"))],
            to_ssh: if kept.is_empty() {
                vec![]
            } else {
                vec![os(&format!("-{kept}"))]
            },
            daemon,
            ..Piece::default()
        }
    })
}

/// A valid `-M` value, written in one of the ways strtoul reads, and what it means.
fn monitor_value() -> impl Strategy<Value = (String, MonitorSpec)> {
    prop_oneof![
        Just(("0".to_string(), MonitorSpec::Off)),
        (1u16..=65534).prop_map(|p| (p.to_string(), MonitorSpec::Loop(p))),
        (1u16..=65534).prop_map(|p| (format!("0x{p:x}"), MonitorSpec::Loop(p))),
        (1u16..=65534).prop_map(|p| (format!("0{p:o}"), MonitorSpec::Loop(p))),
        (1u16..=65535, 1u16..=65535)
            .prop_map(|(p, e)| (format!("{p}:{e}"), MonitorSpec::Echo { port: p, echo: e })),
    ]
}

/// `-M N`, `-MN`, `-fM N`, `-NfM N` (ssh gets `-N`).
fn m_option() -> impl Strategy<Value = Piece> {
    (
        proptest::option::of(flag_cluster()),
        monitor_value(),
        any::<bool>(),
    )
        .prop_map(|(prefix, (text, spec), attached)| {
            let (prefix, daemon) = prefix.unwrap_or_default();
            let kept = without_f(&prefix);
            let mut p = Piece {
                daemon,
                monitor: Some(spec),
                ..Piece::default()
            };
            if attached {
                p.input.push(os(&format!("-{prefix}M{text}")));
            } else {
                p.input.extend([os(&format!("-{prefix}M")), os(&text)]);
            }
            if !kept.is_empty() {
                p.to_ssh.push(os(&format!("-{kept}")));
            }
            p
        })
}

fn any_option(with_m: bool) -> BoxedStrategy<Piece> {
    if with_m {
        prop_oneof![3 => value_option(), 2 => flag_option(), 2 => m_option()].boxed()
    } else {
        prop_oneof![3 => value_option(), 2 => flag_option()].boxed()
    }
}

/// A word that is not an option: does not start with '-', or is `-` alone.
fn non_option() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => "[a-zA-Z0-9_.@][a-zA-Z0-9_.@:-]{0,10}".prop_map(OsString::from),
        1 => Just(os("-")),
        1 => opt_value().prop_filter("non-empty", |v| !v.is_empty()),
    ]
}

/// Any word of a remote command, options look-alikes included.
fn command_word() -> impl Strategy<Value = OsString> {
    prop_oneof![
        2 => non_option(),
        1 => Just(os("-M")),
        1 => Just(os("-M20000")),
        1 => Just(os("-f")),
        1 => Just(os("-fN")),
        1 => Just(os("-l")),
        1 => Just(os("-V")),
        1 => Just(os("--")),
        1 => Just(os("")),
        1 => any_bytes(),
    ]
}

/// A whole accepted command line: options, destination, options, command.
#[derive(Clone, Debug)]
struct Line {
    pieces: Vec<Piece>,
}

impl Line {
    fn input(&self) -> Vec<OsString> {
        self.pieces.iter().flat_map(|p| p.input.clone()).collect()
    }
    fn to_ssh(&self) -> Vec<OsString> {
        self.pieces.iter().flat_map(|p| p.to_ssh.clone()).collect()
    }
    fn daemon(&self) -> bool {
        self.pieces.iter().any(|p| p.daemon)
    }
    fn monitor(&self) -> Option<MonitorSpec> {
        self.pieces.iter().rev().find_map(|p| p.monitor)
    }
    fn o_values(&self) -> Vec<String> {
        self.pieces
            .iter()
            .flat_map(|p| p.o_values.clone())
            .collect()
    }
}

fn verbatim(words: Vec<OsString>) -> Piece {
    Piece {
        input: words.clone(),
        to_ssh: words,
        ..Piece::default()
    }
}

fn safe_line(with_m: bool) -> impl Strategy<Value = Line> {
    let opts = || proptest::collection::vec(any_option(with_m), 0..5);
    (
        opts(),
        any::<bool>(),
        non_option(),
        opts(),
        proptest::option::of((
            non_option(),
            proptest::collection::vec(command_word(), 0..5),
        )),
    )
        .prop_map(|(before, dashdash, dest, after, command)| {
            let mut pieces = before;
            if dashdash {
                // `--`: the rest is destination and command, options or not.
                let mut rest = vec![os("--"), dest];
                for p in after {
                    rest.extend(p.input);
                }
                if let Some((first, words)) = command {
                    rest.push(first);
                    rest.extend(words);
                }
                pieces.push(verbatim(rest));
            } else {
                pieces.push(verbatim(vec![dest]));
                pieces.extend(after);
                if let Some((first, words)) = command {
                    let mut cmd = vec![first];
                    cmd.extend(words);
                    pieces.push(verbatim(cmd));
                }
            }
            Line { pieces }
        })
}

fn check_round_trip(line: &Line) -> Result<Cli, TestCaseError> {
    let input = line.input();
    let cli = cli::parse(input.clone())
        .map_err(|e| TestCaseError::fail(format!("{}: rejected: {e}", show(&input))))?;
    prop_assert_eq!(
        &cli.ssh_args,
        &line.to_ssh(),
        "ssh args for {}",
        show(&input)
    );
    prop_assert_eq!(cli.daemon, line.daemon(), "-f for {}", show(&input));
    prop_assert_eq!(cli.monitor, line.monitor(), "-M for {}", show(&input));
    prop_assert!(!cli.version);
    prop_assert_eq!(
        &cli.ssh_o_values,
        &line.o_values(),
        "-o for {}",
        show(&input)
    );
    Ok(cli)
}

proptest! {
    #![proptest_config(cfg(500))]

    #[test]
    fn ssh_args_pass_through_minus_autossh_options(line in safe_line(true)) {
        let cli = check_round_trip(&line)?;
        // And the built argv ends with them, whatever the monitor.
        let settings = config::from_env(cli.clone(), |_| None)
            .map_err(|e| TestCaseError::fail(format!("settings: {e}")))?;
        for f in forwards_for(&settings) {
            let argv = ssh_argv::build(&settings, &f);
            prop_assert!(argv.ends_with(&cli.ssh_args), "{}", show(&argv));
        }
    }
}

// ---------------------------------------------------------------------------
// 3. The same through the real binary
// ---------------------------------------------------------------------------

const T: Duration = Duration::from_secs(10);

/// What autossh puts before the user's arguments with `-M 0`, given the user's `-o` values
/// and whether they gave `-S` (after the session probe's `-L`, see [`session_probe_split`]).
fn keepalive_prefix(o_values: &[String], control_socket: bool) -> Vec<OsString> {
    let keys: Vec<String> = o_values
        .iter()
        .map(|v| {
            let v = v.trim_start();
            let end = v
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(v.len());
            v[..end].to_ascii_lowercase()
        })
        .collect();
    let set = |k: &str| keys.iter().any(|x| x == k);
    let mut v = Vec::new();
    if !set("serveraliveinterval") && !set("serveralivecountmax") {
        v.extend(
            [
                "-o",
                "ServerAliveInterval=60",
                "-o",
                "ServerAliveCountMax=3",
            ]
            .map(os),
        );
    }
    if !set("exitonforwardfailure") {
        v.extend(["-o", "ExitOnForwardFailure=yes"].map(os));
    }
    if !control_socket && !set("controlmaster") && !set("controlpath") && !set("controlpersist") {
        v.extend(["-o", "ControlMaster=no", "-o", "ControlPath=none"].map(os));
    }
    v
}

/// Takes `-M 0`'s session probe forward off the front of ssh's argv; whether it was there.
fn session_probe_split(argv: &mut Vec<OsString>) -> bool {
    let there = argv.len() >= 2
        && argv[0] == "-L"
        && argv[1]
            .as_bytes()
            .ends_with(b":/dev/null/autossh-session-probe");
    if there {
        argv.drain(..2);
    }
    there
}

/// The raw argv of fake ssh run `n` (1-based), bytes exact.
fn raw_run_argv(fake: &FakeSsh, n: usize) -> Vec<OsString> {
    let bytes =
        std::fs::read(fake.state_dir().join("runs").join(format!("{n}.argv"))).unwrap_or_default();
    let mut v: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    v.pop();
    v
}

fn no_nul(args: &[OsString]) -> bool {
    !args.iter().any(|a| a.as_bytes().contains(&0))
}

proptest! {
    #![proptest_config(PtConfig { max_shrink_iters: 30, ..cfg(12) })]

    /// `-M 0` (no ports needed), no `-f` (no detaching), ssh options, destination and
    /// command as generated: the fake ssh gets them unchanged after the keepalive options.
    #[test]
    fn binary_passes_random_argv_to_ssh_unchanged(line in safe_line(false)
        .prop_filter("no -f, no NUL", |l| !l.daemon() && no_nul(&l.input())))
    {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["exit 0"]);
        let p = Cmd::autossh()
            .env("AUTOSSH_PATH", fake.path())
            .env("AUTOSSH_GATETIME", "0")
            .args(["-M", "0"])
            .args(line.input())
            .spawn(&dir);
        let st = p.wait_timeout(T);
        let story = || format!("{}\n{}", p.describe(), fake.describe());
        prop_assert!(st.is_some(), "autossh did not exit\n{}", story());
        prop_assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", story());
        prop_assert_eq!(fake.run_count(), 1, "{}", story());
        let cli = cli::parse(line.input()).expect("a safe line parses");
        let mut want = keepalive_prefix(&line.o_values(), cli.control_socket);
        want.extend(line.to_ssh());
        let mut got = raw_run_argv(&fake, 1);
        let probe_expected = !cli.stdio_forward
            && !line
                .o_values()
                .iter()
                .any(|v| v.trim_start().to_ascii_lowercase().starts_with("clearallforwardings"));
        prop_assert_eq!(session_probe_split(&mut got), probe_expected, "{}", story());
        prop_assert_eq!(got, want, "{}", story());
        let marker = dir.marker();
        drop(p);
        drop(fake);
        prop_assert!(no_process_left(&marker).is_ok(), "left behind");
    }
}

/// A value the library rejects for `var` (checked below through `from_env`).
fn rejected_env() -> impl Strategy<Value = (&'static str, OsString)> {
    (proptest::sample::select(VARS.to_vec()), wild_value()).prop_filter(
        "rejected, and passable through exec",
        |(var, value)| {
            let bytes = value.as_bytes();
            if bytes.contains(&0) || has_line_break(value) {
                return false;
            }
            let env: HashMap<String, OsString> = [(var.to_string(), value.clone())].into();
            whole_chain(&[os("-M"), os("0"), os("host")], &env).is_err()
        },
    )
}

proptest! {
    #![proptest_config(PtConfig { max_shrink_iters: 30, ..cfg(8) })]

    /// A rejected value: exit 1, one line on stderr naming the variable, no ssh started.
    #[test]
    fn binary_rejects_random_bad_env_in_one_line((var, value) in rejected_env()) {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["hang"]);
        let mut cmd = Cmd::autossh().env("AUTOSSH_GATETIME", "0");
        if var != "AUTOSSH_PATH" {
            cmd = cmd.env("AUTOSSH_PATH", fake.path());
        }
        let p = cmd.env(var, &value).args(["-M", "0", "host"]).spawn(&dir);
        let st = p.wait_timeout(T);
        let err = p.stderr_text();
        let story = || format!("{var}={value:?}\n{}\n{}", p.describe(), fake.describe());
        prop_assert_eq!(st.and_then(|s| s.code()), Some(1), "{}", story());
        prop_assert_eq!(err.lines().count(), 1, "{}", story());
        prop_assert!(err.ends_with('\n') && err.contains(var), "{}", story());
        prop_assert_eq!(fake.run_count(), 0, "ssh started\n{}", story());
    }
}

//! 2. Round trip: ssh's arguments pass through untouched.

use super::*;

/// A piece of a generated command line: what is typed, what ssh must get, and what autossh
/// must have recorded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Piece {
    input: Vec<OsString>,
    to_ssh: Vec<OsString>,
    daemon: bool,
    monitor: Option<MonitorSpec>,
    o_values: Vec<String>,
}

/// An option value that does not start with '-' (may be empty, may hold `f`, `M`, spaces,
/// invalid UTF-8).
pub(crate) fn opt_value() -> impl Strategy<Value = OsString> {
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
pub(crate) fn flag_cluster() -> impl Strategy<Value = (String, bool)> {
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

pub(crate) fn without_f(cluster: &str) -> String {
    cluster.chars().filter(|&c| c != 'f').collect()
}

/// An ssh value option: `-L v`, `-Lv`, `-NfL v`, `-fLv`.
pub(crate) fn value_option() -> impl Strategy<Value = Piece> {
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
pub(crate) fn flag_option() -> impl Strategy<Value = Piece> {
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
pub(crate) fn monitor_value() -> impl Strategy<Value = (String, MonitorSpec)> {
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
pub(crate) fn m_option() -> impl Strategy<Value = Piece> {
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

pub(crate) fn any_option(with_m: bool) -> BoxedStrategy<Piece> {
    if with_m {
        prop_oneof![3 => value_option(), 2 => flag_option(), 2 => m_option()].boxed()
    } else {
        prop_oneof![3 => value_option(), 2 => flag_option()].boxed()
    }
}

/// A word that is not an option: does not start with '-', or is `-` alone.
pub(crate) fn non_option() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => "[a-zA-Z0-9_.@][a-zA-Z0-9_.@:-]{0,10}".prop_map(OsString::from),
        1 => Just(os("-")),
        1 => opt_value().prop_filter("non-empty", |v| !v.is_empty()),
    ]
}

/// Any word of a remote command, options look-alikes included.
pub(crate) fn command_word() -> impl Strategy<Value = OsString> {
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
pub(crate) struct Line {
    pieces: Vec<Piece>,
}

impl Line {
    pub(crate) fn input(&self) -> Vec<OsString> {
        self.pieces.iter().flat_map(|p| p.input.clone()).collect()
    }
    pub(crate) fn to_ssh(&self) -> Vec<OsString> {
        self.pieces.iter().flat_map(|p| p.to_ssh.clone()).collect()
    }
    pub(crate) fn daemon(&self) -> bool {
        self.pieces.iter().any(|p| p.daemon)
    }
    fn monitor(&self) -> Option<MonitorSpec> {
        self.pieces.iter().rev().find_map(|p| p.monitor)
    }
    pub(crate) fn o_values(&self) -> Vec<String> {
        self.pieces
            .iter()
            .flat_map(|p| p.o_values.clone())
            .collect()
    }
}

pub(crate) fn verbatim(words: Vec<OsString>) -> Piece {
    Piece {
        input: words.clone(),
        to_ssh: words,
        ..Piece::default()
    }
}

pub(crate) fn safe_line(with_m: bool) -> impl Strategy<Value = Line> {
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

pub(crate) fn check_round_trip(line: &Line) -> Result<Cli, TestCaseError> {
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
        // A -L that ssh would reject is rejected at once while forwards are held (one
        // line naming it); the pass-through is then checked with holding off.
        let settings = match config::from_env(cli.clone(), |_| None) {
            Ok(s) => s,
            Err(e) if e.to_string().contains("bad local forwarding specification") => {
                let off = |k: &str| (k == "AUTOSSH_HOLD").then(|| "no".into());
                config::from_env(cli.clone(), off)
                    .map_err(|e| TestCaseError::fail(format!("settings: {e}")))?
            }
            Err(e) => return Err(TestCaseError::fail(format!("settings: {e}"))),
        };
        for f in forwards_for(&settings) {
            let argv = ssh_argv::build(&settings, &f, &sockets_for(&settings));
            prop_assert!(argv.ends_with(&settings.held.rest), "{}", show(&argv));
            // Every held forward is handed to ssh as its private socket.
            let socks = argv.iter().filter(|a| a.to_string_lossy().contains("/fwd-1-")).count();
            prop_assert_eq!(socks, settings.held.forwards.len());
        }
    }
}

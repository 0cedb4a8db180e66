//! Generators.

use super::*;

/// Any bytes (NUL and invalid UTF-8 included), short.
pub(crate) fn any_bytes() -> impl Strategy<Value = OsString> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec)
}

/// Number-ish text: what a port or a count might look like, and what it might not.
pub(crate) fn numberish() -> impl Strategy<Value = String> {
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
pub(crate) fn wild_arg() -> impl Strategy<Value = OsString> {
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

pub(crate) fn wild_argv() -> impl Strategy<Value = Vec<OsString>> {
    proptest::collection::vec(wild_arg(), 0..10)
}

/// An arbitrary value for an environment variable.
pub(crate) fn wild_value() -> impl Strategy<Value = OsString> {
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
pub(crate) fn wild_env() -> impl Strategy<Value = HashMap<String, OsString>> {
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
pub(crate) fn forwards_for(s: &Settings) -> Vec<Forwards> {
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
pub(crate) fn has_line_break(s: &OsString) -> bool {
    s.as_bytes().iter().any(|&b| b == b'\n' || b == b'\r')
}

pub(crate) fn one_line(msg: &str) -> bool {
    !msg.contains(['\n', '\r'])
}

/// parse → from_env → build, as `main` and `run` chain them. Returns the error message of a
/// rejection.
pub(crate) fn whole_chain(
    args: &[OsString],
    env: &HashMap<String, OsString>,
) -> Result<(), String> {
    let cli = cli::parse(args.iter().cloned()).map_err(|e| e.to_string())?;
    let settings = config::from_env(cli, |k| env.get(k).cloned()).map_err(|e| e.to_string())?;
    for f in forwards_for(&settings) {
        let argv = ssh_argv::build(&settings, &f, &sockets_for(&settings));
        assert!(
            argv.ends_with(&settings.held.rest),
            "build must end with the user's args (but the held forwards)"
        );
    }
    Ok(())
}

/// A private socket for each held forward, as the shell would name them.
pub(crate) fn sockets_for(settings: &autossh::setup::config::Settings) -> ssh_argv::Sockets {
    ssh_argv::Sockets {
        monitor: Some("/tmp/autossh-1/probe-1.sock".into()),
        held: (0..settings.held.forwards.len())
            .map(|i| format!("/tmp/autossh-1/fwd-1-{i}.sock").into())
            .collect(),
        agent: None,
    }
}

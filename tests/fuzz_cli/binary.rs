//! 3. The same through the real binary.

use super::*;

pub(crate) const T: Duration = Duration::from_secs(10);

/// What autossh puts before the user's arguments with `-M 0`, given the user's `-o` values
/// and whether they gave `-S` (after the session probe's `-L`, see [`session_probe_split`]).
pub(crate) fn keepalive_prefix(o_values: &[String], control_socket: bool) -> Vec<OsString> {
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
pub(crate) fn session_probe_split(argv: &mut Vec<OsString>) -> bool {
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
pub(crate) fn raw_run_argv(fake: &FakeSsh, n: usize) -> Vec<OsString> {
    let bytes =
        std::fs::read(fake.state_dir().join("runs").join(format!("{n}.argv"))).unwrap_or_default();
    let mut v: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    v.pop();
    v
}

pub(crate) fn no_nul(args: &[OsString]) -> bool {
    !args.iter().any(|a| a.as_bytes().contains(&0))
}

proptest! {
    #![proptest_config(PtConfig { max_shrink_iters: 30, ..cfg(12) })]

    /// `-M 0` (no ports needed), no `-f` (no detaching), ssh options, destination and
    /// command as generated: the fake ssh gets them unchanged after the keepalive options.
    /// `AUTOSSH_HOLD=no` promises exactly that, local forwards included (held, they become
    /// private sockets: tests/held).
    #[test]
    fn binary_passes_random_argv_to_ssh_unchanged(line in safe_line(false)
        .prop_filter("no -f, no NUL", |l| !l.daemon() && no_nul(&l.input())))
    {
        let dir = TestDir::new();
        let fake = FakeSsh::new(&dir, &["exit 0"]);
        let p = Cmd::new(autossh_bin!())
            .env("AUTOSSH_PATH", fake.path())
            .env("AUTOSSH_HOLD", "no")
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
pub(crate) fn rejected_env() -> impl Strategy<Value = (&'static str, OsString)> {
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
        let mut cmd = Cmd::new(autossh_bin!()).env("AUTOSSH_GATETIME", "0");
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

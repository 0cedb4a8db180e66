//! The usage text through the real binary: with no arguments the whole of it on stderr and exit
//! status 1 (as autossh 1.4g), with `--help` on stdout and exit status 0; `--version` is `-V`.

use std::time::Duration;
use test_support::*;

const T: Duration = Duration::from_secs(10);

/// Runs autossh with `args` to its end: exit code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = TestDir::new();
    let p = Cmd::new(autossh_bin!()).args(args).spawn(&dir);
    let status = p.wait_timeout(T);
    assert!(status.is_some(), "did not exit:\n{}", p.describe());
    (
        status.and_then(|s| s.code()),
        p.stdout_text(),
        p.stderr_text(),
    )
}

/// What autossh sets in its hook's environment (AUTOSSH_HOOK): named in README.md, not read.
const GIVEN_TO_THE_HOOK: [&str; 4] = [
    "AUTOSSH_TUNNEL",
    "AUTOSSH_STATE",
    "AUTOSSH_REASON",
    "AUTOSSH_DOWN_FOR",
];

/// Every `AUTOSSH_*` name README.md mentions (independent of the table the usage is made from),
/// but the hook's.
fn readme_variables() -> Vec<&'static str> {
    let readme = include_str!("../README.md");
    let mut v: Vec<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("AUTOSSH_") && w.len() > "AUTOSSH_".len())
        .filter(|w| !GIVEN_TO_THE_HOOK.contains(w))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn assert_whole_usage(text: &str) {
    assert!(
        text.starts_with("usage: autossh [-V] [-M monitor_port[:echo_port]] [-f] [SSH_OPTIONS]\n"),
        "{text}"
    );
    let vars = readme_variables();
    assert!(vars.len() >= 16, "README variables not found: {vars:?}");
    for v in vars {
        assert!(
            text.contains(&format!("{v} (default: ")),
            "{v} missing:\n{text}"
        );
    }
    for flag in [
        "-M port[:echo_port]",
        "\n    -f\n",
        "-V, --version",
        "--help",
        "SSH_OPTIONS",
    ] {
        assert!(text.contains(flag), "{flag:?} missing:\n{text}");
    }
    assert!(text.contains("(default: /usr/bin/ssh)"), "{text}");
    assert!(text.contains("(default: 600)"), "{text}");
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .contains("man autossh"),
        "{text}"
    );
}

#[test]
fn no_arguments_print_the_whole_usage_on_stderr_and_exit_1() {
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(1), "stderr:\n{err}");
    assert_eq!(out, "");
    assert_whole_usage(&err);
}

#[test]
fn help_prints_the_same_usage_on_stdout_and_exits_0() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert_eq!(err, "");
    assert_whole_usage(&out);
    let (_, _, no_args) = run(&[]);
    assert_eq!(out, no_args);
    // Among other options too; after the remote command it belongs to the command.
    let (code, out, _) = run(&["-M", "0", "host", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("usage: autossh"), "{out}");
}

#[test]
fn version_is_the_same_as_v() {
    let (code, out, err) = run(&["--version"]);
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(out.starts_with("autossh ") && out.ends_with('\n'), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code_v, out_v, _) = run(&["-V"]);
    assert_eq!((code_v, out_v), (Some(0), out));
}

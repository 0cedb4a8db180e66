//! Bad tunnels files (docs/tunnels.md, "Bad files"): exit 1 before anything starts (no ssh,
//! not even `ssh -G`, is run: AUTOSSH_PATH is a wrapper that records every run of the real ssh;
//! no control socket), and stderr is one line `autossh: FILE:LINE: tunnel "NAME": ...`.

use super::rig::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use test_support::*;

mod clashes;

/// tests/tunnels/record_ssh.sh (committed, executable: never written by a test, which could
/// race another thread's fork into ETXTBSY).
fn recorder() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tunnels/record_ssh.sh");
    let mode = fs::metadata(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode();
    if mode & 0o111 != 0o111 {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod recorder");
    }
    p
}

/// The 1-based number of the `nth` (1-based) line of `text` containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth - 1)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} (#{nth}) not in\n{text}"))
}

/// A tunnel table on one line each: header, ssh (a list), monitor, then `extra` lines.
fn table(name: &str, ssh: &[String], monitor: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "[tunnel.{name}]\nssh = {}\nmonitor = {}\n",
        toml_list(ssh),
        toml_str(monitor)
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `-N -L <port>:127.0.0.1:9 -p 9 127.0.0.1` (nothing is ever started).
fn fwd(port: u16) -> Vec<String> {
    [
        "-N",
        "-L",
        &format!("{port}:127.0.0.1:9"),
        "-p",
        "9",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec()
}

/// One rejected file.
struct Rejection {
    file: String,
    text: String,
    /// The one stderr line.
    line: String,
}

impl Rejection {
    fn names(&self, v: &Verdicts, lineno: usize, tunnel: Option<&str>, words: &[&str]) {
        let at = format!("{}:{lineno}:", self.file);
        let named = tunnel.map(|t| format!("tunnel \"{t}\""));
        let mut want: Vec<&str> = vec![&at];
        want.extend(named.as_deref());
        want.extend(words);
        for w in want {
            v.check(
                self.line.contains(w),
                format!("{w:?} missing in {:?}\nfile:\n{}", self.line, self.text),
            );
        }
    }

    /// Names one of `tunnels` and one of `lines` (a clash: either side may be blamed).
    fn names_one_of(&self, v: &Verdicts, lines: &[usize], tunnels: &[&str], words: &[&str]) {
        let ok_line = lines
            .iter()
            .any(|n| self.line.contains(&format!("{}:{n}:", self.file)));
        let ok_tunnel = tunnels
            .iter()
            .any(|t| self.line.contains(&format!("tunnel \"{t}\"")));
        v.check(
            ok_line && ok_tunnel,
            format!(
                "want {}:<one of {lines:?}>: and tunnel <one of {tunnels:?}> in {:?}\nfile:\n{}",
                self.file, self.line, self.text
            ),
        );
        for w in words {
            v.check(
                self.line.contains(w),
                format!("{w:?} missing in {:?}", self.line),
            );
        }
    }
}

/// The wrong messages of one test, all reported together at its end (one wrong case does not
/// hide the others); dropping it with any recorded fails the test.
#[derive(Default)]
struct Verdicts(std::cell::RefCell<Vec<String>>);

impl Verdicts {
    fn check(&self, ok: bool, why: String) {
        if !ok {
            self.0.borrow_mut().push(why);
        }
    }
}

impl Drop for Verdicts {
    fn drop(&mut self) {
        let wrong = self.0.borrow();
        if !wrong.is_empty() && !std::thread::panicking() {
            panic!(
                "{} wrong message(s):\n\n{}",
                wrong.len(),
                wrong.join("\n\n")
            );
        }
    }
}

/// Writes `text` as `<label>.toml` and runs `autossh --tunnels` on it: it must exit 1 within
/// [`T`] with one stderr line, nothing on stdout, no ssh run and no control socket.
fn reject(dir: &TestDir, label: &str, text: &str) -> Rejection {
    let file = dir.join(format!("{label}.toml"));
    fs::write(&file, text).expect("write the tunnels file");
    reject_path(dir, label, &file, text)
}

fn reject_path(dir: &TestDir, label: &str, file: &Path, text: &str) -> Rejection {
    let record = dir.join(format!("{label}.ssh-runs"));
    let sock = dir.join(format!("{label}.ctl")).join("ctl.sock");
    let p = Cmd::new(autossh_bin!())
        .name(label)
        .env("AUTOSSH_PATH", recorder())
        .env("TUNNELS_TEST_RECORD", &record)
        .env("AUTOSSH_GATETIME", "0")
        .arg("--tunnels")
        .arg(file)
        .arg("--control-socket")
        .arg(&sock)
        .spawn(dir);
    let st = p.wait_timeout(T);
    let story = format!("{}\nfile:\n{text}", p.describe());
    assert!(st.is_some(), "{label}: still running\n{story}");
    assert_eq!(st.and_then(|s| s.code()), Some(1), "{label}: exit\n{story}");
    let runs = fs::read_to_string(&record).unwrap_or_default();
    assert!(runs.is_empty(), "{label}: ssh was run:\n{runs}\n{story}");
    assert!(!sock.exists(), "{label}: control socket left\n{story}");
    assert_eq!(p.stdout_text(), "", "{label}: stdout\n{story}");
    let err = p.stderr_text();
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{label}: not one line\n{story}");
    assert!(lines[0].starts_with("autossh: "), "{label}\n{story}");
    Rejection {
        file: file.to_string_lossy().into_owned(),
        text: text.to_string(),
        line: lines[0].to_string(),
    }
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let text = table("a", &fwd(free_port()), "0", &["frobnicate = 1"]);
    let r = reject(&dir, "in-tunnel", &text);
    r.names(
        &v,
        line_of(&text, "frobnicate", 1),
        Some("a"),
        &["frobnicate"],
    );

    let text = format!(
        "[defaults]\npoll = 60\nfrobnicate = 2\n\n{}",
        table("a", &fwd(free_port()), "0", &[])
    );
    let r = reject(&dir, "in-defaults", &text);
    r.names(&v, line_of(&text, "frobnicate", 1), None, &["frobnicate"]);

    // `ssh_options` belongs to [defaults] only.
    let text = table("a", &fwd(free_port()), "0", &["ssh_options = [\"-v\"]"]);
    let r = reject(&dir, "ssh-options", &text);
    r.names(
        &v,
        line_of(&text, "ssh_options", 1),
        Some("a"),
        &["ssh_options"],
    );

    // A misspelt top-level table.
    let text = format!(
        "{}\n[tunnle.b]\nssh = \"-N host\"\n",
        table("a", &fwd(free_port()), "0", &[])
    );
    let r = reject(&dir, "top-level", &text);
    r.names(&v, line_of(&text, "[tunnle.b]", 1), None, &["tunnle"]);
}

#[test]
fn a_bad_value_is_named_with_its_key_and_line() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    // The spec's own example: `FILE:LINE: tunnel "db": poll: invalid value "x" ...`.
    let text = format!(
        "{}\n{}",
        table("ok", &fwd(free_port()), "0", &[]),
        table("db", &fwd(free_port()), "0", &["poll = \"x\""])
    );
    let r = reject(&dir, "poll-x", &text);
    r.names(
        &v,
        line_of(&text, "poll", 1),
        Some("db"),
        &["poll", "\"x\""],
    );

    for (label, line) in [
        ("poll-negative", "poll = -5"),
        ("gatetime-word", "gatetime = \"soon\""),
        ("maxstart-word", "maxstart = \"lots\""),
        ("first-poll-zero", "first_poll = 0"),
        ("probe-maybe", "session_probe = \"maybe\""),
        ("message-two-lines", "message = \"a\\nb\""),
        ("poll-float", "poll = 1.5"),
    ] {
        let text = table("db", &fwd(free_port()), "0", &[line]);
        let r = reject(&dir, label, &text);
        r.names(&v, line_of(&text, line, 1), Some("db"), &[]);
    }
    for (label, monitor) in [
        ("monitor-word", "abc"),
        ("monitor-echo-word", "20000:x"),
        ("monitor-too-big", "70000"),
    ] {
        let text = table("db", &fwd(free_port()), monitor, &[]);
        let r = reject(&dir, label, &text);
        r.names(&v, line_of(&text, "monitor", 1), Some("db"), &["monitor"]);
    }
    // ssh must be a list of strings or a string.
    let text = "[tunnel.db]\nssh = 5\nmonitor = \"0\"\n";
    let r = reject(&dir, "ssh-number", text);
    r.names(&v, 2, Some("db"), &["ssh"]);
}

#[test]
fn a_duplicate_tunnel_name_is_rejected_at_its_second_table() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let text = format!(
        "{}\n{}\n{}",
        table("dup1", &fwd(free_port()), "0", &[]),
        table("other", &fwd(free_port()), "0", &[]),
        table("dup1", &fwd(free_port()), "0", &[])
    );
    let r = reject(&dir, "dup", &text);
    let second = line_of(&text, "[tunnel.dup1]", 2);
    r.names(&v, second, None, &["dup1"]);
    v.check(
        r.line.to_lowercase().contains("duplicate"),
        format!("does not say duplicate: {:?}", r.line),
    );
}

#[test]
fn a_tunnel_without_ssh_is_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let text = format!(
        "{}\n[tunnel.b]\nmonitor = \"0\"\npoll = 30\n",
        table("a", &fwd(free_port()), "0", &[])
    );
    let r = reject(&dir, "no-ssh", &text);
    let header = line_of(&text, "[tunnel.b]", 1);
    r.names_one_of(&v, &[header, header + 1, header + 2], &["b"], &["ssh"]);
    // An empty list is no ssh either.
    let text = "[tunnel.e]\nssh = []\nmonitor = \"0\"\n";
    let r = reject(&dir, "empty-ssh", text);
    r.names_one_of(&v, &[1, 2], &["e"], &["ssh"]);
}

#[test]
fn bad_tunnel_names_are_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let long = "n".repeat(65);
    for (label, name) in [
        ("space", "\"a b\""),
        ("slash", "\"x/y\""),
        ("empty", "\"\""),
        ("long", long.as_str()),
    ] {
        let text = format!(
            "[tunnel.{name}]\nssh = {}\nmonitor = \"0\"\n",
            toml_list(&fwd(free_port()))
        );
        let r = reject(&dir, label, &text);
        v.check(
            r.line.contains(&format!("{}:1:", r.file)),
            format!("{label}: line 1 not named: {:?}", r.line),
        );
    }
}

#[test]
fn process_wide_keys_in_the_file_are_errors_that_say_so() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    for (key, value) in [
        ("logfile", "\"/tmp/autossh-test.log\""),
        ("loglevel", "7"),
        ("debug", "true"),
        ("pidfile", "\"/tmp/autossh-test.pid\""),
        ("statusfile", "\"/tmp/autossh-test.json\""),
        ("metricsfile", "\"/tmp/autossh-test.prom\""),
    ] {
        let line = format!("{key} = {value}");
        let text = table("a", &fwd(free_port()), "0", &[&line]);
        let r = reject(&dir, key, &text);
        r.names(&v, line_of(&text, &line, 1), Some("a"), &[key]);
        let var = format!("AUTOSSH_{}", key.to_uppercase());
        v.check(
            r.line.contains(&var) || r.line.contains("environment"),
            format!(
                "{key}: does not say it belongs to the environment ({var}): {:?}",
                r.line
            ),
        );
    }
    let text = format!(
        "[defaults]\nlogfile = \"/tmp/autossh-test.log\"\n\n{}",
        table("a", &fwd(free_port()), "0", &[])
    );
    let r = reject(&dir, "defaults-logfile", &text);
    r.names(&v, 2, None, &["logfile"]);
}

#[test]
fn dash_f_in_a_tunnels_ssh_is_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let p = free_port();
    let text = format!("[tunnel.bg]\nssh = \"-f -N -L {p}:127.0.0.1:9 127.0.0.1\"\nmonitor = 0\n");
    let r = reject(&dir, "string", &text);
    r.names(&v, 2, Some("bg"), &["-f"]);
    let text = format!(
        "[tunnel.bg2]\nmonitor = \"0\"\nssh = [\"-fN\", \"-L\", \"{p}:127.0.0.1:9\", \"127.0.0.1\"]\n"
    );
    let r = reject(&dir, "joined", &text);
    r.names(&v, 3, Some("bg2"), &["-f"]);
}

#[test]
fn a_file_without_tunnels_is_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    for (label, text) in [
        ("empty", ""),
        ("comments", "# nothing here\n"),
        ("defaults-only", "[defaults]\npoll = 60\n"),
    ] {
        let r = reject(&dir, label, text);
        v.check(
            r.line.contains(&r.file),
            format!("{label}: file not named: {:?}", r.line),
        );
    }
    // A syntax error, and a file that is not there.
    let text = format!("{}\n[tunnel.b\n", table("a", &fwd(free_port()), "0", &[]));
    let r = reject(&dir, "syntax", &text);
    r.names(&v, line_of(&text, "[tunnel.b", 1), None, &[]);
    let missing = dir.join("missing.toml");
    let r = reject_path(&dir, "missing", &missing, "");
    v.check(
        r.line.contains(&r.file),
        format!("file not named: {:?}", r.line),
    );
}

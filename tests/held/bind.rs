//! Held forwards listen where ssh would, and a forward that cannot listen stops autossh
//! before any ssh starts, with one line naming it.

use crate::rig::*;
use std::collections::BTreeSet;

/// The local addresses listening on TCP `port` (from /proc/net/tcp and tcp6).
fn listening(port: u16) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((addr, p)) = f[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            out.insert(address(addr, v6));
        }
    }
    out
}

/// /proc/net's hex address: IPv4 in host order, IPv6 as four host-order words.
fn address(hex: &str, v6: bool) -> String {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| {
            u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16)
                .unwrap()
                .swap_bytes()
        })
        .collect();
    if !v6 {
        return std::net::Ipv4Addr::from(words[0]).to_string();
    }
    let mut b = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    std::net::Ipv6Addr::from(b).to_string()
}

fn ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Starts autossh with `-L spec` (`{p}` stands for a free port), `extra` ssh arguments;
/// returns the addresses it listens on.
fn listens_on(spec: &str, extra: &[&str]) -> BTreeSet<String> {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let p = free_port();
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(spec.replace("{p}", &p.to_string()))
        .args(extra)
        .args(sshd.client_args())
        .spawn(&dir);
    // Every address is bound before ssh starts.
    assert!(
        autossh.wait_for_stderr("starting ssh", UP),
        "{}",
        autossh.describe()
    );
    let got = listening(p);
    autossh.signal(Signal::SIGTERM);
    assert!(autossh.wait_timeout(UP).is_some());
    got
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tcp_forwards_listen_where_ssh_would() {
    let both = if ipv6() {
        set(&["127.0.0.1", "::1"])
    } else {
        set(&["127.0.0.1"])
    };
    let every = if ipv6() {
        set(&["0.0.0.0", "::"])
    } else {
        set(&["0.0.0.0"])
    };
    let cases: &[(&str, &[&str], BTreeSet<String>)] = &[
        ("{p}:127.0.0.1:9", &[], both.clone()),
        ("localhost:{p}:127.0.0.1:9", &[], both.clone()),
        ("127.0.0.1:{p}:127.0.0.1:9", &[], set(&["127.0.0.1"])),
        ("*:{p}:127.0.0.1:9", &[], every.clone()),
        ("{p}:127.0.0.1:9", &["-g"], every.clone()),
        ("{p}:127.0.0.1:9", &["-o", "GatewayPorts=yes"], every),
        ("{p}:127.0.0.1:9", &["-4"], set(&["127.0.0.1"])),
    ];
    for (spec, extra, want) in cases {
        assert_eq!(&listens_on(spec, extra), want, "-L {spec} {extra:?}");
    }
    if ipv6() {
        assert_eq!(listens_on("[::1]:{p}:127.0.0.1:9", &[]), set(&["::1"]));
    }
}

#[test]
fn a_unix_socket_forward_is_made_with_ssh_s_mask_and_removed_at_the_end() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let rig_dir = TestDir::new();
    let sock = rig_dir.join("db.sock");
    let sshd = Sshd::start(&rig_dir);
    let service = Service::start();
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{}:127.0.0.1:{}", sock.display(), service.port()))
        .args(sshd.client_args())
        .spawn(&rig_dir);
    must(
        UP,
        "the socket's file",
        || autossh.describe(),
        || sock.exists(),
    );
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "StreamLocalBindMask 0177"
    );
    must(
        UP,
        "a connection through it",
        || autossh.describe(),
        || {
            std::os::unix::net::UnixStream::connect(&sock)
                .map(|mut s| {
                    use std::io::Read;
                    let mut g = vec![0u8; GREETING.len()];
                    s.set_read_timeout(Some(UP)).is_ok() && s.read_exact(&mut g).is_ok()
                })
                .unwrap_or(false)
        },
    );
    autossh.signal(Signal::SIGTERM);
    assert_eq!(autossh.wait_timeout(UP).and_then(|s| s.code()), Some(0));
    assert!(!sock.exists(), "the socket autossh made is removed");
    // A stale file: refused as ssh refuses it, unless StreamLocalBindUnlink says otherwise.
    std::fs::write(&sock, b"").unwrap();
    let out = bad_start(&[&format!("{}:127.0.0.1:9", sock.display())], &[]);
    assert!(out.contains("Address already in use"), "{out}");
    let ok = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-o", "StreamLocalBindUnlink=yes", "-L"])
        .arg(format!("{}:127.0.0.1:{}", sock.display(), service.port()))
        .args(sshd.client_args())
        .spawn(&rig_dir);
    must(
        UP,
        "bound over the stale file",
        || ok.describe(),
        || std::fs::metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
    );
    ok.signal(Signal::SIGTERM);
    assert!(ok.wait_timeout(UP).is_some());
}

/// Runs autossh with `-L` for each of `specs` and `env`, expecting it to fail before
/// anything starts; returns its stderr (checked: one line, exit 1, no ssh run).
fn bad_start(specs: &[&str], env: &[(&str, &str)]) -> String {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let mut cmd = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .args(["-M", "0", "-N"]);
    for s in specs {
        cmd = cmd.args(["-L", s]);
    }
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let p = cmd.arg("host").spawn(&dir);
    let st = p.wait_timeout(UP).expect("exits at once");
    let err = p.stderr_text();
    assert_eq!(st.code(), Some(1), "{}", p.describe());
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(fake.run_count(), 0, "no ssh started\n{}", fake.describe());
    err
}

#[test]
fn a_forward_that_cannot_listen_is_one_line_and_exit_1_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = format!("{port}:db:5432");
    let free = format!("{}:db:5432", free_port());
    let err = bad_start(&[&free, &busy], &[]);
    assert!(
        err.contains(&format!("-L {busy}")) && err.contains("in use"),
        "{err}"
    );
    // The first forward was bound, then let go: its port is free again.
    let first: u16 = free.split(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", first)).is_ok(),
        "half-bound left"
    );
    let err = bad_start(&[&format!("192.0.2.1:{}:db:5432", free_port())], &[]);
    assert!(err.contains("192.0.2.1") && err.contains("assign"), "{err}");
    let err = bad_start(&["/nonexistent/dir/db.sock:db:5432"], &[]);
    assert!(err.contains("/nonexistent/dir/db.sock"), "{err}");
    let err = bad_start(&["5432:db"], &[]);
    assert!(
        err.contains("-L 5432:db: bad local forwarding specification"),
        "{err}"
    );
    let err = bad_start(&[&free], &[("AUTOSSH_HOLD_TIME", "abc")]);
    assert!(err.contains("AUTOSSH_HOLD_TIME"), "{err}");
}

#[test]
fn hold_no_gives_ssh_exactly_its_arguments() {
    let dir = TestDir::new();
    let fake = FakeSsh::new(&dir, &["hang"]);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_HOLD", "no")
        .env("AUTOSSH_SESSION_PROBE", "no")
        .args(["-M", "0", "-N", "-L", "5432:db:5432", "host"])
        .spawn(&dir);
    assert!(fake.wait_for_runs(1, UP), "{}", p.describe());
    let argv = &fake.runs()[0];
    assert!(
        argv.windows(2).any(|w| w == ["-L", "5432:db:5432"]),
        "{argv:?}"
    );
    assert!(!argv.iter().any(|a| a.contains(".sock")), "{argv:?}");
    p.signal(Signal::SIGTERM);
    assert!(p.wait_timeout(UP).is_some());
}

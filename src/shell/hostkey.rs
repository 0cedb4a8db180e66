//! What to tell the user when ssh cannot verify the server's host key (the first connection
//! to a server, under `-f` or a unit where nobody can answer ssh's question): the host and
//! port, the fingerprints the server offers, and the exact command that pins them. Looked up
//! in a helper thread (`ssh -G` for the name and port ssh uses, then `ssh-keyscan`, bounded),
//! so the event loop never waits for the network.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

/// ssh-keyscan's own connect timeout, seconds.
const SCAN_TIMEOUT_S: &str = "5";

/// A look-up under way; its answer is one log line.
pub struct HostKeyHint {
    rx: Receiver<String>,
}

impl HostKeyHint {
    /// Starts the look-up for the server these ssh arguments reach.
    pub fn start(ssh: &OsString, args: &[OsString]) -> Option<HostKeyHint> {
        let (tx, rx) = mpsc::channel();
        let (ssh, args) = (ssh.clone(), args.to_vec());
        let tunnel = crate::setup::logging::current_tunnel();
        std::thread::Builder::new()
            .name("host-key".into())
            .spawn(move || {
                let retry = match &tunnel {
                    Some(n) => format!("autossh restart {n}"),
                    None => format!("kill -USR1 {}", std::process::id()),
                };
                let name = tunnel.map(|n| std::rc::Rc::from(n.as_str()));
                let _log = crate::setup::logging::tunnel_context(name.as_ref());
                if let Some(line) = hint(&ssh, &args, &retry) {
                    let _ = tx.send(line);
                }
            })
            .ok()?;
        Some(HostKeyHint { rx })
    }

    /// Where the look-up is.
    pub fn take(&self) -> Lookup {
        match self.rx.try_recv() {
            Ok(l) => Lookup::Line(l),
            Err(TryRecvError::Empty) => Lookup::Pending,
            Err(TryRecvError::Disconnected) => Lookup::Nothing,
        }
    }
}

/// A look-up's answer so far.
pub enum Lookup {
    /// Still under way.
    Pending,
    /// Done: the line to log.
    Line(String),
    /// Done without a line (`ssh -G` or ssh-keyscan failed).
    Nothing,
}

/// Where ssh connects and which known-hosts file it writes, from `ssh -G`.
struct Target {
    host: String,
    port: String,
    known_hosts: Option<String>,
}

fn target(text: &str) -> Option<Target> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(' ')))
            .map(str::to_string)
    };
    Some(Target {
        host: field("hostname")?,
        port: field("port").unwrap_or_else(|| "22".into()),
        known_hosts: field("userknownhostsfile")
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
            .filter(|f| f != "/dev/null"),
    })
}

/// The whole look-up: the line to log, or `None`. `retry`: the command that retries at once.
fn hint(ssh: &OsString, args: &[OsString], retry: &str) -> Option<String> {
    let t = target(&crate::shell::ssh_g::config(ssh, args)?)?;
    let dir = Path::new(ssh)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let tool = |name: &str| -> PathBuf {
        let p = dir.join(name);
        if p.exists() {
            p
        } else {
            PathBuf::from(name)
        }
    };
    let scanned = Command::new(tool("ssh-keyscan"))
        .args(["-T", SCAN_TIMEOUT_S, "-p", &t.port, &t.host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let keys = String::from_utf8_lossy(&scanned.stdout).into_owned();
    let fingerprints = fingerprints(&tool("ssh-keygen"), &keys);
    Some(message(&t, &fingerprints, retry))
}

/// `ED25519 SHA256:...` for each key ssh-keyscan printed.
fn fingerprints(keygen: &Path, keys: &str) -> Vec<String> {
    let Ok(mut child) = Command::new(keygen)
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Vec::new();
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(keys.as_bytes());
    }
    let Ok(out) = child.wait_with_output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kind = f.last()?.trim_matches(|c| c == '(' || c == ')');
            Some(format!("{kind} {}", f.get(1)?))
        })
        .collect()
}

fn message(t: &Target, fingerprints: &[String], retry: &str) -> String {
    let at = format!("{} port {}", t.host, t.port);
    let offers = if fingerprints.is_empty() {
        "it did not answer ssh-keyscan".to_string()
    } else {
        format!("it offers {}", fingerprints.join(", "))
    };
    let file = t.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts");
    format!(
        "ssh cannot verify the host key of {at} ({offers}); after checking that fingerprint \
         with the server's administrator, pin it: ssh-keyscan -p {} {} >> {file} (then \
         `{retry}` retries at once; or trust a first key with -o \
         StrictHostKeyChecking=accept-new: docs/operations.md)",
        t.port, t.host
    )
}

/// How long after one hint another may be looked up (one per outage, not per handshake).
pub const HINT_EVERY: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_host_port_fingerprints_and_the_pinning_command() {
        let t = target("user root\nhostname db.example\nport 2222\nuserknownhostsfile /home/a/.ssh/known_hosts /home/a/.ssh/known_hosts2\n").unwrap();
        let m = message(&t, &["ED25519 SHA256:abc".into()], "kill -USR1 7");
        assert!(m.contains("db.example port 2222"), "{m}");
        assert!(m.contains("it offers ED25519 SHA256:abc"), "{m}");
        assert!(
            m.contains("ssh-keyscan -p 2222 db.example >> /home/a/.ssh/known_hosts "),
            "{m}"
        );
        let none = target("hostname h\nuserknownhostsfile /dev/null\n").unwrap();
        let m = message(&none, &[], "autossh restart db");
        assert!(m.contains("h port 22 (it did not answer") && m.contains("~/.ssh/known_hosts"));
        assert!(
            m.contains("(then `autossh restart db` retries at once;"),
            "{m}"
        );
    }
}

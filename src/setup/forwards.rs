//! What ssh's arguments bind locally (`-L`, `-D`, `LocalForward`, `DynamicForward`) and
//! which server they reach: for the tunnels file's clash checks and handshake slots.

use crate::setup::ssh_opts::{self, OptKind};
use std::ffi::OsString;

/// Something a tunnel binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A local TCP port (any address: two listeners on one port clash on the wildcard).
    Port(u16),
    /// A local unix socket path.
    Socket(String),
    /// A port on the server (loop mode's `-R`).
    RemotePort(u16),
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::Port(p) => write!(f, "local port {p}"),
            Bind::Socket(s) => write!(f, "local socket {s}"),
            Bind::RemotePort(p) => write!(f, "port {p} on the server"),
        }
    }
}

/// ssh's options with values, in order (`('L', "5432:db:5432")`), and the destination.
fn options(args: &[OsString]) -> (Vec<(char, String)>, Option<String>) {
    let mut out = Vec::new();
    let mut destination = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        i += 1;
        if a == "--" {
            destination = args.get(i).map(|d| d.to_string_lossy().into_owned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            if destination.is_some() {
                break; // the remote command
            }
            destination = Some(a);
            continue;
        }
        for (j, c) in a.char_indices().skip(1) {
            if ssh_opts::kind(c) == OptKind::Value {
                let rest = &a[j + c.len_utf8()..];
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i - 1)
                        .map(|v| v.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    rest.to_string()
                };
                out.push((c, value));
                break;
            }
        }
    }
    (out, destination)
}

/// `-o Key=value` or `-o "Key value"`: the lower-cased key and the value.
fn o_option(v: &str) -> (String, String) {
    let v = v.trim();
    let end = v
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(v.len());
    let value = v[end..].trim_start_matches(|c: char| c == '=' || c.is_whitespace());
    (v[..end].to_ascii_lowercase(), value.to_string())
}

/// Splits a forward spec on ':' outside brackets (`[::1]:5432:db:5432`).
fn fields(spec: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for c in spec.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// The local end of a `-L` (`local`) or `-D` spec.
fn local_end(spec: &str, dynamic: bool) -> Option<Bind> {
    let spec = spec.trim();
    // LocalForward's "listen target" form: the first word only.
    let first = spec.split_whitespace().next()?;
    if first.contains('/') && !first.contains(':') || (first.starts_with('/') && !dynamic) {
        let path = first.split(':').next().unwrap_or(first);
        return Some(Bind::Socket(path.to_string()));
    }
    let f = fields(first);
    let port = match (dynamic, f.len()) {
        (true, 1) => &f[0],
        (true, _) => &f[1],
        (false, 4) => &f[1],
        (false, 3) | (false, 2) => &f[0],
        (false, _) if spec.split_whitespace().count() == 2 => f.last()?,
        _ => return None,
    };
    port.parse().ok().map(Bind::Port)
}

/// What the arguments make ssh bind locally.
pub fn local_binds(args: &[OsString]) -> Vec<Bind> {
    let (opts, _) = options(args);
    let mut out = Vec::new();
    for (c, v) in opts {
        let bind = match c {
            'L' => local_end(&v, false),
            'D' => local_end(&v, true),
            'o' => match o_option(&v) {
                (k, val) if k == "localforward" => local_end(&val, false),
                (k, val) if k == "dynamicforward" => local_end(&val, true),
                _ => None,
            },
            _ => None,
        };
        out.extend(bind);
    }
    out
}

/// The server the arguments reach, as `host:port` from the destination and `-p`/`Port`.
pub fn server_of(args: &[OsString]) -> String {
    let (opts, destination) = options(args);
    let mut port = None;
    for (c, v) in &opts {
        match c {
            'p' => port = Some(v.clone()),
            'o' => {
                let (k, val) = o_option(v);
                if k == "port" {
                    port = Some(val);
                }
            }
            _ => {}
        }
    }
    let dest = destination.unwrap_or_default();
    let dest = dest.strip_prefix("ssh://").unwrap_or(&dest).to_string();
    let host_port = dest.rsplit('@').next().unwrap_or(&dest).to_string();
    // ssh://host:port carries its port.
    let (host, uri_port) = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
            (h.to_string(), Some(p.to_string()))
        }
        _ => (host_port.clone(), None),
    };
    format!(
        "{host}:{}",
        port.or(uri_port).unwrap_or_else(|| "22".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn local_forwards_are_found() {
        let mut a = args("-N -L 5432:db:5432 -L127.0.0.1:6379:cache:6379 -D 1080 -o");
        a.push("LocalForward=7000 x:7".into());
        a.extend(args(
            "-NL [::1]:8080:web:80 -L /tmp/s.sock:/run/db.sock host -D 9 ls -L 1:2:3",
        ));
        let b = local_binds(&a);
        assert_eq!(
            b,
            vec![
                Bind::Port(5432),
                Bind::Port(6379),
                Bind::Port(1080),
                Bind::Port(7000),
                Bind::Port(8080),
                Bind::Socket("/tmp/s.sock".into()),
                Bind::Port(9),
            ]
        );
    }

    #[test]
    fn the_server_is_host_and_port() {
        assert_eq!(
            server_of(&args("-N me@db.example -p 2222")),
            "db.example:2222"
        );
        assert_eq!(server_of(&args("-o Port=22 -N db")), "db:22");
        assert_eq!(server_of(&args("ssh://u@h:2200")), "h:2200");
        assert_eq!(server_of(&args("-L 1:2:3 h ls -p 9")), "h:22");
    }
}

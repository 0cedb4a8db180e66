//! The local forwards autossh holds itself: ssh's `-L` and `-o LocalForward` arguments read
//! with ssh's own grammar (`[bind:]port:host:hostport`, unix socket paths, `[...]` and `\`
//! escapes, `${VAR}`), and ssh's argument list without them. ssh is then handed a private
//! unix socket for each instead (`ssh_argv`), and autossh listens in its place.

use crate::setup::ssh_opts::{self, OptKind};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Where a held forward listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `[bind:]port`; `bind` as written (`None`: not given; `Some("")` and `Some("*")`: every
    /// address).
    Tcp { bind: Option<String>, port: u16 },
    /// A unix socket path.
    Unix(PathBuf),
}

/// One forward autossh holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldForward {
    /// As written on the command line, for messages (`-L 5432:db:5432`).
    pub spec: String,
    pub listen: Listen,
    /// What ssh connects to on the server, as ssh reads it: `host:port` or a socket path.
    pub connect: String,
}

/// ssh's arguments split: the forwards held, and the rest in their order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub forwards: Vec<HeldForward>,
    pub rest: Vec<OsString>,
}

/// A forward ssh would reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadForward {
    pub spec: String,
    pub why: &'static str,
}

impl fmt::Display for BadForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: bad local forwarding specification ({})",
            self.spec, self.why
        )
    }
}

impl std::error::Error for BadForward {}

/// Splits ssh's arguments into the local forwards to hold and the rest, walking them as
/// ssh's getopt does (options may follow the destination; the remote command ends them).
pub fn split(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Split, BadForward> {
    let mut out = Split::default();
    let mut destination = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        i += 1;
        if arg == "--" || (!arg.starts_with('-') || arg.len() < 2) && destination {
            // The rest is the destination and the remote command: ssh's own.
            out.rest.extend(args[i - 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg.len() < 2 {
            destination = true;
            out.rest.push(args[i - 1].clone());
            continue;
        }
        i += option(&arg, args.get(i), env, &mut out)?;
    }
    Ok(out)
}

/// One option argument (`-NL spec`, `-oLocalForward=...`, `-p 22`): held forwards taken
/// out, the rest kept. Returns how many following arguments it used (its value's).
fn option(
    arg: &str,
    next: Option<&OsString>,
    env: &dyn Fn(&str) -> Option<OsString>,
    out: &mut Split,
) -> Result<usize, BadForward> {
    let Some((at, c)) = arg
        .char_indices()
        .skip(1)
        .find(|&(_, c)| ssh_opts::kind(c) == OptKind::Value)
    else {
        out.rest.push(arg.into());
        return Ok(0);
    };
    let attached = &arg[at + c.len_utf8()..];
    let (value, used) = match (attached.is_empty(), next) {
        (false, _) => (attached.to_string(), 0),
        (true, Some(v)) => (v.to_string_lossy().into_owned(), 1),
        (true, None) => {
            out.rest.push(arg.into());
            return Ok(0);
        }
    };
    let held = match c {
        'L' => Some(local(&format!("-L {value}"), &value, env)?),
        'o' => local_forward_option(&value, env)?,
        _ => None,
    };
    match held {
        Some(f) => {
            out.forwards.push(f);
            // The flags before it stay (`-NL spec` keeps `-N`).
            if at > 1 {
                out.rest.push(arg[..at].into());
            }
        }
        None => {
            out.rest.push(arg.into());
            if used == 1 {
                out.rest.push(value.into());
            }
        }
    }
    Ok(used)
}

/// `-o LocalForward=listen target` (or `"LocalForward listen target"`).
fn local_forward_option(
    value: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<HeldForward>, BadForward> {
    let v = value.trim();
    let end = v
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(v.len());
    if !v[..end].eq_ignore_ascii_case("localforward") {
        return Ok(None);
    }
    let spec = format!("-o {value}");
    let rest = v[end..].trim_start_matches(|c: char| c == '=' || c.is_whitespace());
    let mut words = rest.split_whitespace();
    let (Some(listen), Some(target), None) = (words.next(), words.next(), words.next()) else {
        return Err(BadForward {
            spec,
            why: "LocalForward takes a listen address and a target",
        });
    };
    local(&spec, &format!("{listen}:{target}"), env).map(Some)
}

/// One field of a forward spec, as ssh's `parse_fwd_field` reads it.
struct Field {
    text: String,
    /// It contains a '/': a socket path.
    path: bool,
    /// Byte offset just after it (and its ':') in the spec.
    end: usize,
}

/// Splits a spec on ':' outside `[...]`, `\` escaping the next character: at most four
/// fields, and nothing may follow them.
fn fields(spec: &str) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < spec.len() && out.len() < 4 {
        let field = if spec[i..].starts_with('[') {
            bracketed(spec, i)?
        } else {
            plain(spec, i)?
        };
        i = field.end;
        out.push(field);
    }
    (i >= spec.len()).then_some(out)
}

/// `[text]`, then ':' or the end: taken literally (an IPv6 address, or a path).
fn bracketed(spec: &str, from: usize) -> Option<Field> {
    let close = spec[from + 1..].find(']')? + from + 1;
    let after = &spec[close + 1..];
    if !after.is_empty() && !after.starts_with(':') {
        return None;
    }
    let text = &spec[from + 1..close];
    Some(Field {
        text: text.to_string(),
        path: text.contains('/'),
        end: (close + 2).min(spec.len()),
    })
}

/// Up to the next ':' (or the end), `\\` taking the next character as it is.
fn plain(spec: &str, from: usize) -> Option<Field> {
    let mut text = String::new();
    let mut path = false;
    let mut chars = spec[from..].char_indices();
    let mut end = spec.len();
    while let Some((k, ch)) = chars.next() {
        match ch {
            '\\' => text.push(chars.next()?.1),
            ':' => {
                end = from + k + 1;
                break;
            }
            c => {
                path |= c == '/';
                text.push(c);
            }
        }
    }
    Some(Field { text, path, end })
}

/// A port as ssh's `a2port` reads it: a number, or a service name.
fn port(text: &str) -> Option<u16> {
    if let Ok(n) = text.parse::<u32>() {
        return u16::try_from(n).ok();
    }
    let name = std::ffi::CString::new(text).ok()?;
    // getservbyname's answer lives in libc's static storage: one caller at a time (the
    // start is single-threaded; the unit tests are not).
    static LOOKUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOOKUP.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: both strings are NUL-terminated; the result points into libc's static storage
    // and is read at once, under the lock, before any other call could overwrite it.
    unsafe {
        let se = libc::getservbyname(name.as_ptr(), c"tcp".as_ptr());
        (!se.is_null()).then(|| u16::from_be((*se).s_port as u16))
    }
}

/// Expands `${NAME}` from the environment, as ssh does in forward specs.
fn expand(spec: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    let mut out = String::with_capacity(spec.len());
    let mut rest = spec;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let close = rest[at..].find('}')? + at;
        out.push_str(&env(&rest[at + 2..close])?.into_string().ok()?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Reads one `-L` spec (`shown` names it in errors).
fn local(
    shown: &str,
    spec: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<HeldForward, BadForward> {
    let bad = |why| BadForward {
        spec: shown.to_string(),
        why,
    };
    let spec = expand(spec, env).ok_or_else(|| bad("an environment variable is not set"))?;
    let spec = spec.trim_start();
    let f = fields(spec).ok_or_else(|| bad("cannot be read"))?;
    let tcp = |bind: Option<&Field>, p: &Field| -> Result<Listen, BadForward> {
        match port(&p.text) {
            Some(0) | None => Err(bad("the listen port is not a port")),
            Some(port) => Ok(Listen::Tcp {
                bind: bind.map(|b| b.text.clone()),
                port,
            }),
        }
    };
    let (listen, connect_at, connect_is_path) = match f.len() {
        2 if f[0].path && f[1].path => (Listen::Unix(f[0].text.clone().into()), f[0].end, true),
        2 if f[1].path => (tcp(None, &f[0])?, f[0].end, true),
        3 if f[0].path => (Listen::Unix(f[0].text.clone().into()), f[0].end, false),
        3 if f[2].path => (tcp(Some(&f[0]), &f[1])?, f[1].end, true),
        3 => (tcp(None, &f[0])?, f[0].end, false),
        4 => (tcp(Some(&f[0]), &f[1])?, f[1].end, false),
        _ => return Err(bad("it needs a listen port or path and a target")),
    };
    if !connect_is_path {
        let target_port = &f[f.len() - 1];
        if port(&target_port.text).is_none_or(|p| p == 0) {
            return Err(bad("the target port is not a port"));
        }
    }
    Ok(HeldForward {
        spec: shown.to_string(),
        listen,
        connect: spec[connect_at..].to_string(),
    })
}

/// Which addresses a TCP forward listens on, by ssh's rules for a client
/// (`channel_fwd_bind_addr`): no address follows GatewayPorts (`-g`); `*` or an empty one is
/// every address; `localhost` is the loopback of every family; anything else is itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindPlan {
    /// 0.0.0.0 and :: (as the address family allows).
    Wildcard,
    /// 127.0.0.1 and ::1.
    Loopback,
    /// This address or name, resolved.
    Address(String),
}

pub fn plan(bind: Option<&str>, gateway_ports: bool) -> BindPlan {
    match bind {
        None if gateway_ports => BindPlan::Wildcard,
        None | Some("localhost") => BindPlan::Loopback,
        Some("" | "*") => BindPlan::Wildcard,
        Some(a) => BindPlan::Address(a.to_string()),
    }
}

#[cfg(test)]
mod tests;

//! The tunnels file (`--tunnels FILE`): TOML read into one validated [`Settings`] per tunnel,
//! every error naming the file, the line and the tunnel.

use crate::error::{usage, Error, Result};
use crate::setup::cli::{self, MonitorSpec};
use crate::setup::config::{self, Settings};
use crate::setup::forwards::{self, Bind};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use toml::{Spanned, Value};

/// One tunnel of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelDef {
    pub name: String,
    /// Line of its `[tunnel.NAME]` header.
    pub line: usize,
    pub settings: Settings,
    /// The server it reaches (destination host and port as given): tunnels to one server
    /// share its handshake slots.
    pub server: String,
    /// TCP ports the other tunnels of the file bind, here or on their servers: a loop
    /// monitor moving its remote port steps over them.
    pub others: Vec<u16>,
}

/// Keys that map to an `AUTOSSH_*` variable.
const PER_TUNNEL: [(&str, &str); 11] = [
    ("path", "AUTOSSH_PATH"),
    ("poll", "AUTOSSH_POLL"),
    ("first_poll", "AUTOSSH_FIRST_POLL"),
    ("gatetime", "AUTOSSH_GATETIME"),
    ("maxstart", "AUTOSSH_MAXSTART"),
    ("maxlifetime", "AUTOSSH_MAXLIFETIME"),
    ("message", "AUTOSSH_MESSAGE"),
    ("serveralive_interval", "AUTOSSH_SERVERALIVE_INTERVAL"),
    ("serveralive_count_max", "AUTOSSH_SERVERALIVE_COUNT_MAX"),
    ("session_probe", "AUTOSSH_SESSION_PROBE"),
    ("port", "AUTOSSH_PORT"),
];

/// Keys that belong to the whole process: the environment's business.
const PROCESS_WIDE: [&str; 6] = [
    "logfile",
    "loglevel",
    "debug",
    "pidfile",
    "statusfile",
    "metricsfile",
];

type Keys = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    defaults: Option<Keys>,
    tunnel: Option<BTreeMap<Spanned<String>, Keys>>,
}

/// Reads and validates the file; `env` is autossh's environment.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Vec<TunnelDef>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("{}: cannot read: {e}", path.display())))?;
    parse(&path.display().to_string(), &text, env)
}

/// Parses the file's text; `file` names it in errors.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Vec<TunnelDef>> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
        let tunnel = tunnel_at(text, line)
            .map(|n| format!("tunnel {n:?}: "))
            .unwrap_or_default();
        usage(format!("{file}:{line}: {tunnel}{}", e.message().trim()))
    })?;
    let empty = Keys::new();
    let defaults = doc.defaults.as_ref().unwrap_or(&empty);
    for (k, v) in defaults {
        check_key(k.get_ref(), true).map_err(|m| {
            usage(format!(
                "{file}:{}: [defaults]: {m}",
                line_of(k.span().start)
            ))
        })?;
        value_text(k.get_ref(), v.get_ref()).map_err(|m| {
            usage(format!(
                "{file}:{}: [defaults]: {m}",
                line_of(v.span().start)
            ))
        })?;
    }
    let tunnels = doc.tunnel.unwrap_or_default();
    if tunnels.is_empty() {
        return Err(usage(format!(
            "{file}: no tunnels (add a [tunnel.NAME] table with ssh = \"...\")"
        )));
    }
    let mut defs: Vec<TunnelDef> = Vec::with_capacity(tunnels.len());
    for (name, keys) in &tunnels {
        let line = line_of(name.span().start);
        let at = |line: usize, m: String| {
            usage(format!("{file}:{line}: tunnel {:?}: {m}", name.get_ref()))
        };
        check_name(name.get_ref()).map_err(|m| at(line, m))?;
        let def =
            tunnel(keys, defaults, env, &line_of).map_err(|(l, m)| at(l.unwrap_or(line), m))?;
        defs.push(TunnelDef {
            name: name.get_ref().clone(),
            line,
            server: forwards::server_of(&def.ssh_args),
            settings: def,
            others: Vec::new(),
        });
    }
    defs.sort_by_key(|d| d.line);
    check_clashes(file, &defs)?;
    let ports: Vec<(String, Vec<u16>)> = defs
        .iter()
        .map(|d| {
            let p = binds(&d.settings)
                .into_iter()
                .filter_map(|(b, _)| match b {
                    Bind::Port(p) | Bind::RemotePort(p) => Some(p),
                    Bind::Socket(_) => None,
                })
                .collect();
            (d.name.clone(), p)
        })
        .collect();
    for d in &mut defs {
        d.others = ports
            .iter()
            .filter(|(n, _)| *n != d.name)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
    }
    Ok(defs)
}

/// The tunnel whose table holds `line` (its `[tunnel.NAME]` header at or above it).
fn tunnel_at(text: &str, line: usize) -> Option<String> {
    let header = text
        .lines()
        .take(line)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()?;
    let name = header.strip_prefix("[tunnel.")?.strip_suffix(']')?.trim();
    Some(name.trim_matches('"').to_string())
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err("a name is 1-64 letters, digits, '-', '_' or '.'".into())
    }
}

fn check_key(key: &str, in_defaults: bool) -> std::result::Result<(), String> {
    if PROCESS_WIDE.contains(&key) {
        return Err(format!(
            "{key} is for the whole process: set AUTOSSH_{} in autossh's environment",
            key.to_ascii_uppercase()
        ));
    }
    let known = PER_TUNNEL.iter().any(|(k, _)| *k == key)
        || key == "monitor"
        || (key == "ssh" && !in_defaults)
        || (key == "ssh_options" && in_defaults);
    if known {
        Ok(())
    } else if key == "ssh" {
        Err("ssh belongs in each tunnel; [defaults] has ssh_options".into())
    } else if key == "ssh_options" {
        Err("ssh_options belongs in [defaults]; a tunnel has ssh".into())
    } else {
        Err(format!("unknown key {key:?}"))
    }
}

/// A scalar value as the text of its environment variable.
fn value_text(key: &str, v: &Value) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(if *b { "yes" } else { "no" }.into()),
        Value::Array(_) if key == "ssh" || key == "ssh_options" => Ok(String::new()),
        _ => Err(format!("{key}: expected a string or a whole number")),
    }
}

/// ssh arguments: a list of strings, or one string split as a shell would.
fn arguments(key: &str, v: &Value) -> std::result::Result<Vec<OsString>, String> {
    match v {
        Value::String(s) => shell_words::split(s)
            .map(|w| w.into_iter().map(OsString::from).collect())
            .map_err(|e| format!("{key}: {e}")),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(OsString::from(s)),
                _ => Err(format!("{key}: every item must be a string")),
            })
            .collect(),
        _ => Err(format!("{key}: expected a list of strings or a string")),
    }
}

type Located = (Option<usize>, String);

/// One tunnel's settings: its keys, then `[defaults]`, then the environment.
fn tunnel(
    keys: &Keys,
    defaults: &Keys,
    env: &dyn Fn(&str) -> Option<OsString>,
    line_of: &dyn Fn(usize) -> usize,
) -> std::result::Result<Settings, Located> {
    let find = |table: &Keys, key: &str| {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v.clone())
    };
    for (k, v) in keys {
        let l = Some(line_of(k.span().start));
        check_key(k.get_ref(), false).map_err(|m| (l, m))?;
        value_text(k.get_ref(), v.get_ref()).map_err(|m| (l, m))?;
    }
    let ssh = find(keys, "ssh").ok_or((None, "no ssh = \"...\" (ssh's arguments)".to_string()))?;
    let mut args: Vec<OsString> = Vec::new();
    if let Some(monitor) = find(keys, "monitor").or_else(|| find(defaults, "monitor")) {
        let at = Some(line_of(monitor.span().start));
        let text = value_text("monitor", monitor.get_ref()).map_err(|m| (at, m))?;
        cli::parse_monitor(std::ffi::OsStr::new(&text))
            .map_err(|e| (at, format!("monitor: {e}")))?;
        args.push("-M".into());
        args.push(text.into());
    }
    if let Some(o) = find(defaults, "ssh_options") {
        args.extend(arguments("ssh_options", o.get_ref()).map_err(|m| (None, m))?);
    }
    let ssh_line = Some(line_of(ssh.span().start));
    let own = arguments("ssh", ssh.get_ref()).map_err(|m| (ssh_line, m))?;
    if own.is_empty() {
        return Err((ssh_line, "ssh: no arguments".into()));
    }
    args.extend(own);
    let parsed = cli::parse(args).map_err(|e| (ssh_line, format!("ssh: {e}")))?;
    if parsed.daemon || parsed.help || parsed.version {
        return Err((
            ssh_line,
            "ssh: -f, -V and --help are autossh's own options, not a tunnel's".into(),
        ));
    }
    if parsed.tunnels.is_some() || parsed.control_path.is_some() {
        return Err((
            ssh_line,
            "ssh: --tunnels and --control-socket are not ssh's".into(),
        ));
    }
    // Which variables the file set, to name the key (not the variable) in errors.
    let mut from_file: Vec<(&str, &str, usize)> = Vec::new();
    let lookup = |var: &str| -> Option<OsString> {
        if let Some((key, _)) = PER_TUNNEL.iter().find(|(_, v)| *v == var) {
            for table in [keys, defaults] {
                if let Some(v) = find(table, key) {
                    return value_text(key, v.get_ref()).ok().map(OsString::from);
                }
            }
        }
        env(var)
    };
    for (key, var) in PER_TUNNEL {
        for table in [keys, defaults] {
            if let Some(v) = find(table, key) {
                from_file.push((key, var, line_of(v.span().start)));
                break;
            }
        }
    }
    config::from_env(parsed, lookup).map_err(|e| {
        let msg = e.to_string();
        match from_file
            .iter()
            .find(|(_, var, _)| msg.starts_with(&format!("{var}:")))
        {
            Some((key, var, line)) => (Some(*line), msg.replacen(var, key, 1)),
            None => (None, msg),
        }
    })
}

/// What a tunnel binds locally and on its server.
fn binds(s: &Settings) -> Vec<(Bind, &'static str)> {
    let mut out: Vec<(Bind, &'static str)> = forwards::local_binds(&s.ssh_args)
        .into_iter()
        .map(|b| (b, "forward"))
        .collect();
    match s.monitor {
        Some(MonitorSpec::Loop(n)) => {
            out.push((Bind::Port(n), "monitor"));
            out.push((Bind::Port(n.saturating_add(1)), "monitor"));
            out.push((Bind::RemotePort(n), "monitor"));
        }
        Some(MonitorSpec::Echo { port, .. }) => out.push((Bind::Port(port), "monitor")),
        Some(MonitorSpec::Off) | None => {}
    }
    out
}

fn check_clashes(file: &str, defs: &[TunnelDef]) -> Result<()> {
    let mut seen: Vec<(Bind, &str, &str)> = Vec::new();
    for d in defs {
        for (b, what) in binds(&d.settings) {
            if let Some((_, other, other_what)) =
                seen.iter().find(|(x, n, _)| *x == b && *n != d.name)
            {
                return Err(Error::Usage(format!(
                    "{file}:{}: tunnel {:?}: its {what} would bind {b}, as tunnel {other:?}'s {other_what} does",
                    d.line, d.name
                )));
            }
            seen.push((b, &d.name, what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

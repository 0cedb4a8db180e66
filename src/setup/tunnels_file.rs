//! The tunnels file (`--tunnels FILE`): TOML read into one validated [`Settings`] per tunnel,
//! every error naming the file, the line and the tunnel.

use crate::setup::cli::{self, Cli, MonitorSpec};
use crate::setup::config::{self, ConfigError, Settings};
use crate::setup::forwards::{self, Bind};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use toml::{Spanned, Value};

mod error;
pub use error::{Fault, FileError, Table};

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
const PER_TUNNEL: [(&str, &str); 18] = [
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
    ("hold", "AUTOSSH_HOLD"),
    ("hold_time", "AUTOSSH_HOLD_TIME"),
    ("hold_max", "AUTOSSH_HOLD_MAX"),
    ("drain_time", "AUTOSSH_DRAIN_TIME"),
    ("on_demand", "AUTOSSH_ON_DEMAND"),
    ("idle_time", "AUTOSSH_IDLE_TIME"),
    ("agent", "AUTOSSH_AGENT"),
];

/// Keys that belong to the whole process: the environment's business.
const PROCESS_WIDE: [&str; 8] = [
    "logfile",
    "loglevel",
    "debug",
    "pidfile",
    "statusfile",
    "metricsfile",
    "http",
    "hook",
];

type Keys = BTreeMap<Spanned<String>, Spanned<Value>>;

/// autossh's environment, read through a function (tests need not touch the process's).
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The line (1-based) of a byte offset in the file.
type LineOf<'a> = &'a dyn Fn(usize) -> usize;

/// A tunnel's fault and its line, when it is not the line of the tunnel's header.
type Located = (Option<usize>, Fault);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    defaults: Option<Keys>,
    tunnel: Option<BTreeMap<Spanned<String>, Keys>>,
}

/// Reads and validates the file; `env` is autossh's environment.
pub fn load(path: &Path, env: Env) -> Result<Vec<TunnelDef>, FileError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text, env),
        Err(error) => Err(FileError::Unreadable { file, error }),
    }
}

/// Parses the file's text; `file` names it in errors.
pub fn parse(file: &str, text: &str, env: Env) -> Result<Vec<TunnelDef>, FileError> {
    let at = |line, table, fault| FileError::At {
        file: file.to_string(),
        line,
        table,
        fault: Box::new(fault),
    };
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
        let table = tunnel_at(text, line).map_or(Table::Unnamed, Table::Tunnel);
        at(line, table, Fault::Toml(e.message().trim().to_string()))
    })?;
    let empty = Keys::new();
    let defaults = doc.defaults.as_ref().unwrap_or(&empty);
    check_keys(defaults, true, &line_of).map_err(|(l, f)| at(l, Table::Defaults, f))?;
    let tunnels = doc.tunnel.unwrap_or_default();
    if tunnels.is_empty() {
        return Err(FileError::NoTunnels {
            file: file.to_string(),
        });
    }
    let mut defs: Vec<TunnelDef> = Vec::with_capacity(tunnels.len());
    for (name, keys) in &tunnels {
        let line = line_of(name.span().start);
        let name = name.get_ref();
        let def = tunnel_def(name, line, keys, defaults, env, &line_of)
            .map_err(|(l, fault)| at(l.unwrap_or(line), Table::Tunnel(name.clone()), fault))?;
        defs.push(def);
    }
    defs.sort_by_key(|d| d.line);
    check_clashes(&defs).map_err(|(d, fault)| at(d.line, Table::Tunnel(d.name.clone()), fault))?;
    note_others(&mut defs);
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

fn check_name(name: &str) -> Result<(), Fault> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Fault::BadName)
    }
}

/// Every key of a table is known there and has a value of a kind it takes; a fault comes with
/// its line.
fn check_keys(table: &Keys, in_defaults: bool, line_of: LineOf) -> Result<(), (usize, Fault)> {
    for (k, v) in table {
        let line = line_of(k.span().start);
        check_key(k.get_ref(), in_defaults).map_err(|f| (line, f))?;
        value_text(k.get_ref(), v.get_ref()).map_err(|f| (line, f))?;
    }
    Ok(())
}

fn check_key(key: &str, in_defaults: bool) -> Result<(), Fault> {
    if PROCESS_WIDE.contains(&key) {
        return Err(Fault::ProcessWide(key.to_string()));
    }
    let known = PER_TUNNEL.iter().any(|(k, _)| *k == key)
        || key == "monitor"
        || (key == "ssh" && !in_defaults)
        || (key == "ssh_options" && in_defaults);
    if known {
        Ok(())
    } else if key == "ssh" {
        Err(Fault::SshInDefaults)
    } else if key == "ssh_options" {
        Err(Fault::OptionsInTunnel)
    } else {
        Err(Fault::UnknownKey(key.to_string()))
    }
}

/// A scalar value as the text of its environment variable.
fn value_text(key: &str, v: &Value) -> Result<String, Fault> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(if *b { "yes" } else { "no" }.into()),
        Value::Array(_) if key == "ssh" || key == "ssh_options" => Ok(String::new()),
        _ => Err(Fault::NotScalar(key.to_string())),
    }
}

/// ssh arguments: a list of strings, or one string split as a shell would.
fn arguments(key: &str, v: &Value) -> Result<Vec<OsString>, Fault> {
    match v {
        Value::String(s) => match shell_words::split(s) {
            Ok(words) => Ok(words.into_iter().map(OsString::from).collect()),
            Err(error) => Err(Fault::Unsplittable {
                key: key.to_string(),
                error,
            }),
        },
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(OsString::from(s)),
                _ => Err(Fault::NotStringItem(key.to_string())),
            })
            .collect(),
        _ => Err(Fault::NotArguments(key.to_string())),
    }
}

/// A key's value in a table.
fn find<'a>(table: &'a Keys, key: &str) -> Option<&'a Spanned<Value>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// One `[tunnel.NAME]` table (its header at `line`), checked, with its settings.
fn tunnel_def(
    name: &str,
    line: usize,
    keys: &Keys,
    defaults: &Keys,
    env: Env,
    line_of: LineOf,
) -> Result<TunnelDef, Located> {
    check_name(name).map_err(|f| (None, f))?;
    let settings = tunnel(keys, defaults, env, line_of)?;
    Ok(TunnelDef {
        name: name.to_string(),
        line,
        server: forwards::server_of(&settings.ssh_args),
        settings,
        others: Vec::new(),
    })
}

/// One tunnel's settings: its keys, then `[defaults]`, then the environment.
fn tunnel(keys: &Keys, defaults: &Keys, env: Env, line_of: LineOf) -> Result<Settings, Located> {
    check_keys(keys, false, line_of).map_err(|(l, f)| (Some(l), f))?;
    let ssh = find(keys, "ssh").ok_or((None, Fault::NoSsh))?;
    let ssh_line = Some(line_of(ssh.span().start));
    let mut args = monitor_args(keys, defaults, line_of)?;
    if let Some(o) = find(defaults, "ssh_options") {
        args.extend(arguments("ssh_options", o.get_ref()).map_err(|f| (None, f))?);
    }
    let own = arguments("ssh", ssh.get_ref()).map_err(|f| (ssh_line, f))?;
    if own.is_empty() {
        return Err((ssh_line, Fault::NoArguments));
    }
    args.extend(own);
    let parsed = ssh_command_line(args).map_err(|f| (ssh_line, f))?;
    settings(parsed, keys, defaults, env, line_of)
}

/// `-M` and the monitor of the tunnel (or of `[defaults]`), checked; none without one.
fn monitor_args(keys: &Keys, defaults: &Keys, line_of: LineOf) -> Result<Vec<OsString>, Located> {
    let Some(monitor) = find(keys, "monitor").or_else(|| find(defaults, "monitor")) else {
        return Ok(Vec::new());
    };
    let at = Some(line_of(monitor.span().start));
    let text = value_text("monitor", monitor.get_ref()).map_err(|f| (at, f))?;
    cli::parse_monitor(OsStr::new(&text)).map_err(|e| (at, Fault::Monitor(e)))?;
    Ok(vec!["-M".into(), text.into()])
}

/// ssh's arguments read as autossh's command line, which must hold none of autossh's own
/// options.
fn ssh_command_line(args: Vec<OsString>) -> Result<Cli, Fault> {
    let parsed = cli::parse(args).map_err(Fault::Ssh)?;
    if parsed.daemon || parsed.help || parsed.version {
        return Err(Fault::AutosshOption);
    }
    if parsed.tunnels.is_some() || parsed.control_path.is_some() {
        return Err(Fault::FleetOption);
    }
    Ok(parsed)
}

/// The settings the file's keys give, each `AUTOSSH_*` variable the file does not set from
/// the environment. A bad value the file gave is named by its key, at its line.
fn settings(
    parsed: Cli,
    keys: &Keys,
    defaults: &Keys,
    env: Env,
    line_of: LineOf,
) -> Result<Settings, Located> {
    // The key and value that set each variable the file sets: the tunnel's, else [defaults]'.
    let from_file: Vec<(&'static str, &'static str, &Spanned<Value>)> = PER_TUNNEL
        .iter()
        .filter_map(|&(key, var)| Some((key, var, find(keys, key).or(find(defaults, key))?)))
        .collect();
    let of_var = |var: &str| from_file.iter().find(|(_, v, _)| *v == var);
    let lookup = |var: &str| match of_var(var) {
        Some((key, _, value)) => value_text(key, value.get_ref()).ok().map(OsString::from),
        None => env(var),
    };
    config::from_env(parsed, lookup).map_err(|e| match of_var(e.setting) {
        Some(&(key, _, value)) => {
            let renamed = ConfigError {
                setting: key,
                problem: e.problem,
            };
            (Some(line_of(value.span().start)), Fault::Setting(renamed))
        }
        None => (None, Fault::Setting(e)),
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

/// No two tunnels bind the same port or socket; a clash is blamed on the later tunnel.
fn check_clashes(defs: &[TunnelDef]) -> Result<(), (&TunnelDef, Fault)> {
    let mut seen: Vec<(Bind, &str, &'static str)> = Vec::new();
    for d in defs {
        for (bind, what) in binds(&d.settings) {
            if let Some((_, other, other_what)) =
                seen.iter().find(|(x, n, _)| *x == bind && *n != d.name)
            {
                let fault = Fault::Clash {
                    what,
                    bind,
                    other: other.to_string(),
                    other_what,
                };
                return Err((d, fault));
            }
            seen.push((bind, &d.name, what));
        }
    }
    Ok(())
}

/// Tells each tunnel the TCP ports the others bind (here or on their servers).
fn note_others(defs: &mut [TunnelDef]) {
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
    for d in defs {
        d.others = ports
            .iter()
            .filter(|(n, _)| *n != d.name)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
    }
}

#[cfg(test)]
mod tests;

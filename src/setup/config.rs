//! The `AUTOSSH_*` environment variables, validated into [`Settings`] before anything starts.

use crate::error::{usage, Result};
use crate::setup::cli::{parse_c_number, parse_monitor, Cli, MonitorSpec};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest `AUTOSSH_MESSAGE` accepted, as in 1.4g.
pub const MAX_MESSAGE: usize = 64;

/// Everything autossh runs with, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ssh_path: OsString,
    /// `None`: neither `-M` nor `AUTOSSH_PORT`; a free pair is picked at start.
    pub monitor: Option<MonitorSpec>,
    pub poll: Duration,
    pub first_poll: Duration,
    pub gate_time: Duration,
    /// `None`: unlimited.
    pub max_start: Option<u32>,
    pub max_lifetime: Option<Duration>,
    pub message: String,
    pub pidfile: Option<PathBuf>,
    pub logfile: Option<PathBuf>,
    /// Syslog level 0-7.
    pub loglevel: u8,
    pub debug: bool,
    /// `-M 0` fallback: `ServerAliveInterval` (0 = do not add).
    pub serveralive_interval: u32,
    pub serveralive_count_max: u32,
    pub daemon: bool,
    pub ssh_args: Vec<OsString>,
    /// Lower-cased keys of the user's `-o` options.
    pub user_o_keys: Vec<String>,
    /// `AUTOSSH_STATUSFILE`: JSON status, rewritten atomically.
    pub statusfile: Option<PathBuf>,
    /// `AUTOSSH_METRICSFILE`: Prometheus text, rewritten atomically.
    pub metricsfile: Option<PathBuf>,
    /// `AUTOSSH_SESSION_PROBE` (default on): with `-M 0`, probe the tunnel through the SSH
    /// session itself (a refused channel to a unix socket path; see `docs/operations.md`).
    pub session_probe: bool,
    /// `-W`: ssh forwards stdio and clears every other forward (the session probe's too).
    pub stdio_forward: bool,
    /// `-S`, or `-o ControlMaster/ControlPath/ControlPersist`: connection sharing asked for
    /// on autossh's own command line (otherwise it is turned off for the supervised ssh).
    pub sharing_asked: bool,
}

impl Settings {
    /// How long one probe may take: 15 s, or half the poll when the poll is under 30 s.
    pub fn net_timeout(&self) -> Duration {
        (self.poll / 2).min(Duration::from_secs(15))
    }
}

/// Reads the environment through `get` (so tests need not touch the process environment).
pub fn from_env(cli: Cli, get: impl Fn(&str) -> Option<OsString>) -> Result<Settings> {
    let text = |name: &str| -> Result<Option<String>> {
        match get(name) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .map_err(|_| usage(format!("{name}: value is not valid text"))),
        }
    };
    let number = |name: &str, min: u64, max: u64| -> Result<Option<u64>> {
        match text(name)? {
            None => Ok(None),
            Some(v) => match parse_c_number(&v) {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(usage(format!(
                    "{name}: invalid value {v:?} (a whole number from {min} to {max})"
                ))),
            },
        }
    };
    const DAY: u64 = 86_400;
    let ssh_path = match get("AUTOSSH_PATH") {
        Some(p) if p.is_empty() => return Err(usage("AUTOSSH_PATH: empty path")),
        Some(p) => p,
        None => OsString::from("/usr/bin/ssh"),
    };
    let mut poll = number("AUTOSSH_POLL", 1, 365 * DAY)?.unwrap_or(600);
    let mut first_poll = number("AUTOSSH_FIRST_POLL", 1, 365 * DAY)?.unwrap_or(poll);
    let gate = number("AUTOSSH_GATETIME", 0, 365 * DAY)?.unwrap_or(30);
    let max_start = match text("AUTOSSH_MAXSTART")? {
        None => None,
        Some(v) => {
            let n: i64 = parse_signed(&v).ok_or_else(|| {
                usage(format!(
                    "AUTOSSH_MAXSTART: invalid value {v:?} (a whole number; -1 for no limit)"
                ))
            })?;
            u32::try_from(n).ok()
        }
    };
    let max_lifetime = number("AUTOSSH_MAXLIFETIME", 0, 100 * 365 * DAY)?.filter(|&n| n > 0);
    if let Some(life) = max_lifetime {
        poll = poll.min(life);
        first_poll = first_poll.min(life);
    }
    let message = text("AUTOSSH_MESSAGE")?.unwrap_or_default();
    if message.len() > MAX_MESSAGE {
        return Err(usage(format!(
            "AUTOSSH_MESSAGE: may only be {MAX_MESSAGE} bytes long (got {})",
            message.len()
        )));
    }
    if message.contains(['\r', '\n']) {
        return Err(usage("AUTOSSH_MESSAGE: must be one line"));
    }
    // The flag beats the variable (Debian's order; upstream 1.4g lets the variable win).
    let monitor = match cli.monitor {
        Some(m) => Some(m),
        None => match get("AUTOSSH_PORT").filter(|p| !p.is_empty()) {
            Some(p) => Some(parse_monitor(&p).map_err(|e| usage(format!("AUTOSSH_PORT: {e}")))?),
            None => None,
        },
    };
    let debug = get("AUTOSSH_DEBUG").is_some();
    let loglevel = number("AUTOSSH_LOGLEVEL", 0, 7)?.unwrap_or(6) as u8;
    let pidfile = absolute(get("AUTOSSH_PIDFILE").filter(|p| !p.is_empty()))?;
    let logfile = absolute(get("AUTOSSH_LOGFILE").filter(|p| !p.is_empty()))?;
    let statusfile = writable_dir(
        absolute(get("AUTOSSH_STATUSFILE").filter(|p| !p.is_empty()))?,
        "AUTOSSH_STATUSFILE",
    )?;
    let metricsfile = writable_dir(
        absolute(get("AUTOSSH_METRICSFILE").filter(|p| !p.is_empty()))?,
        "AUTOSSH_METRICSFILE",
    )?;
    let serveralive_interval = number("AUTOSSH_SERVERALIVE_INTERVAL", 0, DAY)?.unwrap_or(60) as u32;
    let serveralive_count_max =
        number("AUTOSSH_SERVERALIVE_COUNT_MAX", 1, 1000)?.unwrap_or(3) as u32;
    let session_probe = match text("AUTOSSH_SESSION_PROBE")?.as_deref() {
        None | Some("") => true,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" => true,
            "0" | "no" | "off" | "false" => false,
            _ => {
                return Err(usage(format!(
                    "AUTOSSH_SESSION_PROBE: invalid value {v:?} (yes or no)"
                )))
            }
        },
    };
    Ok(Settings {
        ssh_path,
        monitor,
        poll: Duration::from_secs(poll),
        first_poll: Duration::from_secs(first_poll),
        // -f forces the gate off: nobody is there to see an early failure.
        gate_time: Duration::from_secs(if cli.daemon { 0 } else { gate }),
        max_start,
        max_lifetime: max_lifetime.map(Duration::from_secs),
        message,
        pidfile,
        logfile,
        loglevel,
        debug,
        serveralive_interval,
        serveralive_count_max,
        daemon: cli.daemon,
        user_o_keys: cli.ssh_o_values.iter().map(|v| o_key(v)).collect(),
        statusfile,
        metricsfile,
        session_probe,
        stdio_forward: cli.stdio_forward,
        sharing_asked: cli.control_socket
            || cli.ssh_o_values.iter().any(|v| {
                let k = o_key(v);
                k == "controlmaster" || k == "controlpath" || k == "controlpersist"
            }),
        ssh_args: cli.ssh_args,
    })
}

/// A report file must be creatable: its directory must exist.
fn writable_dir(p: Option<PathBuf>, name: &str) -> Result<Option<PathBuf>> {
    if let Some(path) = &p {
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(usage(format!(
                "{name}: directory {} does not exist",
                dir.display()
            )));
        }
    }
    Ok(p)
}

/// The lower-cased key of an ssh `-o` value (`Key=value`, `Key value`).
fn o_key(v: &str) -> String {
    let v = v.trim_start();
    let end = v
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(v.len());
    v[..end].to_ascii_lowercase()
}

fn parse_signed(v: &str) -> Option<i64> {
    match v.strip_prefix('-') {
        Some(rest) => parse_c_number(rest)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => parse_c_number(v).and_then(|n| i64::try_from(n).ok()),
    }
}

/// Resolves a relative path against the current directory now, before any `chdir("/")`.
fn absolute(p: Option<OsString>) -> Result<Option<PathBuf>> {
    let Some(p) = p else { return Ok(None) };
    let path = Path::new(OsStr::new(&p));
    if path.is_absolute() {
        return Ok(Some(path.to_path_buf()));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| usage(format!("cannot resolve {}: {e}", path.display())))?;
    Ok(Some(cwd.join(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)], args: &[&str]) -> Result<Settings> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let cli = crate::setup::cli::parse(args.iter().copied()).unwrap();
        from_env(cli, |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_1_4g() {
        let s = settings(&[], &["h"]).unwrap();
        assert_eq!(s.poll, Duration::from_secs(600));
        assert_eq!(s.first_poll, Duration::from_secs(600));
        assert_eq!(s.gate_time, Duration::from_secs(30));
        assert_eq!(s.max_start, None);
        assert_eq!(s.net_timeout(), Duration::from_secs(15));
        assert_eq!(s.ssh_path, OsString::from("/usr/bin/ssh"));
        assert_eq!(s.loglevel, 6);
        assert_eq!(s.monitor, None);
    }

    #[test]
    fn short_poll_halves_the_net_timeout() {
        let s = settings(&[("AUTOSSH_POLL", "4")], &["h"]).unwrap();
        assert_eq!(s.net_timeout(), Duration::from_secs(2));
        assert_eq!(s.first_poll, Duration::from_secs(4));
    }

    #[test]
    fn flag_beats_variable() {
        let s = settings(&[("AUTOSSH_PORT", "30000")], &["-M", "20000", "h"]).unwrap();
        assert_eq!(s.monitor, Some(MonitorSpec::Loop(20000)));
        let s = settings(&[("AUTOSSH_PORT", "30000:7")], &["h"]).unwrap();
        assert_eq!(
            s.monitor,
            Some(MonitorSpec::Echo {
                port: 30000,
                echo: 7
            })
        );
    }

    #[test]
    fn invalid_values_are_rejected_with_the_variable_named() {
        for (k, v) in [
            ("AUTOSSH_POLL", "0"),
            ("AUTOSSH_POLL", "abc"),
            ("AUTOSSH_POLL", ""),
            ("AUTOSSH_FIRST_POLL", "-1"),
            ("AUTOSSH_GATETIME", "-3"),
            ("AUTOSSH_MAXSTART", "x"),
            ("AUTOSSH_MAXLIFETIME", "1.5"),
            ("AUTOSSH_LOGLEVEL", "8"),
            ("AUTOSSH_PORT", "70000"),
            ("AUTOSSH_PORT", "5:0"),
            ("AUTOSSH_PATH", ""),
            ("AUTOSSH_SERVERALIVE_COUNT_MAX", "0"),
            ("AUTOSSH_SESSION_PROBE", "maybe"),
        ] {
            let err = settings(&[(k, v)], &["h"]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
        let long = "x".repeat(65);
        assert!(settings(&[("AUTOSSH_MESSAGE", &long)], &["h"]).is_err());
        assert!(settings(&[("AUTOSSH_MESSAGE", "a\nb")], &["h"]).is_err());
    }

    #[test]
    fn the_session_probe_is_on_unless_turned_off() {
        assert!(settings(&[], &["h"]).unwrap().session_probe);
        for v in ["0", "no", "OFF", "false"] {
            let s = settings(&[("AUTOSSH_SESSION_PROBE", v)], &["h"]).unwrap();
            assert!(!s.session_probe, "{v}");
        }
        assert!(
            settings(&[("AUTOSSH_SESSION_PROBE", "yes")], &["h"])
                .unwrap()
                .session_probe
        );
        assert!(
            settings(&[], &["-W", "db:5432", "h"])
                .unwrap()
                .stdio_forward
        );
    }

    #[test]
    fn maxstart_negative_is_unlimited() {
        assert_eq!(
            settings(&[("AUTOSSH_MAXSTART", "-1")], &["h"])
                .unwrap()
                .max_start,
            None
        );
        assert_eq!(
            settings(&[("AUTOSSH_MAXSTART", "0")], &["h"])
                .unwrap()
                .max_start,
            Some(0)
        );
    }

    #[test]
    fn maxlifetime_lowers_the_polls() {
        let s = settings(&[("AUTOSSH_MAXLIFETIME", "20")], &["h"]).unwrap();
        assert_eq!(s.poll, Duration::from_secs(20));
        assert_eq!(s.first_poll, Duration::from_secs(20));
        assert_eq!(s.max_lifetime, Some(Duration::from_secs(20)));
    }

    #[test]
    fn daemon_turns_the_gate_off() {
        assert_eq!(
            settings(&[], &["-f", "h"]).unwrap().gate_time,
            Duration::ZERO
        );
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let s = settings(&[("AUTOSSH_PIDFILE", "a.pid")], &["h"]).unwrap();
        assert!(s.pidfile.unwrap().is_absolute());
    }
}

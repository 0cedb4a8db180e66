//! The `AUTOSSH_*` environment variables, validated into [`Settings`] before anything starts.

use crate::setup::cli::{parse_c_number, parse_monitor, Cli, MonitorError, MonitorSpec};
use crate::setup::endpoints::{self, HookProblem, HttpAddr};
use crate::setup::held::{self, BadForward, Split};
use std::ffi::{OsStr, OsString};
use std::fmt;
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
    /// `AUTOSSH_HOLD` (default on): autossh listens for the command line's local forwards
    /// itself; `held` has them, and ssh's other arguments.
    pub hold: bool,
    /// The forwards held (none with `AUTOSSH_HOLD=no`, `-W` or `ClearAllForwardings`) and
    /// ssh's arguments without them.
    pub held: Split,
    /// `AUTOSSH_HOLD_TIME`: how long a connection waits for the tunnel before it is reset.
    pub hold_time: Duration,
    /// `AUTOSSH_HOLD_MAX`: connections waiting at once at most; past it, reset.
    pub hold_max: u32,
    /// `AUTOSSH_DRAIN_TIME`: after a planned restart, how long connections may go on through
    /// the old ssh before it stops.
    pub drain_time: Duration,
    /// `AUTOSSH_ON_DEMAND`: no ssh until a connection arrives; stopped after `idle_time`
    /// without connections.
    pub on_demand: bool,
    pub idle_time: Duration,
    /// `AUTOSSH_HTTP`: where the HTTP endpoint (/metrics, /healthz, /status) listens.
    pub http: Option<HttpAddr>,
    /// `AUTOSSH_HOOK`: the program run on each tunnel state change (absolute path).
    pub hook: Option<PathBuf>,
    /// `AUTOSSH_AGENT`: when autossh runs an ssh-agent of its own for keys with a passphrase.
    pub agent: AgentMode,
    /// Identities systemd passed as credentials (`$CREDENTIALS_DIRECTORY/ssh-identity*`):
    /// handed to ssh as `-i`.
    pub credentials: Vec<PathBuf>,
}

impl Settings {
    /// How long one probe may take: 15 s, or half the poll when the poll is under 30 s.
    pub fn net_timeout(&self) -> Duration {
        (self.poll / 2).min(Duration::from_secs(15))
    }
}

/// Reads the environment through `get` (so tests need not touch the process environment).
pub fn from_env(cli: Cli, get: impl Fn(&str) -> Option<OsString>) -> Result<Settings, ConfigError> {
    let mut s = defaults(cli);
    for (setting, kind) in SETTINGS {
        if let Some(value) = get(setting) {
            read(&mut s, kind, value).map_err(|problem| ConfigError { setting, problem })?;
        }
    }
    if let Some(life) = s.max_lifetime {
        s.poll = s.poll.min(life);
        s.first_poll = s.first_poll.min(life);
    }
    // -f forces the gate off: nobody is there to see an early failure.
    if s.daemon {
        s.gate_time = Duration::ZERO;
    }
    s.held = held_forwards(&s, &get)?;
    s.credentials = credential_identities(get("CREDENTIALS_DIRECTORY"));
    Ok(s)
}

/// When autossh runs an ssh-agent of its own (`AUTOSSH_AGENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// When an identity ssh would offer needs a passphrase and no agent holds it.
    Auto,
    /// For every identity with a passphrase, even one the user's agent holds.
    Yes,
    /// Never: ssh asks for passphrases itself, as 1.4g's does.
    No,
}

/// The credentials systemd passed that are identities: named `ssh-identity` or
/// `ssh-identity-...` (`LoadCredentialEncrypted=ssh-identity:...`), in name order.
fn credential_identities(dir: Option<OsString>) -> Vec<PathBuf> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(PathBuf::from(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "ssh-identity" || n.starts_with("ssh-identity-")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The local forwards to hold: those of the command line, unless holding is off or ssh would
/// drop them (`-W`, `ClearAllForwardings`: it clears every forward).
fn held_forwards(
    s: &Settings,
    get: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Split, ConfigError> {
    let cleared = s.stdio_forward || s.user_o_keys.iter().any(|k| k == "clearallforwardings");
    if !s.hold || cleared {
        return Ok(Split {
            forwards: Vec::new(),
            rest: s.ssh_args.clone(),
        });
    }
    held::split(&s.ssh_args, get).map_err(|e| ConfigError {
        setting: "AUTOSSH_HOLD",
        problem: Problem::Forward(e),
    })
}

/// A bad setting: which one, and what is wrong with its value.
#[derive(Debug)]
pub struct ConfigError {
    /// The variable (`AUTOSSH_POLL`), or the tunnels file's key for it (`poll`).
    pub setting: &'static str,
    pub problem: Problem,
}

/// What is wrong with a setting's value.
#[derive(Debug)]
pub enum Problem {
    /// Not UTF-8.
    NotText,
    /// Not a whole number from `min` to `max`.
    Number { value: String, min: u64, max: u64 },
    /// Not a whole number (a negative one is no limit).
    Limit { value: String },
    /// Not one of the words allowed (`words` says which).
    Word { value: String, words: &'static str },
    /// An empty path where a program is needed.
    EmptyPath,
    /// Longer than `max` bytes.
    TooLong { len: usize, max: usize },
    /// Holds a line break.
    NotOneLine,
    /// A bad monitor port.
    Monitor(MonitorError),
    /// The directory of a file to write does not exist.
    NoDirectory(PathBuf),
    /// A relative path, and no current directory to resolve it against.
    Unresolvable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not a listening address (`ADDR:PORT`, `[ADDR6]:PORT`, `:PORT` or `PORT`).
    NotAnAddress { value: String },
    /// A program that cannot be run.
    Hook { path: PathBuf, problem: HookProblem },
    /// The log file cannot be opened.
    CannotOpen {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A local forward to hold that ssh would reject.
    Forward(BadForward),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.setting;
        match &self.problem {
            Problem::NotText => write!(f, "{name}: value is not valid text"),
            Problem::Number { value, min, max } => write!(
                f,
                "{name}: invalid value {value:?} (a whole number from {min} to {max})"
            ),
            Problem::Limit { value } => write!(
                f,
                "{name}: invalid value {value:?} (a whole number; -1 for no limit)"
            ),
            Problem::Word { value, words } => {
                write!(f, "{name}: invalid value {value:?} ({words})")
            }
            Problem::EmptyPath => write!(f, "{name}: empty path"),
            Problem::TooLong { len, max } => {
                write!(f, "{name}: may only be {max} bytes long (got {len})")
            }
            Problem::NotOneLine => write!(f, "{name}: must be one line"),
            Problem::Monitor(e) => write!(f, "{name}: {e}"),
            Problem::NoDirectory(dir) => {
                write!(f, "{name}: directory {} does not exist", dir.display())
            }
            // The path names the setting well enough.
            Problem::Unresolvable { path, error } => {
                write!(f, "cannot resolve {}: {error}", path.display())
            }
            Problem::NotAnAddress { value } => write!(
                f,
                "{name}: invalid value {value:?} (ADDR:PORT, [ADDR6]:PORT, or PORT for 127.0.0.1)"
            ),
            Problem::Hook { path, problem } => {
                write!(f, "{name}: {}: {problem}", path.display())
            }
            Problem::CannotOpen { path, error } => {
                write!(f, "{name}: cannot open {}: {error}", path.display())
            }
            // The forward names itself.
            Problem::Forward(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;

/// How a variable's text is read, what it allows, and where its value lands in [`Settings`].
#[derive(Clone, Copy)]
enum Kind {
    /// Seconds: a whole number from `min` to `max`, in C's forms (`10`, `0x0a`, `012`).
    Seconds {
        min: u64,
        max: u64,
        set: fn(&mut Settings, Duration),
    },
    /// A whole number from `min` to `max`.
    Number {
        min: u64,
        max: u64,
        set: fn(&mut Settings, u64),
    },
    /// A whole number; a negative one (or one over `u32`) is no limit.
    Limit(fn(&mut Settings, Option<u32>)),
    /// `yes`, `on`, `true`, `1` or `no`, `off`, `false`, `0`, in any case; empty keeps the
    /// default.
    Switch(fn(&mut Settings, bool)),
    /// One line of text of at most [`MAX_MESSAGE`] bytes.
    Line(fn(&mut Settings, String)),
    /// A monitor port, `N` or `N:E`; empty is unset. Read only without `-M`: the flag beats
    /// the variable (Debian's order; upstream 1.4g lets the variable win).
    Monitor(fn(&mut Settings, MonitorSpec)),
    /// A program to run: any bytes, but not none.
    Program(fn(&mut Settings, OsString)),
    /// A path, made absolute now (before any `chdir("/")`); empty is unset.
    Path(fn(&mut Settings, PathBuf)),
    /// A file rewritten with reports: a path, as `Path`, whose directory exists.
    Report(fn(&mut Settings, PathBuf)),
    /// On when set, whatever the value.
    Flag(fn(&mut Settings)),
    /// `auto`, `yes` or `no`, in any case; empty keeps the default.
    Agent(fn(&mut Settings, AgentMode)),
    /// A listening address (see [`endpoints::parse_http`]); empty is unset.
    Listen(fn(&mut Settings, HttpAddr)),
    /// A program to run on events: an executable file, found now; empty is unset.
    Hook(fn(&mut Settings, PathBuf)),
}

/// Every variable, in the order they are checked (the first bad one is reported). An unset
/// variable leaves its field as [`defaults`] has it.
const SETTINGS: [(&str, Kind); 26] = [
    ("AUTOSSH_PATH", Kind::Program(|s, v| s.ssh_path = v)),
    // The first poll follows the poll, unless AUTOSSH_FIRST_POLL (read next) is set.
    (
        "AUTOSSH_POLL",
        Kind::Seconds {
            min: 1,
            max: YEAR,
            set: |s, v| (s.poll, s.first_poll) = (v, v),
        },
    ),
    (
        "AUTOSSH_FIRST_POLL",
        Kind::Seconds {
            min: 1,
            max: YEAR,
            set: |s, v| s.first_poll = v,
        },
    ),
    (
        "AUTOSSH_GATETIME",
        Kind::Seconds {
            min: 0,
            max: YEAR,
            set: |s, v| s.gate_time = v,
        },
    ),
    ("AUTOSSH_MAXSTART", Kind::Limit(|s, v| s.max_start = v)),
    // 0: no lifetime.
    (
        "AUTOSSH_MAXLIFETIME",
        Kind::Seconds {
            min: 0,
            max: 100 * YEAR,
            set: |s, v| s.max_lifetime = (!v.is_zero()).then_some(v),
        },
    ),
    ("AUTOSSH_MESSAGE", Kind::Line(|s, v| s.message = v)),
    ("AUTOSSH_PORT", Kind::Monitor(|s, v| s.monitor = Some(v))),
    ("AUTOSSH_DEBUG", Kind::Flag(|s| s.debug = true)),
    (
        "AUTOSSH_LOGLEVEL",
        Kind::Number {
            min: 0,
            max: 7,
            set: |s, v| s.loglevel = v as u8,
        },
    ),
    ("AUTOSSH_PIDFILE", Kind::Path(|s, v| s.pidfile = Some(v))),
    ("AUTOSSH_LOGFILE", Kind::Path(|s, v| s.logfile = Some(v))),
    (
        "AUTOSSH_STATUSFILE",
        Kind::Report(|s, v| s.statusfile = Some(v)),
    ),
    (
        "AUTOSSH_METRICSFILE",
        Kind::Report(|s, v| s.metricsfile = Some(v)),
    ),
    (
        "AUTOSSH_SERVERALIVE_INTERVAL",
        Kind::Number {
            min: 0,
            max: DAY,
            set: |s, v| s.serveralive_interval = v as u32,
        },
    ),
    (
        "AUTOSSH_SERVERALIVE_COUNT_MAX",
        Kind::Number {
            min: 1,
            max: 1000,
            set: |s, v| s.serveralive_count_max = v as u32,
        },
    ),
    (
        "AUTOSSH_SESSION_PROBE",
        Kind::Switch(|s, v| s.session_probe = v),
    ),
    ("AUTOSSH_HOLD", Kind::Switch(|s, v| s.hold = v)),
    (
        "AUTOSSH_HOLD_TIME",
        Kind::Seconds {
            min: 1,
            max: DAY,
            set: |s, v| s.hold_time = v,
        },
    ),
    (
        "AUTOSSH_HOLD_MAX",
        Kind::Number {
            min: 1,
            max: 1_000_000,
            set: |s, v| s.hold_max = v as u32,
        },
    ),
    (
        "AUTOSSH_DRAIN_TIME",
        Kind::Seconds {
            min: 0,
            max: DAY,
            set: |s, v| s.drain_time = v,
        },
    ),
    ("AUTOSSH_ON_DEMAND", Kind::Switch(|s, v| s.on_demand = v)),
    (
        "AUTOSSH_IDLE_TIME",
        Kind::Seconds {
            min: 1,
            max: YEAR,
            set: |s, v| s.idle_time = v,
        },
    ),
    ("AUTOSSH_AGENT", Kind::Agent(|s, v| s.agent = v)),
    ("AUTOSSH_HTTP", Kind::Listen(|s, v| s.http = Some(v))),
    ("AUTOSSH_HOOK", Kind::Hook(|s, v| s.hook = Some(v))),
];

/// The settings with no variable set (README.md's Environment table), and the command line's.
fn defaults(cli: Cli) -> Settings {
    let secs = Duration::from_secs;
    Settings {
        ssh_path: OsString::from("/usr/bin/ssh"),
        monitor: cli.monitor,
        poll: secs(600),
        first_poll: secs(600),
        gate_time: secs(30),
        max_start: None,
        max_lifetime: None,
        message: String::new(),
        pidfile: None,
        logfile: None,
        loglevel: 6,
        debug: false,
        serveralive_interval: 60,
        serveralive_count_max: 3,
        daemon: cli.daemon,
        user_o_keys: cli.ssh_o_values.iter().map(|v| o_key(v)).collect(),
        statusfile: None,
        metricsfile: None,
        session_probe: true,
        stdio_forward: cli.stdio_forward,
        sharing_asked: cli.control_socket
            || cli.ssh_o_values.iter().any(|v| {
                let k = o_key(v);
                k == "controlmaster" || k == "controlpath" || k == "controlpersist"
            }),
        hold: true,
        held: Split::default(),
        hold_time: secs(60),
        hold_max: 10_000,
        drain_time: secs(300),
        on_demand: false,
        idle_time: secs(300),
        agent: AgentMode::Auto,
        credentials: Vec::new(),
        ssh_args: cli.ssh_args,
        http: None,
        hook: None,
    }
}

/// Reads a set variable's value as its kind says, into `s`.
fn read(s: &mut Settings, kind: Kind, value: OsString) -> Result<(), Problem> {
    match kind {
        Kind::Seconds { min, max, set } => {
            set(s, Duration::from_secs(number(&text(value)?, min, max)?))
        }
        Kind::Number { min, max, set } => set(s, number(&text(value)?, min, max)?),
        Kind::Limit(set) => {
            let value = text(value)?;
            let n = parse_signed(&value).ok_or(Problem::Limit { value })?;
            set(s, u32::try_from(n).ok())
        }
        Kind::Switch(set) => {
            if let Some(on) = switch(&text(value)?)? {
                set(s, on)
            }
        }
        Kind::Line(set) => set(s, one_line(text(value)?)?),
        Kind::Monitor(set) if s.monitor.is_none() && !value.is_empty() => {
            set(s, parse_monitor(&value).map_err(Problem::Monitor)?)
        }
        Kind::Program(_) if value.is_empty() => return Err(Problem::EmptyPath),
        Kind::Program(set) => set(s, value),
        Kind::Path(set) if !value.is_empty() => set(s, absolute(&value)?),
        Kind::Report(set) if !value.is_empty() => set(s, dir_exists(absolute(&value)?)?),
        Kind::Listen(set) if !value.is_empty() => {
            let value = text(value)?;
            set(
                s,
                endpoints::parse_http(&value).ok_or(Problem::NotAnAddress { value })?,
            )
        }
        Kind::Hook(set) if !value.is_empty() => set(s, hook(&value)?),
        Kind::Monitor(_) | Kind::Path(_) | Kind::Report(_) | Kind::Listen(_) | Kind::Hook(_) => {}
        Kind::Flag(set) => set(s),
        Kind::Agent(set) => {
            let value = text(value)?;
            match value.to_ascii_lowercase().as_str() {
                "" => {}
                "auto" => set(s, AgentMode::Auto),
                "yes" | "on" | "1" | "true" => set(s, AgentMode::Yes),
                "no" | "off" | "0" | "false" => set(s, AgentMode::No),
                _ => {
                    return Err(Problem::Word {
                        value,
                        words: "auto, yes or no",
                    })
                }
            }
        }
    }
    Ok(())
}

fn text(value: OsString) -> Result<String, Problem> {
    value.into_string().map_err(|_| Problem::NotText)
}

fn number(value: &str, min: u64, max: u64) -> Result<u64, Problem> {
    match parse_c_number(value) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Problem::Number {
            value: value.into(),
            min,
            max,
        }),
    }
}

/// A yes/no word; `None` for empty.
fn switch(value: &str) -> Result<Option<bool>, Problem> {
    match value.to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "yes" | "on" | "true" => Ok(Some(true)),
        "0" | "no" | "off" | "false" => Ok(Some(false)),
        _ => Err(Problem::Word {
            value: value.into(),
            words: "yes or no",
        }),
    }
}

fn one_line(value: String) -> Result<String, Problem> {
    if value.len() > MAX_MESSAGE {
        return Err(Problem::TooLong {
            len: value.len(),
            max: MAX_MESSAGE,
        });
    }
    if value.contains(['\r', '\n']) {
        return Err(Problem::NotOneLine);
    }
    Ok(value)
}

/// A report file must be creatable: its directory must exist.
fn dir_exists(path: PathBuf) -> Result<PathBuf, Problem> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(Problem::NoDirectory(dir.to_path_buf()));
    }
    Ok(path)
}

/// The hook program, found and checked now (relative to the current directory).
fn hook(value: &OsStr) -> Result<PathBuf, Problem> {
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(error) => {
            let path = PathBuf::from(value);
            return Err(Problem::Unresolvable { path, error });
        }
    };
    endpoints::check_hook(value, &cwd, endpoints::path_var().as_deref())
        .map_err(|(path, problem)| Problem::Hook { path, problem })
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
fn absolute(p: &OsStr) -> Result<PathBuf, Problem> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    match std::env::current_dir() {
        Ok(cwd) => Ok(cwd.join(path)),
        Err(error) => Err(Problem::Unresolvable {
            path: path.to_path_buf(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)], args: &[&str]) -> Result<Settings, ConfigError> {
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
    fn errors_carry_the_setting_the_value_and_what_is_allowed() {
        let err = |k: &str, v: &str| settings(&[(k, v)], &["h"]).unwrap_err();
        let e = err("AUTOSSH_POLL", "ten");
        assert_eq!(e.setting, "AUTOSSH_POLL");
        assert!(
            matches!(&e.problem, Problem::Number { value, min: 1, max } if value == "ten" && *max == YEAR),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "AUTOSSH_POLL: invalid value \"ten\" (a whole number from 1 to 31536000)"
        );
        let e = err("AUTOSSH_SESSION_PROBE", "maybe");
        assert!(
            matches!(&e.problem, Problem::Word { value, words: "yes or no" } if value == "maybe"),
            "{e:?}"
        );
        let e = err("AUTOSSH_MAXSTART", "x");
        assert_eq!(
            e.to_string(),
            "AUTOSSH_MAXSTART: invalid value \"x\" (a whole number; -1 for no limit)"
        );
        let e = err("AUTOSSH_PORT", "5:0");
        assert!(
            matches!(&e.problem, Problem::Monitor(MonitorError::EchoPort(p)) if p == "0"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "AUTOSSH_PORT: invalid echo port \"0\" (must be 1-65535)"
        );
        let e = err("AUTOSSH_MESSAGE", &"x".repeat(65));
        assert!(
            matches!(e.problem, Problem::TooLong { len: 65, max: 64 }),
            "{e:?}"
        );
        let e = err("AUTOSSH_STATUSFILE", "/nonexistent/s.json");
        assert_eq!(
            e.to_string(),
            "AUTOSSH_STATUSFILE: directory /nonexistent does not exist"
        );
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let unset = settings(&[], &["h"]).unwrap();
        for (var, default, _) in crate::setup::cli_doc::ENVIRONMENT {
            if *default == "unset" || default.starts_with("AUTOSSH_") {
                continue;
            }
            let set = settings(&[(var, default.trim_matches('"'))], &["h"]).unwrap();
            assert_eq!(set, unset, "{var}={default}");
        }
    }

    #[test]
    fn with_m_a_bad_autossh_port_is_not_read() {
        let s = settings(&[("AUTOSSH_PORT", "x")], &["-M", "0", "h"]).unwrap();
        assert_eq!(s.monitor, Some(MonitorSpec::Off));
    }

    #[test]
    fn the_http_address_and_the_hook_are_checked_before_the_start() {
        let s = settings(&[("AUTOSSH_HTTP", "9100")], &["h"]).unwrap();
        assert_eq!(s.http.unwrap().addr.to_string(), "127.0.0.1:9100");
        let e = settings(&[("AUTOSSH_HTTP", "not-an-address")], &["h"]).unwrap_err();
        assert!(
            matches!(&e.problem, Problem::NotAnAddress { value } if value == "not-an-address"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "AUTOSSH_HTTP: invalid value \"not-an-address\" (ADDR:PORT, [ADDR6]:PORT, or PORT for 127.0.0.1)"
        );
        assert_eq!(
            settings(&[("AUTOSSH_HTTP", "")], &["h"]).unwrap().http,
            None
        );
        let s = settings(&[("AUTOSSH_HOOK", "/bin/true")], &["h"]).unwrap();
        assert_eq!(s.hook, Some(PathBuf::from("/bin/true")));
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("hook");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let e = settings(&[("AUTOSSH_HOOK", plain.to_str().unwrap())], &["h"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("AUTOSSH_HOOK: {}: not executable", plain.display())
        );
        let e = settings(&[("AUTOSSH_HOOK", "/nonexistent/hook")], &["h"]).unwrap_err();
        assert!(
            matches!(
                &e.problem,
                Problem::Hook {
                    problem: HookProblem::NotFound,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let s = settings(&[("AUTOSSH_PIDFILE", "a.pid")], &["h"]).unwrap();
        assert!(s.pidfile.unwrap().is_absolute());
    }
}

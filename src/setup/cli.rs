//! Splits autossh's command line into autossh's own options (`-M`, `-f`, `-V`) and ssh's.
//!
//! ssh's grammar is `ssh [options] destination [options] [command [args...]]`: options may
//! follow the destination until the first non-option, which starts the remote command and
//! ends option parsing. We follow it exactly, so `-J jump`, `-B iface`, `-W host:port`,
//! clusters like `-fN`, attached `-M20000`, `--` and `host ls -l` all reach ssh intact.

use crate::setup::ssh_opts::{self, OptKind};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The usage line printed for bad command lines.
pub const USAGE: &str = "usage: autossh [-V] [-M monitor_port[:echo_port]] [-f] [SSH_OPTIONS]";

/// The monitor as asked for by `-M` or `AUTOSSH_PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorSpec {
    /// `-M 0`: no monitor forwards (ServerAlive fallback).
    Off,
    /// `-M N`: loop through `-L N:127.0.0.1:N -R N:127.0.0.1:N+1`.
    Loop(u16),
    /// `-M N:E`: `-L N:127.0.0.1:E` to a remote echo service.
    Echo { port: u16, echo: u16 },
}

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `-V` or `--version`: print the version and exit.
    pub version: bool,
    /// `--help`: print the whole usage and exit (ssh has no long options: it collides with
    /// nothing).
    pub help: bool,
    /// `-f`: go to the background.
    pub daemon: bool,
    /// The `-M` value, if given (the last one wins).
    pub monitor: Option<MonitorSpec>,
    /// Everything for ssh, in order, without autossh's own options.
    pub ssh_args: Vec<OsString>,
    /// The values of the user's `-o` options (`Key=value`), to know what they set.
    pub ssh_o_values: Vec<String>,
    /// `-W host:port` (stdio forwarding: ssh then clears every other forward).
    pub stdio_forward: bool,
    /// `-S ctl_path`: the user chose connection sharing on the command line.
    pub control_socket: bool,
    /// `--tunnels FILE`: many tunnels from a file (docs/tunnels.md).
    pub tunnels: Option<OsString>,
    /// `--control-socket PATH`: the tunnels' control socket.
    pub control_path: Option<OsString>,
}

/// Where the splitter is in ssh's grammar.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Options before the destination.
    BeforeDestination,
    /// Options after the destination (ssh parses them too).
    AfterDestination,
    /// The remote command and its arguments: passed verbatim.
    Command,
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli {
        ssh_args: Vec::with_capacity(args.len()),
        ..Cli::default()
    };
    let mut place = Place::BeforeDestination;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if place == Place::Command || arg == b"--" || arg.len() < 2 || arg[0] != b'-' {
            // The remote command, `--` or a non-option: ssh's, as they are.
            cli.ssh_args.push(args[i - 1].clone());
            place = place.after(arg, i < args.len());
            continue;
        }
        i += option(&mut cli, arg, args.get(i))?;
    }
    if !cli.version && !cli.help && place == Place::BeforeDestination && cli.tunnels.is_none() {
        return Err(CliError::NoDestination);
    }
    Ok(cli)
}

impl Place {
    /// Where a non-option `arg` (or `--`) leaves the splitter; `more`: arguments follow it.
    fn after(self, arg: &[u8], more: bool) -> Place {
        match self {
            Place::Command => Place::Command,
            // `--` ends option parsing for ssh too: the rest is destination and command.
            _ if arg == b"--" && more => Place::Command,
            _ if arg == b"--" => self,
            // A non-option: the destination, then the remote command.
            Place::BeforeDestination => Place::AfterDestination,
            Place::AfterDestination => Place::Command,
        }
    }
}

impl Cli {
    /// The options that belong to one mode only: `--tunnels FILE` takes the ssh arguments and
    /// the monitor from the file, and `--control-socket` is the socket of those tunnels.
    pub fn check_mode(&self) -> Result<(), CliError> {
        if self.tunnels.is_some() && (!self.ssh_args.is_empty() || self.monitor.is_some()) {
            return Err(CliError::TunnelsWithSsh);
        }
        if self.tunnels.is_none() && self.control_path.is_some() {
            return Err(CliError::ControlWithoutTunnels);
        }
        Ok(())
    }
}

/// One option argument (`--help`, `--tunnels FILE`, a cluster such as `-fNM20000`); returns
/// how many of the arguments after it it took.
fn option(cli: &mut Cli, arg: &[u8], next: Option<&OsString>) -> Result<usize, CliError> {
    match arg {
        b"--help" => cli.help = true,
        b"--version" => cli.version = true,
        _ => return long_or_cluster(cli, arg, next),
    }
    Ok(0)
}

/// An option other than `--help` and `--version`: a long one of ours with its value, or a
/// cluster that ours (`-f`, `-M`, `-V`) are taken out of.
fn long_or_cluster(cli: &mut Cli, arg: &[u8], next: Option<&OsString>) -> Result<usize, CliError> {
    if let Some(long) = long_with_value(arg, next)? {
        match long.name {
            "tunnels" => cli.tunnels = Some(long.value),
            _ => cli.control_path = Some(long.value),
        }
        return Ok(usize::from(long.took_next));
    }
    let (kept, next_arg) = split_cluster(arg, cli, next)?;
    cli.ssh_args.extend(kept);
    Ok(match next_arg {
        NextArg::Untouched => 0,
        NextArg::Ours => 1,
        NextArg::Ssh => {
            cli.ssh_args.extend(next.cloned());
            1
        }
    })
}

/// `--tunnels FILE`, `--tunnels=FILE` or `--control-socket PATH`, as given.
struct LongOption {
    /// Its name, without the dashes.
    name: &'static str,
    value: OsString,
    /// The value was the next argument.
    took_next: bool,
}

/// `arg` as one of our long options with a value, if it is one.
fn long_with_value(arg: &[u8], next: Option<&OsString>) -> Result<Option<LongOption>, CliError> {
    for name in ["tunnels", "control-socket"] {
        let flag = format!("--{name}");
        if arg == flag.as_bytes() {
            let value = next.ok_or(CliError::NoLongValue(name))?.clone();
            return Ok(Some(LongOption {
                name,
                value,
                took_next: true,
            }));
        }
        if let Some(v) = arg.strip_prefix(format!("{flag}=").as_bytes()) {
            return Ok(Some(LongOption {
                name,
                value: OsStr::from_bytes(v).to_owned(),
                took_next: false,
            }));
        }
    }
    Ok(None)
}

/// What an option cluster did with the argument after it.
enum NextArg {
    Untouched,
    /// It was the value of autossh's `-M`.
    Ours,
    /// It is the value of an ssh option: it goes to ssh.
    Ssh,
}

/// Walks one option cluster such as `-fNM20000`. Returns what remains of it for ssh (if
/// anything) and what became of the next argument.
fn split_cluster(
    arg: &[u8],
    cli: &mut Cli,
    next: Option<&OsString>,
) -> Result<(Option<OsString>, NextArg), CliError> {
    let mut kept = vec![b'-'];
    let mut j = 1;
    while j < arg.len() {
        let c = arg[j] as char;
        let rest = &arg[j + 1..];
        match c {
            'f' => cli.daemon = true,
            'V' => cli.version = true,
            'M' => {
                let (value, next_arg) = if rest.is_empty() {
                    let v = next.ok_or(CliError::MonitorWithoutPort)?;
                    (v.as_bytes(), NextArg::Ours)
                } else {
                    (rest, NextArg::Untouched)
                };
                cli.monitor =
                    Some(parse_monitor(OsStr::from_bytes(value)).map_err(CliError::Monitor)?);
                return Ok((non_empty(kept), next_arg));
            }
            _ if ssh_opts::kind(c) == OptKind::Value => {
                cli.stdio_forward |= c == 'W';
                cli.control_socket |= c == 'S';
                if c == 'o' {
                    let v = if rest.is_empty() {
                        next.map(|n| n.as_bytes())
                    } else {
                        Some(rest)
                    };
                    if let Some(v) = v {
                        cli.ssh_o_values
                            .push(String::from_utf8_lossy(v).into_owned());
                    }
                }
                kept.extend_from_slice(&arg[j..]);
                if rest.is_empty() {
                    if next.is_none() {
                        return Err(CliError::NoValue(c));
                    }
                    return Ok((non_empty(kept), NextArg::Ssh));
                }
                return Ok((non_empty(kept), NextArg::Untouched));
            }
            _ => kept.push(arg[j]),
        }
        j += 1;
    }
    Ok((non_empty(kept), NextArg::Untouched))
}

fn non_empty(kept: Vec<u8>) -> Option<OsString> {
    (kept.len() > 1).then(|| OsString::from_vec(kept))
}

/// Parses a number the way C's `strtoul(s, _, 0)` does: decimal, `0x` hex or `0` octal.
pub fn parse_c_number(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses `N` or `N:E` (from `-M`, `AUTOSSH_PORT` or a tunnel's `monitor`, which name it in
/// their errors).
pub fn parse_monitor(value: &OsStr) -> Result<MonitorSpec, MonitorError> {
    let text = value.to_str().ok_or(MonitorError::NotText)?;
    let (port_text, echo_text) = match text.split_once(':') {
        Some((p, e)) => (p, Some(e)),
        None => (text, None),
    };
    let port = parse_c_number(port_text).ok_or_else(|| MonitorError::Port(port_text.into()))?;
    let echo = match echo_text {
        None => None,
        Some(e) => match parse_c_number(e) {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            _ => return Err(MonitorError::EchoPort(e.into())),
        },
    };
    match (port, echo) {
        (0, _) => Ok(MonitorSpec::Off),
        (p, None) if p <= 65534 => Ok(MonitorSpec::Loop(p as u16)),
        (p, None) => Err(MonitorError::LoopRange(p)),
        (p, Some(echo)) if p <= 65535 => Ok(MonitorSpec::Echo {
            port: p as u16,
            echo,
        }),
        (p, Some(_)) => Err(MonitorError::EchoRange(p)),
    }
}

/// What is wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// No destination, and neither `--tunnels`, `-V` nor `--help`.
    NoDestination,
    /// `-M` came last, without its port.
    MonitorWithoutPort,
    /// A bad `-M` value.
    Monitor(MonitorError),
    /// An ssh option that takes a value (`-L`) came last.
    NoValue(char),
    /// `--tunnels` or `--control-socket` (named without its dashes) came last.
    NoLongValue(&'static str),
    /// `--tunnels FILE` with ssh arguments or `-M`.
    TunnelsWithSsh,
    /// `--control-socket` without `--tunnels FILE`.
    ControlWithoutTunnels,
}

/// What is wrong with a monitor port value; the caller names the option, variable or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorError {
    /// Not UTF-8.
    NotText,
    /// The port is not a number.
    Port(String),
    /// The echo port is not a number from 1 to 65535.
    EchoPort(String),
    /// A loop-mode port over 65534 (its port+1 is used too).
    LoopRange(u64),
    /// An echo-mode port over 65535.
    EchoRange(u64),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NoDestination => write!(f, "no destination host given; {USAGE}"),
            CliError::MonitorWithoutPort => write!(f, "-M needs a port; {USAGE}"),
            CliError::Monitor(e) => write!(f, "-M: {e}"),
            CliError::NoValue(c) => write!(f, "option -{c} needs a value"),
            CliError::NoLongValue(name) => write!(f, "--{name} needs a value"),
            CliError::TunnelsWithSsh => {
                f.write_str("--tunnels FILE takes no ssh arguments and no -M: they go in the file")
            }
            CliError::ControlWithoutTunnels => {
                f.write_str("--control-socket goes with --tunnels FILE")
            }
        }
    }
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::NotText => f.write_str("port is not valid text"),
            MonitorError::Port(p) => write!(f, "invalid monitor port {p:?}"),
            MonitorError::EchoPort(e) => write!(f, "invalid echo port {e:?} (must be 1-65535)"),
            MonitorError::LoopRange(p) => {
                write!(
                    f,
                    "monitor port {p} out of range (1-65534; port+1 is used too)"
                )
            }
            MonitorError::EchoRange(p) => write!(f, "monitor port {p} out of range"),
        }
    }
}

impl std::error::Error for CliError {}
impl std::error::Error for MonitorError {}

#[cfg(test)]
mod tests;

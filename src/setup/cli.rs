//! Splits autossh's command line into autossh's own options (`-M`, `-f`, `-V`) and ssh's.
//!
//! ssh's grammar is `ssh [options] destination [options] [command [args...]]`: options may
//! follow the destination until the first non-option, which starts the remote command and
//! ends option parsing. We follow it exactly, so `-J jump`, `-B iface`, `-W host:port`,
//! clusters like `-fN`, attached `-M20000`, `--` and `host ls -l` all reach ssh intact.

use crate::error::{usage, Result};
use crate::setup::ssh_opts::{self, OptKind};
use std::ffi::{OsStr, OsString};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub fn parse<I, S>(args: I) -> Result<Cli>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli {
        version: false,
        help: false,
        daemon: false,
        monitor: None,
        ssh_args: Vec::with_capacity(args.len()),
        ssh_o_values: Vec::new(),
        stdio_forward: false,
        control_socket: false,
        tunnels: None,
        control_path: None,
    };
    let mut place = Place::BeforeDestination;
    let mut seen_destination = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if place == Place::Command {
            cli.ssh_args.push(args[i - 1].clone());
            continue;
        }
        if arg == b"--" {
            // Ends option parsing for ssh too: the rest is destination and command.
            cli.ssh_args.push(args[i - 1].clone());
            for rest in &args[i..] {
                cli.ssh_args.push(rest.clone());
                seen_destination = true;
            }
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            // A non-option: the destination, then the remote command.
            cli.ssh_args.push(args[i - 1].clone());
            if seen_destination {
                place = Place::Command;
            } else {
                seen_destination = true;
                place = Place::AfterDestination;
            }
            continue;
        }
        match arg {
            b"--help" => {
                cli.help = true;
                continue;
            }
            b"--version" => {
                cli.version = true;
                continue;
            }
            _ => {}
        }
        if let Some((name, value)) = long_with_value(arg, args.get(i))? {
            if value.1 {
                i += 1;
            }
            match name {
                "tunnels" => cli.tunnels = Some(value.0),
                _ => cli.control_path = Some(value.0),
            }
            continue;
        }
        let (kept, next_arg) = split_cluster(arg, &mut cli, args.get(i))?;
        if let Some(kept) = kept {
            cli.ssh_args.push(kept);
        }
        match next_arg {
            NextArg::Untouched => {}
            NextArg::Ours => i += 1,
            NextArg::Ssh => {
                cli.ssh_args.push(args[i].clone());
                i += 1;
            }
        }
    }
    if !cli.version && !cli.help && !seen_destination && cli.tunnels.is_none() {
        return Err(usage(format!("no destination host given; {USAGE}")));
    }
    Ok(cli)
}

/// `--tunnels FILE`, `--tunnels=FILE`, `--control-socket PATH`: the option's name, its
/// value, and whether the value was the next argument.
fn long_with_value(
    arg: &[u8],
    next: Option<&OsString>,
) -> Result<Option<(&'static str, (OsString, bool))>> {
    for name in ["tunnels", "control-socket"] {
        let flag = format!("--{name}");
        if arg == flag.as_bytes() {
            let v = next.ok_or_else(|| usage(format!("{flag} needs a value")))?;
            return Ok(Some((name, (v.clone(), true))));
        }
        if let Some(v) = arg.strip_prefix(format!("{flag}=").as_bytes()) {
            return Ok(Some((name, (OsStr::from_bytes(v).to_owned(), false))));
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
) -> Result<(Option<OsString>, NextArg)> {
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
                    let v = next.ok_or_else(|| usage(format!("-M needs a port; {USAGE}")))?;
                    (v.as_bytes(), NextArg::Ours)
                } else {
                    (rest, NextArg::Untouched)
                };
                cli.monitor = Some(parse_monitor(OsStr::from_bytes(value), "-M")?);
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
                        return Err(usage(format!("option -{c} needs a value")));
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

/// Parses `N` or `N:E` (from `-M` or `AUTOSSH_PORT`, named by `what` in errors).
pub fn parse_monitor(value: &OsStr, what: &str) -> Result<MonitorSpec> {
    let text = value
        .to_str()
        .ok_or_else(|| usage(format!("{what}: port is not valid text")))?;
    let (port_text, echo_text) = match text.split_once(':') {
        Some((p, e)) => (p, Some(e)),
        None => (text, None),
    };
    let port = parse_c_number(port_text)
        .ok_or_else(|| usage(format!("{what}: invalid monitor port {port_text:?}")))?;
    let echo = match echo_text {
        None => None,
        Some(e) => match parse_c_number(e) {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            _ => {
                return Err(usage(format!(
                    "{what}: invalid echo port {e:?} (must be 1-65535)"
                )))
            }
        },
    };
    match (port, echo) {
        (0, _) => Ok(MonitorSpec::Off),
        (p, None) if p <= 65534 => Ok(MonitorSpec::Loop(p as u16)),
        (p, None) => Err(usage(format!(
            "{what}: monitor port {p} out of range (1-65534; port+1 is used too)"
        ))),
        (p, Some(echo)) if p <= 65535 => Ok(MonitorSpec::Echo {
            port: p as u16,
            echo,
        }),
        (p, Some(_)) => Err(usage(format!("{what}: monitor port {p} out of range"))),
    }
}

#[cfg(test)]
mod tests;

//! `autossh status|restart|reload`: one request to the control socket, its answer printed.

use super::Request;
use crate::error::{runtime, usage, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// A control command from the command line, if it is one: `status [--json]`, `restart NAME`,
/// `reload`, `health [NAME]`, each with an optional `--control-socket PATH`; `restart` alone
/// is an error.
pub fn command(args: &[OsString]) -> Option<Result<(Request, Option<PathBuf>)>> {
    let mut words: Vec<String> = Vec::new();
    let mut socket = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_str()?;
        if a == "--control-socket" {
            socket = Some(PathBuf::from(args.get(i + 1)?));
            i += 2;
            continue;
        }
        if let Some(p) = a.strip_prefix("--control-socket=") {
            socket = Some(PathBuf::from(p));
        } else {
            words.push(a.to_string());
        }
        i += 1;
    }
    let first = words.first()?;
    if !matches!(first.as_str(), "status" | "restart" | "reload" | "health") {
        return None;
    }
    match Request::parse(&words.join(" ")) {
        Some(r) => Some(Ok((r, socket))),
        None if words.len() == 1 => Some(Err(usage(
            "restart needs a tunnel's name: autossh restart NAME",
        ))),
        // `status -N`, `reload host`...: ssh's arguments after all.
        None => None,
    }
}

/// The socket when none is given: the default path, else the packaged unit's.
pub fn find_socket() -> PathBuf {
    let default = super::default_path(&|k| std::env::var_os(k));
    let unit = PathBuf::from(UNIT_SOCKET);
    if !default.exists() && unit.exists() {
        unit
    } else {
        default
    }
}

/// Where autossh-tunnels.service's autossh listens (its `RuntimeDirectory`).
const UNIT_SOCKET: &str = "/run/autossh-tunnels/autossh.sock";

/// Runs a control command: its answer on stdout; the exit code. `health` asks the HTTP
/// endpoint when the environment names one (`AUTOSSH_HTTP`, as in a container's exec probe),
/// else the control socket; it exits 0 when up, 1 otherwise.
pub fn run(request: &Request, socket: Option<PathBuf>) -> Result<i32> {
    let http = std::env::var("AUTOSSH_HTTP").ok().filter(|v| !v.is_empty());
    let answer = match (request, http) {
        (Request::Health(name), Some(at)) => {
            let addr = crate::setup::endpoints::parse_http(&at)
                .ok_or_else(|| usage(format!("AUTOSSH_HTTP: invalid value {at:?}")))?;
            let h = crate::shell::http::health::ask(addr.addr, name.as_deref())
                .map_err(|e| runtime(e.to_string()))?;
            let _ = std::io::stdout().write_all(h.body.as_bytes());
            return Ok(if h.up { 0 } else { 1 });
        }
        _ => send(request, socket.unwrap_or_else(find_socket))?,
    };
    let _ = std::io::stdout().write_all(answer.as_bytes());
    Ok(0)
}

/// Sends the request; returns the answer (an error when autossh answered one).
pub fn send(request: &Request, socket: PathBuf) -> Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        runtime(format!(
            "control socket {}: {e} (is `autossh --tunnels` running? --control-socket PATH names another socket)",
            socket.display()
        ))
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    s.write_all(format!("{}\n", request.line()).as_bytes())
        .map_err(|e| runtime(format!("control socket {}: {e}", socket.display())))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| runtime(format!("control socket {}: {e}", socket.display())))?;
    match answer.strip_prefix("error: ") {
        Some(e) => Err(usage(e.trim_end().to_string())),
        None if answer.is_empty() => Err(runtime(format!(
            "control socket {}: no answer",
            socket.display()
        ))),
        None => Ok(answer),
    }
}

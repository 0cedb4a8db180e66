//! `autossh health [NAME]` over HTTP: one GET of `/healthz` from the endpoint the
//! environment's `AUTOSSH_HTTP` names (as a container's exec probe sees it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the whole question may take (an exec probe has its own timeout above it).
const WAIT: Duration = Duration::from_secs(5);

/// What the endpoint said: up or not, with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    pub body: String,
}

/// Why there is no answer.
#[derive(Debug)]
pub enum AskError {
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    Io {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// Not an HTTP answer, or not one of 200, 503, 404.
    Answer { addr: SocketAddr, status: String },
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Connect { addr, error } => write!(
                f,
                "health: http://{addr}/healthz: {error} (is autossh running with AUTOSSH_HTTP={addr}?)"
            ),
            AskError::Io { addr, error } => write!(f, "health: http://{addr}/healthz: {error}"),
            AskError::Answer { addr, status } => {
                write!(f, "health: http://{addr}/healthz answered {status:?}")
            }
        }
    }
}

/// Asks `/healthz` (or `/healthz?tunnel=NAME`); 200 is up, 503 is down, 404 no such tunnel.
pub fn ask(addr: SocketAddr, tunnel: Option<&str>) -> Result<Health, AskError> {
    let io = |error| AskError::Io { addr, error };
    let mut s = TcpStream::connect_timeout(&addr, WAIT)
        .map_err(|error| AskError::Connect { addr, error })?;
    let _ = s.set_read_timeout(Some(WAIT));
    let _ = s.set_write_timeout(Some(WAIT));
    let query = tunnel
        .map(|t| format!("?tunnel={}", encode(t)))
        .unwrap_or_default();
    let request =
        format!("GET /healthz{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    s.take(1 << 20).read_to_end(&mut answer).map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    match status.split(' ').nth(1) {
        Some("200") => Ok(Health { up: true, body }),
        Some("503" | "404") => Ok(Health { up: false, body }),
        _ => Err(AskError::Answer { addr, status }),
    }
}

/// Percent-encodes what is not a name character.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_encoded() {
        assert_eq!(super::encode("db-1.x"), "db-1.x");
        assert_eq!(super::encode("a b&c"), "a%20b%26c");
    }
}

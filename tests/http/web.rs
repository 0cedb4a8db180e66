//! A plain HTTP/1.1 client for the tests: one request per connection, bounded in time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: status code, head, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub head: String,
    pub body: String,
}

/// Sends `bytes` to 127.0.0.1:`port` and reads until the server closes (within `limit`).
pub fn raw(port: u16, bytes: &[u8], limit: Duration) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    s.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    s.take(4 << 20)
        .read_to_end(&mut got)
        .map_err(|e| format!("read: {e} (after {} bytes)", got.len()))?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Sends `bytes`, closes its side, and reads what comes back until the server closes
/// (`None` when it did not answer, or reset the connection).
pub fn send_and_close(port: u16, bytes: &[u8], limit: Duration) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(bytes).ok()?;
    s.shutdown(std::net::Shutdown::Write).ok()?;
    let mut got = Vec::new();
    s.take(1 << 20).read_to_end(&mut got).ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// `GET target` (within 2 s).
pub fn get(port: u16, target: &str) -> Result<Answer, String> {
    get_within(port, target, Duration::from_secs(2))
}

/// `GET target` within `limit`.
pub fn get_within(port: u16, target: &str, limit: Duration) -> Result<Answer, String> {
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: test\r\n\r\n");
    let text = raw(port, req.as_bytes(), limit)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no head in {text:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let len: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok());
    if len != Some(body.len()) {
        return Err(format!(
            "Content-Length {len:?} for a body of {}",
            body.len()
        ));
    }
    Ok(Answer {
        code,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// The status code of `GET target`, `None` when there is no answer.
pub fn code(port: u16, target: &str) -> Option<u16> {
    get(port, target).ok().map(|a| a.code)
}

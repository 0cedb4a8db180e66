//! One HTTP/1.x request head read and judged: what is asked, or the status to refuse it with.

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `/metrics`: Prometheus text, the series of the metrics file.
    Metrics,
    /// `/healthz`, or `/healthz?tunnel=NAME` for one tunnel.
    Healthz { tunnel: Option<String> },
    /// `/status`: the JSON of `autossh status --json`.
    Status,
}

/// Why a request is refused, answered by the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an HTTP/1.x request line.
    BadRequest,
    /// A method other than GET.
    NotGet,
    /// No such path.
    NotFound,
    /// The head is longer than the server reads.
    TooLarge,
    /// The head did not arrive in time.
    Timeout,
}

impl Refusal {
    /// The status line's code and reason.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::NotGet => (405, "Method Not Allowed"),
            Refusal::NotFound => (404, "Not Found"),
            Refusal::TooLarge => (431, "Request Header Fields Too Large"),
            Refusal::Timeout => (408, "Request Timeout"),
        }
    }
}

/// Where the head ends (just past its blank line), if it has ended.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads a complete head: its request line decides; the header lines are not needed.
pub fn parse(head: &[u8]) -> Result<Request, Refusal> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Refusal::BadRequest)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| Refusal::BadRequest)?;
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Refusal::BadRequest);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || !target.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    if method != "GET" {
        let token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
        return Err(if token {
            Refusal::NotGet
        } else {
            Refusal::BadRequest
        });
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => Ok(Request::Metrics),
        "/status" => Ok(Request::Status),
        "/healthz" => Ok(Request::Healthz {
            tunnel: query_value(query, "tunnel").transpose()?,
        }),
        _ => Err(Refusal::NotFound),
    }
}

/// The value of `key` in a query string, percent-decoded.
fn query_value(query: &str, key: &str) -> Option<Result<String, Refusal>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> Result<String, Refusal> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(Refusal::BadRequest)?;
                let hex = std::str::from_utf8(hex).map_err(|_| Refusal::BadRequest)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| Refusal::BadRequest)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Refusal::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_paths_and_the_tunnel_query() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request::Metrics)
        );
        assert_eq!(p("GET /status HTTP/1.0\r\n\r\n"), Ok(Request::Status));
        assert_eq!(
            p("GET /healthz HTTP/1.1\n\n"),
            Ok(Request::Healthz { tunnel: None })
        );
        assert_eq!(
            p("GET /healthz?x=1&tunnel=db%2Dmain HTTP/1.1\r\n\r\n"),
            Ok(Request::Healthz {
                tunnel: Some("db-main".into())
            })
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_status() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Err(Refusal::NotGet));
        assert_eq!(p("HEAD /healthz HTTP/1.1\r\n\r\n"), Err(Refusal::NotGet));
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /metrics/x HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        for bad in [
            "garbage\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET /healthz?tunnel=%zz HTTP/1.1\r\n\r\n",
            "\u{1}\u{2}\r\n\r\n",
        ] {
            assert_eq!(p(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
    }
}

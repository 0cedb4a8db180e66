//! The server on a real loopback socket and its own `Poll`: answers, refusals, the bounds.

use super::*;
use mio::{Events, Poll};
use std::io::Read;
use std::net::TcpStream as StdStream;

struct Rig {
    poll: Poll,
    server: HttpServer,
}

impl Rig {
    fn new() -> Rig {
        let poll = Poll::new().unwrap();
        let at = HttpAddr {
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let mut server = HttpServer::bind(&at).unwrap();
        server.register(poll.registry()).unwrap();
        Rig { poll, server }
    }

    /// One round of the loop: every ready token handled, requests answered with their name.
    fn round(&mut self) {
        let mut events = Events::with_capacity(64);
        let wait = self
            .server
            .timeout(Instant::now())
            .unwrap_or(Duration::from_millis(20));
        self.poll
            .poll(&mut events, Some(wait.min(Duration::from_millis(20))))
            .unwrap();
        let mut asked = Vec::new();
        for ev in events.iter() {
            asked.extend(self.server.ready(self.poll.registry(), ev.token()));
        }
        if self.server.backlogged() {
            asked.extend(self.server.accept(self.poll.registry()));
        }
        for (id, r) in asked {
            let answer = Response::ok("text/plain", format!("{r:?}\n"));
            self.server.reply(self.poll.registry(), id, &answer);
        }
    }

    fn connect(&self) -> StdStream {
        let s = StdStream::connect(self.server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends `bytes` and serves until the answer is complete (bounded).
    fn ask(&mut self, bytes: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        for _ in 0..500 {
            self.round();
            match read_available(&mut s, &mut got, 1 << 20) {
                ReadEnd::Closed => return String::from_utf8_lossy(&got).into_owned(),
                _ => continue,
            }
        }
        panic!("no complete answer: {:?}", String::from_utf8_lossy(&got));
    }
}

#[test]
fn a_get_is_handed_to_the_loop_and_its_answer_sent() {
    let mut rig = Rig::new();
    let a = rig.ask(b"GET /healthz?tunnel=db HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(a.contains("Connection: close\r\n"), "{a}");
    let body = "Healthz { tunnel: Some(\"db\") }\n";
    assert!(
        a.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{a}"
    );
    assert!(a.ends_with(&format!("\r\n\r\n{body}")), "{a}");
    assert_eq!(rig.server.open, 0, "the connection is closed");
}

#[test]
fn refusals_are_answered_by_the_server() {
    let mut rig = Rig::new();
    let a = rig.ask(b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{a}");
    assert!(a.contains("Allow: GET\r\n"), "{a}");
    let a = rig.ask(b"\x16\x03\x01 not http\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    let a = rig.ask(b"GET /secret HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 404 "), "{a}");
    let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    long.resize(MAX_HEAD + 100, b'a');
    let a = rig.ask(&long);
    assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
}

#[test]
fn a_silent_client_is_closed_at_its_deadline() {
    let mut rig = Rig::new();
    let mut s = rig.connect();
    s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    for _ in 0..100 {
        rig.round();
        if rig.server.open == 1 {
            break;
        }
    }
    assert_eq!(rig.server.open, 1, "never accepted");
    let left = rig.server.timeout(Instant::now()).unwrap();
    assert!(left <= HEAD_TIME && left > HEAD_TIME / 2, "{left:?}");
    rig.server
        .expire(rig.poll.registry(), Instant::now() + HEAD_TIME);
    assert_eq!(rig.server.open, 0);
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
}

#[test]
fn a_full_table_drops_its_oldest_connection_for_a_new_one() {
    let mut rig = Rig::new();
    let idle: Vec<StdStream> = (0..CLIENTS).map(|_| rig.connect()).collect();
    for _ in 0..200 {
        rig.round();
        if rig.server.open == CLIENTS {
            break;
        }
    }
    assert_eq!(rig.server.open, CLIENTS);
    let a = rig.ask(b"GET /status HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 "), "{a}");
    assert_eq!(rig.server.open, CLIENTS - 1, "one idle client was dropped");
    let mut buf = [0u8; 16];
    let mut closed = vec![false; idle.len()];
    // Bounded polling: the server's close reaches the client as soon as the kernel passes it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !closed.iter().any(|&c| c) && std::time::Instant::now() < until {
        for (s, c) in idle.iter().zip(closed.iter_mut()) {
            s.set_nonblocking(true).unwrap();
            *c |= match (&*s).read(&mut buf) {
                Ok(0) => true,
                Err(e) => !would_block(&e),
                Ok(_) => false,
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dropped = closed.iter().filter(|&&c| c).count();
    assert_eq!(dropped, 1, "one idle connection, the oldest, is closed");
}

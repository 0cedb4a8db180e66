//! A hostile echo service.

use super::*;

/// How the hostile service answers a probe.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    /// Random bytes at once, without waiting for the probe.
    Garbage,
    /// The first half of the probe line, then silence.
    Partial,
    /// The exact echo, but this long after the probe arrived.
    Late(Duration),
    /// The exact echo followed by more bytes, in one write.
    Extra,
    /// The probe line with its sequence number changed.
    WrongSeq,
}

/// A TCP service on 127.0.0.1 that answers probes the wrong way. Stopped on drop.
pub(crate) struct Hostile {
    pub(crate) port: u16,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) connections: Arc<AtomicUsize>,
    /// The probe lines received (complete lines only).
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl Hostile {
    pub(crate) fn start(answer: Answer) -> Hostile {
        let (listener, port) = (0..20)
            .find_map(|_| {
                let port = free_port();
                TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                    .ok()
                    .map(|l| (l, port))
            })
            .expect("hostile service: no port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, connections, lines) = (stop.clone(), connections.clone(), lines.clone());
            std::thread::Builder::new()
                .name(format!("hostile-{port}"))
                .spawn(move || {
                    let started = Instant::now();
                    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFE {
                        match listener.accept() {
                            // Bounded: at most 500 connections served.
                            Ok((s, _)) if connections.load(Ordering::SeqCst) < 500 => {
                                connections.fetch_add(1, Ordering::SeqCst);
                                let (stop, lines) = (stop.clone(), lines.clone());
                                handlers.push(std::thread::spawn(move || {
                                    serve_hostile(s, answer, &stop, &lines)
                                }));
                                handlers.retain(|h| !h.is_finished());
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                    stop.store(true, Ordering::SeqCst);
                    for h in handlers {
                        let _ = h.join();
                    }
                })
                .unwrap()
        };
        Hostile {
            port,
            stop,
            connections,
            lines,
            thread: Some(thread),
        }
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads up to the first '\n' (at most 4 KiB, at most 5 s). None on EOF or timeout.
pub(crate) fn read_probe(s: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) && line.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if line.contains(&b'\n') {
                    return Some(line);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// Keeps the connection open, discarding input, until the peer closes, `until`, or stop.
/// Returns false if the peer closed.
pub(crate) fn hold(s: &mut TcpStream, stop: &AtomicBool, until: Instant) -> bool {
    let mut buf = [0u8; 512];
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

pub(crate) fn serve_hostile(
    mut s: TcpStream,
    answer: Answer,
    stop: &AtomicBool,
    lines: &Mutex<Vec<String>>,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let hold_max = Instant::now() + Duration::from_secs(15);
    if let Answer::Garbage = answer {
        let mut rng = Rng::new();
        let _ = s.write_all(&rng.bytes(300));
        hold(&mut s, stop, hold_max);
        return;
    }
    let Some(line) = read_probe(&mut s, stop) else {
        return;
    };
    lines
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&line).into_owned());
    let reply = match answer {
        Answer::Garbage => unreachable!(),
        Answer::Partial => line[..line.len() / 2].to_vec(),
        Answer::Late(d) => {
            if !hold(&mut s, stop, Instant::now() + d) {
                return;
            }
            line
        }
        Answer::Extra => {
            let mut v = line;
            v.extend_from_slice(b"and some more\r\n");
            v
        }
        Answer::WrongSeq => {
            // <host> autossh <pid> <seq> <ms> <nonce> <message>\r\n
            let text = String::from_utf8_lossy(&line).into_owned();
            let mut f: Vec<String> = text.split(' ').map(str::to_string).collect();
            match f.get(3).and_then(|x| x.parse::<u64>().ok()) {
                Some(seq) => f[3] = (seq + 1).to_string(),
                None => f.push("x".into()),
            }
            f.join(" ").into_bytes()
        }
    };
    let _ = s.write_all(&reply);
    hold(&mut s, stop, hold_max);
}

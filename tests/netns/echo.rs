//! An echo service inside a namespace.

use super::*;

/// A TCP echo service on 127.0.0.1:`port` inside a namespace, run by threads
/// of the test process (nothing to leave behind). It echoes every byte, with
/// no write timeout (a slow tunnel only slows it down); stopping shuts all
/// its connections down, which unblocks any blocked write.
pub struct EchoService {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoService {
    pub fn start_in(ns: &str, port: u16) -> EchoService {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let (stop2, conns2, ns2) = (stop.clone(), conns.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("echo-{ns}"))
            .spawn(move || {
                let listener = enter_netns(&ns2).and_then(|()| {
                    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
                    l.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Ok(l)
                });
                match listener {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        echo_accept_loop(l, stop2, conns2);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn echo service");
        let svc = EchoService {
            port,
            stop,
            conns,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => svc,
            Ok(Err(e)) => panic!("echo service in {ns}: {e}"),
            Err(_) => panic!("echo service in {ns} did not start"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn echo_accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
) {
    let started = Instant::now();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Ok(clone) = stream.try_clone() {
                    let mut list = conns.lock().unwrap_or_else(|e| e.into_inner());
                    list.push(clone);
                    if list.len() > 512 {
                        list.remove(0);
                    }
                }
                let stop = stop.clone();
                if let Ok(h) = std::thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || echo_conn(stream, stop, started))
                {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    stop.store(true, Ordering::SeqCst);
    drop(listener);
    for c in conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    for h in handlers {
        let _ = h.join();
    }
}

pub(crate) fn echo_conn(mut stream: TcpStream, stop: Arc<AtomicBool>, started: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 32 * 1024];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if retryable(&e) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

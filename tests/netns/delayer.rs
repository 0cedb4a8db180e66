//! NFQUEUE delayer (latency without netem).

use super::*;

pub(crate) const NETLINK_NETFILTER: libc::c_int = 12;
pub(crate) const NFNL_SUBSYS_QUEUE: u16 = 3;
pub(crate) const NFQNL_MSG_PACKET: u16 = 0;
pub(crate) const NFQNL_MSG_VERDICT: u16 = 1;
pub(crate) const NFQNL_MSG_CONFIG: u16 = 2;
pub(crate) const NFQA_CFG_CMD: u16 = 1;
pub(crate) const NFQA_CFG_PARAMS: u16 = 2;
pub(crate) const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
pub(crate) const NFQNL_CFG_CMD_BIND: u8 = 1;
pub(crate) const NFQNL_CFG_CMD_UNBIND: u8 = 2;
pub(crate) const NFQNL_COPY_META: u8 = 1;
pub(crate) const NFQA_PACKET_HDR: u16 = 1;
pub(crate) const NFQA_VERDICT_HDR: u16 = 2;
pub(crate) const NF_ACCEPT: u32 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;
pub(crate) const SOL_NETLINK: libc::c_int = 270;
pub(crate) const NETLINK_NO_ENOBUFS: libc::c_int = 5;

pub(crate) fn nl_align(n: usize) -> usize {
    (n + 3) & !3
}

/// One nfnetlink message: nlmsghdr + nfgenmsg + attributes.
pub(crate) fn nfq_msg(
    msg: u16,
    flags: u16,
    seq: u32,
    queue: u16,
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(libc::AF_UNSPEC as u8);
    b.push(0); // NFNETLINK_V0
    b.extend_from_slice(&queue.to_be_bytes());
    for (ty, data) in attrs {
        b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(data);
        b.resize(nl_align(b.len()), 0);
    }
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

pub(crate) fn nl_send(fd: RawFd, msg: &[u8]) -> Result<(), String> {
    // SAFETY: sends a valid buffer on an open netlink socket (to the kernel).
    let r = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if r < 0 {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Waits up to `timeout` for the socket to be readable; then one
/// non-blocking recv. `Ok(None)`: nothing arrived.
pub(crate) fn nl_recv(
    fd: RawFd,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<Option<usize>, String> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(60_000) as libc::c_int;
    // SAFETY: polls one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r <= 0 {
        return Ok(None);
    }
    // SAFETY: receives into a valid, writable buffer of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(format!("netlink recv: {e}")),
        };
    }
    Ok(Some(n as usize))
}

/// The netlink messages in `buf`: (type, seq, payload after nlmsghdr).
pub(crate) fn nl_messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() && out.len() < 10_000 {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
        out.push((ty, seq, &buf[off + 16..off + len]));
        off += nl_align(len);
    }
    out
}

/// The packet id of an NFQNL_MSG_PACKET payload (after nlmsghdr).
pub(crate) fn packet_id(payload: &[u8]) -> Option<u32> {
    let mut off = 4; // nfgenmsg
    for _ in 0..64 {
        if off + 4 > payload.len() {
            return None;
        }
        let len = u16::from_ne_bytes(payload[off..off + 2].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(payload[off + 2..off + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if ty == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(
                payload[off + 4..off + 8].try_into().ok()?,
            ));
        }
        off += nl_align(len);
    }
    None
}

/// Sends a config message and waits (≤ 2 s) for its acknowledgement.
pub(crate) fn nfq_config(
    fd: RawFd,
    seq: u32,
    queue: u16,
    attrs: &[(u16, &[u8])],
) -> Result<(), String> {
    nl_send(fd, &nfq_msg(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queue, attrs))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 8192];
    for _ in 0..100 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(n) = nl_recv(fd, &mut buf, left)? else {
            continue;
        };
        for (ty, s, payload) in nl_messages(&buf[..n]) {
            if ty == NLMSG_ERROR && s == seq && payload.len() >= 4 {
                let err = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                if err == 0 {
                    return Ok(());
                }
                return Err(format!(
                    "nfqueue config: {}",
                    std::io::Error::from_raw_os_error(-err)
                ));
            }
        }
    }
    Err("nfqueue config: no acknowledgement".into())
}

/// Holds every packet of NFQUEUE queue `queue` in a namespace for a fixed
/// delay, then accepts it (in order). Stopping accepts what is still held.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Delayer {
    pub fn start(ns: &str, queue: u16, delay: Duration) -> Result<Delayer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let (stop2, packets2, ns2) = (stop.clone(), packets.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("delayer-{ns}"))
            .spawn(move || {
                let fd = match Delayer::open(&ns2, queue) {
                    Ok(fd) => {
                        let _ = tx.send(Ok(()));
                        fd
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let r = Delayer::serve(fd.as_raw_fd(), queue, delay, &stop2, &packets2);
                let unbind = [NFQNL_CFG_CMD_UNBIND, 0, 0, 0];
                let _ = nfq_config(fd.as_raw_fd(), 9, queue, &[(NFQA_CFG_CMD, &unbind)]);
                r
            })
            .map_err(|e| format!("spawn: {e}"))?;
        let d = Delayer {
            stop,
            packets,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(d),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("delayer did not start".into()),
        }
    }

    fn open(ns: &str, queue: u16) -> Result<OwnedFd, String> {
        enter_netns(ns)?;
        // SAFETY: plain socket(2) call; the fd is owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(format!(
                "netlink socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid; we set the family.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binds with a valid sockaddr_nl of the right size.
        let r = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(format!("netlink bind: {}", std::io::Error::last_os_error()));
        }
        let one: libc::c_int = 1;
        let rcvbuf: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with pointers to live c_ints of the stated size.
        unsafe {
            libc::setsockopt(
                raw,
                SOL_NETLINK,
                NETLINK_NO_ENOBUFS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let bind = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
        nfq_config(raw, 1, queue, &[(NFQA_CFG_CMD, &bind)])?;
        // copy_range (be32) 0 + copy_mode META: ids only, no payload.
        let params = [0, 0, 0, 0, NFQNL_COPY_META];
        nfq_config(raw, 2, queue, &[(NFQA_CFG_PARAMS, &params)])?;
        let maxlen = 8192u32.to_be_bytes();
        nfq_config(raw, 3, queue, &[(NFQA_CFG_QUEUE_MAXLEN, &maxlen)])?;
        Ok(fd)
    }

    fn verdict(fd: RawFd, queue: u16, id: u32) -> Result<(), String> {
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&NF_ACCEPT.to_be_bytes());
        hdr[4..].copy_from_slice(&id.to_be_bytes());
        nl_send(
            fd,
            &nfq_msg(NFQNL_MSG_VERDICT, 0, 0, queue, &[(NFQA_VERDICT_HDR, &hdr)]),
        )
    }

    fn serve(
        fd: RawFd,
        queue: u16,
        delay: Duration,
        stop: &AtomicBool,
        packets: &AtomicU64,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
        let mut buf = vec![0u8; 65536];
        let mut result = Ok(());
        while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
            let now = Instant::now();
            while let Some(&(due, id)) = held.front() {
                if due > now {
                    break;
                }
                held.pop_front();
                Delayer::verdict(fd, queue, id)?;
            }
            let wait = held
                .front()
                .map(|(due, _)| due.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            // Drain what is readable (bounded per round).
            let mut timeout = wait;
            for _ in 0..256 {
                match nl_recv(fd, &mut buf, timeout) {
                    Ok(Some(n)) => {
                        let at = Instant::now() + delay;
                        for (ty, _, payload) in nl_messages(&buf[..n]) {
                            if ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                                if let Some(id) = packet_id(payload) {
                                    held.push_back((at, id));
                                    packets.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                timeout = Duration::ZERO;
            }
            if result.is_err() {
                break;
            }
        }
        // Let everything still held go at once.
        while let Some((_, id)) = held.pop_front() {
            let _ = Delayer::verdict(fd, queue, id);
        }
        result
    }

    /// Packets held so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Releases everything held and stops.
    pub fn stop(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err("delayer panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

//! Looks at ssh's TCP connection to the server (from /proc) while a probe is late, to tell a
//! silent server session from a slow or lossy network.

use crate::supervisor::{PathState, Waiting};
use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// One row of /proc/net/tcp{,6} that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TcpRow {
    local_port: u16,
    state: u8,
    tx_queue: u64,
    rx_queue: u64,
    /// 1: retransmit timer, 4: zero-window probe timer.
    timer: u8,
    retransmits: u64,
    inode: u64,
}

const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// Snapshot used to notice traffic between two looks: bytes ssh has read so far.
pub fn ssh_read_bytes(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// ssh's connection to the server: found once per ssh (a scan of /proc), then read with
/// `TCP_INFO` through `pidfd_getfd`, a few syscalls however many sockets the host has.
pub struct Transport {
    pid: u32,
    pidfd: Option<OwnedFd>,
    fd: Option<u32>,
    scans: u32,
    retransmissions: Retransmissions,
    /// When ssh last sent to the server, as of the last look at the applications that found
    /// none waiting: until ssh sends again, no new request can be waiting.
    nothing_waiting_after: Option<std::time::Instant>,
}

/// When ssh's connection was last seen to retransmit for real. A retransmission the server
/// reports with a D-SACK (it already had the data: a tail-loss probe drawn by delayed
/// acknowledgements, a spurious timeout) is taken back: it says nothing about loss.
#[derive(Debug, Default)]
struct Retransmissions {
    /// `tcpi_total_retrans - tcpi_dsack_dups` at the last look.
    unexplained: u32,
    /// When `unexplained` grew, the last few.
    at: std::collections::VecDeque<std::time::Instant>,
    /// `tcpi_dsack_dups` at the last look, and when it grew, the last few: the server had
    /// the data but its acknowledgement did not reach us in time, so the path from the
    /// server (the one an echo takes) loses packets. A frozen session draws D-SACKed tail
    /// probes too, so only D-SACKs from before the last moments count as that evidence.
    dsack_dups: u32,
    dsacked_at: std::collections::VecDeque<std::time::Instant>,
}

impl Retransmissions {
    fn update(&mut self, total_retrans: u32, dsack_dups: u32, now: std::time::Instant) {
        if dsack_dups > self.dsack_dups {
            if self.dsacked_at.len() == 16 {
                self.dsacked_at.pop_front();
            }
            self.dsacked_at.push_back(now);
        }
        self.dsack_dups = dsack_dups;
        let unexplained = total_retrans.saturating_sub(dsack_dups);
        if unexplained > self.unexplained {
            if self.at.len() == 16 {
                self.at.pop_front();
            }
            self.at.push_back(now);
        } else {
            // D-SACKs that came after their retransmission was counted: take the newest back.
            for _ in unexplained..self.unexplained {
                self.at.pop_back();
            }
        }
        self.unexplained = unexplained;
    }

    /// Whether a real retransmission was seen from `LOSSY_MEMORY` before `sent` on, and
    /// (with `until`) no later than `until` before `sent`.
    fn seen(&self, sent: std::time::Instant, until: Option<Duration>) -> bool {
        self.at
            .iter()
            .any(|&t| t + LOSSY_MEMORY >= sent && until.is_none_or(|u| t + u <= sent))
    }

    /// Whether D-SACKs (loss on the path back from the server) were seen from
    /// `LOSSY_MEMORY` to `LOSSY_IGNORE_RECENT` before `sent`.
    fn reverse_loss_seen(&self, sent: std::time::Instant) -> bool {
        self.dsacked_at
            .iter()
            .any(|&t| t + LOSSY_MEMORY >= sent && t + LOSSY_IGNORE_RECENT <= sent)
    }
}

/// Retransmissions in this window before a probe left make the path lossy: its late echo may
/// be the segment the server is resending, so it is not judged early. Retransmissions in the
/// last moments before the probe do not count: a frozen server delays its acknowledgements
/// and draws tail-loss probes, which says nothing about the link.
const LOSSY_MEMORY: Duration = Duration::from_secs(60);
const LOSSY_IGNORE_RECENT: Duration = Duration::from_secs(5);

/// A connection not found after this many scans is not looked for again (a proxy).
const MAX_SCANS: u32 = 10;

impl Transport {
    pub fn new(pid: u32) -> Transport {
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let pidfd = unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
            (fd >= 0).then(|| OwnedFd::from_raw_fd(fd as RawFd))
        };
        Transport {
            pid,
            pidfd,
            fd: None,
            scans: 0,
            retransmissions: Retransmissions::default(),
            nothing_waiting_after: None,
        }
    }

    /// The server connection's `TCP_INFO`, locating it first if needed.
    fn info(&mut self) -> Option<libc::tcp_info> {
        let pidfd = self.pidfd.as_ref()?.as_raw_fd();
        if self.fd.is_none() && self.scans < MAX_SCANS {
            self.scans += 1;
            let inodes = socket_inodes(self.pid)?;
            self.fd = server_fd(pidfd, &inodes);
        }
        let info = tcp_info_of(pidfd, self.fd?);
        let Some(i) = info.filter(|i| i.tcpi_state == 1) else {
            // Closed or replaced: look again next time.
            self.fd = None;
            return None;
        };
        self.retransmissions.update(
            i.tcpi_total_retrans,
            i.tcpi_dsack_dups,
            std::time::Instant::now(),
        );
        Some(i)
    }

    /// Classifies ssh's server connection while a probe sent `waited` ago is unanswered.
    /// `read_before`: ssh's read byte count when the probe was sent; `probe_len`: the
    /// probe's size (ssh reads it once from our socket).
    pub fn inspect(
        &mut self,
        waited: Duration,
        read_before: Option<u64>,
        probe_len: u64,
    ) -> PathState {
        if let Some(info) = self.info() {
            let sent = std::time::Instant::now() - waited;
            let r = &self.retransmissions;
            let lossy = r.seen(sent, Some(LOSSY_IGNORE_RECENT)) || r.reverse_loss_seen(sent);
            let judged = judge_tcp_info(&info, waited, lossy);
            log::debug!(
                "ssh's connection after {} ms: unacked {}, notsent {} B, retransmits {} \
                 (total {}, {} D-SACKed), last ack {} ms, last data in {} ms / out {} ms, \
                 rtt {} us",
                waited.as_millis(),
                info.tcpi_unacked,
                info.tcpi_notsent_bytes,
                info.tcpi_retransmits,
                info.tcpi_total_retrans,
                info.tcpi_dsack_dups,
                info.tcpi_last_ack_recv,
                info.tcpi_last_data_recv,
                info.tcpi_last_data_sent,
                info.tcpi_rtt
            );
            // Any retransmission lately (loss may just have begun): not silent yet, wait for
            // the net timeout; only history before the probe makes the link lossy.
            let recent = r.seen(sent, None);
            return if judged == PathState::Quiet && recent {
                PathState::Busy
            } else {
                judged
            };
        }
        let Some(inodes) = socket_inodes(self.pid) else {
            return PathState::Unknown;
        };
        classify(
            &tcp_rows(),
            &inodes,
            read_before,
            ssh_read_bytes(self.pid),
            probe_len,
        )
    }

    /// One `TCP_INFO` read of the server connection: whether it is stuck (unacknowledged
    /// data and its retransmission timer fired `STALL_RETRANSMITS` times in a row, about 6 s
    /// without an acknowledgement at the minimum RTO; see [`is_stalled`]) and when data last
    /// moved each way. `None` while ssh has no established connection to the server.
    pub fn watch(&mut self) -> Option<Look> {
        let i = self.info()?;
        Some(Look {
            stalled: is_stalled(&i),
            sent_ago: Duration::from_millis(i.tcpi_last_data_sent.into()),
            recv_ago: Duration::from_millis(i.tcpi_last_data_recv.into()),
        })
    }

    /// How long the applications using ssh's `-L`/`-D` forwards have been waiting for an
    /// answer: on every connection ssh accepted on one of its listeners (but the monitor's
    /// own port `skip`), the age of the application's latest bytes when ssh has delivered
    /// nothing to it since; the longest such wait. A connection on which nothing has moved
    /// yet counts from its accept (a protocol where the server speaks first). Reads ssh's
    /// descriptor table, so the caller does it only when the server has gone quiet, and it
    /// is not read again while ssh has sent the server nothing new (`server_sent`: since
    /// ssh last sent to the server, when known).
    pub fn app_waiting(&mut self, skip: Option<u16>, server_sent: Option<Duration>) -> Waiting {
        let Some(pidfd) = self.pidfd.as_ref().map(|p| p.as_raw_fd()) else {
            return Waiting::NotLooked;
        };
        let last_send = server_sent.and_then(|a| std::time::Instant::now().checked_sub(a));
        let same = |a: std::time::Instant, b: std::time::Instant| {
            a.max(b).duration_since(a.min(b)) < Duration::from_millis(20)
        };
        if let (Some(seen), Some(last)) = (self.nothing_waiting_after, last_send) {
            if same(seen, last) {
                return Waiting::Nothing;
            }
        }
        let Some(sockets) = socket_inodes(self.pid) else {
            return Waiting::NotLooked;
        };
        let (listening, established) = tcp_sockets(pidfd, &sockets);
        // The longest wait we are sure of, else the longest we are not.
        let longest = established
            .iter()
            .filter(|(_, port, _)| listening.contains(port) && Some(*port) != skip)
            .filter_map(|(_, _, i)| app_wait(i))
            .max_by_key(|&(waited, sure)| (sure, waited));
        match longest {
            Some((waited, sure)) => Waiting::For { waited, sure },
            None => {
                self.nothing_waiting_after = last_send;
                Waiting::Nothing
            }
        }
    }

    /// ssh's connection to the server: (local, peer) addresses.
    pub fn endpoints(&mut self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.info()?;
        let dup = Dup::take(self.pidfd.as_ref()?.as_raw_fd(), self.fd?)?;
        let sock = socket2::SockRef::from(&dup.0);
        let local = sock.local_addr().ok()?.as_socket()?;
        let peer = sock.peer_addr().ok()?.as_socket()?;
        Some((local, peer))
    }

    /// Whether `TCP_INFO` can be read (then /proc is never needed).
    pub fn has_tcp_info(&mut self) -> bool {
        self.info().is_some()
    }
}

/// What one look at the server connection shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub stalled: bool,
    /// Since ssh last sent data to the server.
    pub sent_ago: Duration,
    /// Since ssh last received data from the server.
    pub recv_ago: Duration,
}

/// How long the application on a connection ssh accepted has waited for an answer, and
/// whether that is sure: ssh received its latest bytes after it last delivered any to it,
/// or it has delivered nothing at all (sure); both in the same millisecond, or nothing
/// moved at all since the accept (not sure: an answer faster than a millisecond, or an
/// application that has not spoken yet).
fn app_wait(i: &libc::tcp_info) -> Option<(Duration, bool)> {
    let delivered = i.tcpi_bytes_acked > 1;
    let received = i.tcpi_bytes_received > 0;
    let (recv, sent) = (i.tcpi_last_data_recv, i.tcpi_last_data_sent);
    let sure = received && (!delivered || recv < sent);
    let unsure = !received && !delivered || recv == sent;
    (sure || unsure).then(|| (Duration::from_millis(recv.into()), sure))
}

/// The kernel's view of the connection, when it can be had: the probe is late because of
/// the network if segments are being retransmitted, if bytes are unacknowledged and no
/// acknowledgement came for a while (the path is stuck), if data arrived from the server
/// since the probe left (the session is alive), or if the path's own round-trip time is a
/// third of the wait or more (a slow link). Otherwise the server's kernel acknowledges what
/// we send and the session says nothing: it is dead. (Traffic through the tunnel keeps a few
/// bytes unacknowledged at any moment; prompt acknowledgements tell that apart.)
fn judge_tcp_info(info: &libc::tcp_info, waited: Duration, lossy: bool) -> PathState {
    let waited_ms = waited.as_millis();
    let rtt_ms = u128::from(info.tcpi_rtt) / 1000;
    let retransmitting = info.tcpi_retransmits > 0;
    let ack_overdue = u128::from(info.tcpi_last_ack_recv) >= (rtt_ms * 3).max(200);
    let stuck = info.tcpi_unacked > 0 && ack_overdue;
    let data_since = u128::from(info.tcpi_last_data_recv) < waited_ms;
    let slow_path = rtt_ms * 3 >= waited_ms;
    // The server's session wrote to us a moment ago: it is alive, the link is just full.
    // (A full, lossy link stalls delivery for a retransmission timeout now and then: a few
    // seconds of silence still count.)
    let talking = u128::from(info.tcpi_last_data_recv) < (rtt_ms * 4).max(3000);
    // Acknowledgements stopped with data outstanding for seconds: a black hole.
    let dead_silent =
        info.tcpi_unacked > 0 && u128::from(info.tcpi_last_ack_recv) >= (rtt_ms * 4).max(2000);
    if talking && data_since {
        PathState::Alive
    } else if (lossy || retransmitting) && !dead_silent {
        PathState::Lossy
    } else if retransmitting || stuck || data_since || slow_path {
        PathState::Busy
    } else {
        PathState::Quiet
    }
}

/// Finds ssh's server connection among its sockets without reading the host's whole socket
/// table: each of ssh's sockets is looked at through a duplicate. The server connection is
/// the established TCP socket with the lowest descriptor whose local port is not one of
/// ssh's own listeners (connections accepted on `-L` ports share the listener's port).
fn server_fd(pidfd: RawFd, sockets: &[(u32, u64)]) -> Option<u32> {
    let (listening, established) = tcp_sockets(pidfd, sockets);
    established
        .into_iter()
        .filter(|(_, port, _)| !listening.contains(port))
        .map(|(fd, _, _)| fd)
        .min()
}

/// ssh's listening ports, and its established TCP connections: (fd, local port, TCP_INFO).
type Established = Vec<(u32, u16, libc::tcp_info)>;

/// Looks at each of ssh's sockets through a duplicate (closed at once).
fn tcp_sockets(pidfd: RawFd, sockets: &[(u32, u64)]) -> (HashSet<u16>, Established) {
    let mut listening = HashSet::new();
    let mut established = Vec::new();
    for &(fd, _) in sockets {
        let Some(dup) = Dup::take(pidfd, fd) else {
            continue;
        };
        let Some(port) = dup.local_port() else {
            continue;
        };
        if dup.int_opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1) {
            listening.insert(port);
        } else if dup.int_opt(libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP) {
            if let Some(i) = dup.tcp_info().filter(|i| i.tcpi_state == 1) {
                established.push((fd, port, i));
            }
        }
    }
    (listening, established)
}

/// A duplicate of another process's descriptor, closed on drop.
struct Dup(OwnedFd);

impl Dup {
    fn take(pidfd: RawFd, fd: u32) -> Option<Dup> {
        // SAFETY: pidfd_getfd returns a new descriptor we own, or -1.
        unsafe {
            let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd as libc::c_int, 0);
            (dup >= 0).then(|| Dup(OwnedFd::from_raw_fd(dup as RawFd)))
        }
    }

    fn int_opt(&self, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int we own.
        let rc = unsafe {
            libc::getsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    }

    fn local_port(&self) -> Option<u16> {
        // SAFETY: getsockname into a sockaddr_storage we own.
        unsafe {
            let mut ss: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getsockname(
                self.0.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ) != 0
            {
                return None;
            }
            match ss.ss_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                    Some(u16::from_be(sin.sin_port))
                }
                libc::AF_INET6 => {
                    let sin6 =
                        &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                    Some(u16::from_be(sin6.sin6_port))
                }
                _ => None,
            }
        }
    }

    fn tcp_info(&self) -> Option<libc::tcp_info> {
        // SAFETY: tcp_info is plain data; getsockopt fills at most its size.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            (rc == 0).then_some(info)
        }
    }
}

/// `TCP_INFO` of descriptor `fd` of the process behind `pidfd`, through a duplicate taken
/// with `pidfd_getfd` (Linux 5.6+; allowed for our own child) and closed at once.
fn tcp_info_of(pidfd: RawFd, fd: u32) -> Option<libc::tcp_info> {
    Dup::take(pidfd, fd)?.tcp_info()
}

/// The /proc view, when `TCP_INFO` cannot be had: unacknowledged or retransmitted bytes,
/// bytes waiting to be read, or ssh reading much more than our probe mean a busy path.
fn classify(
    rows: &[TcpRow],
    inodes: &[(u32, u64)],
    read_before: Option<u64>,
    read_now: Option<u64>,
    probe_len: u64,
) -> PathState {
    let Some((_, server)) = server_row(rows, inodes) else {
        return PathState::Unknown;
    };
    let unacked = server.tx_queue > 0 || server.timer == 1 || server.timer == 4;
    let arriving = server.rx_queue > 0;
    let flowing = matches!((read_before, read_now), (Some(b), Some(n)) if n > b + probe_len + 4096);
    if unacked || arriving || flowing || server.retransmits > 0 {
        PathState::Busy
    } else {
        PathState::Quiet
    }
}

/// (fd, inode) of every socket ssh holds.
fn socket_inodes(pid: u32) -> Option<Vec<(u32, u64)>> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(link) = fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            out.push((fd, ino));
        }
    }
    Some(out)
}

/// Whether a connection is stuck. Data sent and unacknowledged, with its retransmission
/// timer fired `STALL_RETRANSMITS` times in a row or no acknowledgement for
/// `STALL_SILENCE_MS` (a local firewall DROP fails retransmissions locally without counting
/// them). Or data waiting unsent, nothing in flight, and no acknowledgement for as long:
/// the kernel could not send it at all (a DROP in our own OUTPUT chain, the route or the
/// interface gone) and now retries only at its zero-window probe times, backed off up to two
/// minutes. A peer whose receive window is full is not stuck: it acknowledges the kernel's
/// window probes.
fn is_stalled(i: &libc::tcp_info) -> bool {
    let silent = i.tcpi_last_ack_recv >= STALL_SILENCE_MS;
    if i.tcpi_unacked > 0 {
        u64::from(i.tcpi_retransmits) >= STALL_RETRANSMITS || silent
    } else {
        i.tcpi_notsent_bytes > 0 && silent
    }
}

/// No acknowledgement for this long with data outstanding (or unsendable) is a stall.
const STALL_SILENCE_MS: u32 = 5000;

/// Consecutive retransmission timeouts that make a stall (a 20% lossy link reaches five in
/// a row for one segment with probability 0.03%).
const STALL_RETRANSMITS: u64 = 5;

/// The server connection among ssh's sockets: established, not accepted on one of ssh's own
/// -L listeners, opened first (lowest descriptor).
fn server_row<'a>(rows: &'a [TcpRow], inodes: &[(u32, u64)]) -> Option<(u32, &'a TcpRow)> {
    let mine: Vec<(u32, &TcpRow)> = inodes
        .iter()
        .filter_map(|&(fd, ino)| rows.iter().find(|r| r.inode == ino).map(|r| (fd, r)))
        .collect();
    let listening: HashSet<u16> = mine
        .iter()
        .filter(|(_, r)| r.state == LISTEN)
        .map(|(_, r)| r.local_port)
        .collect();
    mine.into_iter()
        .filter(|(_, r)| r.state == ESTABLISHED && !listening.contains(&r.local_port))
        .min_by_key(|(fd, _)| *fd)
}

/// Every TCP socket of this network namespace.
fn tcp_rows() -> Vec<TcpRow> {
    let mut rows = Vec::new();
    // /proc/self/net: also there under systemd's ProcSubset=pid, which hides /proc/net.
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(file) {
            rows.extend(text.lines().skip(1).filter_map(parse_row));
        }
    }
    rows
}

/// Parses `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_row(line: &str) -> Option<TcpRow> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let local_port = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
    let state = u8::from_str_radix(f[3], 16).ok()?;
    let (tx, rx) = f[4].split_once(':')?;
    let (tr, _) = f[5].split_once(':')?;
    Some(TcpRow {
        local_port,
        state,
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        timer: u8::from_str_radix(tr, 16).ok()?,
        retransmits: u64::from_str_radix(f[6], 16).ok()?,
        inode: f[9].parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_IDLE: &str = "   3: 0100007F:A1B2 0100007F:0016 01 00000000:00000000 02:000A1234 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1";
    const SERVER_UNACKED: &str = "   3: 0100007F:A1B2 0100007F:0016 01 00000040:00000000 01:00000010 00000002     0        0 777 1 0000000000000000 20 4 30 10 -1";
    const LISTENER: &str = "   4: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 888 1 0000000000000000 100 0 0 10 0";
    const ACCEPTED: &str = "   5: 0100007F:4E20 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 20 4 30 10 -1";

    fn rows(lines: &[&str]) -> Vec<TcpRow> {
        lines.iter().filter_map(|l| parse_row(l)).collect()
    }

    #[test]
    fn parses_proc_rows() {
        let r = parse_row(SERVER_UNACKED).unwrap();
        assert_eq!(r.local_port, 0xA1B2);
        assert_eq!(r.state, ESTABLISHED);
        assert_eq!(r.tx_queue, 0x40);
        assert_eq!(r.timer, 1);
        assert_eq!(r.retransmits, 2);
        assert_eq!(r.inode, 777);
        assert!(parse_row("  sl  local_address rem_address").is_none());
    }

    #[test]
    fn idle_acknowledged_connection_is_quiet() {
        let r = rows(&[SERVER_IDLE, LISTENER, ACCEPTED]);
        // The accepted -L connection has a lower fd but is not the server connection.
        let fds = [(3, 999), (4, 888), (5, 777)];
        assert_eq!(
            classify(&r, &fds, Some(100), Some(200), 80),
            PathState::Quiet
        );
    }

    #[test]
    fn unacked_data_or_traffic_is_busy() {
        let r = rows(&[SERVER_UNACKED, LISTENER]);
        assert_eq!(
            classify(&r, &[(3, 777), (4, 888)], None, None, 80),
            PathState::Busy
        );
        let r = rows(&[SERVER_IDLE]);
        assert_eq!(
            classify(&r, &[(3, 777)], Some(0), Some(100_000), 80),
            PathState::Busy
        );
    }

    #[test]
    fn no_tcp_connection_is_unknown() {
        let r = rows(&[LISTENER]);
        assert_eq!(
            classify(&r, &[(4, 888)], None, None, 80),
            PathState::Unknown
        );
    }

    #[test]
    fn inspects_this_process_without_panicking() {
        let mut t = Transport::new(std::process::id());
        let _ = t.inspect(Duration::from_secs(1), None, 0);
        assert!(!t.watch().is_some_and(|l| l.stalled));
    }

    fn judge_tcp_info_t(i: &libc::tcp_info, w: Duration) -> PathState {
        judge_tcp_info(i, w, false)
    }

    #[test]
    fn a_lossy_path_is_never_silent_but_a_dead_one_is_not_lossy() {
        let w = Duration::from_secs(1);
        let mut i = info(0, 5000, 1000);
        i.tcpi_last_ack_recv = 100;
        assert_eq!(judge_tcp_info(&i, w, true), PathState::Lossy);
        assert_eq!(judge_tcp_info(&i, w, false), PathState::Quiet);
        // Data outstanding, no acknowledgement for 5 s: stuck, whatever the history.
        let mut hole = info(3, 5000, 1000);
        hole.tcpi_retransmits = 3;
        assert_eq!(judge_tcp_info(&hole, w, true), PathState::Busy);
    }

    fn info(unacked: u32, last_data_recv_ms: u32, rtt_us: u32) -> libc::tcp_info {
        // SAFETY: tcp_info is plain data.
        let mut i: libc::tcp_info = unsafe { std::mem::zeroed() };
        i.tcpi_unacked = unacked;
        i.tcpi_last_data_recv = last_data_recv_ms;
        i.tcpi_last_ack_recv = 5000;
        i.tcpi_rtt = rtt_us;
        i
    }

    #[test]
    fn d_sacked_retransmissions_are_taken_back() {
        let t0 = std::time::Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut r = Retransmissions::default();
        r.update(0, 0, s(0));
        assert!(!r.seen(s(1), None));
        // A tail-loss probe, then its D-SACK at the next look: as if it never happened.
        r.update(1, 0, s(1));
        assert!(r.seen(s(1), None));
        r.update(1, 1, s(2));
        assert!(!r.seen(s(2), None));
        // Retransmission and D-SACK seen in the same look: nothing recorded.
        r.update(2, 2, s(3));
        assert!(!r.seen(s(3), None));
        // A real one stays, counts as recent, and as lossy history only 5 s later.
        r.update(3, 2, s(10));
        assert!(r.seen(s(10), None));
        assert!(!r.seen(s(12), Some(LOSSY_IGNORE_RECENT)));
        assert!(r.seen(s(15), Some(LOSSY_IGNORE_RECENT)));
        assert!(!r.seen(s(71), None), "forgotten after a minute");
        // The D-SACKs at 2 and 3 s say the path back loses packets: history for a probe
        // sent 5 s later or more, not for one sent at once.
        assert!(!r.reverse_loss_seen(s(4)));
        assert!(r.reverse_loss_seen(s(8)));
        assert!(!r.reverse_loss_seen(s(64)), "forgotten after a minute");
    }

    #[test]
    fn stalls_are_told_from_idle_and_full_windows() {
        let mut i = info(0, 90_000, 1000);
        i.tcpi_last_ack_recv = 90_000;
        assert!(!is_stalled(&i), "idle and all acknowledged");
        i.tcpi_notsent_bytes = 36;
        assert!(
            is_stalled(&i),
            "unsendable for 90 s (local DROP, route gone)"
        );
        i.tcpi_last_ack_recv = 300;
        assert!(
            !is_stalled(&i),
            "full window: window probes are acknowledged"
        );
        let mut j = info(2, 90_000, 1000);
        j.tcpi_last_ack_recv = 1000;
        assert!(!is_stalled(&j), "in flight, acknowledged a second ago");
        j.tcpi_retransmits = STALL_RETRANSMITS as u8;
        assert!(is_stalled(&j), "five timeouts in a row");
        j.tcpi_retransmits = 0;
        j.tcpi_last_ack_recv = STALL_SILENCE_MS;
        assert!(is_stalled(&j), "in flight, no acknowledgement for 5 s");
    }

    #[test]
    fn tcp_info_tells_silent_from_slow() {
        let w = Duration::from_secs(1);
        // All acknowledged, nothing heard for 5 s, 1 ms path: the session is silent.
        assert_eq!(judge_tcp_info_t(&info(0, 5000, 1000), w), PathState::Quiet);
        // Unacknowledged and no acknowledgement for 5 s: the path is stuck.
        assert_eq!(judge_tcp_info_t(&info(2, 5000, 1000), w), PathState::Busy);
        // Unacknowledged for a moment, acknowledgements flowing: the kernel answers, the
        // session does not.
        let mut flowing = info(2, 5000, 1000);
        flowing.tcpi_last_ack_recv = 10;
        assert_eq!(judge_tcp_info_t(&flowing, w), PathState::Quiet);
        let mut lossy = flowing;
        lossy.tcpi_retransmits = 1;
        assert_eq!(judge_tcp_info_t(&lossy, w), PathState::Lossy);
        // Data arrived 200 ms ago: the server is talking.
        assert_eq!(judge_tcp_info_t(&info(0, 200, 1000), w), PathState::Alive);
        // Data arrived 900 ms into a 5 s wait, 4.1 s ago: busy, not proof of life.
        assert_eq!(
            judge_tcp_info_t(&info(0, 4100, 1000), Duration::from_secs(5)),
            PathState::Busy
        );
        // Data 2.5 s ago on a full link: still talking.
        assert_eq!(
            judge_tcp_info_t(&info(0, 2500, 1000), Duration::from_secs(4)),
            PathState::Alive
        );
        // A 400 ms path: one second is not long enough to judge.
        assert_eq!(
            judge_tcp_info_t(&info(0, 5000, 400_000), w),
            PathState::Busy
        );
    }

    #[test]
    fn the_server_connection_is_told_from_accepted_ones_and_listeners() {
        use std::os::fd::AsRawFd;
        let t = Transport::new(std::process::id());
        let Some(pidfd) = t.pidfd.as_ref() else {
            return; // kernel without pidfd_open
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        // An accepted connection shares its listener's port: never the server connection.
        let accepted_only = [(l.as_raw_fd() as u32, 0), (a.as_raw_fd() as u32, 0)];
        assert_eq!(server_fd(pidfd.as_raw_fd(), &accepted_only), None);
        let fds = [
            (a.as_raw_fd() as u32, 0),
            (l.as_raw_fd() as u32, 0),
            (c.as_raw_fd() as u32, 0),
        ];
        let lowest_first = {
            let mut f = fds;
            f.sort();
            f
        };
        let found = server_fd(pidfd.as_raw_fd(), &lowest_first);
        assert_eq!(found, Some(c.as_raw_fd() as u32));
    }

    #[test]
    fn tcp_info_of_a_child_connection_is_readable() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        // Our own process stands in for ssh: pidfd_getfd on ourselves.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        c.write_all(b"x").unwrap();
        let t = Transport::new(std::process::id());
        let Some(pidfd) = t.pidfd.as_ref() else {
            return; // kernel without pidfd_open
        };
        let i = tcp_info_of(pidfd.as_raw_fd(), c.as_raw_fd() as u32).expect("pidfd_getfd works");
        assert_eq!(i.tcpi_state, 1, "ESTABLISHED");
        assert!(i.tcpi_rtt > 0);
    }
}

//! Looks at ssh's TCP connection to the server (from /proc) while a probe is late, to tell a
//! silent server session from a slow or lossy network.

use crate::core::supervisor::{PathState, Waiting};
use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

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
    /// A duplicate of ssh's server socket, kept for the life of this ssh: one `TCP_INFO`
    /// read per look, not a `pidfd_getfd` and a close each time (a hundred tunnels look
    /// every second). Dropped with the Transport when ssh is reaped, so the connection
    /// ends with ssh.
    server: Option<Dup>,
    scans: u32,
    /// The last scan found no established connection but a connect under way (SYN sent).
    connecting: bool,
    retransmissions: Retransmissions,
    /// When ssh last sent to the server, as of the last look at the applications that found
    /// none waiting: until ssh sends again, no new request can be waiting.
    nothing_waiting_after: Option<std::time::Instant>,
    /// For the /proc fallback: ssh's read byte count when the probe in flight left, and the
    /// probe's size (ssh reads it once from our socket).
    probe_baseline: (Option<u64>, u64),
}

/// A connection not found after this many scans is not looked for again (a proxy).
const MAX_SCANS: u32 = 10;

impl Transport {
    /// This platform sees ssh's own sockets (its connection to the server, what it accepted).
    pub const SEES_SSH_SOCKETS: bool = true;

    pub fn new(pid: u32) -> Transport {
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let pidfd = unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
            (fd >= 0).then(|| OwnedFd::from_raw_fd(fd as RawFd))
        };
        Transport {
            pid,
            pidfd,
            server: None,
            scans: 0,
            connecting: false,
            retransmissions: Retransmissions::default(),
            nothing_waiting_after: None,
            probe_baseline: (None, 0),
        }
    }

    /// The server connection's `TCP_INFO`, locating it first if needed.
    fn info(&mut self) -> Option<libc::tcp_info> {
        let pidfd = self.pidfd.as_ref()?.as_raw_fd();
        if self.server.is_none() && self.scans < MAX_SCANS {
            let inodes = socket_inodes(self.pid)?;
            self.server = server_fd(pidfd, &inodes).and_then(|fd| Dup::take(pidfd, fd));
            // A connect under way is not a scan that found nothing: however long it takes
            // (SYN retries in a black hole), the connection is looked for once it is made.
            self.connecting = self.server.is_none() && syn_sent(pidfd, &inodes);
            if !self.connecting {
                self.scans += 1;
            }
        }
        let info = self.server.as_ref()?.tcp_info();
        let Some(i) = info.filter(|i| i.tcpi_state == 1) else {
            // Closed or not yet connected: let it go, look again next time.
            self.server = None;
            return None;
        };
        self.retransmissions.update(
            i.tcpi_total_retrans,
            i.tcpi_dsack_dups,
            std::time::Instant::now(),
        );
        Some(i)
    }

    /// A probe of `probe_len` bytes was just sent: for the /proc fallback only (no
    /// `TCP_INFO`), ssh's read byte count now, to tell its traffic from the probe's.
    pub fn probe_sent(&mut self, probe_len: u64) {
        let read_before = if self.has_tcp_info() {
            None
        } else {
            ssh_read_bytes(self.pid)
        };
        self.probe_baseline = (read_before, probe_len);
    }

    /// Classifies ssh's server connection while a probe sent `waited` ago is unanswered.
    pub fn inspect(&mut self, waited: Duration) -> PathState {
        let (read_before, probe_len) = self.probe_baseline;
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
        judge_rows(
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

    /// Whether ssh, with no established connection to the server as of the last look, has
    /// a connect to it under way (its SYN unanswered).
    pub fn connecting(&self) -> bool {
        self.server.is_none() && self.connecting
    }

    /// How long the applications using ssh's `-L`/`-D` forwards have been waiting for an
    /// answer: on every connection ssh accepted on one of its listeners (but the monitor's
    /// own port `skip`), the age of the application's latest bytes when ssh has delivered
    /// nothing to it since; the longest such wait. A connection on which nothing has moved
    /// yet counts from its accept (a protocol where the server speaks first). Reads ssh's
    /// descriptor table, so the caller does it only when the server has gone quiet, and it
    /// is not read again while ssh has sent the server nothing new (`server_sent`: since
    /// ssh last sent to the server, when known).
    ///
    /// With `server_recv` (since the server last sent anything): an application that sent
    /// bytes after that has waited at least that long for the session to say anything, even
    /// if it gave up and reconnected meanwhile (a client with a short timeout).
    pub fn app_waiting(
        &mut self,
        skip: Option<u16>,
        server_sent: Option<Duration>,
        server_recv: Option<Duration>,
    ) -> Waiting {
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
        let apps: Vec<&libc::tcp_info> = established
            .iter()
            .filter(|(_, port, _)| listening.contains(port) && Some(*port) != skip)
            .map(|(_, _, i)| i)
            .collect();
        // An application spoke after the server last did: it waits as long as the server
        // has been silent.
        let since_server = server_recv.filter(|&r| {
            apps.iter()
                .any(|i| u128::from(i.tcpi_last_data_recv) < r.as_millis())
        });
        // The longest wait we are sure of, else the longest we are not.
        let longest = apps
            .iter()
            .filter_map(|i| app_wait(i))
            .chain(since_server.map(|w| (w, true)))
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
        let sock = socket2::SockRef::from(&self.server.as_ref()?.0);
        let local = sock.local_addr().ok()?.as_socket()?;
        let peer = sock.peer_addr().ok()?.as_socket()?;
        Some((local, peer))
    }

    /// A duplicate of ssh's server socket (located now if need be), for the relay to tell
    /// ssh's death from the server closing a channel.
    pub fn server_socket(&mut self) -> Option<OwnedFd> {
        self.info()?;
        self.server.as_ref()?.0.try_clone().ok()
    }

    /// ssh has ended: its server connection if it ended stuck (established, with data
    /// unacknowledged or retransmitted), so that the server has not seen its end. The caller
    /// holds it open instead of leaving an orphan whose FIN reaches the server only at its
    /// next retransmission, and resets it once the server answers (see `Tunnel::reap`).
    pub fn take_unfinished(&mut self) -> Option<OwnedFd> {
        let dup = self.server.take()?;
        let i = dup.tcp_info().filter(|i| i.tcpi_state == 1)?;
        let stuck = i.tcpi_unacked > 0 || i.tcpi_retransmits > 0 || i.tcpi_backoff > 0;
        stuck.then_some(dup.0)
    }

    /// Has ssh acknowledge at once what it has received from the server (`TCP_QUICKACK` on
    /// its connection: a delayed acknowledgement goes out now, and the next ones are not
    /// delayed until ssh's traffic looks interactive again), so that an answer the server
    /// holds back for it (Nagle's algorithm) is sent.
    pub fn flush_acks(&mut self) {
        if self.info().is_some() {
            if let Some(dup) = self.server.as_ref() {
                dup.set_int_opt(libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
            }
        }
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

mod fd_peek;
mod procfs;
mod verdict;
use fd_peek::*;
use procfs::*;
use verdict::*;

#[cfg(test)]
mod tests;

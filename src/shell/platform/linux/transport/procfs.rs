//! The /proc/net/tcp fallback, where TCP_INFO cannot be had: the server connection's row among ssh's sockets.

use super::*;

/// One row of /proc/net/tcp{,6} that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TcpRow {
    pub(super) local_port: u16,
    pub(super) state: u8,
    pub(super) tx_queue: u64,
    pub(super) rx_queue: u64,
    /// 1: retransmit timer, 4: zero-window probe timer.
    pub(super) timer: u8,
    pub(super) retransmits: u64,
    pub(super) inode: u64,
}

pub(super) const ESTABLISHED: u8 = 0x01;

pub(super) const LISTEN: u8 = 0x0A;

/// The /proc view, when `TCP_INFO` cannot be had: unacknowledged or retransmitted bytes,
/// bytes waiting to be read, or ssh reading much more than our probe mean a busy path.
pub(super) fn judge_rows(
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

/// The server connection among ssh's sockets: established, not accepted on one of ssh's own
/// -L listeners, opened first (lowest descriptor).
pub(super) fn server_row<'a>(
    rows: &'a [TcpRow],
    inodes: &[(u32, u64)],
) -> Option<(u32, &'a TcpRow)> {
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
pub(super) fn tcp_rows() -> Vec<TcpRow> {
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
pub(super) fn parse_row(line: &str) -> Option<TcpRow> {
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

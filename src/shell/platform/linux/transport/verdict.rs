//! What the kernel's TCP_INFO says about ssh's server connection: stalled, silent, slow, lossy; and whether an application waits for an answer. Pure functions of the numbers.

use super::*;

/// When ssh's connection was last seen to retransmit for real. A retransmission the server
/// reports with a D-SACK (it already had the data: a tail-loss probe drawn by delayed
/// acknowledgements, a spurious timeout) is taken back: it says nothing about loss.
#[derive(Debug, Default)]
pub(super) struct Retransmissions {
    /// `tcpi_total_retrans - tcpi_dsack_dups` at the last look.
    pub(super) unexplained: u32,
    /// When `unexplained` grew, the last few.
    pub(super) at: std::collections::VecDeque<std::time::Instant>,
    /// `tcpi_dsack_dups` at the last look, and when it grew, the last few: the server had
    /// the data but its acknowledgement did not reach us in time, so the path from the
    /// server (the one an echo takes) loses packets. A frozen session draws D-SACKed tail
    /// probes too, so only D-SACKs from before the last moments count as that evidence.
    pub(super) dsack_dups: u32,
    pub(super) dsacked_at: std::collections::VecDeque<std::time::Instant>,
}

impl Retransmissions {
    pub(super) fn update(&mut self, total_retrans: u32, dsack_dups: u32, now: std::time::Instant) {
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
    pub(super) fn seen(&self, sent: std::time::Instant, until: Option<Duration>) -> bool {
        self.at
            .iter()
            .any(|&t| t + LOSSY_MEMORY >= sent && until.is_none_or(|u| t + u <= sent))
    }

    /// Whether D-SACKs (loss on the path back from the server) were seen from
    /// `LOSSY_MEMORY` to `LOSSY_IGNORE_RECENT` before `sent`.
    pub(super) fn reverse_loss_seen(&self, sent: std::time::Instant) -> bool {
        self.dsacked_at
            .iter()
            .any(|&t| t + LOSSY_MEMORY >= sent && t + LOSSY_IGNORE_RECENT <= sent)
    }
}

/// Retransmissions in this window before a probe left make the path lossy: its late echo may
/// be the segment the server is resending, so it is not judged early. Retransmissions in the
/// last moments before the probe do not count: a frozen server delays its acknowledgements
/// and draws tail-loss probes, which says nothing about the link.
pub(super) const LOSSY_MEMORY: Duration = Duration::from_secs(60);

pub(super) const LOSSY_IGNORE_RECENT: Duration = Duration::from_secs(5);

/// How long the application on a connection ssh accepted has waited for an answer, and
/// whether that is sure: ssh received its latest bytes after it last delivered any to it,
/// or it has delivered nothing at all (sure); both in the same millisecond, or nothing
/// moved at all since the accept (not sure: an answer faster than a millisecond, or an
/// application that has not spoken yet).
pub(super) fn app_wait(i: &libc::tcp_info) -> Option<(Duration, bool)> {
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
pub(super) fn judge_tcp_info(info: &libc::tcp_info, waited: Duration, lossy: bool) -> PathState {
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

/// Whether a connection is stuck. Data sent and unacknowledged, with its retransmission
/// timer fired `STALL_RETRANSMITS` times in a row or no acknowledgement for
/// `STALL_SILENCE_MS` (a local firewall DROP fails retransmissions locally without counting
/// them). Or data waiting unsent, nothing in flight, and no acknowledgement for as long:
/// the kernel could not send it at all (a DROP in our own OUTPUT chain, the route or the
/// interface gone) and now retries only at its zero-window probe times, backed off up to two
/// minutes. A peer whose receive window is full is not stuck: it acknowledges the kernel's
/// window probes.
pub(super) fn is_stalled(i: &libc::tcp_info) -> bool {
    let silent = i.tcpi_last_ack_recv >= STALL_SILENCE_MS;
    if i.tcpi_unacked > 0 {
        u64::from(i.tcpi_retransmits) >= STALL_RETRANSMITS || silent
    } else {
        i.tcpi_notsent_bytes > 0 && silent
    }
}

/// No acknowledgement for this long with data outstanding (or unsendable) is a stall.
pub(super) const STALL_SILENCE_MS: u32 = 5000;

/// Consecutive retransmission timeouts that make a stall (a 20% lossy link reaches five in
/// a row for one segment with probability 0.03%).
pub(super) const STALL_RETRANSMITS: u64 = 5;

//! Unit tests of the transport: verdicts from made-up TCP_INFO, /proc rows, and this process's own sockets.

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
        judge_rows(&r, &fds, Some(100), Some(200), 80),
        PathState::Quiet
    );
}

#[test]
fn unacked_data_or_traffic_is_busy() {
    let r = rows(&[SERVER_UNACKED, LISTENER]);
    assert_eq!(
        judge_rows(&r, &[(3, 777), (4, 888)], None, None, 80),
        PathState::Busy
    );
    let r = rows(&[SERVER_IDLE]);
    assert_eq!(
        judge_rows(&r, &[(3, 777)], Some(0), Some(100_000), 80),
        PathState::Busy
    );
}

#[test]
fn no_tcp_connection_is_unknown() {
    let r = rows(&[LISTENER]);
    assert_eq!(
        judge_rows(&r, &[(4, 888)], None, None, 80),
        PathState::Unknown
    );
}

#[test]
fn inspects_this_process_without_panicking() {
    let mut t = Transport::new(std::process::id());
    let _ = t.inspect(Duration::from_secs(1));
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
    let i = Dup::take(pidfd.as_raw_fd(), c.as_raw_fd() as u32)
        .and_then(|d| d.tcp_info())
        .expect("pidfd_getfd works");
    assert_eq!(i.tcpi_state, 1, "ESTABLISHED");
    assert!(i.tcpi_rtt > 0);
}

#[test]
fn flushing_acknowledgements_takes_ssh_out_of_delayed_acks() {
    use std::os::fd::AsRawFd;
    // Our own process stands in for ssh: its connection in delayed-ACK (pingpong) mode, as
    // an interactive-looking exchange leaves it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (_s, _) = l.accept().unwrap();
    let mut t = Transport::new(std::process::id());
    let Some(pidfd) = t.pidfd.as_ref() else {
        return; // kernel without pidfd_open
    };
    let mine = Dup::take(pidfd.as_raw_fd(), c.as_raw_fd() as u32).expect("pidfd_getfd works");
    mine.set_int_opt(libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0);
    let quick = |d: &Dup| d.int_opt(libc::IPPROTO_TCP, libc::TCP_QUICKACK);
    assert_eq!(quick(&mine), Some(0), "delayed acknowledgements");
    t.server = Dup::take(pidfd.as_raw_fd(), c.as_raw_fd() as u32);
    t.flush_acks();
    assert_eq!(quick(&mine), Some(1), "acknowledged at once");
}

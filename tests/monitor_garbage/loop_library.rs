//! Loop mode, library level: strangers queued behind the real probe connection.

use super::*;

/// Drives autossh's loop-mode monitor directly (no ssh): sends a probe to a stand-in for
/// ssh's `-L` port, then plays ssh's part of the loop (a connection to N+1 carrying the
/// probe) with `strangers` connections queued right behind it, as happens when a local
/// process floods N+1 while autossh waits for the CPU. True if the echo was recognised.
pub(crate) fn real_probe_survives_strangers_behind_it(strangers: usize) -> bool {
    use autossh::core::supervisor::Event;
    use autossh::shell::monitor::{Mode, Monitor};
    let port = free_port_pair();
    let ssh_l = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mon_l = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).unwrap();
    let mut poll = mio::Poll::new().unwrap();
    let mut events = mio::Events::with_capacity(64);
    let prober = autossh::core::probe::Prober::new("host".into(), 1, 0xaa, "x".into());
    let probe = b"host autossh 1 1 1700000000000 00000000000000aa x\r\n".to_vec();
    assert_eq!(prober.line(1, 1_700_000_000_000), probe);
    let mut m = Monitor::new(Mode::Loop, port, Some(mon_l), prober);
    m.register(poll.registry()).unwrap();
    let (len, outcome) = m.send(poll.registry(), 1, 1_700_000_000_000);
    assert!(outcome.is_none());
    assert_eq!(len, probe.len() as u64);
    let (mut ssh_side, _) = ssh_l.accept().unwrap();
    ssh_side.set_nonblocking(true).unwrap();
    // Let the monitor write the probe; read it where ssh would.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < probe.len() && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            if Monitor::owns(ev.token()) {
                let e = m.ready(poll.registry(), ev.token());
                assert!(e.is_none(), "unexpected {e:?} while sending");
            }
        }
        let mut buf = [0u8; 256];
        match ssh_side.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("probe connection: {e}"),
        }
    }
    assert_eq!(got, probe, "the monitor did not send the probe");
    // ssh's side of the loop: the probe comes back on a connection to N+1 ...
    let mut real = TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1)).unwrap();
    real.write_all(&probe).unwrap();
    // ... and strangers connect right behind it, before the monitor runs again.
    let _strangers: Vec<TcpStream> = (0..strangers)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1)).unwrap())
        .collect();
    let mut echoed = false;
    let deadline = Instant::now() + Duration::from_secs(1);
    while !echoed && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            if Monitor::owns(ev.token()) {
                match m.ready(poll.registry(), ev.token()) {
                    Some(Event::ProbeEchoed { seq: 1 }) => echoed = true,
                    None => {}
                    Some(e) => panic!("unexpected {e:?}"),
                }
            }
        }
    }
    m.drop_probe(poll.registry());
    echoed
}

#[test]
pub(crate) fn loop_monitor_finds_its_probe_among_seven_strangers() {
    assert!(real_probe_survives_strangers_behind_it(0));
    assert!(real_probe_survives_strangers_behind_it(7));
}

/// With 8 or more strangers accepted in the same batch after it, the real connection is
/// dropped from the monitor's 8 inbound slots (oldest first) before it is read: the probe
/// is lost, and in the binary a working tunnel is restarted. Seen through the real binary
/// under load as "monitor connection closed before the echo, restarting ssh" during a
/// connection flood on N+1.
#[test]
pub(crate) fn loop_monitor_finds_its_probe_among_eight_strangers() {
    assert!(
        real_probe_survives_strangers_behind_it(8),
        "the probe's echo was lost behind 8 stranger connections"
    );
    // More strangers than the monitor has slots.
    assert!(
        real_probe_survives_strangers_behind_it(40),
        "the probe's echo was lost behind 40 stranger connections"
    );
}

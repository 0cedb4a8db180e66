//! Bytes through the relay: a gigabyte arrives whole each way, a half-close is passed on,
//! and a planned restart (SIGUSR1) cuts no connection, not even one moving data.

use crate::rig::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A deterministic byte stream and its checksum (FNV-1a over 64-bit words).
struct Stream {
    state: u64,
}

impl Stream {
    fn new(seed: u64) -> Stream {
        Stream { state: seed | 1 }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let b = self.state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Sends `len` bytes of a stream through `c` (the service echoes them) while reading them
/// back: (checksum sent, checksum received, bytes received).
fn echo_through(c: &mut Client, len: usize, seed: u64) -> (u64, u64, usize) {
    let mut writer = c.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut s = Stream::new(seed);
        let mut buf = vec![0u8; 1 << 16];
        let (mut sent, mut h) = (0, FNV0);
        while sent < len {
            let n = buf.len().min(len - sent);
            s.fill(&mut buf[..n]);
            writer
                .write_all(&buf[..n])
                .expect("write through the tunnel");
            h = fnv(h, &buf[..n]);
            sent += n;
        }
        h
    });
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut h) = (0, FNV0);
    while got < len {
        let n = c.s.read(&mut buf).expect("read through the tunnel");
        assert!(n > 0, "the stream ended after {got} of {len} bytes");
        h = fnv(h, &buf[..n]);
        got += n;
    }
    (sender.join().unwrap(), h, got)
}

#[test]
fn a_gigabyte_each_way_arrives_whole() {
    let rig = Rig::start(&[]);
    let mut c = Client::connect(rig.tunnel).unwrap();
    c.read_n(GREETING.len()).unwrap();
    let t = Instant::now();
    let (sent, got, n) = echo_through(&mut c, 1 << 30, 7);
    eprintln!("1 GiB each way in {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(n, 1 << 30);
    assert_eq!(
        sent,
        got,
        "the bytes that came back differ\n{}",
        rig.story()
    );
    rig.finish();
}

#[test]
fn a_half_close_is_passed_on_both_ways() {
    let rig = Rig::start(&[]);
    let mut c = Client::connect(rig.tunnel).unwrap();
    c.read_n(GREETING.len()).unwrap();
    c.s.write_all(b"last words\n").unwrap();
    c.half_close();
    // The service sees the end, has echoed everything before it, and ends its side too.
    let rest = c.read_to_end().expect("a clean end, not a reset");
    assert_eq!(rest, b"last words\n");
    rig.finish();
}

#[test]
fn a_planned_restart_cuts_no_connection() {
    let rig = Rig::start(&[]);
    let old_ssh = rig.sshs();
    assert_eq!(old_ssh.len(), 1, "{}", rig.story());
    let mut idle = Client::connect(rig.tunnel).unwrap();
    idle.greeted_and_echoed("before\n").unwrap();
    let mut busy = Client::connect(rig.tunnel).unwrap();
    busy.read_n(GREETING.len()).unwrap();
    // A transfer in flight while ssh is replaced.
    let restart = {
        let pid = rig.autossh.pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            signal_pid(pid, Signal::SIGUSR1)
        })
    };
    let (sent, got, _) = echo_through(&mut busy, 64 << 20, 11);
    assert!(restart.join().unwrap());
    assert_eq!(sent, got, "{}", rig.story());
    rig.wait_log("the new ssh is proven");
    // New connections go to the new ssh; the old ones go on through the old one.
    let mut new = Client::connect(rig.tunnel).unwrap();
    new.greeted_and_echoed("new\n").unwrap();
    idle.echo("still here\n").unwrap();
    busy.echo("and here\n").unwrap();
    assert_eq!(rig.sshs().len(), 2, "{}", rig.story());
    drop((idle, busy));
    rig.wait_log("the old ssh has no connection left");
    must(
        UP,
        "the old ssh gone",
        || rig.story(),
        || {
            let now = rig.sshs();
            now.len() == 1 && now != old_ssh
        },
    );
    new.echo("after\n").unwrap();
    assert!(!rig.log().contains("reset"), "{}", rig.story());
    rig.finish();
}

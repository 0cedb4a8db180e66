//! Ports.

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::next_seq;

/// Ports already handed out by this process: never handed out twice.
pub(crate) fn issued_ports() -> &'static Mutex<HashSet<u16>> {
    static ISSUED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    ISSUED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The ranges of ports to pick from: 20000..=60000, less the kernel's
/// ephemeral range (so that an outgoing connection's source port cannot take
/// a port a test is about to listen on) when enough ports remain.
pub(crate) fn port_ranges() -> &'static Vec<(u16, u16)> {
    static RANGES: OnceLock<Vec<(u16, u16)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let (lo, hi) = (20000u16, 60000u16);
        let eph = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|w| w.parse::<u16>());
                match (it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b))) if a <= b => Some((a, b)),
                    _ => None,
                }
            });
        if let Some((elo, ehi)) = eph {
            let mut ranges = Vec::new();
            if elo > lo {
                ranges.push((lo, hi.min(elo - 1)));
            }
            if ehi < hi {
                ranges.push((lo.max(ehi + 1), hi));
            }
            let total: u32 = ranges.iter().map(|(a, b)| (*b - *a) as u32 + 1).sum();
            if total >= 2000 {
                return ranges;
            }
        }
        vec![(lo, hi)]
    })
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A pseudo-random candidate from the port ranges, seeded by pid, a counter
/// and the time, so that parallel tests and processes rarely collide.
pub(crate) fn candidate_port() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = (std::process::id() as u64) << 32 ^ next_seq().wrapping_mul(0x1000_0001) ^ nanos;
    let r = splitmix64(seed);
    let ranges = port_ranges();
    let total: u64 = ranges.iter().map(|(a, b)| (*b - *a) as u64 + 1).sum();
    let mut k = r % total;
    for (a, b) in ranges {
        let len = (*b - *a) as u64 + 1;
        if k < len {
            return *a + k as u16;
        }
        k -= len;
    }
    ranges[0].0
}

pub(crate) fn can_bind(port: u16) -> Option<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok()
}

/// A port N free on 127.0.0.1 (checked by binding it), never handed out
/// before by this process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A port N where both N and N+1 are free on 127.0.0.1 (autossh's `-M N`
/// uses N and N+1).
pub fn free_port_pair() -> u16 {
    free_ports(2)
}

/// A port N where N to N+3 are free: loop mode's pair, and room for its first move of the
/// remote port (N+2) when the server is this host and sees N as taken by our own `-L N`.
pub fn free_loop_ports() -> u16 {
    free_ports(4)
}

pub(crate) fn free_ports(count: u16) -> u16 {
    free_ports_from(count, 2000, candidate_port).unwrap_or_else(|| {
        panic!("no free port (run of {count}) found on 127.0.0.1 after 2000 tries")
    })
}

/// The first of `tries` candidates that starts a run of `count` ports, none handed out
/// before and each bindable on 127.0.0.1 at this moment; the run is then marked handed out.
fn free_ports_from(count: u16, tries: u32, mut candidate: impl FnMut() -> u16) -> Option<u16> {
    for _ in 0..tries {
        let n = candidate();
        let Some(last) = n.checked_add(count - 1) else {
            continue;
        };
        let mut issued = issued_ports().lock().unwrap_or_else(|e| e.into_inner());
        if (n..=last).any(|p| issued.contains(&p)) {
            continue;
        }
        let held: Vec<TcpListener> = (n..=last).filter_map(can_bind).collect();
        if held.len() == count as usize {
            for p in n..=last {
                issued.insert(p);
            }
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_port() -> (TcpListener, u16) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[test]
    fn a_bound_port_and_a_port_handed_out_are_skipped() {
        let (held, taken) = kernel_port();
        let (gone, free) = kernel_port();
        drop(gone);
        let mut seq = vec![taken, free].into_iter();
        assert_eq!(free_ports_from(1, 2, || seq.next().unwrap()), Some(free));
        let mut seq = vec![free, taken].into_iter();
        assert_eq!(free_ports_from(1, 2, || seq.next().unwrap()), None);
        drop(held);
        let mut seq = vec![free, taken].into_iter();
        assert_eq!(free_ports_from(1, 2, || seq.next().unwrap()), Some(taken));
    }

    #[test]
    fn a_run_is_skipped_when_any_of_its_ports_is_bound() {
        let (held, taken) = kernel_port();
        let mut seq = vec![taken - 1, taken].into_iter();
        assert_eq!(free_ports_from(2, 2, || seq.next().unwrap()), None);
        drop(held);
        assert_eq!(free_ports_from(2, 1, || u16::MAX), None, "a run past 65535");
    }
}

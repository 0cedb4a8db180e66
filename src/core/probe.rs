//! The probe line sent through the monitor forwards, and the RTT estimate built from echoes.

use std::time::Duration;

/// Who we are in probe lines: fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct Prober {
    host: String,
    pid: u32,
    /// Random per process: a stale echo from another process can never match.
    nonce: u64,
    message: String,
}

impl Prober {
    pub fn new(host: String, pid: u32, nonce: u64, message: String) -> Prober {
        Prober {
            host,
            pid,
            nonce,
            message,
        }
    }

    /// `<host> autossh <pid> <seq> <timestamp_ms> <nonce> <message>\r\n`. Only these exact
    /// bytes count as the echo of probe `seq`.
    pub fn line(&self, seq: u64, wall_ms: u128) -> Vec<u8> {
        format!(
            "{} autossh {} {} {} {:016x} {}\r\n",
            self.host, self.pid, seq, wall_ms, self.nonce, self.message
        )
        .into_bytes()
    }
}

/// How received bytes compare with the probe they should echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// A prefix of the probe so far: keep reading.
    Partial,
    /// Exactly the probe.
    Complete,
    /// Anything else.
    Wrong,
}

/// Compares what arrived with what was sent.
pub fn compare(expected: &[u8], got: &[u8]) -> Echo {
    if got.len() > expected.len() || !expected.starts_with(got) {
        Echo::Wrong
    } else if got.len() == expected.len() {
        Echo::Complete
    } else {
        Echo::Partial
    }
}

/// Smoothed round-trip time and its variation (RFC 6298), from successful probes.
#[derive(Debug, Clone, Default)]
pub struct RttEstimate {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimate {
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// How long a probe may stay unanswered before we look closer: `2·srtt + 4·rttvar`,
    /// never below `floor`, never above `ceiling`.
    pub fn patience(&self, floor: Duration, ceiling: Duration) -> Duration {
        let adaptive = match self.srtt {
            None => ceiling,
            Some(srtt) => srtt * 2 + self.rttvar * 4,
        };
        adaptive.max(floor).min(ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_line_has_every_field() {
        let p = Prober::new("h".into(), 42, 0xabc, "msg x".into());
        let line = String::from_utf8(p.line(7, 1234)).unwrap();
        assert_eq!(line, "h autossh 42 7 1234 0000000000000abc msg x\r\n");
    }

    #[test]
    fn only_the_exact_bytes_match() {
        let e = b"abc\r\n";
        assert_eq!(compare(e, b""), Echo::Partial);
        assert_eq!(compare(e, b"ab"), Echo::Partial);
        assert_eq!(compare(e, b"abc\r\n"), Echo::Complete);
        assert_eq!(compare(e, b"abd"), Echo::Wrong);
        assert_eq!(compare(e, b"abc\r\nx"), Echo::Wrong);
    }

    #[test]
    fn patience_adapts_within_bounds() {
        let floor = Duration::from_secs(1);
        let ceil = Duration::from_secs(15);
        let mut r = RttEstimate::default();
        assert_eq!(r.patience(floor, ceil), ceil);
        for _ in 0..10 {
            r.sample(Duration::from_millis(2));
        }
        assert_eq!(r.patience(floor, ceil), floor);
        for _ in 0..10 {
            r.sample(Duration::from_millis(900));
        }
        let p = r.patience(floor, ceil);
        assert!(p > Duration::from_millis(1800) && p < ceil, "{p:?}");
    }
}

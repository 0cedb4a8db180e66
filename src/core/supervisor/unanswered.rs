//! The application's view: a request sent through the tunnel that nothing has answered while
//! the server's session says nothing either. Decides when that silence is worth a probe, and
//! keeps such probes to a bounded rate for as long as the request stays unanswered.

use crate::core::clock::Time;
use std::time::Duration;

/// A request must wait at least this long (and the server be silent as long) to draw a probe:
/// hundreds of round trips on a LAN, a few on a slow WAN (the threshold grows with the
/// measured probe RTT: `max(FLOOR, 2·srtt + 4·rttvar)`).
pub const FLOOR: Duration = Duration::from_millis(500);
/// At least this long between two probes drawn by unanswered requests.
const FIRST_GAP: Duration = Duration::from_secs(2);
/// While one request stays unanswered (a slow query), the gap doubles up to this.
const MAX_GAP: Duration = Duration::from_secs(30);
/// Two looks that place the request this close together see the same request.
const SAME_REQUEST: Duration = Duration::from_millis(50);

/// What the applications using the tunnel are waiting for, as seen on ssh's `-L`/`-D`
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Not looked at this time (the server spoke lately, or the sockets cannot be read).
    NotLooked,
    /// No application is waiting for an answer.
    Nothing,
    /// The longest wait: an application sent its latest bytes `waited` ago, and nothing
    /// has come back to it since. Not `sure` when the kernel's millisecond clock cannot
    /// tell (the answer came within the same millisecond) or nothing has moved yet: such a
    /// wait draws one probe, not more.
    For { waited: Duration, sure: bool },
}

/// One look at ssh's sockets (ages as the kernel counts them, in `TCP_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Since ssh last sent data to the server; `None` when its connection cannot be seen
    /// (a proxy).
    pub server_sent: Option<Duration>,
    /// Since ssh last received data from the server.
    pub server_recv: Option<Duration>,
    pub waiting: Waiting,
}

impl Traffic {
    /// ssh sent the server something it has not answered yet (a request, or just a reply).
    pub fn server_owes(&self) -> bool {
        matches!((self.server_sent, self.server_recv), (Some(s), Some(r)) if s < r)
    }

    /// Data moved on ssh's server connection within `within`.
    pub fn active(&self, within: Duration) -> bool {
        [self.server_sent, self.server_recv]
            .into_iter()
            .flatten()
            .any(|age| age < within)
    }
}

/// The request being watched and the probes it drew.
#[derive(Debug, Clone, Copy)]
struct Episode {
    /// When the application sent it.
    request: Time,
    /// No probe for it before this; `None`: no more probes for it.
    next: Option<Time>,
    /// Gap after the next probe.
    gap: Duration,
}

/// Unanswered requests and the probes they drew.
#[derive(Debug, Default)]
pub struct Unanswered {
    episode: Option<Episode>,
    last_probe: Option<Time>,
}

impl Unanswered {
    /// Whether this look should send a probe now: an application has waited `threshold`
    /// for an answer and the server has said nothing for as long. At most one such probe
    /// every [`FIRST_GAP`]; while the same request stays unanswered the gap doubles up to
    /// [`MAX_GAP`] (a slow query draws a handful, not one every two seconds).
    pub fn look(&mut self, t: &Traffic, threshold: Duration, now: Time) -> bool {
        let (waited, sure) = match t.waiting {
            Waiting::NotLooked => return false,
            Waiting::Nothing => {
                self.episode = None;
                return false;
            }
            Waiting::For { waited, sure } => (waited, sure),
        };
        if waited < threshold || t.server_recv.is_some_and(|r| r < threshold) {
            return false;
        }
        let request = now.before(waited);
        let ep = match self.episode {
            Some(e) if e.request.max(request).since(e.request.min(request)) <= SAME_REQUEST => e,
            _ => Episode {
                request,
                next: Some(now),
                gap: FIRST_GAP,
            },
        };
        let rate_ok = self.last_probe.is_none_or(|p| now.since(p) >= FIRST_GAP);
        if ep.next.is_none_or(|n| now < n) || !rate_ok {
            self.episode = Some(ep);
            return false;
        }
        self.last_probe = Some(now);
        self.episode = Some(Episode {
            request: ep.request,
            next: sure.then_some(now + ep.gap),
            gap: (ep.gap * 2).min(MAX_GAP),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_origin(Duration::from_secs_f64(1000.0 + s))
    }

    fn look(waited: Option<f64>, server_recv: f64) -> Traffic {
        Traffic {
            server_sent: Some(Duration::from_secs_f64(waited.unwrap_or(0.0))),
            server_recv: Some(Duration::from_secs_f64(server_recv)),
            waiting: match waited {
                Some(w) => Waiting::For {
                    waited: Duration::from_secs_f64(w),
                    sure: true,
                },
                None => Waiting::Nothing,
            },
        }
    }

    const T1: Duration = FLOOR;

    #[test]
    fn a_request_waiting_with_the_server_silent_draws_a_probe() {
        let mut u = Unanswered::default();
        // Waited 0.4 s: not yet.
        assert!(!u.look(&look(Some(0.4), 0.6), T1, at(0.4)));
        // 0.5 s, the server silent as long: probe.
        assert!(u.look(&look(Some(0.5), 0.7), T1, at(0.5)));
        // The server spoke 0.1 s ago (another connection's data, or our probe's answer).
        let mut u = Unanswered::default();
        assert!(!u.look(&look(Some(3.0), 0.1), T1, at(3.0)));
        // Nothing waiting, or not looked: nothing.
        assert!(!u.look(&look(None, 9.0), T1, at(9.0)));
        let mut t = look(Some(9.0), 9.0);
        t.waiting = Waiting::NotLooked;
        assert!(!u.look(&t, T1, at(9.0)));
    }

    #[test]
    fn one_slow_request_draws_probes_at_a_doubling_gap() {
        let mut u = Unanswered::default();
        let mut probes = Vec::new();
        // A request sent at 0 that stays unanswered for 60 s; looks every 100 ms; the server
        // silent (our probes' answers are ignored here: the worst case).
        for i in 5..600 {
            let now = i as f64 / 10.0;
            if u.look(&look(Some(now), now), T1, at(now)) {
                probes.push(now);
            }
        }
        assert_eq!(probes, [0.5, 2.5, 6.5, 14.5, 30.5]);
        // Not sure it waits (answered within the same millisecond): one probe, no more.
        let mut u = Unanswered::default();
        let mut probes = 0;
        for i in 5..600 {
            let now = i as f64 / 10.0;
            let mut t = look(Some(now), now);
            t.waiting = Waiting::For {
                waited: secs(now),
                sure: false,
            };
            probes += usize::from(u.look(&t, T1, at(now)));
        }
        assert_eq!(probes, 1);
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn new_requests_each_draw_a_probe_but_not_more_often_than_the_gap() {
        let mut u = Unanswered::default();
        // Slow answers, one request a second, each waiting 0.6 s.
        let mut probes = 0;
        for r in 0..10 {
            let sent = r as f64;
            if u.look(&look(Some(0.6), 0.6), T1, at(sent + 0.6)) {
                probes += 1;
            }
            // Answered: the next look sees nothing waiting.
            u.look(&look(None, 0.1), T1, at(sent + 0.7));
        }
        assert_eq!(probes, 5, "one every two seconds at most");
    }
}

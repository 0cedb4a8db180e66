//! The client table: who probes us, keyed by (host, pid), bounded, with silence detection.

use crate::probe::{Format, Probe};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A client is one autossh process: its host name and pid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    pub host: String,
    pub pid: u32,
}

/// What we know about one client.
#[derive(Debug, Clone)]
pub struct Client {
    pub host: String,
    pub pid: u32,
    pub progname: String,
    pub message: String,
    pub format: Format,
    pub probes: u64,
    /// Wall clock, seconds since the epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Monotonic time of the last probe, for silence.
    pub last_seen_at: Instant,
    pub silent: bool,
    /// Peer address of the connection that carried the last probe.
    pub peer: SocketAddr,
    /// Position in the recency indexes: (last_seen_at, tie-breaker).
    order: (Instant, u64),
}

/// How a recorded probe changed the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First probe of this client.
    New,
    /// A known client probed again.
    Again,
    /// A client that had been reported silent is back after this long.
    Back(Duration),
}

/// A client that just went silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silenced {
    pub host: String,
    pub pid: u32,
    pub message: String,
    pub silent_for: Duration,
}

/// The table. Recency indexes make eviction and the next silence deadline O(log n).
#[derive(Debug)]
pub struct ClientTable {
    clients: HashMap<ClientKey, Client>,
    /// Every client, least recently seen first.
    by_seen: BTreeMap<(Instant, u64), ClientKey>,
    /// Clients not (yet) reported silent, least recently seen first.
    listening: BTreeMap<(Instant, u64), ClientKey>,
    max: usize,
    silent_after: Duration,
    ticket: u64,
}

impl ClientTable {
    /// A table of at most `max` (at least 1) clients; silent after `silent_after` without a probe.
    pub fn new(max: usize, silent_after: Duration) -> ClientTable {
        ClientTable {
            clients: HashMap::new(),
            by_seen: BTreeMap::new(),
            listening: BTreeMap::new(),
            max: max.max(1),
            silent_after,
            ticket: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn get(&self, host: &str, pid: u32) -> Option<&Client> {
        self.clients.get(&ClientKey {
            host: host.to_owned(),
            pid,
        })
    }

    /// Records a probe seen at `now` (monotonic) / `wall` (epoch seconds) from `peer`. Returns
    /// what changed and the client evicted to make room, if any.
    pub fn record(
        &mut self,
        probe: Probe,
        peer: SocketAddr,
        now: Instant,
        wall: u64,
    ) -> (Seen, Option<Client>) {
        self.ticket += 1;
        let order = (now, self.ticket);
        let key = ClientKey {
            host: probe.host,
            pid: probe.pid,
        };
        if let Some(c) = self.clients.get_mut(&key) {
            self.by_seen.remove(&c.order);
            let was_listening = self.listening.remove(&c.order).is_some();
            let seen = if c.silent {
                Seen::Back(now.saturating_duration_since(c.last_seen_at))
            } else {
                Seen::Again
            };
            debug_assert!(was_listening != c.silent);
            c.progname = probe.progname;
            c.message = probe.message;
            c.format = probe.format;
            c.probes += 1;
            c.last_seen = wall;
            c.last_seen_at = now;
            c.silent = false;
            c.peer = peer;
            c.order = order;
            self.by_seen.insert(order, key.clone());
            self.listening.insert(order, key);
            return (seen, None);
        }
        let evicted = if self.clients.len() >= self.max {
            self.evict_oldest()
        } else {
            None
        };
        let client = Client {
            host: key.host.clone(),
            pid: key.pid,
            progname: probe.progname,
            message: probe.message,
            format: probe.format,
            probes: 1,
            first_seen: wall,
            last_seen: wall,
            last_seen_at: now,
            silent: false,
            peer,
            order,
        };
        self.by_seen.insert(order, key.clone());
        self.listening.insert(order, key.clone());
        self.clients.insert(key, client);
        (Seen::New, evicted)
    }

    fn evict_oldest(&mut self) -> Option<Client> {
        let (order, key) = self.by_seen.pop_first()?;
        self.listening.remove(&order);
        self.clients.remove(&key)
    }

    /// When the next client goes silent, if any is still listened for.
    pub fn next_silence(&self) -> Option<Instant> {
        self.listening
            .first_key_value()
            .map(|((at, _), _)| *at + self.silent_after)
    }

    /// Marks the clients silent at `now`; each silence is returned once.
    pub fn check_silence(&mut self, now: Instant) -> Vec<Silenced> {
        let mut out = Vec::new();
        while let Some(entry) = self.listening.first_entry() {
            let at = entry.key().0;
            if at + self.silent_after > now {
                break;
            }
            let key = entry.remove();
            if let Some(c) = self.clients.get_mut(&key) {
                c.silent = true;
                out.push(Silenced {
                    host: c.host.clone(),
                    pid: c.pid,
                    message: c.message.clone(),
                    silent_for: now.saturating_duration_since(c.last_seen_at),
                });
            }
        }
        out
    }

    /// Every client, sorted by host then pid.
    pub fn sorted(&self) -> Vec<&Client> {
        let mut v: Vec<&Client> = self.clients.values().collect();
        v.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(host: &str, pid: u32, message: &str) -> Probe {
        Probe {
            host: host.to_owned(),
            progname: "autossh".to_owned(),
            pid,
            message: message.to_owned(),
            format: Format::Classic,
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn records_and_counts() {
        let t0 = Instant::now();
        let mut t = ClientTable::new(10, 60 * S);
        assert_eq!(t.record(probe("a", 1, "m1"), peer(), t0, 1000).0, Seen::New);
        assert_eq!(
            t.record(probe("a", 1, "m2"), peer(), t0 + S, 1001).0,
            Seen::Again
        );
        assert_eq!(
            t.record(probe("a", 2, ""), peer(), t0 + S, 1001).0,
            Seen::New
        );
        assert_eq!(
            t.record(probe("b", 1, ""), peer(), t0 + S, 1001).0,
            Seen::New
        );
        assert_eq!(t.len(), 3);
        let a1 = t.get("a", 1).unwrap();
        assert_eq!((a1.probes, a1.first_seen, a1.last_seen), (2, 1000, 1001));
        assert_eq!(a1.message, "m2");
        let order: Vec<_> = t.sorted().iter().map(|c| (c.host.clone(), c.pid)).collect();
        assert_eq!(
            order,
            vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]
        );
    }

    #[test]
    fn evicts_the_least_recently_seen() {
        let t0 = Instant::now();
        let mut t = ClientTable::new(3, 60 * S);
        t.record(probe("a", 1, ""), peer(), t0, 0);
        t.record(probe("b", 1, ""), peer(), t0 + S, 1);
        t.record(probe("c", 1, ""), peer(), t0 + 2 * S, 2);
        // "a" probes again: "b" is now the least recently seen.
        t.record(probe("a", 1, ""), peer(), t0 + 3 * S, 3);
        let (seen, evicted) = t.record(probe("d", 1, ""), peer(), t0 + 4 * S, 4);
        assert_eq!(seen, Seen::New);
        assert_eq!(evicted.map(|c| c.host), Some("b".to_owned()));
        assert_eq!(t.len(), 3);
        assert!(t.get("b", 1).is_none());
        // Same instant for every probe: insertion order breaks the tie.
        let mut t = ClientTable::new(2, 60 * S);
        for h in ["x", "y", "z"] {
            t.record(probe(h, 1, ""), peer(), t0, 0);
        }
        assert!(t.get("x", 1).is_none() && t.get("y", 1).is_some() && t.get("z", 1).is_some());
    }

    #[test]
    fn silence_is_reported_once_and_the_return_once() {
        let t0 = Instant::now();
        let mut t = ClientTable::new(10, 10 * S);
        t.record(probe("a", 1, "db tunnel"), peer(), t0, 0);
        t.record(probe("b", 2, ""), peer(), t0 + 5 * S, 5);
        assert_eq!(t.next_silence(), Some(t0 + 10 * S));
        assert!(t.check_silence(t0 + 9 * S).is_empty());
        let s = t.check_silence(t0 + 12 * S);
        assert_eq!(
            s,
            vec![Silenced {
                host: "a".into(),
                pid: 1,
                message: "db tunnel".into(),
                silent_for: 12 * S,
            }]
        );
        assert!(t.get("a", 1).unwrap().silent);
        assert_eq!(t.next_silence(), Some(t0 + 15 * S));
        // Not again.
        assert_eq!(t.check_silence(t0 + 13 * S), vec![]);
        let s = t.check_silence(t0 + 100 * S);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].host, "b");
        assert_eq!(t.next_silence(), None);
        assert!(t.check_silence(t0 + 1000 * S).is_empty());
        // It comes back: reported once, listened for again.
        let (seen, _) = t.record(probe("a", 1, "db tunnel"), peer(), t0 + 200 * S, 200);
        assert_eq!(seen, Seen::Back(200 * S));
        assert!(!t.get("a", 1).unwrap().silent);
        assert_eq!(t.next_silence(), Some(t0 + 210 * S));
        let (seen, _) = t.record(probe("a", 1, ""), peer(), t0 + 201 * S, 201);
        assert_eq!(seen, Seen::Again);
    }

    #[test]
    fn evicting_a_silent_client_keeps_indexes_consistent() {
        let t0 = Instant::now();
        let mut t = ClientTable::new(1, S);
        t.record(probe("a", 1, ""), peer(), t0, 0);
        assert_eq!(t.check_silence(t0 + 2 * S).len(), 1);
        let (_, evicted) = t.record(probe("b", 1, ""), peer(), t0 + 3 * S, 3);
        assert_eq!(evicted.map(|c| c.silent), Some(true));
        assert_eq!(t.next_silence(), Some(t0 + 4 * S));
        let (_, evicted) = t.record(probe("c", 1, ""), peer(), t0 + 3 * S, 3);
        assert_eq!(evicted.map(|c| c.host), Some("b".to_owned()));
        assert_eq!(t.next_silence(), Some(t0 + 4 * S));
        assert_eq!(t.check_silence(t0 + 5 * S)[0].host, "c");
    }
}

//! What autossh tells the outside: the status and metrics files, systemd's STATUS and
//! watchdog, and `autossh status`; with the shell's own deadlines for them.

use super::*;
use crate::shell::report;
use log::warn;
use std::fmt::Write as _;

/// Status and metrics files are refreshed at least this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The shell's deadlines, by name (the tunnels' are in their supervisors' timer tables).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ShellTimer {
    /// Next refresh of the status and metrics files and of systemd's STATUS.
    Report,
    /// Next `WATCHDOG=1`.
    Watchdog,
}

pub(super) struct ShellTimers {
    at: [Option<Instant>; 2],
    watchdog_every: Option<Duration>,
    /// When the status line was last worked out (many tunnels: at most once a second).
    line_at: Option<Instant>,
}

impl ShellTimers {
    pub(super) fn new(sd: Option<&SdNotify>) -> ShellTimers {
        let watchdog_every = sd.and_then(|s| s.watchdog_every);
        ShellTimers {
            at: [None, watchdog_every.map(|_| Instant::now())],
            watchdog_every,
            line_at: None,
        }
    }

    fn get(&self, t: ShellTimer) -> Option<Instant> {
        self.at[t as usize]
    }

    fn set(&mut self, t: ShellTimer, at: Option<Instant>) {
        self.at[t as usize] = at;
    }

    fn due(&self, t: ShellTimer) -> bool {
        self.get(t).is_some_and(|at| Instant::now() >= at)
    }

    /// Until the next shell deadline.
    pub(super) fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.at
            .iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .min()
    }
}

impl Runner {
    fn reports_wanted(&self) -> bool {
        self.process.statusfile.is_some() || self.process.metricsfile.is_some() || self.sd.is_some()
    }

    /// Writes the status and metrics files and tells systemd, when something changed or
    /// the refresh is due; feeds the watchdog.
    pub(super) fn report(&mut self) {
        let now = Time::now();
        if self.timers.due(ShellTimer::Watchdog) {
            // One tunnel: only while it is proven. Many: while the loop runs.
            let alive = self.fleet.is_file()
                || self
                    .slots
                    .iter()
                    .flatten()
                    .any(|s| s.tunnel.sup().healthy());
            if let (Some(sd), true) = (&self.sd, alive) {
                sd.send("WATCHDOG=1");
            }
            let every = self.timers.watchdog_every;
            self.timers
                .set(ShellTimer::Watchdog, every.map(|e| Instant::now() + e));
        }
        self.check_ready();
        if !self.reports_wanted() {
            return;
        }
        // Many tunnels: their line is worked out at most once a second (each wake-up would
        // otherwise walk them all), unless the refresh is due.
        let recent = self
            .timers
            .line_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if self.fleet.is_file() && recent && !self.timers.due(ShellTimer::Report) {
            return;
        }
        self.timers.line_at = Some(Instant::now());
        let Some(line) = self.status_line(now) else {
            return;
        };
        let changed = self.last_report.as_ref() != Some(&line);
        if !changed
            && !self.timers.due(ShellTimer::Report)
            && self.timers.get(ShellTimer::Report).is_some()
        {
            return;
        }
        if changed {
            if let Some(sd) = &self.sd {
                sd.send(&format!("STATUS={line}"));
            }
        }
        self.write_files(now);
        self.last_report = Some(line);
        self.timers
            .set(ShellTimer::Report, Some(Instant::now() + REPORT_EVERY));
    }

    /// The status and metrics files.
    pub(super) fn write_files(&mut self, now: Time) {
        for slot in self.slots.iter_mut().flatten() {
            slot.tunnel.state_since(now);
        }
        let tunnels: Vec<&Tunnel> = self.slots.iter().flatten().map(|s| &s.tunnel).collect();
        if let Some(p) = &self.process.statusfile {
            let text = if self.fleet.is_file() {
                let rows: Vec<_> = tunnels
                    .iter()
                    .map(|t| (t.name().map(|n| &**n).unwrap_or(""), t.sup(), t.facts()))
                    .collect();
                report::json_fleet(&rows, now)
            } else {
                match tunnels.first() {
                    Some(t) => report::json(t.sup(), &t.facts(), now),
                    None => String::new(),
                }
            };
            if let Err(e) = report::write_atomically(p, &text) {
                warn!("status file {}: {e}", p.display());
            }
        }
        if let Some(p) = &self.process.metricsfile {
            let items: Vec<_> = tunnels
                .iter()
                .map(|t| (t.name().map(|n| &**n), t.sup(), t.relay_stats()))
                .collect();
            if let Err(e) = report::write_atomically(p, &report::prometheus_fleet(&items, now)) {
                warn!("metrics file {}: {e}", p.display());
            }
        }
    }

    /// systemd's STATUS: the single tunnel's line, or `4/5 tunnels up; cache: reconnecting
    /// 40 s` (`None`: no tunnel).
    pub(super) fn status_line(&self, now: Time) -> Option<String> {
        if !self.fleet.is_file() {
            let s = self.slots.iter().flatten().next()?;
            return Some(report::status_line(s.tunnel.sup(), now));
        }
        let all: Vec<&Slot> = self.slots.iter().flatten().collect();
        let up = all.iter().filter(|s| s.tunnel.sup().healthy()).count();
        let mut line = format!("{up}/{} tunnels up", all.len());
        let down: Vec<String> = all
            .iter()
            .filter(|s| !s.tunnel.sup().healthy())
            .take(5)
            .map(|s| {
                let name = s.tunnel.name().map(|n| n.to_string()).unwrap_or_default();
                let since = s
                    .tunnel
                    .sup()
                    .unreachable_since()
                    .map(|t| format!(" {}", report::human(now.since(t))))
                    .unwrap_or_default();
                format!("{name}: {}{since}", s.tunnel.phase_name())
            })
            .collect();
        if !down.is_empty() {
            let _ = write!(line, "; {}", down.join(", "));
        }
        Some(line)
    }

    /// `autossh status`: a table, or JSON.
    pub(super) fn status_text(&mut self, json: bool) -> String {
        let now = Time::now();
        let mut rows = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            let t = &mut slot.tunnel;
            let since = t.state_since(now);
            let st = t.sup().stats();
            let last_reason = t.last_reason().map(str::to_string);
            rows.push(Row {
                name: t.name().map(|n| n.to_string()).unwrap_or_default(),
                state: t.phase_name(),
                since: now.since(since),
                pid: t.ssh_pid(),
                rtt: st.last_rtt,
                restarts: st.restarts,
                last_reason,
                up: t.sup().healthy(),
                conns: t.relay_stats().map(|r| (r.open, r.held)),
            });
        }
        if json {
            status_json(&rows)
        } else {
            status_table(&rows)
        }
    }
}

struct Row {
    name: String,
    state: &'static str,
    since: Duration,
    pid: Option<u32>,
    rtt: Option<Duration>,
    restarts: u32,
    last_reason: Option<String>,
    up: bool,
    /// Held forwards: connections open and waiting.
    conns: Option<(usize, usize)>,
}

fn status_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.state.to_string(),
                report::human(r.since),
                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.rtt
                    .map(|d| format!("{} ms", d.as_millis()))
                    .unwrap_or_else(|| "-".into()),
                r.restarts.to_string(),
                r.conns
                    .map(|(open, held)| format!("{open}/{held}"))
                    .unwrap_or_else(|| "-".into()),
                r.last_reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = [
        "TUNNEL",
        "STATE",
        "SINCE",
        "SSH PID",
        "RTT",
        "RESTARTS",
        "CONNS/WAITING",
        "LAST REASON",
    ];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let mut o = String::new();
    let line = |o: &mut String, vals: &[&str]| {
        let mut l = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                l.push_str(v);
            } else {
                let _ = write!(l, "{v:<w$}  ", w = width[i]);
            }
        }
        o.push_str(l.trim_end());
        o.push('\n');
    };
    line(&mut o, &head);
    for c in &cells {
        let vals: Vec<&str> = c.iter().map(String::as_str).collect();
        line(&mut o, &vals);
    }
    o
}

fn status_json(rows: &[Row]) -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut o = String::from("{\"tunnels\": [");
    for (i, r) in rows.iter().enumerate() {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = write!(
            o,
            "{}\n  {{\"name\": {}, \"state\": {}, \"since\": {:.3}, \"ssh_pid\": {}, \"rtt_ms\": {}, \"restarts\": {}, \"last_reason\": {}, \"up\": {}, \"connections\": {}, \"waiting\": {}}}",
            if i == 0 { "" } else { "," },
            q(&r.name),
            q(r.state),
            unix.saturating_sub(r.since).as_secs_f64(),
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
            r.rtt.map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "null".into()),
            r.restarts,
            r.last_reason.as_deref().map(q).unwrap_or_else(|| "null".into()),
            r.up,
            r.conns.map(|c| c.0.to_string()).unwrap_or_else(|| "null".into()),
            r.conns.map(|c| c.1.to_string()).unwrap_or_else(|| "null".into()),
        );
    }
    o.push_str("\n]}\n");
    o
}

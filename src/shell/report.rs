//! The status file (JSON) and the metrics file (Prometheus text for node_exporter's textfile
//! collector), both written atomically: a temp file in the same directory, then rename.

use crate::core::clock::Time;
use crate::core::supervisor::{RestartKind, Supervisor};
use crate::setup::config::Settings;
use crate::shell::relay::RelayStats;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the report shows besides the supervisor's own figures.
pub struct Facts<'a> {
    /// The state in a word (`Supervisor::phase_name`, or `failed` for a tunnel that ended).
    pub state: &'static str,
    /// When the current state (`Supervisor::phase_name`) began.
    pub state_since: Time,
    pub ssh_pid: Option<u32>,
    /// "loop", "echo" or "off".
    pub mode: &'a str,
    /// `-M 0` with the session probe.
    pub session_probe: bool,
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub echo_port: Option<u16>,
    /// The settings, as validated at start (not copied).
    pub settings: &'a Settings,
    /// The held forwards' figures (`None`: nothing held).
    pub relay: Option<&'a RelayStats>,
}

/// Seconds since the epoch of a point on the boot-time clock.
fn wall(t: Time, now: Time) -> f64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (unix.saturating_sub(now.since(t))).as_secs_f64()
}

/// A JSON string literal of `s`.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "null".into())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The status document.
pub fn json(sup: &Supervisor, f: &Facts, now: Time) -> String {
    let mut o = String::with_capacity(1024);
    o.push_str("{\n  \"version\": 1,\n");
    json_fields(&mut o, sup, f, now);
    o.push_str("}\n");
    o
}

/// The status document of many tunnels: one tunnel's document each, with its name.
pub fn json_fleet(items: &[(&str, &Supervisor, Facts)], now: Time) -> String {
    let mut o = String::with_capacity(1024 * items.len() + 64);
    o.push_str("{\n  \"version\": 1,\n  \"tunnels\": [");
    for (i, (name, sup, f)) in items.iter().enumerate() {
        o.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = writeln!(o, "{{\n  \"name\": {},", json_str(name));
        json_fields(&mut o, sup, f, now);
        o.push('}');
    }
    o.push_str("\n  ]\n}\n");
    o
}

/// One tunnel's fields of the status document.
fn json_fields(o: &mut String, sup: &Supervisor, f: &Facts, now: Time) {
    json_state(o, sup, f, now);
    json_restarts(o, sup, f, now);
    json_setup(o, f);
}

/// Its state: since when, up since, the outage under way.
fn json_state(o: &mut String, sup: &Supervisor, f: &Facts, now: Time) {
    let st = sup.stats();
    let at = |t: Time| format!("{:.3}", wall(t, now));
    let _ = writeln!(o, "  \"state\": {},", json_str(f.state));
    let _ = writeln!(o, "  \"state_since\": {},", at(f.state_since));
    let _ = writeln!(o, "  \"generated_at\": {},", at(now));
    let _ = writeln!(o, "  \"up_since\": {},", opt(st.up_since.map(at)));
    let _ = writeln!(
        o,
        "  \"unreachable_since\": {},",
        opt(sup.unreachable_since().map(at))
    );
    let held = sup
        .port_held()
        .map(|h| format!("{{\"port\": {}, \"since\": {}}}", h.port, at(h.since)));
    let _ = writeln!(o, "  \"port_held\": {},", opt(held));
    let _ = writeln!(o, "  \"ssh_pid\": {},", opt(f.ssh_pid));
}

/// Its starts, restarts, probes and connections.
fn json_restarts(o: &mut String, sup: &Supervisor, f: &Facts, now: Time) {
    let st = sup.stats();
    let _ = writeln!(o, "  \"starts\": {},", sup.start_count());
    let _ = writeln!(o, "  \"restarts\": {},", st.restarts);
    o.push_str("  \"recent_restarts\": [");
    for (i, r) in st.recent_restarts.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"at\": {:.3}, \"kind\": {}, \"reason\": {}}}",
            if i == 0 { "" } else { "," },
            wall(r.at, now),
            json_str(r.kind.name()),
            json_str(&r.reason)
        );
    }
    o.push_str(if st.recent_restarts.is_empty() {
        "],\n"
    } else {
        "\n  ],\n"
    });
    let _ = writeln!(o, "  \"probe_failures\": {},", st.probe_failures);
    let _ = writeln!(o, "  \"last_rtt_ms\": {},", opt(st.last_rtt.map(ms)));
    let hist: Vec<String> = st.rtt_history.iter().map(|&d| ms(d)).collect();
    let _ = writeln!(o, "  \"rtt_history_ms\": [{}],", hist.join(", "));
    let _ = writeln!(
        o,
        "  \"connections\": {},",
        opt(f.relay.map(connections_json))
    );
}

/// Its monitor and settings.
fn json_setup(o: &mut String, f: &Facts) {
    let _ = writeln!(
        o,
        "  \"monitor\": {{\"mode\": {}, \"local_port\": {}, \"remote_port\": {}, \"echo_port\": {}, \"session_probe\": {}}},",
        json_str(f.mode),
        opt(f.local_port),
        opt(f.remote_port),
        opt(f.echo_port),
        f.session_probe
    );
    let _ = writeln!(
        o,
        "  \"settings\": {{\"poll_s\": {}, \"first_poll_s\": {}, \"gate_time_s\": {}, \"net_timeout_s\": {}, \"max_start\": {}, \"max_lifetime_s\": {}}}",
        f.settings.poll.as_secs(),
        f.settings.first_poll.as_secs(),
        f.settings.gate_time.as_secs(),
        f.settings.net_timeout().as_secs_f64(),
        opt(f.settings.max_start),
        opt(f.settings.max_lifetime.map(|d| d.as_secs()))
    );
}

/// The held forwards' figures, as a JSON object.
fn connections_json(r: &RelayStats) -> String {
    format!(
        "{{\"open\": {}, \"waiting\": {}, \"waited_total\": {}, \"relayed_total\": {}, \
         \"expired\": {}, \"overflowed\": {}, \"abandoned\": {}, \"cut\": {}, \
         \"bytes_to_server\": {}, \"bytes_to_client\": {}}}",
        r.open,
        r.held,
        r.held_total,
        r.relayed_total,
        r.expired,
        r.overflowed,
        r.abandoned,
        r.cut,
        r.bytes_out,
        r.bytes_in
    )
}

/// One tunnel in the metrics: its name (`None`: the command line's), its supervisor, its
/// held forwards' figures.
pub type MetricsOf<'a> = (Option<&'a str>, &'a Supervisor, Option<&'a RelayStats>);

/// The metrics in Prometheus text format.
pub fn prometheus(sup: &Supervisor, now: Time) -> String {
    prometheus_fleet(&[(None, sup, None)], now)
}

/// Every tunnel's series: name, type, help (the samples come from [`tunnel_samples`], in
/// this order).
const TUNNEL_SERIES: [(&str, &str, &str); 13] = [
    ("autossh_up", "gauge", "Whether the tunnel is proven up."),
    (
        "autossh_restarts_total",
        "counter",
        "ssh restarts by reason.",
    ),
    (
        "autossh_probe_rtt_seconds",
        "gauge",
        "Round-trip time of the last probe.",
    ),
    (
        "autossh_probe_failures_total",
        "counter",
        "Probes that failed on a proven tunnel.",
    ),
    (
        "autossh_tunnel_up_seconds",
        "gauge",
        "How long the tunnel has been up.",
    ),
    (
        "autossh_remote_port_held",
        "gauge",
        "1 while the server refuses a remote forward's port, held by another session \
         (state port-held).",
    ),
    (
        "autossh_connections_open",
        "gauge",
        "Held forwards: connections relayed to ssh and open.",
    ),
    (
        "autossh_connections_waiting",
        "gauge",
        "Held forwards: connections waiting for the tunnel.",
    ),
    (
        "autossh_connections_waited_total",
        "counter",
        "Held forwards: connections that waited for the tunnel.",
    ),
    (
        "autossh_connections_relayed_total",
        "counter",
        "Held forwards: connections relayed to ssh.",
    ),
    (
        "autossh_connections_reset_total",
        "counter",
        "Held forwards: connections reset, by reason (waited too long, too many waiting, \
         their ssh ended).",
    ),
    (
        "autossh_connections_abandoned_total",
        "counter",
        "Held forwards: connections closed by their application while they waited.",
    ),
    (
        "autossh_relay_bytes_total",
        "counter",
        "Held forwards: bytes relayed, by direction.",
    ),
];

/// One series' samples: label set (`None`: none), value.
type Samples = Vec<(Option<String>, f64)>;

/// The metrics of one tunnel, or of many with a `tunnel` label on every series.
pub fn prometheus_fleet(items: &[MetricsOf], now: Time) -> String {
    let mut o = String::with_capacity(1024 * items.len());
    if items.iter().any(|(n, _, _)| n.is_some()) {
        let up = items.iter().filter(|(_, s, _)| s.healthy()).count();
        let all = vec![(None, items.len() as f64)];
        series(
            &mut o,
            ("autossh_tunnels", "gauge", "Tunnels in the tunnels file."),
            all,
        );
        let up = vec![(None, up as f64)];
        series(
            &mut o,
            ("autossh_tunnels_up", "gauge", "Tunnels proven up."),
            up,
        );
    }
    let mut per_tunnel: Vec<_> = items
        .iter()
        .map(|(n, sup, relay)| {
            let mut all = tunnel_samples(*n, sup, now).to_vec();
            all.extend(relay_samples(*n, *relay));
            all.into_iter()
        })
        .collect();
    for s in TUNNEL_SERIES {
        let samples = per_tunnel.iter_mut().flat_map(|t| t.next()).flatten();
        series(&mut o, s, samples.collect());
    }
    o
}

/// One tunnel's samples of each of [`TUNNEL_SERIES`].
fn tunnel_samples(name: Option<&str>, sup: &Supervisor, now: Time) -> [Samples; 6] {
    let st = sup.stats();
    let one = |v: f64| vec![(label(name, ""), v)];
    let restarts = RestartKind::ALL
        .into_iter()
        .map(|k| {
            let more = format!("reason=\"{}\"", k.name());
            (label(name, &more), st.restarts_of(k) as f64)
        })
        .collect();
    let up_for = st.up_since.map(|t| now.since(t)).unwrap_or_default();
    [
        one(f64::from(u8::from(sup.healthy()))),
        restarts,
        st.last_rtt
            .map(|r| one(r.as_secs_f64()))
            .unwrap_or_default(),
        one(st.probe_failures as f64),
        one(up_for.as_secs_f64()),
        one(f64::from(u8::from(sup.port_held().is_some()))),
    ]
}

/// One tunnel's samples of the held forwards' series (none without held forwards).
fn relay_samples(name: Option<&str>, relay: Option<&RelayStats>) -> [Samples; 7] {
    let Some(r) = relay else {
        return Default::default();
    };
    let one = |v: f64| vec![(label(name, ""), v)];
    let by = |key: &str, pairs: &[(&str, u64)]| -> Samples {
        pairs
            .iter()
            .map(|(k, v)| (label(name, &format!("{key}=\"{k}\"")), *v as f64))
            .collect()
    };
    [
        one(r.open as f64),
        one(r.held as f64),
        one(r.held_total as f64),
        one(r.relayed_total as f64),
        by(
            "reason",
            &[
                ("hold_time", r.expired),
                ("hold_max", r.overflowed),
                ("ssh_ended", r.cut),
            ],
        ),
        one(r.abandoned as f64),
        by(
            "direction",
            &[("to_server", r.bytes_out), ("to_client", r.bytes_in)],
        ),
    ]
}

/// The label set of one tunnel's sample (`None`: no labels).
fn label(name: Option<&str>, more: &str) -> Option<String> {
    match (name, more) {
        (None, "") => None,
        (None, m) => Some(format!("{{{m}}}")),
        (Some(n), "") => Some(format!("{{tunnel={}}}", json_str(n))),
        (Some(n), m) => Some(format!("{{tunnel={},{m}}}", json_str(n))),
    }
}

/// One series: its HELP and TYPE lines, then a line per sample (labels, value). Values
/// are rounded to the microsecond and print in their shortest form (`3`, `0.012345`).
fn series(o: &mut String, (name, kind, help): (&str, &str, &str), samples: Samples) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let v = (v * 1e6).round() / 1e6;
        let _ = writeln!(o, "{name}{} {v}", labels.as_deref().unwrap_or(""));
    }
}

/// A line for `systemctl status`.
pub fn status_line(sup: &Supervisor, now: Time) -> String {
    let st = sup.stats();
    let restarts = match st.restarts {
        1 => "1 restart".to_string(),
        n => format!("{n} restarts"),
    };
    match (sup.phase_name(), st.up_since) {
        ("up" | "probing", Some(since)) => {
            let rtt = st
                .last_rtt
                .map(|r| format!(", probe rtt {} ms", r.as_millis()))
                .unwrap_or_default();
            format!("up {}{rtt}, {restarts}", human(now.since(since)))
        }
        ("port-held", _) => match sup.port_held() {
            Some(h) => format!(
                "port-held: remote port {} held on the server for {}, {restarts}",
                h.port,
                human(now.since(h.since))
            ),
            None => format!("port-held, {restarts}"),
        },
        ("reconnecting", _) => match sup.unreachable_since() {
            Some(t) => format!(
                "reconnecting: server unreachable for {}, {restarts}",
                human(now.since(t))
            ),
            None => format!("reconnecting, {restarts}"),
        },
        (name, _) => format!("{name}, {restarts}"),
    }
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Writes `text` to `path` atomically (temp file in the same directory, then rename). Mode
/// 0644 whatever the umask (a unit's `UMask=0077`): node_exporter reads it as another user.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(text.as_bytes())?;
    f.sync_data().ok();
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(5)), "5 s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 60)), "3h01m");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        write_atomically(&p, "one").unwrap();
        write_atomically(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

//! The status report: JSON status file, Prometheus text for node_exporter, written atomically.

use crate::clients::Client;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// Everything a report shows, taken at one moment.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// Wall clock, seconds since the epoch.
    pub generated_at: u64,
    pub listen: &'a [SocketAddr],
    pub connections: usize,
    pub refused_total: u64,
    /// Sorted by host, then pid.
    pub clients: Vec<&'a Client>,
}

/// The status file: one JSON object, `version` 1, then a newline.
pub fn status_json(s: &Snapshot) -> String {
    let mut o = String::with_capacity(256 + 256 * s.clients.len());
    let _ = write!(
        o,
        "{{\"version\":1,\"generated_at\":{},\"listen\":[",
        s.generated_at
    );
    for (i, a) in s.listen.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        json_str(&mut o, &a.to_string());
    }
    let _ = write!(
        o,
        "],\"connections\":{},\"refused_total\":{},\"clients\":[",
        s.connections, s.refused_total
    );
    for (i, c) in s.clients.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("\n{\"host\":");
        json_str(&mut o, &c.host);
        let _ = write!(o, ",\"pid\":{},\"progname\":", c.pid);
        json_str(&mut o, &c.progname);
        o.push_str(",\"message\":");
        json_str(&mut o, &c.message);
        o.push_str(",\"format\":");
        json_str(&mut o, c.format.as_str());
        let _ = write!(
            o,
            ",\"probes\":{},\"first_seen\":{},\"last_seen\":{},\"silent\":{},\"peer\":",
            c.probes, c.first_seen, c.last_seen, c.silent
        );
        json_str(&mut o, &c.peer.to_string());
        o.push('}');
    }
    o.push_str("]}\n");
    o
}

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `s` as a Prometheus label value (quoted; `\`, `"` and newline escaped).
pub fn label_value(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Shows a string from the network in a log line: control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for ch in self.0.chars() {
            if ch.is_control() {
                write!(f, "{}", ch.escape_default())?;
            } else {
                f.write_char(ch)?;
            }
        }
        Ok(())
    }
}

/// The metric families of the metrics file: name, type, help.
const FAMILIES: [(&str, &str, &str); 6] = [
    (
        "autossh_echo_connections",
        "gauge",
        "Open echo connections.",
    ),
    (
        "autossh_echo_connections_refused_total",
        "counter",
        "Connections closed at once because --max-connections were open.",
    ),
    (
        "autossh_echo_clients",
        "gauge",
        "autossh clients in the client table.",
    ),
    (
        "autossh_echo_client_probes_total",
        "counter",
        "Probe lines received from each autossh client.",
    ),
    (
        "autossh_echo_client_last_seen_seconds",
        "gauge",
        "When each autossh client last probed, seconds since the epoch.",
    ),
    (
        "autossh_echo_client_silent",
        "gauge",
        "1 if the autossh client stopped probing for --silent-after seconds.",
    ),
];

/// The metrics file, in the Prometheus text exposition format.
pub fn metrics_text(s: &Snapshot) -> String {
    let mut o = String::with_capacity(1024 + 300 * s.clients.len());
    let one = |v: String| vec![(String::new(), v)];
    let labels: Vec<String> = s.clients.iter().map(|c| client_labels(c)).collect();
    let per = |v: &dyn Fn(&Client) -> String| -> Vec<(String, String)> {
        let values = s.clients.iter().map(|c| v(c));
        labels.iter().cloned().zip(values).collect()
    };
    let samples = [
        one(s.connections.to_string()),
        one(s.refused_total.to_string()),
        one(s.clients.len().to_string()),
        per(&|c| c.probes.to_string()),
        per(&|c| c.last_seen.to_string()),
        per(&|c| u8::from(c.silent).to_string()),
    ];
    for (f, samples) in FAMILIES.into_iter().zip(samples) {
        family(&mut o, f, samples);
    }
    o
}

/// A client's label set: `{host="...",pid="..."}`.
fn client_labels(c: &Client) -> String {
    let mut l = String::from("{host=");
    label_value(&mut l, &c.host);
    let _ = write!(l, ",pid=\"{}\"}}", c.pid);
    l
}

/// One metric family: `(name, type, help)`, then one line per (labels, value).
fn family(o: &mut String, (name, kind, help): (&str, &str, &str), samples: Vec<(String, String)>) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(o, "{name}{labels} {value}");
    }
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory, then
/// rename, so readers see the old file or the new one, never a partial one. Mode 0644 whatever
/// the umask (a unit's `UMask=0077`): node_exporter reads it as another user.
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(contents.as_bytes())?;
        f.flush()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientTable;
    use crate::probe::{Format, Probe};
    use std::time::{Duration, Instant};

    fn js(s: &str) -> String {
        let mut o = String::new();
        json_str(&mut o, s);
        o
    }

    fn lv(s: &str) -> String {
        let mut o = String::new();
        label_value(&mut o, s);
        o
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(Printable("gw1 db").to_string(), "gw1 db");
        assert_eq!(
            Printable("a\x1b[31mb\n\u{7f}é").to_string(),
            "a\\u{1b}[31mb\\n\\u{7f}é"
        );
    }

    #[test]
    fn json_escaping() {
        assert_eq!(js("plain"), r#""plain""#);
        assert_eq!(js(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(js("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(js("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
        assert_eq!(js("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(js("</script>"), r#""</script>""#);
    }

    #[test]
    fn label_escaping() {
        assert_eq!(lv("gw1"), r#""gw1""#);
        assert_eq!(lv(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lv("x\ny"), r#""x\ny""#);
    }

    fn table() -> ClientTable {
        let mut t = ClientTable::new(10, Duration::from_secs(60));
        let peer = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        for (host, pid, format, msg) in [
            ("zeta", 2, Format::AutosshRs, "to \"db\""),
            ("alpha\\1", 1, Format::Classic, ""),
        ] {
            let p = Probe {
                host: host.into(),
                progname: "autossh".into(),
                pid,
                message: msg.into(),
                format,
            };
            t.record(p, peer, now, 1_700_000_000);
        }
        t
    }

    #[test]
    fn status_json_shape() {
        let t = table();
        let listen = [
            "127.0.0.1:7".parse().unwrap(),
            "[::1]:7007".parse().unwrap(),
        ];
        let s = Snapshot {
            generated_at: 1_700_000_001,
            listen: &listen,
            connections: 3,
            refused_total: 4,
            clients: t.sorted(),
        };
        let j = status_json(&s);
        assert!(j.starts_with(
            r#"{"version":1,"generated_at":1700000001,"listen":["127.0.0.1:7","[::1]:7007"],"connections":3,"refused_total":4,"clients":["#
        ));
        let alpha = r#"{"host":"alpha\\1","pid":1,"progname":"autossh","message":"","format":"classic","probes":1,"first_seen":1700000000,"last_seen":1700000000,"silent":false,"peer":"127.0.0.1:5000"}"#;
        let zeta = r#"{"host":"zeta","pid":2,"progname":"autossh","message":"to \"db\"","format":"autossh-rs","#;
        let (a, z) = (j.find(alpha).unwrap(), j.find(zeta).unwrap());
        assert!(a < z, "sorted by host: {j}");
        assert!(j.ends_with("}]}\n"));
        let empty = Snapshot {
            generated_at: 0,
            listen: &[],
            connections: 0,
            refused_total: 0,
            clients: vec![],
        };
        assert_eq!(
            status_json(&empty),
            "{\"version\":1,\"generated_at\":0,\"listen\":[],\"connections\":0,\"refused_total\":0,\"clients\":[]}\n"
        );
    }

    #[test]
    fn metrics_lines() {
        let t = table();
        let s = Snapshot {
            generated_at: 0,
            listen: &[],
            connections: 3,
            refused_total: 4,
            clients: t.sorted(),
        };
        let m = metrics_text(&s);
        for line in [
            "autossh_echo_connections 3",
            "autossh_echo_connections_refused_total 4",
            "autossh_echo_clients 2",
            r#"autossh_echo_client_probes_total{host="alpha\\1",pid="1"} 1"#,
            r#"autossh_echo_client_last_seen_seconds{host="zeta",pid="2"} 1700000000"#,
            r#"autossh_echo_client_silent{host="zeta",pid="2"} 0"#,
            "# TYPE autossh_echo_connections_refused_total counter",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        assert!(m.ends_with('\n'));
        // Every sample line is `name{labels} value` or `name value`.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        write_atomic(&p, "one").unwrap();
        write_atomic(&p, "two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
        assert!(write_atomic(&dir.path().join("missing/x"), "z").is_err());
    }
}

//! Two tunnels that would bind the same local port (`-L`, `-D`, `LocalForward`,
//! `DynamicForward`, a loop monitor's N+1) or the same monitor ports: rejected like any bad file.

use super::*;

/// Two tunnels `a` (first) and `b` (second) that clash: either may be blamed, at its header,
/// its `ssh` or its `monitor` line.
fn clash(v: &Verdicts, dir: &TestDir, label: &str, a: &str, b: &str) {
    let text = format!("{a}\n{b}");
    let r = reject(dir, label, &text);
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            ["[tunnel.", "ssh", "monitor"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|(i, _)| i + 1)
        .collect();
    r.names_one_of(v, &lines, &["a", "b"], &[]);
}

#[test]
fn two_tunnels_binding_the_same_local_port_are_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let p = free_port();
    let a = table("a", &fwd(p), "0", &[]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases = [
        ("L-L", table("b", &fwd(p), "0", &[])),
        (
            "L-L-bind-address",
            table(
                "b",
                &s(&["-N", &format!("-L127.0.0.1:{p}:127.0.0.1:10"), "h"]),
                "0",
                &[],
            ),
        ),
        (
            "L-D",
            table("b", &s(&["-N", "-D", &p.to_string(), "h"]), "0", &[]),
        ),
        (
            "L-LocalForward",
            table(
                "b",
                &s(&["-N", "-o", &format!("LocalForward={p} 127.0.0.1:10"), "h"]),
                "0",
                &[],
            ),
        ),
        (
            "L-DynamicForward",
            table(
                "b",
                &s(&["-N", "-o", &format!("DynamicForward={p}"), "h"]),
                "0",
                &[],
            ),
        ),
        (
            "string-form",
            format!("[tunnel.b]\nssh = \"-N -D {p} h\"\nmonitor = \"0\"\n"),
        ),
    ];
    for (label, b) in cases {
        clash(&v, &dir, label, &a, &b);
    }
}

#[test]
fn two_tunnels_with_the_same_or_overlapping_monitor_ports_are_rejected() {
    let dir = TestDir::new();
    let v = Verdicts::default();
    let m = free_loop_ports();
    let (m1, m2) = (m.to_string(), (m + 1).to_string());
    let echo = format!("{m}:7");
    let cases: [(&str, &str, &str); 5] = [
        ("loop-same", &m1, &m1),
        ("loop-overlap", &m1, &m2),
        ("echo-same", &echo, &echo),
        ("loop-echo", &m1, &echo),
        ("loop-overlap-reversed", &m2, &m1),
    ];
    for (label, ma, mb) in cases {
        let a = table("a", &fwd(free_port()), ma, &[]);
        let b = table("b", &fwd(free_port()), mb, &[]);
        clash(&v, &dir, label, &a, &b);
    }
    // An integer monitor is the same port as its string.
    let a = format!(
        "[tunnel.a]\nssh = {}\nmonitor = {m}\n",
        toml_list(&fwd(free_port()))
    );
    clash(
        &v,
        &dir,
        "integer",
        &a,
        &table("b", &fwd(free_port()), &m1, &[]),
    );
    // A loop monitor's N+1 against another tunnel's -L.
    let a = table("a", &fwd(free_port()), &m1, &[]);
    clash(
        &v,
        &dir,
        "monitor-vs-L",
        &a,
        &table("b", &fwd(m + 1), "0", &[]),
    );
}

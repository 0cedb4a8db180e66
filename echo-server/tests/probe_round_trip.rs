//! Every probe line autossh writes is one autossh-echo parses, with the same facts: the line
//! is written in `src/core/probe.rs` and parsed in `echo-server/src/probe.rs`.

use autossh::core::probe::Prober;
use autossh_echo::probe::{parse_line, Format};

#[test]
fn what_autossh_writes_autossh_echo_reads() {
    let hosts = ["db-gw", "h", "a.b.example", "x-1_2"];
    let messages = ["", "tunnel to pg", "a b  c", &"m".repeat(64)];
    for (i, host) in hosts.iter().enumerate() {
        for message in messages {
            let pid = 1 + i as u32 * 40_000;
            let prober = Prober::new(
                host.to_string(),
                pid,
                0xdead_beef_0000 + i as u64,
                message.into(),
            );
            for seq in [1u64, 2, 999_999] {
                let line = prober.line(seq, 1_700_000_000_123);
                assert!(line.ends_with(b"\r\n"), "{line:?}");
                let probe = parse_line(&line[..line.len() - 1])
                    .unwrap_or_else(|| panic!("not parsed: {:?}", String::from_utf8_lossy(&line)));
                assert_eq!(probe.format, Format::AutosshRs, "{probe:?}");
                assert_eq!(probe.host, *host);
                assert_eq!(probe.progname, "autossh");
                assert_eq!(probe.pid, pid);
                assert_eq!(probe.message, message);
            }
        }
    }
}

//! Probe lines: splitting a connection's bytes into lines and recognising autossh probes in them.

/// Longest line (without its `\n`) that is parsed; longer lines are echoed but never parsed.
pub const MAX_LINE: usize = 512;

/// Which autossh sent a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// This project: `<host> autossh <pid> <seq> <timestamp_ms> <nonce> <message>`.
    AutosshRs,
    /// autossh 1.4g: `<nodename> <progname> <pid> <random> <message>`.
    Classic,
}

impl Format {
    /// The name used in the status file.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::AutosshRs => "autossh-rs",
            Format::Classic => "classic",
        }
    }
}

/// What a probe line tells about the client that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub host: String,
    pub progname: String,
    pub pid: u32,
    pub message: String,
    pub format: Format,
}

/// Parses one line (without `\n`; a trailing `\r` is ignored). `None` if it is no probe.
pub fn parse_line(line: &[u8]) -> Option<Probe> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?;
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    if fields.len() < 4 {
        return None;
    }
    let (host, progname) = (fields[0], fields[1]);
    if host.is_empty() || progname.is_empty() || !is_decimal(fields[3]) {
        return None;
    }
    let pid: u32 = if is_decimal(fields[2]) {
        fields[2].parse().ok()?
    } else {
        return None;
    };
    let ours = fields.len() >= 6
        && is_decimal(fields[4])
        && fields[5].len() == 16
        && fields[5].bytes().all(|b| b.is_ascii_hexdigit());
    let (format, message) = if ours {
        (Format::AutosshRs, fields.get(6).copied().unwrap_or(""))
    } else {
        // Classic: everything after the fourth space is the message, spaces and all.
        let message = line.splitn(5, ' ').nth(4).unwrap_or("");
        (Format::Classic, message)
    };
    Some(Probe {
        host: host.to_owned(),
        progname: progname.to_owned(),
        pid,
        message: message.to_owned(),
        format,
    })
}

/// A non-empty run of ASCII digits that fits in a u64.
fn is_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u64>().is_ok()
}

/// Collects the bytes of the line being received; hands out each complete line once.
#[derive(Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
    /// The current line went past [`MAX_LINE`]: drop bytes until its end.
    overlong: bool,
}

impl LineSplitter {
    /// Feeds received bytes; calls `on_line` with each complete line of at most [`MAX_LINE`]
    /// bytes (without the `\n`). Overlong lines are skipped.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let (chunk, done) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            if !self.overlong {
                if self.line.len() + chunk.len() > MAX_LINE {
                    self.overlong = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            if done {
                if !self.overlong {
                    on_line(&self.line);
                }
                self.line.clear();
                self.overlong = false;
                bytes = &bytes[chunk.len() + 1..];
            } else {
                bytes = &[];
            }
        }
    }
}

/// Parses every probe in `bytes`, pushing them onto `probes`.
pub fn feed_probes(splitter: &mut LineSplitter, bytes: &[u8], probes: &mut Vec<Probe>) {
    splitter.feed(bytes, |line| {
        if let Some(p) = parse_line(line) {
            probes.push(p);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(l.to_vec()));
        }
        out
    }

    #[test]
    fn classic_probe_with_empty_message() {
        let p = parse_line(b"gw1 autossh 4242 1804289383 \r").unwrap();
        assert_eq!(p.host, "gw1");
        assert_eq!(p.progname, "autossh");
        assert_eq!(p.pid, 4242);
        assert_eq!(p.message, "");
        assert_eq!(p.format, Format::Classic);
    }

    #[test]
    fn classic_probe_without_trailing_space_and_with_spaces_in_message() {
        let p = parse_line(b"gw1 autossh 4242 77").unwrap();
        assert_eq!(p.message, "");
        let p = parse_line(b"db.example.org autossh-1.4g 9 123 tunnel to db  two spaces").unwrap();
        assert_eq!(p.progname, "autossh-1.4g");
        assert_eq!(p.message, "tunnel to db  two spaces");
        assert_eq!(p.format, Format::Classic);
    }

    #[test]
    fn our_probe() {
        let p =
            parse_line(b"laptop autossh 31337 12 1700000000123 0123456789abcDEF backup tunnel\r")
                .unwrap();
        assert_eq!(p.host, "laptop");
        assert_eq!(p.pid, 31337);
        assert_eq!(p.message, "backup tunnel");
        assert_eq!(p.format, Format::AutosshRs);
        let p = parse_line(b"laptop autossh 1 2 3 0000000000000000 ").unwrap();
        assert_eq!((p.format, p.message.as_str()), (Format::AutosshRs, ""));
        let p = parse_line(b"laptop autossh 1 2 3 0000000000000000").unwrap();
        assert_eq!(p.format, Format::AutosshRs);
    }

    #[test]
    fn nearly_ours_is_classic() {
        // 15 hex digits, or a non-decimal timestamp: a classic probe whose message looks odd.
        let p = parse_line(b"h autossh 1 2 3 000000000000000 m").unwrap();
        assert_eq!(p.format, Format::Classic);
        assert_eq!(p.message, "3 000000000000000 m");
        let p = parse_line(b"h autossh 1 2 x3 0000000000000000 m").unwrap();
        assert_eq!(p.format, Format::Classic);
    }

    #[test]
    fn junk_is_no_probe() {
        for junk in [
            &b""[..],
            b"\r",
            b"hello world",
            b"GET / HTTP/1.1\r",
            b"h autossh pid 12 m",
            b"h autossh 12 x m",
            b"h autossh -12 3 m",
            b"h autossh 12",
            b" autossh 12 3 m",
            b"h  12 3 m",
            b"h autossh 99999999999 3 m",
            b"h autossh 1 999999999999999999999 m",
            b"h autossh \xff1 2 m",
            b"\xffh autossh 1 2 m",
        ] {
            assert_eq!(
                parse_line(junk),
                None,
                "{:?}",
                String::from_utf8_lossy(junk)
            );
        }
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_cr_when_parsing() {
        let got = lines(&[b"a b", b"c\r\nde", b"f\n\n", b"tail"]);
        assert_eq!(got, vec![b"a bc\r".to_vec(), b"def".to_vec(), b"".to_vec()]);
        let mut probes = Vec::new();
        let mut s = LineSplitter::default();
        feed_probes(
            &mut s,
            b"h1 autossh 5 6 \r\nnoise\r\nh2 autossh 7 8 x\r",
            &mut probes,
        );
        feed_probes(&mut s, b"\n", &mut probes);
        let keys: Vec<_> = probes.iter().map(|p| (p.host.as_str(), p.pid)).collect();
        assert_eq!(keys, vec![("h1", 5), ("h2", 7)]);
    }

    #[test]
    fn long_lines_are_skipped_but_the_next_line_counts() {
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.extend_from_slice(b"\nh autossh 1 2 m\n");
        let mut probes = Vec::new();
        let mut s = LineSplitter::default();
        // Fed byte by byte and whole: same result.
        for b in &long {
            feed_probes(&mut s, std::slice::from_ref(b), &mut probes);
        }
        feed_probes(&mut s, &long, &mut probes);
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].message, "m");

        // A line of exactly MAX_LINE bytes is still parsed; one over is not.
        let msg_len = MAX_LINE - "h autossh 1 2 ".len();
        let exact = format!("h autossh 1 2 {}", "m".repeat(msg_len));
        assert_eq!(lines(&[exact.as_bytes(), b"\n"]).len(), 1);
        assert!(parse_line(exact.as_bytes()).is_some());
        let over = format!("{exact}m\n");
        assert!(lines(&[over.as_bytes()]).is_empty());
    }
}

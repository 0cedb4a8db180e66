//! OpenSSH client's option table: which single-letter options take a value.
//!
//! Taken from the `getopt` string of OpenSSH's `ssh.c` (9.x):
//! `1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy`.
//! This is the one place that knows it; the command-line splitter asks here.

/// Options that take a value (`-L spec`, `-Lspec`).
const WITH_VALUE: &str = "bceilmopBDEFIJLOPQRSWw";
/// Options that stand alone and may be clustered (`-fNT`).
const FLAGS: &str = "1246afgknqstvxACGKMNTVXYy";

/// How ssh treats a single option letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    /// A switch without a value.
    Flag,
    /// Takes a value, attached (`-p22`) or as the next argument (`-p 22`).
    Value,
    /// Not an option OpenSSH knows; passed through as a flag.
    Unknown,
}

/// The kind of the ssh option letter `c`.
pub fn kind(c: char) -> OptKind {
    if WITH_VALUE.contains(c) {
        OptKind::Value
    } else if FLAGS.contains(c) {
        OptKind::Flag
    } else {
        OptKind::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_options_match_openssh() {
        for c in [
            'L', 'R', 'D', 'J', 'B', 'W', 'o', 'p', 'i', 'l', 'F', 'E', 'w', 'P',
        ] {
            assert_eq!(kind(c), OptKind::Value, "-{c}");
        }
        for c in [
            'N', 'f', 'T', 'v', 'q', 'C', 'g', '4', '6', 'A', 'x', 'G', 'V',
        ] {
            assert_eq!(kind(c), OptKind::Flag, "-{c}");
        }
        assert_eq!(kind('Z'), OptKind::Unknown);
    }

    #[test]
    fn tables_do_not_overlap() {
        assert!(WITH_VALUE.chars().all(|c| !FLAGS.contains(c)));
    }
}

//! systemd's journal on stderr: is stderr the stream systemd connected to journald
//! (`JOURNAL_STREAM`, systemd.exec(5)), and the `<N>` priority prefix of sd-daemon(3).

use log::Level;
use std::os::fd::AsRawFd;

/// True when `JOURNAL_STREAM` names stderr's own device and inode: systemd gave us a stream
/// to journald, which reads a `<N>` prefix as the line's priority and adds its own timestamp
/// and `autossh[pid]:`. False elsewhere, and once stderr was redirected (`-f`, `2>file`).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(want) = value.to_str().and_then(parse) else {
        return false;
    };
    stderr_dev_ino() == Some(want)
}

/// `"<st_dev>:<st_ino>"` in decimal, as systemd writes it.
pub fn parse(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

// st_dev is a u64 on Linux and FreeBSD, an i32 on macOS.
#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn stderr_dev_ino() -> Option<(u64, u64)> {
    // SAFETY: fstat on descriptor 2 into a zeroed local.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(std::io::stderr().as_raw_fd(), &mut st) != 0 {
            return None;
        }
        st
    };
    Some((u64::try_from(st.st_dev).ok()?, u64::from(st.st_ino)))
}

/// The syslog priority journald files a line under: `<3>` error, `<4>` warning, `<6>` info,
/// `<7>` debug.
pub fn prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dev_colon_inode() {
        assert_eq!(parse("64769:1234567"), Some((64769, 1234567)));
        assert_eq!(parse("1:2:3"), None);
        assert_eq!(parse("x:2"), None);
        assert_eq!(parse("12"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn prefixes_follow_sd_daemon() {
        assert_eq!(prefix(Level::Error), "<3>");
        assert_eq!(prefix(Level::Warn), "<4>");
        assert_eq!(prefix(Level::Info), "<6>");
        assert_eq!(prefix(Level::Debug), "<7>");
    }
}

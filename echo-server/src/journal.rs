//! Logging to systemd's journal: when `JOURNAL_STREAM` names stderr (systemd.exec(5)), each
//! line is `<N>message` (sd-daemon(3)), so journald files it under its priority and adds the
//! time and `autossh-echo[pid]:` itself. autossh has the same detection (src/setup/journal.rs).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// True when `JOURNAL_STREAM` is stderr's own `device:inode`.
pub fn stderr_is_journal() -> bool {
    let Some(want) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| parse(&v)) else {
        return false;
    };
    let stderr = std::io::stderr();
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| (m.dev(), m.ino()) == want)
}

/// `"<st_dev>:<st_ino>"` in decimal.
pub fn parse(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// `<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace.
pub fn prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

/// `<N>message` lines on stderr.
struct JournalLogger;

impl Log for JournalLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{}{}\n", prefix(record.level()), record.args());
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the journal logger at `level`.
pub fn init(level: LevelFilter) {
    static LOGGER: JournalLogger = JournalLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dev_colon_inode() {
        assert_eq!(parse("64769:1234567"), Some((64769, 1234567)));
        assert_eq!(parse("64769"), None);
        assert_eq!(parse("a:b"), None);
    }

    #[test]
    fn prefixes_follow_sd_daemon() {
        assert_eq!(prefix(Level::Error), "<3>");
        assert_eq!(prefix(Level::Warn), "<4>");
        assert_eq!(prefix(Level::Info), "<6>");
        assert_eq!(prefix(Level::Trace), "<7>");
    }
}

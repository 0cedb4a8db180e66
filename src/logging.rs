//! Log lines in autossh 1.4g's format, to stderr, a log file or syslog.
//!
//! A small `log::Log` of our own rather than simplelog: the file format must be exactly
//! 1.4g's (`YYYY/MM/DD HH:MM:SS autossh[pid]: msg`) so existing log parsers keep working,
//! and the sink must switch to syslog after `-f` without re-installing the logger.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Where lines go.
pub enum Sink {
    Stderr,
    File(File),
    Syslog(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>),
    /// Nowhere (syslog could not be opened in the background).
    Discard,
}

struct Logger {
    sink: Mutex<Sink>,
    /// AUTOSSH_DEBUG: copy every line to stderr as well.
    copy_to_stderr: bool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Maps a syslog level (0-7) to the `log` crate's filter.
pub fn level_filter(syslog_level: u8) -> LevelFilter {
    match syslog_level {
        0..=3 => LevelFilter::Error,
        4 => LevelFilter::Warn,
        5 | 6 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

/// Installs the logger. `logfile` is opened for appending (an error if it cannot be).
pub fn init(syslog_level: u8, debug: bool, logfile: Option<&Path>) -> std::io::Result<()> {
    let sink = match logfile {
        Some(p) => Sink::File(OpenOptions::new().create(true).append(true).open(p)?),
        None => Sink::Stderr,
    };
    let level = if debug {
        LevelFilter::Debug
    } else {
        level_filter(syslog_level)
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(sink),
        copy_to_stderr: debug,
    });
    // A second init (tests) keeps the first logger.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok(())
}

/// After `-f` without a log file: send lines to syslog (ident `autossh`, with pid).
pub fn switch_to_syslog() {
    let Some(logger) = LOGGER.get() else { return };
    let mut sink = logger.sink.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*sink, Sink::Stderr) {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_USER,
            hostname: None,
            process: "autossh".into(),
            pid: std::process::id(),
        };
        *sink = match syslog::unix(formatter) {
            Ok(l) => Sink::Syslog(l),
            Err(_) => Sink::Discard,
        };
    }
}

/// `YYYY/MM/DD HH:MM:SS` in local time.
pub fn timestamp() -> String {
    // SAFETY: time(NULL) and localtime_r with valid pointers to locals.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} autossh[{}]: {}\n",
            timestamp(),
            std::process::id(),
            record.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
                return;
            }
            Sink::File(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            Sink::Syslog(l) => {
                let msg = record.args().to_string();
                let _ = match record.level() {
                    Level::Error => l.err(msg),
                    Level::Warn => l.warning(msg),
                    Level::Info => l.info(msg),
                    Level::Debug | Level::Trace => l.debug(msg),
                };
            }
            Sink::Discard => {}
        }
        if self.copy_to_stderr {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_syslog() {
        assert_eq!(level_filter(3), LevelFilter::Error);
        assert_eq!(level_filter(4), LevelFilter::Warn);
        assert_eq!(level_filter(6), LevelFilter::Info);
        assert_eq!(level_filter(7), LevelFilter::Debug);
    }

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[4..5], "/");
        assert_eq!(&t[10..11], " ");
    }
}

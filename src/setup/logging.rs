//! Log lines in autossh 1.4g's format, to stderr, a log file or syslog; under systemd, stderr
//! lines carry journald's `<N>` priority instead of our timestamp and ident.
//!
//! A small `log::Log` of our own rather than simplelog: the file format must be exactly
//! 1.4g's (`YYYY/MM/DD HH:MM:SS autossh[pid]: msg`) so existing log parsers keep working,
//! and the sink must switch to syslog after `-f` without re-installing the logger. Syslog
//! is a datagram to /dev/log in RFC 3164 form, as libc's `syslog(3)` sends it: no crate
//! (and its date library) for ten lines.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Where lines go.
pub enum Sink {
    Stderr,
    File(File),
    Syslog(std::os::unix::net::UnixDatagram),
    /// macOS: syslog(3), which files lines in the unified log (`log show`).
    #[cfg(target_vendor = "apple")]
    System,
    /// Nowhere (syslog could not be opened in the background).
    Discard,
}

struct Logger {
    sink: Mutex<Sink>,
    /// AUTOSSH_DEBUG: copy every line to stderr as well.
    copy_to_stderr: bool,
    /// stderr is systemd's journal stream ([`crate::setup::journal`]): `<N>msg` lines there.
    journal: bool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

thread_local! {
    /// The tunnel being worked on (many tunnels): its name starts each line.
    static TUNNEL: std::cell::RefCell<Option<std::rc::Rc<str>>> = const { std::cell::RefCell::new(None) };
}

/// While the guard lives, lines start with `name: ` (the event loop sets it around the
/// work it does for one of many tunnels).
pub struct TunnelContext(Option<std::rc::Rc<str>>);

/// Names the tunnel of the lines logged until the guard is dropped (`None`: no prefix).
pub fn tunnel_context(name: Option<&std::rc::Rc<str>>) -> TunnelContext {
    TunnelContext(TUNNEL.with(|t| t.replace(name.cloned())))
}

/// The tunnel named for the lines logged now, to carry into a helper thread.
pub fn current_tunnel() -> Option<String> {
    TUNNEL.with(|t| t.borrow().as_ref().map(|n| n.to_string()))
}

impl Drop for TunnelContext {
    fn drop(&mut self) {
        let previous = self.0.take();
        TUNNEL.with(|t| *t.borrow_mut() = previous);
    }
}

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
        // A launchd job's stderr goes nowhere: its lines go to the system log.
        None if crate::shell::platform::unix::launched_by_launchd() => syslog_sink(),
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
        journal: crate::setup::journal::stderr_is_journal(),
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
        *sink = syslog_sink();
    }
}

/// The system's log: syslog(3) on macOS, else a datagram socket to syslog's (nowhere when it
/// cannot be reached).
fn syslog_sink() -> Sink {
    #[cfg(target_vendor = "apple")]
    {
        crate::shell::platform::unix::open_system_log();
        Sink::System
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        let socket = std::os::unix::net::UnixDatagram::unbound().and_then(|s| {
            s.connect(crate::shell::platform::unix::SYSLOG_SOCKET)
                .map(|_| s)
        });
        match socket {
            Ok(s) => Sink::Syslog(s),
            Err(_) => Sink::Discard,
        }
    }
}

/// A level's syslog severity.
fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Local time now.
fn local_now() -> libc::tm {
    // SAFETY: time(NULL) and localtime_r with valid pointers to locals.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

/// `YYYY/MM/DD HH:MM:SS` in local time.
pub fn timestamp() -> String {
    let tm = local_now();
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

/// `<PRI>Mmm dd HH:MM:SS autossh[pid]: msg`, facility user (RFC 3164, as syslog(3)).
fn syslog_line(level: Level, msg: &std::fmt::Arguments) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tm = local_now();
    format!(
        "<{}>{} {:2} {:02}:{:02}:{:02} autossh[{}]: {msg}",
        8 + severity(level),
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        std::process::id()
    )
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tunnel = TUNNEL.with(|t| t.borrow().clone());
        let text = match &tunnel {
            Some(name) => format!("{name}: {}", record.args()),
            None => record.args().to_string(),
        };
        let line = format!(
            "{} autossh[{}]: {}\n",
            timestamp(),
            std::process::id(),
            text
        );
        // journald adds its own time and `autossh[pid]:`; the message text stays as is.
        let stderr_line = if self.journal {
            format!(
                "{}{}\n",
                crate::setup::journal::prefix(record.level()),
                text
            )
        } else {
            line.clone()
        };
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(stderr_line.as_bytes());
                return;
            }
            Sink::File(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            Sink::Syslog(sock) => {
                let _ = sock.send(syslog_line(record.level(), &format_args!("{text}")).as_bytes());
            }
            #[cfg(target_vendor = "apple")]
            Sink::System => {
                crate::shell::platform::unix::system_log(severity(record.level()), &text)
            }
            Sink::Discard => {}
        }
        if self.copy_to_stderr {
            let _ = std::io::stderr().write_all(stderr_line.as_bytes());
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
    fn syslog_lines_are_rfc3164() {
        let line = syslog_line(Level::Warn, &format_args!("hello"));
        assert!(line.starts_with("<12>"), "{line}");
        assert!(
            line.ends_with(&format!(" autossh[{}]: hello", std::process::id())),
            "{line}"
        );
    }

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[4..5], "/");
        assert_eq!(&t[10..11], " ");
    }
}

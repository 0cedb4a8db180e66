//! The open-files limit: raised to the hard limit at start, and the connection maximum derived
//! from it (or an explicit `--max-connections` capped by it).

use log::{info, warn};
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept back from the limit for everything that is not a client connection:
/// stdin, stdout and stderr, the poll, the signal pipe, a report file being rewritten (the
/// temporary file and its directory), the log socket, and the descriptor `accept` needs to take
/// a connection over the maximum and close it. They come to about ten; 64 leaves room for
/// whatever a library opens behind our back. Running out would make accepts fail with EMFILE
/// (clients left waiting in the queue) instead of refusing the extra ones cleanly. The listeners
/// (up to 64) are counted on top of this.
pub const RESERVE: u64 = 64;

/// The derived maximum is never below this, however low the limit: a server that can hold
/// nobody is no use (accepts beyond the limit then fail and are retried).
pub const FLOOR: usize = 16;

/// Nor above this (the largest explicit `--max-connections`), e.g. with an unlimited soft limit.
pub const CEILING: usize = 1_000_000;

/// The open-files limit in force after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The soft limit: what counts.
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before, when [`raise`] changed it.
    pub raised_from: Option<u64>,
}

/// Raises the soft open-files limit to the hard one (to `fs.nr_open` when the hard limit is
/// unlimited). `Err` says why it could not be read or raised; the second element is then the
/// limit that stays in force, if it could be read.
pub fn raise() -> Result<Limit, (String, Option<Limit>)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(s, h)| (from_rlim(s), from_rlim(h)))
        .map_err(|e| (format!("cannot read the open-files limit: {e}"), None))?;
    let infinity = from_rlim(RLIM_INFINITY);
    let unchanged = Limit {
        soft,
        hard,
        raised_from: None,
    };
    let target = if hard == infinity {
        nr_open().unwrap_or(soft)
    } else {
        hard
    };
    if soft != infinity && soft < target {
        // systemd units may forbid setrlimit (SystemCallFilter=~@resources): keep the soft limit.
        setrlimit(Resource::RLIMIT_NOFILE, to_rlim(target), to_rlim(hard)).map_err(|e| {
            (
                format!("cannot raise the open-files limit from {soft} to {target}: {e}"),
                Some(unchanged),
            )
        })?;
        return Ok(Limit {
            soft: target,
            hard,
            raised_from: Some(soft),
        });
    }
    Ok(unchanged)
}

/// `rlim_t` is u64 on Linux and macOS, i64 on FreeBSD (its RLIM_INFINITY is i64::MAX).
#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn from_rlim(v: nix::libc::rlim_t) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn to_rlim(v: u64) -> nix::libc::rlim_t {
    nix::libc::rlim_t::try_from(v).unwrap_or(nix::libc::rlim_t::MAX)
}

/// The kernel's ceiling for any open-files limit.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many connections a soft limit of `soft` allows next to `listeners` listeners.
pub fn allowed(soft: u64, listeners: usize) -> usize {
    let room = soft.saturating_sub(RESERVE + listeners as u64);
    usize::try_from(room)
        .unwrap_or(CEILING)
        .clamp(FLOOR, CEILING)
}

/// The maximum the server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maximum {
    pub connections: usize,
    /// The explicit `--max-connections` that was lowered to `connections`.
    pub capped_from: Option<usize>,
}

/// `--max-connections` if given and the limit allows it; else what the limit allows.
pub fn maximum(explicit: Option<usize>, soft: u64, listeners: usize) -> Maximum {
    let allowed = allowed(soft, listeners);
    match explicit {
        Some(n) if n > allowed => Maximum {
            connections: allowed,
            capped_from: Some(n),
        },
        Some(n) => Maximum {
            connections: n,
            capped_from: None,
        },
        None => Maximum {
            connections: allowed,
            capped_from: None,
        },
    }
}

/// The connection maximum when the open-files limit cannot even be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;

/// Raises the open-files limit, works out the connection maximum from it, and says so once.
pub fn connection_maximum(explicit: Option<usize>, listeners: usize) -> usize {
    let limit = raise().map(Some).unwrap_or_else(|(why, kept)| {
        warn!("{why}");
        kept
    });
    let Some(limit) = limit else {
        let max = explicit.unwrap_or(FALLBACK_MAX_CONNECTIONS);
        info!("open-files limit unknown; up to {max} connections");
        return max;
    };
    let max = maximum(explicit, limit.soft, listeners);
    let raised = match limit.raised_from {
        Some(before) => format!(" (raised from {before})"),
        None => String::new(),
    };
    let how = match explicit {
        Some(_) if max.capped_from.is_none() => "--max-connections".to_owned(),
        _ => format!(
            "derived from the open-files limit less {} for other files",
            RESERVE + listeners as u64
        ),
    };
    info!(
        "open-files limit {}{raised}, hard limit {}: up to {} connections ({how})",
        limit.soft, limit.hard, max.connections
    );
    if let Some(asked) = max.capped_from {
        warn!(
            "--max-connections {asked} capped to {}: the open-files limit {} allows no more \
             (raise it, e.g. LimitNOFILE= or ulimit -Hn)",
            max.connections, limit.soft
        );
    }
    let needed = max.connections as u64 + RESERVE + listeners as u64;
    if limit.soft < needed {
        warn!(
            "open-files limit {} is too low for {} connections: accepts will fail before that",
            limit.soft, max.connections
        );
    }
    max.connections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_limit_less_the_reserve_and_listeners() {
        assert_eq!(allowed(12_000, 1), 12_000 - 64 - 1);
        assert_eq!(allowed(65_536, 2), 65_536 - 64 - 2);
        assert_eq!(allowed(1024, 1), 1024 - 65);
    }

    #[test]
    fn floor_and_ceiling() {
        assert_eq!(allowed(20, 1), FLOOR);
        assert_eq!(allowed(0, 64), FLOOR);
        assert_eq!(allowed(RLIM_INFINITY, 1), CEILING);
        assert_eq!(allowed(u64::MAX - 1, 1), CEILING);
    }

    #[test]
    fn explicit_wins_below_the_limit_and_is_capped_above() {
        let m = maximum(Some(3), 1024, 1);
        assert_eq!((m.connections, m.capped_from), (3, None));
        let m = maximum(Some(5000), 1024, 1);
        assert_eq!((m.connections, m.capped_from), (1024 - 65, Some(5000)));
        let m = maximum(None, 1024, 1);
        assert_eq!((m.connections, m.capped_from), (1024 - 65, None));
    }
}

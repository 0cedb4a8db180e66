//! The harness of the autossh integration tests, a library of the workspace (dev-dependency of
//! `autossh`, and of `autossh-echo` for [`json`]): each test binary uses the part it needs, so
//! nothing here is dead code in one of them.
//!
//! Rules this harness follows (and tests built on it should too):
//! - every test works in its own directory ([`TestDir`]), named after the test;
//! - waiting is bounded polling ([`wait_until`]), never a fixed sleep;
//! - every loop is bounded in time and in count;
//! - only loopback addresses (127.0.0.1) are used;
//! - nothing is left running: [`Proc`], [`Sshd`], [`Service`] and [`FakeSsh`]
//!   kill what they started when dropped, and [`TestDir`] kills any process
//!   whose command line still mentions its path before removing it;
//! - failure messages carry the command, its environment, status and output
//!   ([`Proc::describe`], [`Sshd::log`], [`FakeSsh::describe`]).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub use nix::sys::signal::Signal;

mod dirs;
mod fake_ssh;
pub mod json;
mod ports;
mod procfs;
mod procs;
mod service;
mod sshd;
mod wait;

pub use dirs::*;
pub use fake_ssh::*;
pub use ports::*;
pub use procfs::*;
pub use procs::*;
pub use service::*;
pub use sshd::*;
pub use wait::*;

/// The path of the autossh binary built by cargo for the calling test. A macro, not a function:
/// cargo sets `CARGO_BIN_EXE_autossh` only while it compiles the autossh crate's own integration
/// tests, so `env!` must expand there, not in this library.
#[macro_export]
macro_rules! autossh_bin {
    () => {
        ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_autossh"))
    };
}

/// A small process-wide sequence number (unique names, port seeds).
fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// Quotes `s` for display as one shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

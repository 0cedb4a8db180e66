//! Shared harness for the autossh integration tests.
//!
//! Each integration test file does `mod util;` and uses the part it needs.
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
#![allow(dead_code, unused_imports)]

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every ~20 ms until it returns true (→ `true`) or `timeout`
/// has passed (→ `false`). `cond` is always called at least once, and once
/// more at the deadline.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_every(timeout, POLL, cond)
}

/// [`wait_until`] polling at `every` (for conditions that cost a process each, such as a
/// command to autossh, which 20 ms would spin).
pub fn wait_every(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// The path of the autossh binary built by cargo for these tests.
pub fn autossh_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autossh"))
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

mod dirs;
mod fake_ssh;
mod ports;
mod procfs;
mod procs;
mod service;
mod sshd;

pub use dirs::*;
pub use fake_ssh::*;
pub use ports::*;
pub use procfs::*;
pub use procs::*;
pub use service::*;
pub use sshd::*;

//! Test hosts in network namespaces, for the fault-injection tests (tests/faults/) and tests/roaming.rs.
//!
//! A test file does `mod netns;` (this module uses the `test_support` harness).
//!
//! Topology of one [`TestNet`]: two namespaces created by the test itself,
//! `as-<pid>-<n>-srv` and `as-<pid>-<n>-cli`, joined by a veth pair created
//! directly inside them (it never exists in the root namespace), with
//! 10.203.<n>.1/30 on the server end and 10.203.<n>.2/30 on the client end,
//! and loopback up in both. No traffic leaves these two namespaces.
//!
//! Faults ([`Fault`]) are applied inside the namespaces only:
//! - black hole: iptables DROP in the client namespace (both directions);
//! - random loss: iptables `statistic` DROP on each end's egress (netem is not
//!   needed, and not every kernel has it);
//! - latency: an NFQUEUE rule in the client namespace and a userspace
//!   [`Delayer`] holding each outgoing packet for the delay (again no netem);
//! - rate limit: a `tbf` qdisc on each veth end.
//!
//! Everything is removed on drop, also while panicking: [`Fault`] removes its
//! rules, qdiscs and delayer; [`TestNet`] kills every process in its
//! namespaces and deletes the veth and the namespaces. Namespaces left behind
//! by a test process that died (SIGKILL) are removed by the next run
//! ([`remove_stale_namespaces`]).
//!
//! Every wait is bounded polling, every loop bounded in time and count, and
//! every external command runs with a time limit ([`run_bounded`]).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use test_support::{
    autossh_bin, current_user, descendants_of, keygen, process_exists, signal_pid,
    sshd_config_text, wait_until, Cmd, Proc, Signal, TestDir,
};

/// Longest any helper thread of this module runs, whatever happens.
const MAX_THREAD_LIFE: Duration = Duration::from_secs(600);

mod check;
mod commands;
mod delayer;
mod echo;
mod enter;
mod faults;
mod hosts;
mod rig;
mod sshd;

pub use check::*;
pub use commands::*;
pub use delayer::*;
pub use echo::*;
pub use enter::*;
pub use faults::*;
pub use hosts::*;
#[allow(unused_imports)] // not every test crate uses the shared rig
pub use rig::*;
pub use sshd::*;

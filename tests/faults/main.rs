//! Fault injection: autossh against a real sshd on a test host in a network
//! namespace, through black holes, server outages, loss, latency and a
//! saturated slow link; plus restart churn (leaks) and SIGKILL of autossh.
//!
//! The namespace scenarios (see tests/netns/ for the topology) each wait out a
//! fault of up to 60 s; they are plain tests, run side by side as libtest's
//! `--test-threads` allows (each has namespaces of its own).
//!
//! Measured numbers are printed on stderr (`--nocapture` to see them).
//! Where network namespaces cannot be created (not root), the namespace tests
//! print "skipped: ..." and pass.

#[path = "../netns/mod.rs"]
mod netns;

use netns::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::*;

/// The service the tunnel leads to (127.0.0.1 in the server namespace).
const SERVICE_PORT: u16 = 7007;
/// The tunnel's local end (127.0.0.1 in the client namespace).
const TUNNEL_PORT: u16 = 8022;
/// Loop-mode monitor port (N and N+1, in the namespaces).
const MONITOR_PORT: u16 = 20000;
/// The log line of every ssh start ("restarting ssh" lines do not match).
const STARTING: &str = "starting ssh (count";
/// After the server is reachable again the tunnel must work within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(2);

mod black_hole;
mod churn;
mod loss_latency;
mod notes;
mod rig;
mod saturated;
mod server_down;
mod sigkill;

#[allow(unused_imports)]
use {
    black_hole::*, churn::*, loss_latency::*, notes::*, rig::*, saturated::*, server_down::*,
    sigkill::*,
};

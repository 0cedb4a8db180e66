//! The monitor against garbage, through the real binary and a real private sshd.
//!
//! Echo mode (`-M N:E`) with a hostile "echo service" on E: garbage, a partial echo, an echo
//! later than the net timeout, the echo with extra bytes, the echo of another sequence
//! number. None of these may count as a working tunnel, and autossh must keep going.
//!
//! Loop mode (`-M N`): while the tunnel is up, any local process can connect to the monitor
//! listener on N+1. Garbage, random bytes, fake probe lines, a thousand quick connections or
//! a mebibyte there must not crash autossh nor make it restart ssh, and the tunnel stays up.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use test_support::*;

/// Longest wait for anything that should happen (a tunnel coming up, restarts).
const LONG: Duration = Duration::from_secs(40);
/// No hostile thread runs longer than this, whatever happens.
const MAX_LIFE: Duration = Duration::from_secs(120);

/// xorshift64*: random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

mod echo_mode;
mod hostile_service;
mod loop_library;
mod loop_mode;

#[allow(unused_imports)]
use {echo_mode::*, hostile_service::*, loop_library::*, loop_mode::*};

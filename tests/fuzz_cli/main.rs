//! Bad input, fuzzed: arbitrary command lines and environment values thrown at the command
//! line splitter, the settings and the ssh argv builder (property tests), and a few through
//! the real binary with a scripted ssh.
//!
//! Properties:
//! - nothing panics, whatever the bytes (non-UTF-8, empty, `-`, `--`, `-M` variants);
//! - every rejection is one line and names the variable or option at fault;
//! - ssh options, the destination and the remote command reach ssh exactly as given, in
//!   order, with only autossh's own `-M` and `-f` taken out (and recorded).

use autossh::setup::cli::{self, Cli, MonitorSpec};
use autossh::setup::config::{self, Settings};
use autossh::setup::ssh_argv::{self, Forwards};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, FileFailurePersistence};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;
use test_support::*;

/// ssh's options that take a value (OpenSSH's getopt string).
const SSH_VALUE_OPTS: &str = "bceilmopBDEFIJLOPQRSWw";
/// ssh's flags, less the three letters autossh keeps for itself (`-f`, `-M`, `-V`).
const SSH_FLAGS: &str = "1246agknqstvxACGKNTXYy";

/// Every variable autossh validates.
const VARS: [&str; 11] = [
    "AUTOSSH_POLL",
    "AUTOSSH_FIRST_POLL",
    "AUTOSSH_GATETIME",
    "AUTOSSH_MAXSTART",
    "AUTOSSH_MAXLIFETIME",
    "AUTOSSH_MESSAGE",
    "AUTOSSH_PORT",
    "AUTOSSH_LOGLEVEL",
    "AUTOSSH_PATH",
    "AUTOSSH_SERVERALIVE_INTERVAL",
    "AUTOSSH_SERVERALIVE_COUNT_MAX",
];

fn cfg(cases: u32) -> PtConfig {
    PtConfig {
        cases,
        // No regression files next to the sources: a failure prints its minimal case.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..PtConfig::default()
    }
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

mod binary;
mod generators;
mod rejections;
mod round_trip;

#[allow(unused_imports)]
use {binary::*, generators::*, rejections::*, round_trip::*};

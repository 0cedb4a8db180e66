//! `AUTOSSH_HTTP` and `AUTOSSH_HOOK` (issue 19) end to end, against a real private sshd on
//! loopback:
//!
//! - endpoint: `/healthz` follows a tunnel down and back, per tunnel too; `/metrics` is the
//!   metrics file's series and passes `promtool check metrics`; `/status` is `autossh status
//!   --json`; `autossh health [NAME]` over HTTP and over the control socket;
//! - hostile: slowloris connections and 10,000 garbage requests while a tunnel is watched
//!   stall neither the loop, nor a health probe, nor the tunnel's own probes;
//! - hooks: the hook hears each change with its environment; one that hangs is killed after
//!   10 s and holds nothing up; nothing is left running;
//! - bad_input: a bad address, a port in use, a hook that cannot run: one line, exit 1,
//!   before any ssh; a non-loopback address is a warning.
//!
//! Waits are bounded polls; failure messages carry autossh's log and the sshd log.

#[path = "../tunnels/conn.rs"]
#[allow(dead_code)]
mod conn;
#[path = "../tunnels/rig.rs"]
#[allow(dead_code)]
mod rig;

mod bad_input;
mod endpoint;
mod hooks;
mod hostile;
mod single;
mod web;

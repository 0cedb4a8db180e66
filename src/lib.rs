//! autossh: keeps SSH tunnels alive by supervising an OpenSSH client and probing its tunnel.
//!
//! - [`core`]: the rules, with no I/O: the supervisor (a state machine fed `(event, now)`
//!   that returns actions), its deadlines, backoff, ssh's exit table, the probe line and RTT,
//!   the reading of ssh's stderr. Unit-tested with a fake clock.
//! - [`shell`]: the I/O that performs the core's actions: the mio event loop, the monitor's
//!   sockets, ssh's process and TCP connection, reachability checks, network changes, status.
//! - [`setup`]: from the command line and environment to a started process: options,
//!   settings, ssh's argv, daemon, pid file, logging.
//! - [`error`]: errors and their exit codes.

pub mod core;
pub mod error;
pub mod setup;
pub mod shell;

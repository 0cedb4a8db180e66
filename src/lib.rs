//! autossh: keeps SSH tunnels alive by supervising an OpenSSH client and probing its tunnel.

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod exit_rules;
pub mod probe;
pub mod ssh_opts;
pub mod supervisor;
pub mod timers;

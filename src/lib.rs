//! autossh: keeps SSH tunnels alive by supervising an OpenSSH client and probing its tunnel.

pub mod backoff;
pub mod cli;
pub mod cli_doc;
pub mod clock;
pub mod complaint;
pub mod config;
pub mod daemon;
pub mod error;
pub mod exit_rules;
pub mod logging;
pub mod monitor;
pub mod path;
pub mod pidfile;
pub mod probe;
pub mod probe_conn;
pub mod reach;
pub mod report;
pub mod run;
pub mod sd_notify;
pub mod ssh_argv;
pub mod ssh_g;
pub mod ssh_opts;
pub mod ssh_process;
pub mod supervisor;
pub mod timers;
pub mod usage;

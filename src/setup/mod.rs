//! From the command line and the environment to a started process.

pub mod cli;
pub mod cli_doc;
pub mod config;
pub mod daemon;
pub mod endpoints;
pub mod forwards;
pub mod held;
pub mod journal;
pub mod logging;
pub mod pidfile;
pub mod ssh_argv;
pub mod ssh_opts;
pub mod tunnels_file;
pub mod usage;

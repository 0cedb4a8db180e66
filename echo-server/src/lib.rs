//! autossh-echo: the echo server autossh monitors probe through their tunnels, with a table of
//! who probes it and a report of who went silent.

pub mod cli;
pub mod clients;
pub mod conn;
pub mod error;
pub mod fdlimit;
pub mod idle;
pub mod journal;
pub mod probe;
pub mod report;
pub mod server;

pub use server::run;

//! The I/O around the core: it performs the supervisor's actions and reports what happens.

pub mod control;
pub mod event_loop;
pub mod hooks;
pub mod http;
pub mod hygiene;
pub mod monitor;
pub mod netwatch;
pub mod nonblocking;
pub mod probe_conn;
pub mod reach;
pub mod report;
pub mod sd_notify;
pub mod ssh_g;
pub mod ssh_process;
pub mod transport;
pub mod tunnel;

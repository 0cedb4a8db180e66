//! The I/O around the core: it performs the supervisor's actions and reports what happens.

pub mod agent;
pub mod control;
pub mod event_loop;
pub mod fdlimit;
pub mod hooks;
pub mod hostkey;
pub mod http;
pub mod hygiene;
pub mod janitor;
pub mod monitor;
pub mod netwatch;
pub mod nonblocking;
pub mod platform;
pub mod private_dir;
pub mod probe_conn;
pub mod reach;
pub mod relay;
pub mod report;
pub mod resident;
pub mod sd_notify;
pub mod ssh_g;
pub mod ssh_process;
pub use platform::transport;
pub mod tunnel;

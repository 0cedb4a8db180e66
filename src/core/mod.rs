//! The rules, with no I/O: nothing here opens a socket, starts a process or reads a clock
//! other than through what it is given.

pub mod backoff;
pub mod clock;
pub mod exit_rules;
pub mod handshakes;
pub mod probe;
pub mod ssh_stderr;
pub mod supervisor;
pub mod timers;

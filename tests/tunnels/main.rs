//! `autossh --tunnels FILE` (docs/tunnels.md, issue 12) end to end, against a real private sshd
//! on loopback (never a fake ssh):
//!
//! - file_errors: every bad file exits 1 before anything starts (no ssh, not even `ssh -G`; no
//!   control socket), with one stderr line naming the file, the line and the tunnel;
//! - startup: three tunnels (loop, echo, `-M 0`) carry requests; `status` and `status --json`;
//!   log lines carry the tunnel's name;
//! - reload: SIGHUP and `autossh reload`: unchanged tunnels keep their ssh and an open
//!   connection, changed ones restart, removed ones stop, added ones start, a broken file
//!   changes nothing;
//! - isolation: a tunnel whose key the server refuses fails alone;
//! - control: the socket's mode and owner check, `restart NAME`, one daemon per socket;
//! - shutdown: SIGTERM stops every ssh; a SIGKILLed ssh is reaped, never orphaned.
//!
//! Every test has its own directory and control socket (`<dir>/ctl/ctl.sock`); waits are
//! bounded polls; failure messages carry autossh's log, its status and the sshd log.

mod conn;
mod control;
mod file_errors;
mod fleet;
mod isolation;
mod reload;
mod rig;
mod shutdown;
mod startup;

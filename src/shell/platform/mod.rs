//! The platform seam: every detector that only Linux has, and its counterpart or its explicit
//! absence elsewhere. One family is compiled: `linux` on Linux, `portable` on the BSDs and
//! macOS (and on Linux with the `portable` feature, so its fallbacks run in Linux's tests).
//! What each platform gets is tabled in docs/compatibility.md.
//!
//! Both families export the same names: `FAMILY`, `PARENT_DEATH`, `SPLICE`, `NetWatch` (open, register,
//! drain), `DirWatch` (open, register, names), `parent_death`, `suspended_offset`, `ssh_exiting`, `connection_gone` and the
//! `transport` module (`Transport`, `Look`). `unix` holds what every Unix has but spells
//! differently (peer credentials, a close-on-exec pipe, a look at a child's exit, syslog's
//! socket), chosen by the target alone.

pub mod unix;

#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod linux;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub use linux::*;

#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod portable;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
pub use portable::*;

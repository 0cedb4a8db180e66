//! Linux's detectors: `TCP_INFO` of ssh's own sockets through pidfd_getfd (and /proc's
//! fallback), rtnetlink, the parent-death signal, `CLOCK_BOOTTIME`, `PF_EXITING`, splice(2).

mod dirwatch;
mod rtnetlink;
pub mod transport;

pub use dirwatch::DirWatch;
pub use rtnetlink::NetWatch;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// The family's name, for logs and the status file.
pub const FAMILY: &str = "linux";

/// The kernel ends autossh's children when autossh dies (even by SIGKILL).
pub const PARENT_DEATH: bool = true;

/// The relay moves bytes with splice(2).
pub const SPLICE: bool = true;

/// How long after ssh's end of a relayed socket closes [`ssh_exiting`] can still turn true:
/// never (`PF_EXITING` is set before a process's descriptors are closed).
pub const SSH_EXIT_SETTLES_IN: Duration = Duration::ZERO;

/// Makes the child `cmd` starts get `sig` when autossh dies, even by SIGKILL
/// (`PR_SET_PDEATHSIG`). Linux sends it when the *thread* that started the child ends: start
/// it from a thread that outlives it.
pub fn parent_death(cmd: &mut Command, sig: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // autossh died between fork and prctl: do not outlive it.
            if libc::getppid() != parent {
                return Err(io::Error::other("autossh exited while starting the child"));
            }
            Ok(())
        });
    }
}

/// Time the machine has spent suspended since boot: `CLOCK_BOOTTIME` runs on through a
/// suspend, `CLOCK_MONOTONIC` does not.
pub fn suspended_offset() -> Option<Duration> {
    use nix::time::{clock_gettime, ClockId};
    let read = |id| {
        clock_gettime(id)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .ok()
    };
    Some(read(ClockId::CLOCK_BOOTTIME)?.saturating_sub(read(ClockId::CLOCK_MONOTONIC)?))
}

/// Whether process `pid` is exiting or gone: an end of ssh's socket is then ssh's death,
/// not the server closing its side (`PF_EXITING` in `/proc/PID/stat`, set before the
/// process's descriptors are closed).
pub fn ssh_exiting(pid: u32) -> bool {
    if pid == 0 {
        return true;
    }
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // After the command's closing parenthesis: state, ppid, pgrp, session, tty, tpgid, flags.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let zombie = fields.first().is_some_and(|s| *s == "Z" || *s == "X");
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    zombie || flags & PF_EXITING != 0
}

/// Whether ssh's connection to the server (a duplicate of its socket) has ended: the
/// server's end closed or reset it.
pub fn connection_gone(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    const ESTABLISHED: u8 = 1;
    // SAFETY: tcp_info is plain data; getsockopt fills at most its size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        rc == 0 && info.tcpi_state != ESTABLISHED
    }
}

//! The BSDs' and macOS's detectors, or their explicit absence: a routing socket for network
//! changes, FreeBSD's parent-death signal, macOS's and OpenBSD's suspend-counting clocks,
//! `TCP_INFO` (FreeBSD) and `TCP_CONNECTION_INFO` (macOS) for a socket autossh holds. ssh's own
//! sockets cannot be reached from another process here (no pidfd_getfd): the transport sees
//! nothing and the rules fall back on probes, ServerAlive, reachability checks and, with held
//! forwards, the relay's view of the applications.

mod route;
mod tcp_state;
pub mod transport;

pub use route::NetWatch;
use std::process::Command;

/// No watch of the private directory: a new ssh's sockets are found by its first probes'
/// tries, and its handshake slot is held until its tunnel is proven.
pub struct DirWatch;

impl DirWatch {
    pub fn open(_dir: &std::path::Path) -> std::io::Result<DirWatch> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn register(&self, _r: &mio::Registry, _t: mio::Token) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn names(&self) -> Vec<std::ffi::OsString> {
        Vec::new()
    }
}
use std::time::Duration;

/// The family's name, for logs and the status file.
pub const FAMILY: &str = "portable";

/// Whether the kernel ends autossh's children when autossh dies: FreeBSD's does. Elsewhere
/// the janitor stops the ssh processes noted in the private directory (`janitor::note_ssh`).
pub const PARENT_DEATH: bool = cfg!(target_os = "freebsd");

/// No splice(2): the relay copies through a buffer (read/write).
pub const SPLICE: bool = false;

/// How long after ssh's end of a relayed socket closes [`ssh_exiting`] can still turn true:
/// ssh closes its channels' sockets, then exits, and is seen only as a zombie. The relay
/// waits this long before it takes such an end for the server's half-close.
pub const SSH_EXIT_SETTLES_IN: Duration = Duration::from_millis(50);

/// Makes the child `cmd` starts get `sig` when autossh dies. FreeBSD has a parent-death
/// signal (`procctl(PROC_PDEATHSIG_CTL)`, kept across exec); macOS and OpenBSD have none, so
/// there only a child that would start after autossh is already gone is refused (the janitor
/// stops a noted ssh: `PARENT_DEATH`).
pub fn parent_death(cmd: &mut Command, sig: libc::c_int) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (procctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "freebsd")]
            {
                let mut s = sig;
                let arg = (&mut s as *mut libc::c_int).cast();
                if libc::procctl(libc::P_PID, 0, libc::PROC_PDEATHSIG_CTL, arg) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            #[cfg(not(target_os = "freebsd"))]
            let _ = sig;
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "autossh exited while starting the child",
                ));
            }
            Ok(())
        });
    }
}

/// Time the machine has spent suspended since boot, where two clocks tell it: macOS's
/// `CLOCK_MONOTONIC` counts sleep and `CLOCK_UPTIME_RAW` does not; OpenBSD's `CLOCK_BOOTTIME`
/// does and `CLOCK_UPTIME` does not. No FreeBSD clock counts suspended time (its
/// `CLOCK_BOOTTIME` is an alias): `None`, as on Linux built portable.
pub fn suspended_offset() -> Option<Duration> {
    #[cfg(target_vendor = "apple")]
    let clocks = Some((libc::CLOCK_MONOTONIC, libc::CLOCK_UPTIME_RAW));
    #[cfg(target_os = "openbsd")]
    let clocks = Some((libc::CLOCK_BOOTTIME, libc::CLOCK_UPTIME));
    #[cfg(not(any(target_vendor = "apple", target_os = "openbsd")))]
    let clocks: Option<(libc::clockid_t, libc::clockid_t)> = None;
    let (with_sleep, without) = clocks?;
    Some(read_clock(with_sleep)?.saturating_sub(read_clock(without)?))
}

#[allow(dead_code)] // unused where no pair of clocks tells a suspend
fn read_clock(id: libc::clockid_t) -> Option<Duration> {
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        (libc::clock_gettime(id, &mut ts) == 0)
            .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

/// Whether ssh (a child of autossh) is gone or a zombie: an end of one of its sockets is then
/// its death. No process is seen *while* it exits here (Linux's `PF_EXITING`).
pub fn ssh_exiting(pid: u32) -> bool {
    if pid == 0 {
        return true;
    }
    #[cfg(not(target_os = "openbsd"))]
    {
        crate::shell::platform::unix::peek_pid(pid)
            != crate::shell::platform::unix::ChildExit::Running
    }
    #[cfg(target_os = "openbsd")]
    {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, None) == Err(nix::errno::Errno::ESRCH)
    }
}

/// Whether a TCP connection autossh holds has left `ESTABLISHED` (FreeBSD's `TCP_INFO`,
/// macOS's `TCP_CONNECTION_INFO`; elsewhere it cannot be told: no).
pub fn connection_gone(fd: &std::os::fd::OwnedFd) -> bool {
    tcp_state::established(fd).is_some_and(|e| !e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_running_child_is_not_exiting_and_an_ended_one_is() {
        let mut running = Command::new("sleep").arg("30").spawn().unwrap();
        let mut ended = Command::new("true").spawn().unwrap();
        assert!(!ssh_exiting(running.id()));
        let start = Instant::now();
        while !ssh_exiting(ended.id()) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never seen ending"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(ssh_exiting(0));
        running.kill().unwrap();
        running.wait().unwrap();
        ended.wait().unwrap();
    }

    #[test]
    fn a_child_with_a_parent_death_request_starts() {
        let mut cmd = Command::new("true");
        parent_death(&mut cmd, libc::SIGTERM);
        assert!(cmd.status().unwrap().success());
    }

    #[test]
    fn only_address_route_and_link_messages_count() {
        // rtm_msglen, rtm_version (5 on FreeBSD and macOS), rtm_type.
        let msg = |t: u8| [92u8, 0, 5, t, 0, 0];
        for t in [0x1, 0x2, 0x3, 0xc, 0xd, 0xe] {
            assert!(route::is_change(&msg(t)), "type {t:#x}");
        }
        // RTM_GET (another process's look-up), RTM_MISS, RTM_LOSING: not changes.
        for t in [0x4, 0x7, 0x5] {
            assert!(!route::is_change(&msg(t)), "type {t:#x}");
        }
        assert!(!route::is_change(&[92, 0, 5]));
    }

    #[test]
    fn the_network_watch_opens_where_a_routing_socket_exists() {
        let w = NetWatch::open();
        if cfg!(target_os = "linux") {
            assert_eq!(
                w.err().map(|e| e.kind()),
                Some(std::io::ErrorKind::Unsupported)
            );
        } else {
            let _ = w.expect("PF_ROUTE socket").drain();
        }
    }
}

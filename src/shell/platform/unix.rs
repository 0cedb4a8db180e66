//! What every Unix autossh runs on has, spelled differently on each: the peer's uid on a unix
//! socket, a close-on-exec pipe, a look at a child's exit that leaves it unreaped, syslog's
//! socket. Chosen by the target alone (the `portable` feature changes none of it).

use std::io;
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::process::Child;

/// The effective uid of the process at the other end of a unix stream socket
/// (`SO_PEERCRED` on Linux, `getpeereid` on the BSDs and macOS).
pub fn peer_uid(stream: &impl AsFd) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.uid())
            .map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        nix::unistd::getpeereid(stream)
            .map(|(uid, _)| uid.as_raw())
            .map_err(io::Error::from)
    }
}

/// A pipe whose ends are closed on exec (read end, write end). macOS has no pipe2(2): its
/// flags are set just after (no other thread forks meanwhile where this is used: before `-f`).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_vendor = "apple"))]
    {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
    }
    #[cfg(target_vendor = "apple")]
    {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let (r, w) = nix::unistd::pipe().map_err(io::Error::from)?;
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
        }
        Ok((r, w))
    }
}

/// A child's state, looked at without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Running,
    Ended { success: bool },
}

/// Whether `child` has ended, leaving it unreaped (a zombie) where the platform can
/// (`waitid(WNOWAIT)`), so its process group can still be killed by its id. OpenBSD's libc
/// binding has no `waitid` flags: there it is reaped (`try_wait`), and its group's id stays
/// taken while any member of the group lives.
pub fn peek_exit(child: &mut Child) -> ChildExit {
    #[cfg(not(target_os = "openbsd"))]
    {
        peek_pid(child.id())
    }
    #[cfg(target_os = "openbsd")]
    {
        match child.try_wait() {
            Ok(None) => ChildExit::Running,
            Ok(Some(status)) => ChildExit::Ended {
                success: status.success(),
            },
            Err(_) => ChildExit::Ended { success: false },
        }
    }
}

/// [`peek_exit`] by pid, for a child of this process: `waitid(WEXITED | WNOHANG | WNOWAIT)`.
#[cfg(not(target_os = "openbsd"))]
pub fn peek_pid(pid: u32) -> ChildExit {
    // SAFETY: siginfo_t is plain data that waitid fills; read only when it names a child.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let rc = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags);
        if rc != 0 {
            // EINTR: look again next time; ECHILD: reaped already, it ended.
            let errno = io::Error::last_os_error().raw_os_error();
            return if errno == Some(libc::EINTR) {
                ChildExit::Running
            } else {
                ChildExit::Ended { success: false }
            };
        }
        if info.si_pid() == 0 {
            return ChildExit::Running;
        }
        // CLD_EXITED: 1 in Linux's, FreeBSD's and macOS's <signal.h> (not in every binding).
        const CLD_EXITED: libc::c_int = 1;
        let success = info.si_code == CLD_EXITED && info.si_status() == 0;
        ChildExit::Ended { success }
    }
}

/// The directory of runtime files (sockets, pid files).
pub const RUN_DIR: &str = if cfg!(target_os = "linux") {
    "/run"
} else {
    "/var/run"
};

/// Where syslog(3) listens for datagrams.
pub const SYSLOG_SOCKET: &str = if cfg!(target_vendor = "apple") {
    "/var/run/syslog"
} else if cfg!(target_os = "freebsd") {
    "/var/run/log"
} else {
    "/dev/log"
};

/// Whether launchd started this process as a job: it names the job in `XPC_SERVICE_NAME`
/// (a shell in Terminal has `0` there) and stderr is not a terminal. macOS only.
pub fn launched_by_launchd() -> bool {
    let job = std::env::var("XPC_SERVICE_NAME").ok();
    // SAFETY: isatty only reads the descriptor's state.
    let terminal = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
    cfg!(target_vendor = "apple") && is_launchd_job(job.as_deref(), terminal)
}

/// [`launched_by_launchd`]'s rule, apart from the platform.
pub fn is_launchd_job(xpc_service_name: Option<&str>, stderr_terminal: bool) -> bool {
    !stderr_terminal && xpc_service_name.is_some_and(|n| !n.is_empty() && n != "0")
}

/// openlog(3): ident `autossh`, with the pid, facility user.
#[cfg(target_vendor = "apple")]
pub fn open_system_log() {
    // SAFETY: the ident is a static C string, as openlog keeps the pointer.
    unsafe { libc::openlog(c"autossh".as_ptr(), libc::LOG_PID, libc::LOG_USER) }
}

/// One line to syslog(3) at `severity` (0-7); a NUL in it ends the line there.
#[cfg(target_vendor = "apple")]
pub fn system_log(severity: u8, text: &str) {
    let text = text.split('\0').next().unwrap_or_default();
    let Ok(line) = std::ffi::CString::new(text) else {
        return;
    };
    // SAFETY: a constant "%s" format with one C string argument.
    unsafe { libc::syslog(libc::c_int::from(severity), c"%s".as_ptr(), line.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launchd_job_is_told_from_a_terminal_shell() {
        assert!(is_launchd_job(Some("org.autossh-rs.autossh"), false));
        assert!(!is_launchd_job(Some("0"), false));
        assert!(!is_launchd_job(Some(""), false));
        assert!(!is_launchd_job(None, false));
        assert!(!is_launchd_job(Some("org.autossh-rs.autossh"), true));
    }

    #[test]
    fn a_pipe_is_closed_on_exec_and_a_child_is_seen_ending_unreaped() {
        let (r, w) = pipe_cloexec().unwrap();
        for fd in [&r, &w] {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0);
        }
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while peek_exit(&mut child) == ChildExit::Running {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(peek_exit(&mut child), ChildExit::Ended { success: false });
        // Still unreaped: its status is there for wait.
        assert_eq!(child.wait().unwrap().code(), Some(3));
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_user() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), nix::unistd::geteuid().as_raw());
    }
}

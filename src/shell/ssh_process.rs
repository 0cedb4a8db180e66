//! The running ssh child: spawning it, signalling it, reaping it, and reading its stderr.

use crate::core::exit_rules::SshEnd;
use crate::shell::nonblocking::{read_available, ReadEnd};
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Command, Stdio};

/// A started ssh.
pub struct SshProcess {
    child: Child,
    stderr: Option<ChildStderr>,
    partial: Vec<u8>,
}

/// Longest stderr line kept whole; longer ones are cut.
const MAX_LINE: usize = 4096;

impl SshProcess {
    /// Starts `program argv...`. In the background ssh gets /dev/null for stdin and stdout.
    /// Its stderr is always a pipe we read. On Linux it dies with autossh (parent-death
    /// signal), even if autossh is killed with SIGKILL.
    pub fn spawn(program: &OsString, argv: &[OsString], background: bool) -> io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(argv).stderr(Stdio::piped());
        if background {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        die_with_autossh(&mut cmd, libc::SIGTERM);
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take();
        if let Some(e) = &stderr {
            set_nonblocking(e.as_raw_fd())?;
        }
        Ok(SshProcess {
            child,
            stderr,
            partial: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr pipe's descriptor, for registration with the poll.
    pub fn stderr_fd(&self) -> Option<std::os::fd::RawFd> {
        self.stderr.as_ref().map(|e| e.as_raw_fd())
    }

    /// Sends a signal; an already-exited ssh is not an error.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }

    /// Reaps ssh if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<SshEnd>> {
        Ok(self.child.try_wait()?.map(|st| match st.code() {
            Some(c) => SshEnd::Exited(c),
            None => SshEnd::Signaled(st.signal().unwrap_or(0)),
        }))
    }

    /// Reads what stderr has now; returns complete lines. At EOF (`eof == true` after
    /// the call), a trailing partial line is returned too and the pipe is closed.
    pub fn read_stderr(&mut self) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let Some(pipe) = self.stderr.as_mut() else {
            return (lines, true);
        };
        let eof = loop {
            // In bounded gulps, so that a flood without newlines cannot grow the buffer.
            let limit = self.partial.len() + 64 * 1024;
            let end = read_available(pipe, &mut self.partial, limit);
            take_lines(&mut self.partial, &mut lines);
            if end != ReadEnd::Full {
                break end == ReadEnd::Closed;
            }
        };
        take_lines(&mut self.partial, &mut lines);
        if eof {
            if !self.partial.is_empty() {
                lines.push(clean(&std::mem::take(&mut self.partial)));
            }
            self.stderr = None;
        }
        (lines, eof)
    }
}

fn take_lines(partial: &mut Vec<u8>, lines: &mut Vec<String>) {
    while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        lines.push(clean(&line[..nl]));
    }
    if partial.len() > MAX_LINE {
        lines.push(clean(&std::mem::take(partial)));
    }
}

fn clean(line: &[u8]) -> String {
    let line = &line[..line.len().min(MAX_LINE)];
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string()
}

/// Makes the child `cmd` starts get `sig` when autossh dies (a parent-death signal), even by
/// SIGKILL, where the platform has one (`platform::parent_death`). Linux sends it when the
/// *thread* that started the child ends: start it from a thread that outlives it.
pub fn die_with_autossh(cmd: &mut Command, sig: libc::c_int) {
    crate::shell::platform::parent_death(cmd, sig);
}

pub fn set_nonblocking(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_cleaned() {
        let mut p = b"a\r\nb\nc".to_vec();
        let mut l = Vec::new();
        take_lines(&mut p, &mut l);
        assert_eq!(l, ["a", "b"]);
        assert_eq!(p, b"c");
    }
}

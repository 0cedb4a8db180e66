//! `-f`: go to the background. The parent waits until the child has started ssh (or failed
//! to) and exits with that outcome, so a script calling `autossh -f` learns of failures.

use crate::error::{runtime, Result};
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// Held by the background child: tells the waiting parent how the start went.
pub struct Notifier {
    pipe: Option<File>,
}

impl Notifier {
    /// ssh is started: the parent exits 0.
    pub fn started(&mut self) {
        self.send("ok\n");
    }

    /// Starting failed: the parent prints `why` and exits 1.
    pub fn failed(&mut self, why: &str) {
        self.send(&format!("error: {why}\n"));
    }

    fn send(&mut self, msg: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(msg.as_bytes());
        }
    }
}

/// Forks. Returns in the child (detached, cwd `/`, standard streams on /dev/null); the
/// parent never returns. Must be called before any thread is started.
pub fn detach() -> Result<Notifier> {
    // Close-on-exec: ssh must not inherit the write end, or the parent never sees EOF.
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| runtime(format!("pipe: {e}")))?;
    // SAFETY: autossh is single-threaded here (no threads have been spawned).
    match unsafe { fork() }.map_err(|e| runtime(format!("run as daemon failed: {e}")))? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            std::process::exit(wait_for_child(read_end));
        }
        ForkResult::Child => {
            drop(read_end);
            setsid().map_err(|e| runtime(format!("setsid: {e}")))?;
            chdir("/").map_err(|e| runtime(format!("chdir /: {e}")))?;
            let null = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| runtime(format!("/dev/null: {e}")))?;
            let _ = dup2_stdin(&null);
            let _ = dup2_stdout(&null);
            let _ = dup2_stderr(&null);
            Ok(Notifier {
                pipe: Some(File::from(write_end)),
            })
        }
    }
}

fn wait_for_child(read_end: OwnedFd) -> i32 {
    let mut msg = String::new();
    let _ = File::from(read_end).read_to_string(&mut msg);
    match msg.lines().next() {
        Some("ok") => 0,
        Some(line) => {
            eprintln!("autossh: {}", line.strip_prefix("error: ").unwrap_or(line));
            1
        }
        None => {
            eprintln!("autossh: exited in the background before starting ssh (see its log)");
            1
        }
    }
}

//! `-f`: go to the background. The parent waits until the child has started ssh (or failed
//! to) and exits with that outcome, so a script calling `autossh -f` learns of failures.

use crate::error::{runtime, Result};
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Held by the background child: tells the waiting parent how the start went, and has it
/// load keys into autossh's agent (the parent still has the terminal to prompt on).
pub struct Notifier {
    pipe: Option<File>,
    replies: Option<File>,
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

    /// Has the parent run `ssh-add` (`add`) for `keys` against the agent at `socket`, on its
    /// terminal; waits for the outcome (`Err`: what went wrong, in one line).
    pub fn load_keys(
        &mut self,
        add: &Path,
        socket: &Path,
        keys: &[PathBuf],
    ) -> std::result::Result<(), String> {
        let (Some(p), Some(r)) = (self.pipe.as_mut(), self.replies.as_mut()) else {
            return Err("the waiting parent is gone".into());
        };
        let mut line = String::from("load");
        for f in [add, socket]
            .into_iter()
            .chain(keys.iter().map(PathBuf::as_path))
        {
            line.push(' ');
            line.push_str(&hex(f.as_os_str().as_bytes()));
        }
        line.push('\n');
        p.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = String::new();
        std::io::BufReader::new(r)
            .read_line(&mut reply)
            .map_err(|e| e.to_string())?;
        match reply.trim_end() {
            "ok" => Ok(()),
            "" => Err("the waiting parent is gone".into()),
            other => Err(other.strip_prefix("error: ").unwrap_or(other).to_string()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<PathBuf> {
    let bytes: Option<Vec<u8>> = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes?)))
}

/// Forks. Returns in the child (detached, cwd `/`, standard streams on /dev/null); the
/// parent never returns. Must be called before any thread is started.
pub fn detach() -> Result<Notifier> {
    // Close-on-exec: ssh must not inherit the write end, or the parent never sees EOF.
    let pipe =
        || crate::shell::platform::unix::pipe_cloexec().map_err(|e| runtime(format!("pipe: {e}")));
    let (read_end, write_end) = pipe()?;
    let (reply_read, reply_write) = pipe()?;
    // SAFETY: autossh is single-threaded here (no threads have been spawned).
    match unsafe { fork() }.map_err(|e| runtime(format!("run as daemon failed: {e}")))? {
        ForkResult::Parent { .. } => {
            drop((write_end, reply_read));
            std::process::exit(wait_for_child(read_end, File::from(reply_write)));
        }
        ForkResult::Child => {
            drop((read_end, reply_write));
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
                replies: Some(File::from(reply_read)),
            })
        }
    }
}

/// The parent: serves the child's requests to load keys, then exits as the start went.
fn wait_for_child(read_end: OwnedFd, mut replies: File) -> i32 {
    let mut lines = std::io::BufReader::new(File::from(read_end)).lines();
    let mut msg = String::new();
    for line in lines.by_ref().map_while(|l| l.ok()) {
        let Some(req) = line.strip_prefix("load ") else {
            msg = line;
            break;
        };
        let reply = match serve_load(req) {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("error: {e}\n"),
        };
        let _ = replies.write_all(reply.as_bytes());
    }
    match Some(msg.as_str()).filter(|m| !m.is_empty()) {
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

/// `ssh-add` on the parent's terminal for a child's `load` request.
fn serve_load(req: &str) -> std::result::Result<(), String> {
    let fields: Option<Vec<PathBuf>> = req.split(' ').map(unhex).collect();
    let fields = fields.ok_or("a garbled request")?;
    let [add, socket, keys @ ..] = fields.as_slice() else {
        return Err("a garbled request".into());
    };
    crate::shell::agent::load_with(add, socket, keys).map_err(|e| e.to_string())
}

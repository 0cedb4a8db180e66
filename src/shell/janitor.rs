//! The janitor: a tiny `sh` started with autossh that removes autossh's private directory and
//! the unix sockets it bound the moment autossh is gone, even when it was killed with SIGKILL
//! (a process cannot clean up after that itself). It waits on a pipe whose only writer is
//! autossh: the end of that pipe is autossh's end. It ignores the terminal's and systemd's
//! polite signals (they reach autossh too, which cleans up and closes the pipe), stops
//! autossh's ssh-agent (its pid in `agent.pid`, checked against its command line: Debian's
//! ssh-agent is setgid, and exec of a setgid program clears the parent-death signal), removes
//! a socket only while it is still the one autossh made (same inode), and exits. Where the
//! kernel has no parent-death signal (macOS, OpenBSD) it also stops the ssh processes noted
//! in the directory (`*ssh-GEN.pid`), each checked the same way: its command line names the
//! directory (its sockets are there).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"trap '' HUP INT TERM QUIT USR1 USR2 PIPE
read -r _
p=$(cat -- "$1/agent.pid" 2>/dev/null) && case $(ps -o args= -p "$p" 2>/dev/null) in
  *"$1/agent.sock"*) kill "$p" ;;
esac
for f in "$1"/*ssh-*.pid; do
  p=$(cat -- "$f" 2>/dev/null) && case $(ps -o args= -p "$p" 2>/dev/null) in
    *"$1/"*) kill "$p" ;;
  esac
done
rm -rf -- "$1"
shift
while [ "$#" -ge 2 ]; do
  i=$(ls -di -- "$1" 2>/dev/null | awk '{print $1}')
  [ "$i" = "$2" ] && rm -f -- "$1"
  shift 2
done
"#;

/// Notes ssh number `gen`'s pid in the private directory `dir`, for the janitor to stop it
/// should autossh be killed, where no parent-death signal does (`platform::PARENT_DEATH`).
/// `Tunnel::ssh_gone` removes the note (`{tag}ssh-{gen}.pid`).
pub fn note_ssh(dir: &Path, tag: &str, gen: u32, pid: u32) {
    if crate::shell::platform::PARENT_DEATH {
        return;
    }
    let path = dir.join(ssh_note(tag, gen));
    if let Err(e) = std::fs::write(&path, format!("{pid}\n")) {
        log::debug!("{}: {e}", path.display());
    }
}

/// The name of ssh number `gen`'s pid note.
pub fn ssh_note(tag: &str, gen: u32) -> String {
    format!("{tag}ssh-{gen}.pid")
}

/// The running janitor; dropping it (autossh's normal end) lets it go and reaps it.
pub struct Janitor {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Janitor {
    /// Starts it for the private directory `dir` and the unix sockets `sockets` bound here.
    pub fn start(dir: &Path, sockets: &[PathBuf]) -> io::Result<Janitor> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(SCRIPT).arg("autossh-janitor").arg(dir);
        for s in sockets {
            if let Ok(m) = std::fs::symlink_metadata(s) {
                cmd.arg(s).arg(m.ino().to_string());
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Janitor { child, pipe })
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        drop(self.pipe.take());
        // It removes what is left (nothing, normally) and exits at once; bounded.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

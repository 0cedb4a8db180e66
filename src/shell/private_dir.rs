//! autossh's private directory (mode 0700, under `$TMPDIR`): the unix sockets each ssh
//! binds for autossh alone (the session probe's, the monitor's and the held forwards'),
//! named by the ssh's number so that an old ssh and its successor never share one. Removed
//! with everything in it when autossh is done; one left by an autossh that was killed is
//! removed by the next one to start (its owner is us and its process is gone).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Longest socket path handed to ssh (`sun_path` holds 104 to 108 bytes).
const MAX_SOCKET_PATH: usize = 100;
/// Every private directory's name starts so: `autossh-PID-NONCE`.
const PREFIX: &str = "autossh-";

/// The directory, removed on drop.
#[derive(Debug)]
pub struct PrivateDir {
    dir: PathBuf,
}

impl PrivateDir {
    /// Creates it under `$TMPDIR` (or /tmp when socket paths there would be too long).
    pub fn create(nonce: u64) -> io::Result<PrivateDir> {
        let name = format!("{PREFIX}{}-{:08x}", std::process::id(), nonce as u32);
        let mut base = std::env::temp_dir();
        // The longest name it will hold: a tunnel's tag, then fwd-GEN-N.sock, large numbers.
        let longest = format!("{}.65535-fwd-4294967295-999.sock", "x".repeat(24));
        if base.join(&name).join(longest).as_os_str().len() > MAX_SOCKET_PATH
            || base.as_os_str().to_string_lossy().contains(':')
        {
            base = PathBuf::from("/tmp");
        }
        let dir = base.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(PrivateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A socket in it (no file is made: ssh binds it).
    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the private directories of autossh processes that are gone (killed with
/// SIGKILL: nothing of theirs could clean up), in `$TMPDIR` and /tmp: only directories
/// owned by this user, named `autossh-PID-NONCE`, whose PID no longer runs.
pub fn remove_stale() {
    let uid = nix::unistd::geteuid().as_raw();
    let mut bases = vec![std::env::temp_dir()];
    if bases[0] != Path::new("/tmp") {
        bases.push(PathBuf::from("/tmp"));
    }
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(pid) = owner_pid(&path) else {
                continue;
            };
            let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
            if ours && !alive(pid) {
                log::debug!("removing {} (autossh {pid} is gone)", path.display());
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// The pid in a private directory's name, if it is one.
fn owner_pid(path: &Path) -> Option<i32> {
    let name = path.file_name()?.to_str()?;
    let (pid, nonce) = name.strip_prefix(PREFIX)?.split_once('-')?;
    let nonce_ok = nonce.len() == 8 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    nonce_ok.then(|| pid.parse().ok()).flatten()
}

fn alive(pid: i32) -> bool {
    use nix::sys::signal::kill;
    match kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_count() {
        assert_eq!(owner_pid(Path::new("/tmp/autossh-123-0000abcd")), Some(123));
        assert_eq!(owner_pid(Path::new("/tmp/autossh-123-xyz")), None);
        assert_eq!(owner_pid(Path::new("/tmp/autossh-test-abc-dir")), None);
        assert_eq!(owner_pid(Path::new("/tmp/other-123-0000abcd")), None);
    }

    #[test]
    fn a_dead_processs_directory_is_removed_and_a_live_ones_kept() {
        let live = PrivateDir::create(1).unwrap();
        std::fs::write(live.socket("probe-1.sock"), b"").unwrap();
        // A pid that cannot be running: above the kernel's maximum.
        let dead = std::env::temp_dir().join("autossh-2147483646-0000beef");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        remove_stale();
        assert!(!dead.exists());
        assert!(live.path().exists());
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists());
    }
}

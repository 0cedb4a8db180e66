//! Each tunnel's state in the words of the outside (`up`, `down`, `port-held`, `stopping`,
//! `stopped`, `failed`), when it was last up, and `AUTOSSH_HOOK`: the program run on each change, with
//! `AUTOSSH_TUNNEL`, `AUTOSSH_STATE`, `AUTOSSH_REASON` and `AUTOSSH_DOWN_FOR` in its
//! environment. A hook never blocks the loop: it is spawned (its own process group), reaped
//! on SIGCHLD by its pid, killed after [`HOOK_LIMIT`]; at most one runs per tunnel, and the
//! changes that come while it runs are coalesced into the latest.

use crate::core::clock::Time;
use crate::shell::ssh_process::die_with_autossh;
use log::{debug, warn};
use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A hook still running after this is killed (its whole process group).
pub const HOOK_LIMIT: Duration = Duration::from_secs(10);

/// A tunnel's state as hooks and `/healthz` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outward {
    /// Never proven up yet, and not ended: its first ssh starting, or retrying (never told
    /// to a hook).
    Starting,
    /// Proven up (`Supervisor::healthy`).
    Up,
    /// Not up after having been up, and being brought back.
    Down,
    /// Not up: the server refuses a remote forward's port, held by another session (a dead
    /// one of this tunnel's, most likely); retried at a steady pace.
    PortHeld,
    /// Being stopped for good (autossh exiting, the tunnel removed from the file).
    Stopping,
    /// Ended: stopped.
    Stopped,
    /// Ended on its own for good (permission denied, maxstart...).
    Failed,
}

impl Outward {
    pub fn name(self) -> &'static str {
        match self {
            Outward::Starting => "starting",
            Outward::Up => "up",
            Outward::Down => "down",
            Outward::PortHeld => "port-held",
            Outward::Stopping => "stopping",
            Outward::Stopped => "stopped",
            Outward::Failed => "failed",
        }
    }
}

/// One change, as the hook hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The tunnel's name (empty for the command line's single tunnel).
    pub tunnel: String,
    pub state: Outward,
    /// Why it went down or ended; empty for `up`.
    pub reason: String,
    /// How long since it was last up (for `up`: how long it had been down).
    pub down_for: Duration,
}

impl Change {
    /// The hook's environment.
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("AUTOSSH_TUNNEL", self.tunnel.clone()),
            ("AUTOSSH_STATE", self.state.name().to_string()),
            ("AUTOSSH_REASON", self.reason.clone()),
            (
                "AUTOSSH_DOWN_FOR",
                format!("{:.1}", self.down_for.as_secs_f64()),
            ),
        ]
    }
}

/// A hook that runs.
struct Running {
    child: Child,
    change: Change,
    kill_at: Time,
    killed: bool,
}

/// One tunnel as watched.
struct Track {
    state: Outward,
    /// When it was last seen up, or when watching began.
    last_up: Time,
    /// It has been up once: from now on, not up is `Down`, not `Starting`.
    been_up: bool,
    running: Option<Running>,
    pending: Option<Change>,
    /// Its tunnel is gone: the entry goes once its hook has ended.
    gone: bool,
}

/// Every tunnel's outward state and its hook, by the tunnel's slot.
pub struct Watch {
    program: Option<PathBuf>,
    tracks: BTreeMap<usize, Track>,
    /// Changes seen so far (a cache of what depends on the states compares it).
    changes: u64,
}

impl Watch {
    pub fn new(program: Option<PathBuf>) -> Watch {
        Watch {
            program,
            tracks: BTreeMap::new(),
            changes: 0,
        }
    }

    /// How many changes have been seen.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether a program runs on changes.
    pub fn has_hook(&self) -> bool {
        self.program.is_some()
    }

    /// The state of the tunnel in `slot` now; on a change its hook runs (or waits for the
    /// one running). `reason` is asked only on a change.
    pub fn see(
        &mut self,
        slot: usize,
        (name, state): (&str, Outward),
        reason: impl FnOnce() -> String,
        now: Time,
    ) {
        let t = self.tracks.entry(slot).or_insert_with(|| Track {
            state: Outward::Starting,
            last_up: now,
            been_up: false,
            running: None,
            pending: None,
            gone: false,
        });
        let was = t.state;
        if was == Outward::Up {
            t.last_up = now;
        }
        t.been_up |= state == Outward::Up;
        let state = match state {
            Outward::Down if !t.been_up => Outward::Starting,
            s => s,
        };
        if state == was {
            return;
        }
        t.state = state;
        self.changes += 1;
        let Some(program) = &self.program else {
            return;
        };
        let reason = if state == Outward::Up {
            String::new()
        } else {
            reason()
        };
        let change = Change {
            tunnel: name.to_string(),
            state,
            reason,
            down_for: now.since(t.last_up),
        };
        match &t.running {
            Some(r) if r.change.state == state => t.pending = None,
            Some(_) => t.pending = Some(change),
            None => t.running = spawn(program, change, now),
        }
    }

    /// The state of the tunnel in `slot` as last seen.
    pub fn state(&self, slot: usize) -> Option<Outward> {
        self.tracks.get(&slot).map(|t| t.state)
    }

    /// How long since the tunnel in `slot` was last up (`None` while it is up, or unknown).
    pub fn down_for(&self, slot: usize, now: Time) -> Option<Duration> {
        let t = self.tracks.get(&slot)?;
        (t.state != Outward::Up).then(|| now.since(t.last_up))
    }

    /// The tunnel in `slot` is gone; its entry goes once its hook has ended.
    pub fn forget(&mut self, slot: usize) {
        let Some(t) = self.tracks.get_mut(&slot) else {
            return;
        };
        t.gone = true;
        t.pending = None;
        if t.running.is_none() {
            self.tracks.remove(&slot);
        }
    }

    /// Collects the hooks that have ended (by their pid: ssh's reaping is not touched), and
    /// starts the change each one's tunnel has waiting.
    pub fn reap(&mut self, now: Time) {
        let Some(program) = &self.program else {
            return;
        };
        for t in self.tracks.values_mut() {
            let Some(r) = t.running.as_mut() else {
                continue;
            };
            match r.child.try_wait() {
                Ok(None) => continue,
                Ok(Some(st)) => report_end(r, st),
                Err(e) => warn!("hook {}: waitpid: {e}", program.display()),
            }
            t.running = t.pending.take().and_then(|c| spawn(program, c, now));
        }
        self.tracks.retain(|_, t| !t.gone || t.running.is_some());
    }

    /// Kills (SIGKILL to its process group) every hook past its time; SIGCHLD reaps them.
    pub fn expire(&mut self, now: Time) {
        for r in self.tracks.values_mut().filter_map(|t| t.running.as_mut()) {
            if !r.killed && now >= r.kill_at {
                r.killed = true;
                let pgid = nix::unistd::Pid::from_raw(r.child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Until the nearest hook's kill.
    pub fn timeout(&self, now: Time) -> Option<Duration> {
        self.tracks
            .values()
            .filter_map(|t| t.running.as_ref())
            .filter(|r| !r.killed)
            .map(|r| {
                if now >= r.kill_at {
                    Duration::ZERO
                } else {
                    r.kill_at.since(now)
                }
            })
            .min()
    }

    /// Whether a hook runs (or waits to).
    pub fn busy(&self) -> bool {
        self.tracks
            .values()
            .any(|t| t.running.is_some() || t.pending.is_some())
    }

    /// autossh is exiting: the last changes are told, every hook is waited for within its
    /// time, then killed; nothing is left running.
    pub fn finish(&mut self) {
        let step = Duration::from_millis(10);
        // Each round reaps and starts what waited; bounded by two hook lifetimes.
        for _ in 0..(2 * HOOK_LIMIT.as_millis() / step.as_millis() + 10) {
            let now = Time::now();
            self.expire(now);
            self.reap(now);
            if !self.busy() {
                return;
            }
            std::thread::sleep(step);
        }
    }
}

/// Starts the hook for `change`; a failure is logged (the tunnel is not affected).
fn spawn(program: &PathBuf, change: Change, now: Time) -> Option<Running> {
    let mut cmd = Command::new(program);
    cmd.envs(change.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    die_with_autossh(&mut cmd, libc::SIGTERM);
    match cmd.spawn() {
        Ok(child) => {
            debug!(
                "hook {} ({}: {}) started, pid {}",
                program.display(),
                change.tunnel,
                change.state.name(),
                child.id()
            );
            Some(Running {
                child,
                change,
                kill_at: now + HOOK_LIMIT,
                killed: false,
            })
        }
        Err(e) => {
            warn!("hook {}: cannot run it: {e}", program.display());
            None
        }
    }
}

fn report_end(r: &Running, st: std::process::ExitStatus) {
    let what = format!("{}: {}", r.change.tunnel, r.change.state.name());
    if st.success() {
        debug!("hook ({what}) done");
    } else if r.killed {
        warn!("hook ({what}) killed after {} s", HOOK_LIMIT.as_secs());
    } else if let Some(code) = st.code() {
        warn!("hook ({what}) exited with status {code}");
    } else {
        warn!(
            "hook ({what}) killed by signal {}",
            st.signal().unwrap_or(0)
        );
    }
}

#[cfg(test)]
mod tests;

//! Many tunnels: handshake slots, tunnels that end, reload, and the control socket's requests.

use super::*;
use crate::core::handshakes::{self, Ended};
use crate::error::Error;
use crate::setup::tunnels_file::{self, FileError};
use crate::shell::control::Request;
use crate::shell::tunnel::prepare;
use log::{error, warn};
use std::fmt;

impl Runner {
    /// A tunnel wants to start ssh: now if its server has a free handshake slot.
    pub(super) fn await_slot(&mut self, i: usize) {
        let now = Time::now();
        // A slot it still holds is for a handshake that is over (it wants another).
        self.finish_handshake(i, now);
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return;
        };
        // The command line's tunnel has no other to wait for.
        let granted = match &slot.def {
            Some(def) => self.fleet.gate.ask(&def.server, i, now),
            None => true,
        };
        if granted {
            slot.tunnel.grant();
        } else {
            let _log = tunnel_context(slot.tunnel.name());
            debug!(
                "waiting for a handshake slot to {}",
                slot.def.as_ref().map(|d| d.server.as_str()).unwrap_or("?")
            );
        }
    }

    /// Frees the slot of tunnel `i`'s handshake if it is over, telling the gate how it ended
    /// (a cut before the banner backs the server off: said once, in the tunnel's name).
    fn finish_handshake(&mut self, i: usize, now: Time) {
        let (end, slot) = match self.slots.get(i) {
            Some(Some(s)) => (s.tunnel.handshake_end(), Some(s)),
            _ => (Some(Ended::Failed), None),
        };
        let Some(end) = end else { return };
        let Some(window) = self.fleet.gate.finish(i, end, now) else {
            return;
        };
        let _log = tunnel_context(slot.and_then(|s| s.tunnel.name()));
        let server = slot.and_then(|s| s.def.as_ref()).map_or("?", |d| &d.server);
        info!(
            "{server} cut a handshake before its banner (sshd's MaxStartups?): at most {window} \
             at once to it from now on, after a pause of {} ms",
            handshakes::PAUSE.as_millis()
        );
    }

    /// Frees the slots of handshakes that are over and grants waiting tunnels theirs.
    /// Returns whether any was granted.
    pub(super) fn gate_round(&mut self) -> bool {
        let now = Time::now();
        for i in self.fleet.gate.holders() {
            self.finish_handshake(i, now);
        }
        let granted = self.fleet.gate.grants(now);
        for &i in &granted {
            if let Some(Some(s)) = self.slots.get_mut(i) {
                s.tunnel.grant();
            }
        }
        !granted.is_empty()
    }

    /// `READY=1` (once) when every tunnel is proven, or, with a file, when the wait for it
    /// is over; what only the start used is then given back.
    pub(super) fn check_ready(&mut self) {
        if self.fleet.ready_sent {
            return;
        }
        let all_up = self
            .slots
            .iter()
            .flatten()
            .all(|s| s.tunnel.sup().healthy());
        let waited = match &self.fleet.source {
            Source::File { ready_by, .. } => Instant::now() >= *ready_by,
            Source::CommandLine => false,
        };
        if !all_up && !waited {
            return;
        }
        let Some(line) = self.status_line(Time::now()) else {
            return;
        };
        if let Some(sd) = &self.sd {
            sd.send(&format!("READY=1\nSTATUS={line}"));
        }
        if !all_up {
            warn!("not every tunnel is up yet: {line}");
        }
        self.fleet.ready_sent = true;
        crate::shell::resident::let_go();
    }

    /// A tunnel's supervisor is done.
    pub(super) fn on_ended(&mut self, i: usize, code: i32) {
        self.fleet.gate.forget(i);
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return;
        };
        let registry = self.poll.registry();
        slot.tunnel.cleanup(registry);
        if !self.fleet.is_file() {
            if code != 0 {
                if let Some(n) = self.notifier.as_mut() {
                    n.failed(&format!("autossh exited with status {code} (see its log)"));
                }
            }
            return;
        };
        match slot.retire.take() {
            Some(Retire::Remove) => {
                self.slots[i] = None;
                self.start_pending();
            }
            // Kept for the last report ("stopped").
            Some(Retire::Shutdown) => slot.retire = Some(Retire::Shutdown),
            None => {
                let name = slot.tunnel.name().cloned();
                let failed = slot.tunnel.failed();
                let why = slot.tunnel.last_reason().unwrap_or("ended").to_string();
                let verdict = if failed { "failed" } else { "stopped" };
                let others = self
                    .slots
                    .iter()
                    .flatten()
                    .any(|s| s.tunnel.ended().is_none());
                let _log = tunnel_context(name.as_ref());
                if others {
                    error!("tunnel {verdict} ({why}); the others go on");
                } else {
                    error!("tunnel {verdict} ({why})");
                }
                self.fleet.failures |= failed;
            }
        }
    }

    /// Starts the tunnels waiting for removed ones to be gone, once they all are.
    pub(super) fn start_pending(&mut self) {
        let removing = self
            .slots
            .iter()
            .flatten()
            .any(|s| matches!(s.retire, Some(Retire::Remove)));
        if removing || self.shutting_down {
            return;
        }
        for def in std::mem::take(&mut self.fleet.pending) {
            let name = def.name.clone();
            if let Err(e) = self.start_tunnel(def) {
                error!("{name}: cannot start: {e}");
            }
        }
    }

    /// Starts a tunnel of the file in a new slot (its monitor ports bound first).
    pub(super) fn start_tunnel(&mut self, def: TunnelDef) -> Result<()> {
        let _log = tunnel_context(Some(&std::rc::Rc::from(def.name.as_str())));
        let prepared = prepare::prepare(&def.settings, &mut Vec::new(), None)?;
        let prepared = prepare::private_dir(&def.settings, prepared, self.place.dir.as_ref())?;
        let mut tunnel = Tunnel::new(
            spec_of(&def, self.place.agent.as_ref()),
            prepared,
            self.slots.len(),
            self.poll.registry(),
        )?;
        tunnel.begin();
        self.add(tunnel, Some(def));
        Ok(())
    }

    /// Re-reads the tunnels file: unchanged tunnels are not touched, changed ones are
    /// replaced, removed ones stopped, new ones started. A bad file changes nothing.
    pub(super) fn reload(&mut self) -> std::result::Result<Reloaded, ReloadError> {
        let defs = self.read_file()?;
        let mut done = Reloaded::default();
        let (kept, mut pending) = self.apply_file(&defs, &mut done);
        for def in defs.into_iter().filter(|d| !kept.contains(&d.name)) {
            pending.push(def);
            done.added += 1;
        }
        self.fleet.pending = pending;
        self.drop_retired_ended();
        self.start_pending();
        info!("{done}");
        Ok(done)
    }

    /// The tunnels file, read again (a bad one is said in the log, and changes nothing).
    fn read_file(&self) -> std::result::Result<Vec<TunnelDef>, ReloadError> {
        let Source::File { file, .. } = &self.fleet.source else {
            return Err(ReloadError::NoFile);
        };
        tunnels_file::load(file, &|k| std::env::var_os(k)).map_err(|e| {
            let e = ReloadError::File(e);
            error!("reload: {e}");
            e
        })
    }

    /// Each running tunnel against the file's `defs`: unchanged ones kept, changed ones
    /// replaced in place or stopped to start again, removed ones stopped. Returns the names
    /// the file still has a running tunnel for, and the definitions to start once the
    /// stopped ones are gone.
    fn apply_file(
        &mut self,
        defs: &[TunnelDef],
        done: &mut Reloaded,
    ) -> (Vec<String>, Vec<TunnelDef>) {
        let mut kept: Vec<String> = Vec::new();
        let mut pending = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            let Some(verdict) = verdict(slot, defs) else {
                continue;
            };
            let _log = tunnel_context(slot.tunnel.name());
            match verdict {
                Verdict::Keep(name) => {
                    kept.push(name);
                    done.unchanged += 1;
                    continue;
                }
                Verdict::Replace(new) => {
                    info!(
                        "changed in the file: a new ssh takes over; connections go on through \
                         the old one"
                    );
                    slot.tunnel
                        .replace(super::spec_of(new, self.place.agent.as_ref()));
                    slot.def = Some(new.clone());
                    kept.push(new.name.clone());
                    done.changed += 1;
                    continue;
                }
                Verdict::Restart(new) => {
                    info!("changed in the file: stopping, then starting it again");
                    kept.push(new.name.clone());
                    pending.push(new.clone());
                    done.changed += 1;
                }
                Verdict::Remove => {
                    info!("removed from the file: stopping");
                    done.removed += 1;
                }
            }
            slot.retire = Some(Retire::Remove);
            slot.tunnel.stop();
        }
        (kept, pending)
    }

    /// A tunnel being removed that had already ended for good is gone at once.
    fn drop_retired_ended(&mut self) {
        for slot in self.slots.iter_mut() {
            let gone = slot
                .as_ref()
                .is_some_and(|s| s.tunnel.ended().is_some() && s.retire.is_some());
            if gone {
                *slot = None;
            }
        }
    }

    /// Requests on the control socket.
    pub(super) fn on_control(&mut self, token: Token) {
        let registry = self.poll.registry();
        let requests = match &mut self.fleet.source {
            Source::File { control, .. } => control.ready(registry, token),
            Source::CommandLine => return,
        };
        for (client, request) in requests {
            let answer = match request {
                Request::Status { json } => Ok(self.status_text(json)),
                Request::Restart(name) => match self.restart(&name) {
                    Ok(()) => Ok(format!("restarting {name}\n")),
                    Err(e) => Err(e.to_string()),
                },
                Request::Reload => match self.reload() {
                    Ok(done) => Ok(format!("{done}\n")),
                    Err(e) => Err(e.to_string()),
                },
                Request::Health(name) => self.health_answer(name.as_deref()),
            };
            let text = match answer {
                Ok(t) => t,
                Err(e) => format!("error: {e}\n"),
            };
            let registry = self.poll.registry();
            if let Source::File { control, .. } = &mut self.fleet.source {
                control.reply(registry, client, &text);
            }
        }
    }

    /// `autossh restart NAME`: that tunnel's ssh is replaced now (a failed tunnel starts again).
    fn restart(&mut self, name: &str) -> std::result::Result<(), RestartError> {
        let found = self.slots.iter().position(|s| {
            s.as_ref().is_some_and(|s| {
                s.retire.is_none() && s.tunnel.name().is_some_and(|n| &**n == name)
            })
        });
        let no_tunnel = || RestartError::NoTunnel(name.to_string());
        let Some(i) = found else {
            return Err(no_tunnel());
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return Err(no_tunnel());
        };
        let _log = tunnel_context(slot.tunnel.name());
        info!("restart asked on the control socket");
        if slot.tunnel.ended().is_some() {
            let def = slot.def.clone();
            self.slots[i] = None;
            if let Some(def) = def {
                self.start_tunnel(def).map_err(RestartError::Start)?;
            }
        } else {
            slot.tunnel.push(Event::Signal(Sig::Restart));
        }
        Ok(())
    }
}

/// What a reload does to one running tunnel of the file.
enum Verdict<'a> {
    /// The same in the file, and running: not touched (its name).
    Keep(String),
    /// Changed in a way a new ssh can take over in place (held forwards kept open).
    Replace(&'a TunnelDef),
    /// Changed otherwise: stopped, then started anew.
    Restart(&'a TunnelDef),
    /// Gone from the file: stopped.
    Remove,
}

/// What the file's `defs` mean for `slot` (`None`: not one of the file's, or already going).
fn verdict<'a>(slot: &Slot, defs: &'a [TunnelDef]) -> Option<Verdict<'a>> {
    if slot.retire.is_some() {
        return None;
    }
    let old = slot.def.as_ref()?;
    Some(match defs.iter().find(|d| d.name == old.name) {
        None => Verdict::Remove,
        Some(new) if new.settings == old.settings && slot.tunnel.ended().is_none() => {
            Verdict::Keep(new.name.clone())
        }
        Some(new) if slot.tunnel.replaceable_by(&new.settings) => Verdict::Replace(new),
        Some(new) => Verdict::Restart(new),
    })
}

/// What a reload did, in tunnels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Reloaded {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub(super) enum ReloadError {
    /// autossh runs the tunnel of its command line, not a tunnels file.
    NoFile,
    /// The file is bad now: every tunnel goes on as it was.
    File(FileError),
}

/// Why `restart NAME` restarted nothing.
#[derive(Debug)]
pub(super) enum RestartError {
    /// No tunnel of that name (or it is being removed).
    NoTunnel(String),
    /// The tunnel had ended, and starting it again failed.
    Start(Error),
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reloaded {
            added,
            changed,
            removed,
            unchanged,
        } = self;
        write!(
            f,
            "reloaded: {added} added, {changed} changed, {removed} removed, {unchanged} unchanged"
        )
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::NoFile => f.write_str("not running a tunnels file"),
            ReloadError::File(e) => write!(f, "{e}; nothing changed"),
        }
    }
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::NoTunnel(name) => write!(f, "no tunnel named {name:?}"),
            RestartError::Start(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_and_restart_answers_read_as_before() {
        let done = Reloaded {
            added: 1,
            changed: 2,
            removed: 0,
            unchanged: 3,
        };
        assert_eq!(
            done.to_string(),
            "reloaded: 1 added, 2 changed, 0 removed, 3 unchanged"
        );
        assert_eq!(
            ReloadError::NoFile.to_string(),
            "not running a tunnels file"
        );
        let bad = ReloadError::File(FileError::NoTunnels {
            file: "t.toml".into(),
        });
        assert_eq!(
            bad.to_string(),
            "t.toml: no tunnels (add a [tunnel.NAME] table with ssh = \"...\"); nothing changed"
        );
        assert_eq!(
            RestartError::NoTunnel("db".into()).to_string(),
            "no tunnel named \"db\""
        );
    }
}

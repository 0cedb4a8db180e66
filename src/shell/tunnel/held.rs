//! A tunnel's held forwards: its relay's readiness and deadlines, each ssh's private sockets,
//! and the old ssh of a planned restart (detached, draining, stopped, reaped).

use super::*;
use crate::core::supervisor::Action;
use crate::setup::ssh_argv::Sockets;
use crate::shell::probe_conn::Target;
use crate::shell::relay::Note;
use mio::Interest;
use std::time::Instant;

impl Tunnel {
    pub(super) fn relay_ready(&mut self, registry: &Registry, token: Token, ev: Readiness) {
        if let Some(r) = self.relay.as_mut() {
            r.ready(registry, token, ev, Instant::now());
        }
        self.take_relay_notes();
    }

    pub(super) fn relay_on_time(&mut self, registry: &Registry) {
        let now = Instant::now();
        let Some(r) = self.relay.as_mut() else { return };
        if r.timeout(now).is_some_and(|d| d.is_zero()) {
            r.on_time(registry, now);
        }
        self.take_relay_notes();
    }

    /// What the relay noticed, as events for the supervisor.
    fn take_relay_notes(&mut self) {
        let Some(r) = self.relay.as_mut() else { return };
        for n in r.take_notes() {
            let e = match n {
                Note::Busy(b) => Event::Busy(b),
                Note::Drained(gen) if self.old.as_ref().is_some_and(|o| o.gen == gen) => {
                    Event::Drained
                }
                Note::Drained(_) => continue,
            };
            self.queue.push_back(e);
        }
    }

    /// The private sockets of ssh number `gen`: its monitor's (the session probe's; with held
    /// forwards loop and echo mode's too) and one per held forward. Stale files are removed
    /// (ssh will not bind over them).
    pub(super) fn sockets(&self, gen: u32) -> Sockets {
        let Some(dir) = self.dir.as_ref() else {
            return Sockets {
                agent: self.agent.clone(),
                ..Sockets::default()
            };
        };
        let tag = &self.tag;
        let monitor = match self.forwards {
            Forwards::Session => Some(dir.socket(&format!("{tag}probe-{gen}.sock"))),
            Forwards::Loop { .. } | Forwards::Echo { .. } if self.relay.is_some() => {
                Some(dir.socket(&format!("{tag}mon-{gen}.sock")))
            }
            _ => None,
        };
        let held = (0..self.settings.held.forwards.len())
            .map(|i| dir.socket(&format!("{tag}fwd-{gen}-{i}.sock")))
            .collect();
        let socks = Sockets {
            monitor,
            held,
            agent: self.agent.clone(),
        };
        for p in socks.monitor.iter().chain(&socks.held) {
            let _ = std::fs::remove_file(p);
        }
        socks
    }

    /// A new ssh started with `socks`: probes go to its monitor socket, the relay knows its
    /// forwards' sockets.
    pub(super) fn started(&mut self, gen: u32, pid: u32, socks: Sockets) {
        self.gen = gen;
        if let Some(dir) = self.dir.as_ref() {
            crate::shell::janitor::note_ssh(dir.path(), &self.tag, gen, pid);
        }
        if let (Some(m), Some(p)) = (self.monitor.as_mut(), socks.monitor) {
            m.retarget(Target::Unix(p));
        }
        if let Some(r) = self.relay.as_mut() {
            r.started(gen, pid, socks.held);
        }
    }

    /// The actions about held forwards and the old ssh.
    pub(super) fn perform_held(&mut self, registry: &Registry, action: Action) {
        match action {
            Action::Serve { gen } => {
                let server = self.transport.as_mut().and_then(|t| t.server_socket());
                if let Some(r) = self.relay.as_mut() {
                    if let Some(fd) = server {
                        r.server_socket(gen, fd);
                    }
                    r.serve(registry, gen, Instant::now());
                }
            }
            Action::Detach => self.detach(registry),
            Action::Drain { gen } => {
                if let Some(r) = self.relay.as_mut() {
                    r.drain(gen);
                }
            }
            Action::StopListening => {
                if let Some(r) = self.relay.as_mut() {
                    r.stop_listening(registry);
                }
            }
            Action::StopOld => self.signal_old(Signal::SIGTERM),
            Action::KillOld => self.signal_old(Signal::SIGKILL),
            _ => {}
        }
        self.take_relay_notes();
    }

    /// The running ssh becomes the old one: it keeps serving its connections; its stderr is
    /// still read and logged; its end is its own event.
    fn detach(&mut self, registry: &Registry) {
        // INVARIANT: at most one old ssh at a time (the supervisor detaches only when the
        // last old one's end has reached it, and that end is queued after it is cleared here).
        debug_assert!(self.old.is_none(), "a second old ssh");
        self.close_stderr(registry);
        self.transport = None;
        let Some(ssh) = self.ssh.take() else { return };
        if let Some(fd) = ssh.stderr_fd() {
            let token = Token(self.base + OLD_STDERR.0);
            if let Err(e) = registry.register(&mut SourceFd(&fd), token, Interest::READABLE) {
                warn!("cannot watch the old ssh's stderr: {e}");
            }
        }
        debug!("ssh (pid {}) goes on for its connections", ssh.pid());
        self.old = Some(OldSsh { ssh, gen: self.gen });
    }

    fn signal_old(&mut self, sig: Signal) {
        if let Some(o) = self.old.as_ref() {
            debug!("sending {sig} to the old ssh (pid {})", o.ssh.pid());
            o.ssh.signal(sig);
            if let Some(r) = self.relay.as_mut() {
                r.dying(o.gen);
            }
        }
    }

    /// The old ssh's stderr: logged as its own.
    pub(super) fn on_old_stderr(&mut self, registry: &Registry) {
        let Some(o) = self.old.as_mut() else { return };
        let (lines, eof) = o.ssh.read_stderr();
        for line in lines {
            info!("ssh (old): {line}");
        }
        if eof {
            self.close_old_stderr(registry);
        }
    }

    fn close_old_stderr(&mut self, registry: &Registry) {
        if let Some(fd) = self.old.as_ref().and_then(|o| o.ssh.stderr_fd()) {
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
    }

    /// Collects the old ssh if it has exited: its connections are reset, its sockets removed.
    pub(super) fn reap_old(&mut self, registry: &Registry) {
        let Some(o) = self.old.as_mut() else { return };
        let end = match o.ssh.try_wait() {
            Ok(Some(end)) => end,
            Ok(None) => return,
            Err(e) => return warn!("waitpid: {e}"),
        };
        let gen = o.gen;
        self.on_old_stderr(registry);
        self.close_old_stderr(registry);
        self.old = None;
        self.ssh_gone(registry, gen);
        self.queue.push_back(Event::OldExited(end));
    }

    /// ssh number `gen` is gone: its relayed connections are reset, its sockets removed.
    pub(super) fn ssh_gone(&mut self, registry: &Registry, gen: u32) {
        if let Some(r) = self.relay.as_mut() {
            r.ended(registry, gen);
        }
        if let Some(dir) = self.dir.as_ref() {
            let tag = &self.tag;
            for name in [
                format!("{tag}probe-{gen}.sock"),
                format!("{tag}mon-{gen}.sock"),
                crate::shell::janitor::ssh_note(tag, gen),
            ] {
                let _ = std::fs::remove_file(dir.socket(&name));
            }
        }
        self.take_relay_notes();
    }

    /// The relay's figures, when it holds forwards.
    pub fn relay_stats(&self) -> Option<&crate::shell::relay::RelayStats> {
        self.relay.as_ref().map(|r| r.stats())
    }
}

impl Tunnel {
    /// Whether a reload may hand this tunnel `new` settings in place, make-before-break: it
    /// holds forwards listening where the new ones do, with the same monitor, and ssh binds
    /// nothing itself with either.
    pub fn replaceable_by(&self, new: &Settings) -> bool {
        let listens = |s: &Settings| -> Vec<crate::setup::held::Listen> {
            s.held.forwards.iter().map(|f| f.listen.clone()).collect()
        };
        self.relay.is_some()
            && self.ended.is_none()
            && self.sup.handover()
            && listens(&self.settings) == listens(new)
            && self.settings.monitor == new.monitor
            && prepare::handover_allowed(new)
    }

    /// Takes `spec`'s settings in place (see [`Tunnel::replaceable_by`]): the next ssh runs
    /// with them, started now by a planned restart.
    pub fn replace(&mut self, spec: Spec) {
        self.agent = spec.agent.clone();
        let cfg = supervisor_config(&spec, &self.forwards, true, true);
        if let Some(r) = self.relay.as_mut() {
            r.reconfigure(relay_config(&spec.settings));
        }
        self.settings = spec.settings;
        self.sup.reconfigure(cfg);
        self.queue
            .push_back(Event::Signal(crate::core::supervisor::Sig::Restart));
    }
}

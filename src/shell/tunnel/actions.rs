//! The supervisor's actions performed for one tunnel: starting and signalling ssh, probes, looks at ssh's connection and at the applications waiting on it.

use super::*;
use crate::core::supervisor::{Action, NetPath, PathState, SshLink, Traffic, Waiting};
use crate::setup::ssh_argv;
use mio::Interest;
use std::time::{SystemTime, UNIX_EPOCH};

impl Tunnel {
    /// Performs one action; what only the event loop may do goes to `out`.
    pub(super) fn perform(&mut self, registry: &Registry, action: Action, out: &mut Vec<Outcome>) {
        match action {
            Action::Spawn { quiet, gen } => self.spawn(registry, quiet, gen, out),
            Action::AwaitSlot => out.push(Outcome::AwaitSlot),
            Action::TermSsh => self.signal_ssh(Signal::SIGTERM),
            Action::KillSsh => self.signal_ssh(Signal::SIGKILL),
            Action::Serve { .. }
            | Action::Detach
            | Action::Drain { .. }
            | Action::StopOld
            | Action::KillOld
            | Action::StopListening => self.perform_held(registry, action),
            Action::SendProbe { seq } => self.send_probe(registry, seq),
            Action::DropProbe => {
                if let Some(m) = self.monitor.as_mut() {
                    m.drop_probe(registry);
                }
            }
            Action::FlushAcks => {
                if let Some(t) = self.transport.as_mut() {
                    t.flush_acks();
                }
            }
            Action::InspectPath { waited } => {
                let state = match self.transport.as_mut() {
                    Some(t) => t.inspect(waited),
                    None => PathState::Unknown,
                };
                debug!("probe late; ssh's connection looks {state:?}");
                self.queue.push_back(Event::Path(state));
            }
            Action::RelocateMonitor { to } => {
                if let Forwards::Loop { remote, .. } = &mut self.forwards {
                    *remote = to;
                }
            }
            Action::Ready => out.push(Outcome::Ready),
            Action::CheckReach => {
                if self.shares_checks {
                    out.push(Outcome::CheckReach);
                } else {
                    let e = self.reach.check(registry);
                    self.queue.extend(e);
                }
            }
            Action::StopReach => self.reach.stop(registry),
            Action::InspectStall { proxied, threshold } => self.watch_ssh(proxied, threshold),
            Action::CheckNetPath => {
                let verdict = match self.transport.as_mut().and_then(|t| t.endpoints()) {
                    Some((local, peer)) => crate::shell::netwatch::judge_path(local, peer),
                    // ssh's connection is out of sight on this platform: a probe tells.
                    None if !Transport::SEES_SSH_SOCKETS => NetPath::Moved(
                        "addresses or routes changed (ssh's connection is not seen here)".into(),
                    ),
                    None => NetPath::Unknown,
                };
                self.queue.push_back(Event::NetPath(verdict));
            }
            Action::Exit(code) => {
                self.ended = Some(code);
                self.queue.clear();
                out.push(Outcome::Ended(code));
            }
        }
    }

    /// Sends probe `seq` through the monitor, the wall clock written into it.
    fn send_probe(&mut self, registry: &Registry, seq: u64) {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        if let Some(m) = self.monitor.as_mut() {
            let (len, outcome) = m.send(registry, seq, wall);
            if let Some(t) = self.transport.as_mut() {
                t.probe_sent(len);
            }
            self.queue.extend(outcome);
        }
    }

    /// Looks at ssh's server connection (stall, connected) and, with a `threshold`, when
    /// the server has been silent that long, at what the applications using the tunnel
    /// wait for.
    fn watch_ssh(&mut self, proxied: bool, threshold: Option<Duration>) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        let look = if proxied { None } else { t.watch() };
        // Through a proxy, or where ssh's sockets are out of sight, the server connection
        // cannot be seen: take ssh as connected.
        let link = if proxied || look.is_some() || !Transport::SEES_SSH_SOCKETS {
            SshLink::Established
        } else if t.connecting() {
            SshLink::Connecting
        } else {
            SshLink::Unseen
        };
        self.queue.push_back(Event::Link(link));
        self.queue
            .push_back(Event::Stall(look.is_some_and(|l| l.stalled)));
        let Some(threshold) = threshold else {
            return;
        };
        // The server has said nothing for the threshold (the last thing it said may be the
        // answer to our own probe: a request made before it can still be waiting). Looking
        // is cheap and is not repeated while ssh sends the server nothing new.
        let server_quiet = match look {
            Some(l) => l.recv_ago >= threshold,
            None => proxied,
        };
        let waiting = match (&self.relay, server_quiet) {
            // Held forwards: the relay's own facts, exact and cheap.
            (Some(r), _) => r.waiting(std::time::Instant::now(), look.map(|l| l.recv_ago)),
            (None, true) => {
                let skip = self.monitor.as_ref().and_then(|m| m.local_port());
                t.app_waiting(skip, look.map(|l| l.sent_ago), look.map(|l| l.recv_ago))
            }
            (None, false) => Waiting::NotLooked,
        };
        self.queue.push_back(Event::Traffic(Traffic {
            server_sent: look.map(|l| l.sent_ago),
            server_recv: look.map(|l| l.recv_ago),
            waiting,
        }));
    }

    fn spawn(&mut self, registry: &Registry, quiet: bool, gen: u32, out: &mut Vec<Outcome>) {
        let socks = self.sockets(gen);
        let argv = ssh_argv::build(&self.settings, &self.forwards, &socks);
        debug!(
            "execing {} {}",
            self.settings.ssh_path.to_string_lossy(),
            argv.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        match SshProcess::spawn(&self.settings.ssh_path, &argv, self.settings.daemon) {
            Ok(ssh) => {
                if quiet {
                    debug!("ssh child pid is {}", ssh.pid());
                } else {
                    info!("ssh child pid is {}", ssh.pid());
                }
                if let Some(fd) = ssh.stderr_fd() {
                    let token = Token(self.base + SSH_STDERR.0);
                    if let Err(e) = registry.register(&mut SourceFd(&fd), token, Interest::READABLE)
                    {
                        warn!("cannot watch ssh's stderr: {e}");
                    }
                }
                self.transport = Some(Transport::new(ssh.pid()));
                self.started(gen, ssh.pid(), socks);
                self.ssh = Some(ssh);
                out.push(Outcome::Started);
            }
            Err(e) => {
                let why = format!("{}: {e}", self.settings.ssh_path.to_string_lossy());
                out.push(Outcome::SpawnFailed(why.clone()));
                self.queue.push_back(Event::SpawnFailed(why));
            }
        }
    }

    fn signal_ssh(&mut self, sig: Signal) {
        if let Some(s) = self.ssh.as_ref() {
            debug!("sending {sig} to ssh (pid {})", s.pid());
            s.signal(sig);
            // Told to go: it takes no new connection, and its connections' ends are resets.
            if let Some(r) = self.relay.as_mut() {
                r.dying(self.gen);
            }
        }
    }

    /// What the reports show besides the supervisor's figures (after
    /// [`Tunnel::state_since`] noted the state's start).
    pub fn facts(&self) -> crate::shell::report::Facts<'_> {
        let state_since = self.state_since.1;
        let (mode, local, remote, echo) = match self.forwards {
            Forwards::Off | Forwards::Session => ("off", None, None, None),
            Forwards::Loop { local, remote } => ("loop", Some(local), Some(remote), None),
            Forwards::Echo { local, echo } => ("echo", Some(local), None, Some(echo)),
        };
        crate::shell::report::Facts {
            state: self.phase_name(),
            state_since,
            ssh_pid: self.ssh.as_ref().map(|s| s.pid()),
            mode,
            session_probe: matches!(self.forwards, Forwards::Session),
            local_port: local,
            remote_port: remote,
            echo_port: echo,
            settings: &self.settings,
            relay: self.relay_stats(),
        }
    }
}

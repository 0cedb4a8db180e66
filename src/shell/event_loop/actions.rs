//! The supervisor's actions performed: starting and signalling ssh, probes, looks at ssh's connection and at the applications waiting on it.

use super::*;

impl Runner {
    /// Performs one action; returns the exit code when it is time to go.
    pub(super) fn perform(&mut self, action: Action) -> Option<i32> {
        match action {
            Action::Spawn => self.spawn(),
            Action::TermSsh => self.signal_ssh(Signal::SIGTERM),
            Action::KillSsh => self.signal_ssh(Signal::SIGKILL),
            Action::SendProbe { seq } => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let registry = self.poll.registry();
                if let Some(m) = self.monitor.as_mut() {
                    let (len, outcome) = m.send(registry, seq, wall);
                    if let Some(t) = self.transport.as_mut() {
                        t.probe_sent(len);
                    }
                    self.queue.extend(outcome);
                }
            }
            Action::DropProbe => {
                if let Some(m) = self.monitor.as_mut() {
                    m.drop_probe(self.poll.registry());
                }
            }
            Action::InspectPath { waited } => {
                let state = match self.transport.as_mut() {
                    Some(t) if !self.proxied => t.inspect(waited),
                    _ => PathState::Unknown,
                };
                debug!("probe late; ssh's connection looks {state:?}");
                self.queue.push_back(Event::Path(state));
            }
            Action::RelocateMonitor(why) => self.relocate(why),
            Action::Ready => {
                if let Some(sd) = &self.sd {
                    let line = report::status_line(&self.sup, Time::now());
                    sd.send(&format!("READY=1\nSTATUS={line}"));
                }
            }
            Action::CheckReach => {
                let e = if self.proxied {
                    Some(Event::ReachUnknown)
                } else {
                    self.reach.check(self.poll.registry())
                };
                self.queue.extend(e);
            }
            Action::StopReach => self.reach.stop(self.poll.registry()),
            Action::InspectStall => self.watch_ssh(),
            Action::CheckNetPath => {
                let verdict = match self.transport.as_mut() {
                    Some(t) if !self.proxied => match t.endpoints() {
                        Some((local, peer)) => crate::shell::netwatch::judge_path(local, peer),
                        None => NetPath::Unknown,
                    },
                    _ => NetPath::Unknown,
                };
                self.queue.push_back(Event::NetPath(verdict));
            }
            Action::Exit(code) => {
                if code != 0 {
                    if let Some(n) = self.notifier.as_mut() {
                        n.failed(&format!("autossh exited with status {code} (see its log)"));
                    }
                }
                return Some(code);
            }
        }
        None
    }

    /// Looks at ssh's server connection (stall, connected) and, when the server has gone
    /// quiet while it owes an answer, at what the applications using the tunnel wait for.
    pub(super) fn watch_ssh(&mut self) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        let look = if self.proxied { None } else { t.watch() };
        // Through a proxy the server connection cannot be seen: take ssh as connected.
        let connected = self.proxied || look.is_some();
        self.queue.push_back(Event::Connected(connected));
        self.queue
            .push_back(Event::Stall(look.is_some_and(|l| l.stalled)));
        if !self.sup.watching_requests() {
            return;
        }
        let threshold = self.sup.unanswered_threshold();
        // The server has said nothing for the threshold (the last thing it said may be the
        // answer to our own probe: a request made before it can still be waiting). Looking
        // is cheap and is not repeated while ssh sends the server nothing new.
        let server_quiet = match look {
            Some(l) => l.recv_ago >= threshold,
            None => self.proxied,
        };
        let waiting = if server_quiet {
            let skip = self.monitor.as_ref().and_then(|m| m.local_port());
            t.app_waiting(skip, look.map(|l| l.sent_ago), look.map(|l| l.recv_ago))
        } else {
            Waiting::NotLooked
        };
        self.queue.push_back(Event::Traffic(Traffic {
            server_sent: look.map(|l| l.sent_ago),
            server_recv: look.map(|l| l.recv_ago),
            waiting,
        }));
    }

    pub(super) fn spawn(&mut self) {
        if let Some(s) = &self.session_socket {
            s.clear();
        }
        let argv = ssh_argv::build(&self.settings, &self.forwards);
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
                if self.sup.quiet() {
                    debug!("ssh child pid is {}", ssh.pid());
                } else {
                    info!("ssh child pid is {}", ssh.pid());
                }
                if let Some(fd) = ssh.stderr_fd() {
                    if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        SSH_STDERR,
                        Interest::READABLE,
                    ) {
                        warn!("cannot watch ssh's stderr: {e}");
                    }
                }
                self.transport = Some(transport::Transport::new(ssh.pid()));
                self.ssh = Some(ssh);
                if let Some(n) = self.notifier.as_mut() {
                    n.started();
                }
            }
            Err(e) => {
                let why = format!("{}: {e}", self.settings.ssh_path.to_string_lossy());
                if let Some(n) = self.notifier.as_mut() {
                    n.failed(&format!("cannot run ssh: {why}"));
                }
                self.queue.push_back(Event::SpawnFailed(why));
            }
        }
    }

    pub(super) fn signal_ssh(&mut self, sig: Signal) {
        if let Some(s) = self.ssh.as_ref() {
            debug!("sending {sig} to ssh (pid {})", s.pid());
            s.signal(sig);
        }
    }

    /// Moves loop mode's remote port to the next pair.
    pub(super) fn relocate(&mut self, why: Relocation) {
        if let Forwards::Loop { local, remote } = &self.forwards {
            let (local, remote) = (*local, *remote);
            let next = if remote >= 65533 { 20000 } else { remote + 2 };
            match why {
                Relocation::Busy => info!("next ssh uses remote monitor port {next}"),
                Relocation::AfterFailure => info!(
                    "next ssh uses remote monitor port {next} (the old session may still hold {remote})"
                ),
            }
            self.forwards = Forwards::Loop {
                local,
                remote: next,
            };
            self.sup.set_remote_monitor_port(Some(next));
        }
    }
}

//! ssh's end and its stderr: collected, read, classified.

use super::*;

/// A server answer this recent lets the connection of an ssh that ended stuck be reset at
/// once (a reset is sent once: into a black hole it would be lost).
const ANSWER_FRESH: Duration = Duration::from_secs(1);

impl Tunnel {
    /// Collects ssh (and the old one of a planned restart) if it has exited; its last
    /// stderr lines are handled first.
    pub fn reap(&mut self, registry: &Registry) {
        self.reap_old(registry);
        let Some(ssh) = self.ssh.as_mut() else { return };
        match ssh.try_wait() {
            Ok(Some(end)) => {
                self.on_stderr(registry);
                self.close_stderr(registry);
                let pid = self.ssh.take().map(|s| s.pid()).unwrap_or(0);
                if let Some(fd) = self.transport.as_mut().and_then(Transport::take_unfinished) {
                    self.reset_unfinished();
                    self.unfinished = Some(fd);
                    // Replaced because the server answered just now: the reset gets through.
                    let answered = self.answered_at.is_some_and(|t| t.elapsed() < ANSWER_FRESH);
                    if answered {
                        self.reset_unfinished();
                    } else {
                        debug!("ssh ended stuck: its connection is reset once the server answers");
                    }
                }
                self.transport = None;
                debug!("ssh (pid {pid}) ended: {end:?}");
                self.ssh_gone(registry, self.gen);
                self.queue.push_back(Event::SshExited(end));
            }
            Ok(None) => {}
            Err(e) => warn!("waitpid: {e}"),
        }
    }

    /// Resets the connection of an ssh that ended stuck (RST: SO_LINGER 0, then close):
    /// the server, answering again, ends that session now instead of keeping it (and its
    /// remote ports) until the orphan's next retransmission or its ClientAlive.
    pub(super) fn reset_unfinished(&mut self) {
        let Some(fd) = self.unfinished.take() else {
            return;
        };
        let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
        drop(fd);
        info!("reset the connection of the ssh that ended in the outage: the server ends its session now");
    }

    pub(super) fn on_stderr(&mut self, registry: &Registry) {
        let Some(ssh) = self.ssh.as_mut() else { return };
        let (lines, eof) = ssh.read_stderr();
        let session_probe = self
            .monitor
            .as_ref()
            .is_some_and(|m| m.session_probe_recent());
        for line in lines {
            if session_probe && crate::core::ssh_stderr::is_session_probe_refusal(&line) {
                // The server refusing the session probe's channel: the answer we wanted.
                debug!("ssh: {line}");
                continue;
            }
            if line.contains("Host key verification failed") {
                self.look_up_host_key();
            }
            // The supervisor logs it: it knows whether the line only repeats an outage.
            self.queue.push_back(Event::SshSaid(line));
        }
        if eof {
            self.close_stderr(registry);
        }
    }

    pub(super) fn close_stderr(&mut self, registry: &Registry) {
        if let Some(fd) = self.ssh.as_ref().and_then(|s| s.stderr_fd()) {
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
    }
}

impl Tunnel {
    /// ssh could not verify the server's host key: what it offers, and how to pin it, are
    /// looked up (once per [`crate::shell::hostkey::HINT_EVERY`]).
    fn look_up_host_key(&mut self) {
        use crate::shell::hostkey::{HostKeyHint, HINT_EVERY};
        let recent = self.hint.1.is_some_and(|t| t.elapsed() < HINT_EVERY);
        if self.hint.0.is_some() || recent {
            return;
        }
        self.hint = (
            HostKeyHint::start(&self.settings.ssh_path, &self.settings.held.rest),
            Some(std::time::Instant::now()),
        );
    }

    /// The host key look-up's line, once there.
    pub(super) fn take_host_key_hint(&mut self) {
        let Some(h) = self.hint.0.as_ref() else {
            return;
        };
        use crate::shell::hostkey::Lookup;
        match h.take() {
            Lookup::Line(line) => {
                warn!("{line}");
                self.hint.0 = None;
            }
            Lookup::Pending => {}
            Lookup::Nothing => self.hint.0 = None,
        }
    }
}

impl Tunnel {
    /// Ending: a host-key hint under way is waited for (bounded), so that the line that says
    /// how to pin the key comes before autossh exits on ssh's failure.
    pub(super) fn wait_host_key_hint(&mut self) {
        let start = std::time::Instant::now();
        while self.hint.0.is_some() && start.elapsed() < std::time::Duration::from_secs(8) {
            self.take_host_key_hint();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.hint.0 = None;
    }
}

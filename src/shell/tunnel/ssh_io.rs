//! ssh's end and its stderr: collected, read, classified.

use super::*;

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
                self.transport = None;
                debug!("ssh (pid {pid}) ended: {end:?}");
                self.ssh_gone(registry, self.gen);
                self.queue.push_back(Event::SshExited(end));
            }
            Ok(None) => {}
            Err(e) => warn!("waitpid: {e}"),
        }
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

//! What autossh tells the outside: the status and metrics files, systemd's STATUS and watchdog.

use super::*;

impl Runner {
    /// When the next periodic report is due (status files are refreshed every 5 s).
    pub(super) fn report_due(&self) -> Option<Duration> {
        let wanted = self.settings.statusfile.is_some()
            || self.settings.metricsfile.is_some()
            || self.sd.is_some();
        if !wanted {
            return None;
        }
        Some(match &self.last_report {
            Some((_, at)) => REPORT_EVERY.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// Writes the status and metrics files and tells systemd, when something changed or
    /// the refresh is due; feeds the watchdog while the tunnel is proven.
    pub(super) fn report(&mut self) {
        let now = Time::now();
        let phase = self.sup.phase_name();
        if phase != self.state_since.0 {
            self.state_since = (phase, now);
        }
        if let (Some(sd), Some(next)) = (&self.sd, self.next_watchdog) {
            if Instant::now() >= next {
                if self.sup.healthy() {
                    sd.send("WATCHDOG=1");
                }
                self.next_watchdog = sd.watchdog_every.map(|e| Instant::now() + e);
            }
        }
        let Some(due) = self.report_due() else { return };
        let line = report::status_line(&self.sup, now);
        let changed = self.last_report.as_ref().is_none_or(|(l, _)| *l != line);
        if !changed && !due.is_zero() {
            return;
        }
        if changed {
            if let Some(sd) = &self.sd {
                sd.send(&format!("STATUS={line}"));
            }
        }
        let facts = self.facts();
        if let Some(p) = &self.settings.statusfile {
            if let Err(e) = report::write_atomically(p, &report::json(&self.sup, &facts, now)) {
                warn!("status file {}: {e}", p.display());
            }
        }
        if let Some(p) = &self.settings.metricsfile {
            if let Err(e) = report::write_atomically(p, &report::prometheus(&self.sup, now)) {
                warn!("metrics file {}: {e}", p.display());
            }
        }
        self.last_report = Some((line, Instant::now()));
    }

    pub(super) fn facts(&self) -> report::Facts<'_> {
        let (mode, local, remote, echo) = match self.forwards {
            Forwards::Off | Forwards::Session { .. } => ("off", None, None, None),
            Forwards::Loop { local, remote } => ("loop", Some(local), Some(remote), None),
            Forwards::Echo { local, echo } => ("echo", Some(local), None, Some(echo)),
        };
        report::Facts {
            state_since: self.state_since.1,
            ssh_pid: self.ssh.as_ref().map(|s| s.pid()),
            mode,
            session_probe: matches!(self.forwards, Forwards::Session { .. }),
            local_port: local,
            remote_port: remote,
            echo_port: echo,
            settings: &self.settings,
        }
    }
}

//! Held forwards: where new connections go, make-before-break for a planned restart, and
//! ssh on demand.
//!
//! A planned restart (SIGUSR1, `autossh restart`, a reload) with held forwards starts the new
//! ssh while the old one keeps serving; once the new one is proven, new connections go to it
//! and the old one drains (its connections go on, bounded by the drain time), then stops. A
//! new ssh that does not come up gives the old one up too: no unwatched ssh serves for long.
//!
//! On demand, no ssh runs while no connection is open or waiting: the first connection starts
//! one (it waits for it, held), and an ssh without connections for the idle time stops.

use super::*;

impl Supervisor {
    /// The tunnel is proven: with held forwards, connections go to this ssh now, and the
    /// one it replaces drains.
    pub(super) fn serve(&mut self, now: Time, out: &mut Vec<Action>) {
        if !self.cfg.held {
            return;
        }
        out.push(Action::Serve {
            gen: self.start_count,
        });
        if let Some(old) = self.old.filter(|o| !o.draining) {
            info!(
                "the new ssh is proven: new connections go to it; the old one's drain for at \
                 most {} s",
                self.cfg.drain_time.as_secs()
            );
            self.old = Some(Old {
                draining: true,
                ..old
            });
            out.push(Action::Drain { gen: old.gen });
            self.timers.set(Timer::Drain, now + self.cfg.drain_time);
        }
    }

    /// SIGUSR1 (or `autossh restart`): make-before-break when it can be; false when ssh
    /// must be replaced the ordinary way.
    pub(super) fn planned_restart(&mut self, now: Time, out: &mut Vec<Action>) -> bool {
        let proven = matches!(self.state, State::Running { .. }) && self.stats.up_since.is_some();
        if !self.cfg.handover || !proven || self.old.is_some() {
            return false;
        }
        info!(
            "signalled to restart ssh: starting a new one; connections go on through this one \
             until the new one is proven"
        );
        self.stats
            .record_handover("signalled to restart ssh".into(), now);
        self.clear_probe(out);
        for t in [Timer::Watch, Timer::ConfirmBy, Timer::Settled] {
            self.timers.clear(t);
        }
        out.push(Action::Detach);
        self.old = Some(Old {
            gen: self.start_count,
            draining: false,
        });
        // The old session holds its remote monitor port: the new one asks for another.
        self.relocate(true, out);
        self.spawn(now, out);
        true
    }

    /// The new ssh of a planned restart failed before it was proven: the old one stops too
    /// (the ordinary recovery takes over; connections wait meanwhile).
    pub(super) fn give_up_old(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.old.is_some_and(|o| !o.draining) {
            info!("the new ssh did not come up: stopping the old one too");
            self.stop_old(now, out);
        }
    }

    /// SIGTERM to the old ssh (SIGKILL after the grace).
    pub(super) fn stop_old(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.old.is_none() || self.timers.get(Timer::OldKill).is_some() {
            return;
        }
        self.timers.clear(Timer::Drain);
        self.timers.set(Timer::OldKill, now + KILL_GRACE);
        out.push(Action::StopOld);
    }

    pub(super) fn on_drained(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.old.is_some_and(|o| o.draining) {
            debug!("the old ssh has no connection left");
            self.stop_old(now, out);
        }
    }

    pub(super) fn on_drain_due(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.old.is_some() {
            info!(
                "drain time ({} s) over: stopping the old ssh",
                self.cfg.drain_time.as_secs()
            );
            self.stop_old(now, out);
        }
    }

    pub(super) fn on_old_kill_due(&mut self, out: &mut Vec<Action>) {
        if self.old.is_some() {
            warn!(
                "the old ssh did not exit {} s after SIGTERM; sending SIGKILL",
                KILL_GRACE.as_secs()
            );
            out.push(Action::KillOld);
        }
    }

    pub(super) fn on_old_exited(&mut self, end: SshEnd, out: &mut Vec<Action>) {
        if self.old.take().is_some() {
            debug!("the old ssh ended: {end:?}");
        }
        self.timers.clear(Timer::Drain);
        self.timers.clear(Timer::OldKill);
        if self.state == State::Closing {
            let ending = Ending {
                failed: false,
                reason: "maximum lifetime reached".into(),
            };
            self.finish(0, ending, out);
        }
    }

    /// `AUTOSSH_MAXLIFETIME`: stop ssh and exit 0. With held forwards and a tunnel up, the
    /// connections open go on until they end (at most the drain time); no new one is taken
    /// (with socket activation they queue for the next autossh).
    pub(super) fn on_max_lifetime(&mut self, now: Time, out: &mut Vec<Action>) {
        let proven = matches!(self.state, State::Running { .. }) && self.stats.up_since.is_some();
        if !self.cfg.held || !proven || self.old.is_some() {
            info!("maximum lifetime reached; exiting");
            return self.terminate(0, now, out);
        }
        info!(
            "maximum lifetime reached: taking no new connection; exiting once the open ones \
             end (at most {} s)",
            self.cfg.drain_time.as_secs()
        );
        self.clear_probe(out);
        self.timers = Timers::default();
        out.push(Action::StopListening);
        out.push(Action::Detach);
        let gen = self.start_count;
        self.old = Some(Old {
            gen,
            draining: true,
        });
        out.push(Action::Drain { gen });
        self.timers.set(Timer::Drain, now + self.cfg.drain_time);
        self.stats.up_since = None;
        self.state = State::Closing;
    }

    /// Connections open or waiting (`busy`), or none: on demand, ssh starts with the first
    /// and stops after the idle time without any.
    pub(super) fn on_busy(&mut self, busy: bool, now: Time, out: &mut Vec<Action>) {
        let Some(idle) = self.cfg.on_demand else {
            return;
        };
        match (&self.state, busy) {
            (State::Dormant, true) => {
                info!("a connection came: starting ssh");
                self.spawn(now, out);
            }
            (State::Stopping { then: Then::Sleep }, true) => {
                self.state = State::Stopping {
                    then: Then::Restart { paced: false },
                }
            }
            (_, true) => self.timers.clear(Timer::Idle),
            (State::Running { .. }, false) => self.timers.set(Timer::Idle, now + idle),
            _ => {}
        }
    }

    /// On demand, no connection for the idle time: ssh stops until the next one.
    pub(super) fn on_idle_due(&mut self, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        let idle = self.cfg.on_demand.unwrap_or_default();
        info!(
            "no connection for {} s: stopping ssh until the next one",
            idle.as_secs()
        );
        self.clear_probe(out);
        self.stop_ssh(Then::Sleep, now, out);
    }
}

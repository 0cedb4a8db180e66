//! Starting, stopping and restarting ssh: deadlines firing, ssh's end, signals, MAXSTART and MAXLIFETIME.

use super::*;

impl Supervisor {
    pub(super) fn on_timer(&mut self, t: Timer, now: Time, out: &mut Vec<Action>) {
        match t {
            Timer::Restart => match self.state {
                State::BackingOff => self.spawn(now, out),
                State::WaitingForServer => {
                    debug!("backoff over; trying ssh although the server did not answer a check");
                    // Checks go on: if the server answers while this ssh is still stuck in
                    // its connect (TCP backoff), it is replaced at once.
                    self.spawn_as(true, now, out);
                }
                _ => {}
            },
            Timer::ReachCheck => self.on_reach_tick(now, out),
            Timer::NetCheck => match self.state {
                State::Running { .. } => out.push(Action::CheckNetPath),
                // No ssh: the server may be reachable now (another network): check at once.
                State::WaitingForServer => self.timers.set(Timer::ReachCheck, now),
                _ => {}
            },
            Timer::Settled => {
                if self.state
                    == (State::Running {
                        phase: Phase::Unmonitored,
                    })
                {
                    if let Some(since) = self.target_away_since {
                        info!(
                            "ssh runs: the target answers again (unreachable for {:.1} s)",
                            now.since(since).as_secs_f64()
                        );
                    }
                    self.became_up(now, out);
                }
            }
            Timer::Watch => {
                if matches!(self.state, State::Running { .. }) {
                    self.timers.set(Timer::Watch, self.idle_watch(now));
                    out.push(Action::InspectStall);
                }
            }
            Timer::KillEscalation => {
                if matches!(self.state, State::Stopping { .. }) {
                    warn!(
                        "ssh did not exit {} s after SIGTERM; sending SIGKILL",
                        KILL_GRACE.as_secs()
                    );
                    out.push(Action::KillSsh);
                }
            }
            Timer::MaxLifetime => {
                info!("maximum lifetime reached; exiting");
                self.terminate(0, now, out);
            }
            Timer::Probe => {
                if matches!(self.state, State::Running { .. }) {
                    self.send_probe(now, false, out);
                }
            }
            Timer::ProbeSoft => {
                if let Some(p) = self.in_flight {
                    out.push(Action::InspectPath {
                        waited: now.since(p.sent),
                    });
                }
            }
            Timer::ProbeHard => {
                if let Some(p) = self.in_flight {
                    if self.state == (State::Running { phase: Phase::Up }) {
                        // One more look: a full link gets more time, a dead one does not.
                        self.hard_look = true;
                        out.push(Action::InspectPath {
                            waited: now.since(p.sent),
                        });
                    } else {
                        let waited = now.since(p.sent);
                        self.probe_failed(
                            format!("probe timed out after {:.1} s", waited.as_secs_f64()),
                            now,
                            out,
                        );
                    }
                }
            }
            Timer::ConfirmBy => {
                if let State::Running {
                    phase: Phase::Confirming { .. },
                } = self.state
                {
                    let waited = self.run.lived(now);
                    let last = match self.run.last_failure.take() {
                        Some(why) => format!(" (last probe: {why})"),
                        None => String::new(),
                    };
                    self.restart_ssh(
                        RestartKind::Unconfirmed,
                        format!(
                            "tunnel not working {:.0} s after ssh started{last}",
                            waited.as_secs_f64()
                        ),
                        true,
                        now,
                        out,
                    );
                }
            }
        }
    }

    /// Starts ssh unless MAXSTART says otherwise.
    pub(super) fn spawn(&mut self, now: Time, out: &mut Vec<Action>) {
        self.spawn_as(false, now, out)
    }

    /// Starts ssh (`blind`: while the server did not answer a check), or asks for a
    /// handshake slot first when one of many tunnels.
    pub(super) fn spawn_as(&mut self, blind: bool, now: Time, out: &mut Vec<Action>) {
        if let Some(max) = self.cfg.max_start {
            if self.start_count >= max {
                info!("max start count reached; exiting");
                self.end_with(true, "max start count reached".into());
                self.finish(0, out);
                return;
            }
        }
        if self.cfg.gated {
            self.state = State::Queued { blind };
            out.push(Action::AwaitSlot);
            return;
        }
        self.start(blind, now, out);
    }

    /// Starts ssh now.
    pub(super) fn start(&mut self, blind: bool, now: Time, out: &mut Vec<Action>) {
        self.start_count += 1;
        // One line per outage: handshakes retried through a proxy are not logged each.
        let level = if self.quiet() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        match self.cfg.max_start {
            Some(max) => log::log!(level, "starting ssh (count {} of {max})", self.start_count),
            None => log::log!(level, "starting ssh (count {})", self.start_count),
        }
        self.run = Run::new(now);
        self.run.blind = blind;
        self.timers.set(Timer::Watch, self.idle_watch(now));
        let phase = if self.cfg.monitored {
            self.timers.set(Timer::Probe, now + self.confirm_gap(0));
            self.timers.set(
                Timer::ConfirmBy,
                now + (self.cfg.first_poll + self.cfg.net_timeout).max(CONFIRM_FLOOR),
            );
            Phase::Confirming { attempt: 0 }
        } else {
            // Without probes, ssh alive past the gate (at least a second) counts as up.
            self.timers.set(
                Timer::Settled,
                now + self.cfg.gate_time.max(Duration::from_secs(1)),
            );
            if self.cfg.session_probe {
                self.timers.set(Timer::Probe, now + self.confirm_gap(0));
            }
            Phase::Unmonitored
        };
        self.state = State::Running { phase };
        out.push(Action::Spawn);
    }

    pub(super) fn on_spawn_failed(&mut self, e: String, now: Time, out: &mut Vec<Action>) {
        self.clear_probe(out);
        if self.start_count <= 1 {
            log::error!("cannot run ssh: {e}");
            self.end_with(true, format!("cannot run ssh: {e}"));
            self.finish(1, out);
            return;
        }
        warn!("cannot run ssh: {e}");
        self.after_exit(true, Some("ssh could not be started".into()), now, out);
    }

    pub(super) fn on_exit(&mut self, end: SshEnd, now: Time, out: &mut Vec<Action>) {
        self.timers.clear(Timer::KillEscalation);
        self.clear_probe(out);
        self.timers.clear(Timer::ConfirmBy);
        match std::mem::replace(&mut self.state, State::Done) {
            State::Stopping { then } => match then {
                Then::Exit(code) => self.finish(code, out),
                Then::Restart { paced } => self.after_exit(paced, None, now, out),
            },
            State::Running { phase } => {
                // `self.state` is already replaced: the phase tells whether it was up.
                if phase == Phase::Up {
                    self.note_down(now);
                }
                let lived = self.run.lived(now);
                let facts = RunFacts {
                    start_count: self.start_count,
                    lived,
                    gate_time: self.cfg.gate_time,
                };
                match judge(end, facts) {
                    Verdict::Exit { code, why } => {
                        let said = match (self.reason(), code) {
                            (_, 0) => why.to_string(),
                            (Some(Reason::Config(line)), _) => {
                                format!("{why}: configuration error, not retrying: {line}")
                            }
                            (Some(Reason::Network(line)), _) => {
                                format!("{why}: the server could not be reached: {line}")
                            }
                            (Some(r), _) => format!("{why}: {}", self.describe(&r)),
                            _ => why.to_string(),
                        };
                        if code == 0 {
                            info!("{said}");
                        } else {
                            log::error!("{said}");
                        }
                        self.end_with(code != 0, said);
                        self.finish(code, out);
                    }
                    Verdict::Restart(why) => {
                        self.stats
                            .record_restart(RestartKind::SshExit, why.clone(), now);
                        self.after_exit(true, Some(why), now, out);
                    }
                }
            }
            other => {
                debug!("ssh exit while {other:?}; ignored");
                self.state = other;
            }
        }
    }

    pub(super) fn on_signal(&mut self, sig: Sig, now: Time, out: &mut Vec<Action>) {
        match sig {
            Sig::Terminate(_) | Sig::Stop => {
                match sig {
                    Sig::Terminate(n) => info!("received signal to exit ({n})"),
                    _ => debug!("stopping"),
                }
                if let State::Stopping {
                    then: Then::Exit(_),
                } = self.state
                {
                    // Asked twice: do not wait out the grace.
                    out.push(Action::KillSsh);
                }
                self.terminate(0, now, out);
            }
            Sig::Restart => match self.state {
                State::Running { .. } => self.restart_ssh(
                    RestartKind::Signal,
                    "signalled to kill and restart ssh".into(),
                    false,
                    now,
                    out,
                ),
                State::BackingOff | State::WaitingForServer => {
                    info!("signalled to restart ssh; skipping the wait");
                    self.timers.clear(Timer::Restart);
                    self.stop_checks(out);
                    self.spawn(now, out);
                }
                _ => {}
            },
            Sig::Retry => match self.state {
                State::BackingOff | State::WaitingForServer => {
                    info!("SIGHUP: retrying now");
                    self.timers.clear(Timer::Restart);
                    self.stop_checks(out);
                    self.spawn(now, out);
                }
                State::Running { .. }
                    if self.in_flight.is_none()
                        && (self.cfg.monitored || self.cfg.session_probe) =>
                {
                    info!("SIGHUP: probing the tunnel now");
                    self.timers.set(Timer::Probe, now);
                }
                _ => {}
            },
            Sig::Wake => debug!("SIGUSR2: awake"),
        }
    }

    /// Stop everything and exit with `code`.
    pub(super) fn terminate(&mut self, code: i32, now: Time, out: &mut Vec<Action>) {
        match self.state {
            State::Running { .. } => {
                self.clear_probe(out);
                self.stop_ssh(Then::Exit(code), now, out);
            }
            State::Stopping { .. } => {
                self.state = State::Stopping {
                    then: Then::Exit(code),
                };
            }
            State::Idle | State::BackingOff | State::WaitingForServer | State::Queued { .. } => {
                self.stop_checks(out);
                self.finish(code, out)
            }
            State::Done => {}
        }
    }

    /// Notes how it ends (the first word stands: a later finish does not overwrite it).
    pub(super) fn end_with(&mut self, failed: bool, reason: String) {
        self.ending.get_or_insert(Ending { failed, reason });
    }

    pub(super) fn finish(&mut self, code: i32, out: &mut Vec<Action>) {
        if code != 0 {
            self.end_with(true, format!("exit status {code}"));
        } else {
            self.end_with(false, "stopped".into());
        }
        if self.timers.get(Timer::ReachCheck).is_some() {
            out.push(Action::StopReach);
        }
        self.timers = Timers::default();
        self.in_flight = None;
        self.state = State::Done;
        out.push(Action::Exit(code));
    }

    pub(super) fn stop_ssh(&mut self, then: Then, now: Time, out: &mut Vec<Action>) {
        self.stats.up_since = None;
        self.timers.clear(Timer::ConfirmBy);
        self.timers.clear(Timer::Settled);
        self.timers.clear(Timer::Watch);
        if self.run.stalled {
            self.stop_checks(out);
        }
        self.timers.set(Timer::KillEscalation, now + KILL_GRACE);
        self.state = State::Stopping { then };
        out.push(Action::TermSsh);
    }

    /// Kill the running ssh and start another (after the backoff when `paced`).
    pub(super) fn restart_ssh(
        &mut self,
        kind: RestartKind,
        why: String,
        paced: bool,
        now: Time,
        out: &mut Vec<Action>,
    ) {
        info!("{why}, restarting ssh");
        self.mark_down(now);
        self.stats.record_restart(kind, why, now);
        self.clear_probe(out);
        self.stop_ssh(Then::Restart { paced }, now, out);
    }
}

//! Starting, stopping and restarting ssh: deadlines firing, ssh's end, signals, MAXSTART and MAXLIFETIME.

use super::*;

impl Supervisor {
    /// A deadline fired: one method per timer.
    pub(super) fn on_timer(&mut self, t: Timer, now: Time, out: &mut Vec<Action>) {
        match t {
            Timer::Restart => self.on_restart_due(now, out),
            Timer::ReachCheck => self.on_reach_tick(now, out),
            Timer::NetCheck => self.on_net_check_due(now, out),
            Timer::Settled => self.on_settled(now, out),
            Timer::Watch => self.on_watch_due(now, out),
            Timer::KillEscalation => self.on_kill_due(out),
            Timer::MaxLifetime => self.on_max_lifetime(now, out),
            Timer::Probe => {
                if matches!(self.state, State::Running { .. }) {
                    self.send_probe(now, false, out);
                }
            }
            Timer::ProbeSoft => {
                if let Some(p) = self.probe() {
                    self.inspect_path(now.since(p.sent), now, out);
                }
            }
            Timer::ProbeHard => self.on_probe_hard(now, out),
            Timer::AckFlush => self.on_ack_flush_due(now, out),
            Timer::ConfirmBy => self.on_confirm_by(now, out),
            Timer::Drain => self.on_drain_due(now, out),
            Timer::OldKill => self.on_old_kill_due(out),
            Timer::Idle => self.on_idle_due(now, out),
        }
    }

    /// The backoff is over.
    fn on_restart_due(&mut self, now: Time, out: &mut Vec<Action>) {
        match self.state {
            State::BackingOff => self.spawn(now, out),
            State::WaitingForServer(_) => {
                debug!("backoff over; trying ssh although the server did not answer a check");
                // Checks go on: if the server answers while this ssh is still stuck in its
                // connect (TCP backoff), it is replaced at once.
                self.spawn_as(true, now, out);
            }
            _ => {}
        }
    }

    /// An address or route change has settled.
    fn on_net_check_due(&mut self, now: Time, out: &mut Vec<Action>) {
        match self.state {
            State::Running { .. } if self.server.proxied => {
                debug!("network change: ssh's path through the proxy cannot be seen")
            }
            State::Running { .. } => out.push(Action::CheckNetPath),
            // No ssh: the server may be reachable now (another network): check at once.
            State::WaitingForServer(_) => self.timers.set(Timer::ReachCheck, now),
            _ => {}
        }
    }

    /// `-M 0`: ssh has lived past the gate.
    fn on_settled(&mut self, now: Time, out: &mut Vec<Action>) {
        // An ssh refused one of the user's remote forwards is no working tunnel.
        let refused = self.run.forward_refused.is_some() && self.cfg.refusal_ends_ssh;
        if self.phase() != Some(Phase::Unmonitored) || refused {
            return;
        }
        if let Some(since) = self.server.target_away_since {
            info!(
                "ssh runs: the target answers again (unreachable for {:.1} s)",
                now.since(since).as_secs_f64()
            );
        }
        self.became_up(now, out);
    }

    /// Time for a look at ssh's connection.
    fn on_watch_due(&mut self, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        self.timers.set(Timer::Watch, self.idle_watch(now));
        out.push(Action::InspectStall {
            proxied: self.server.proxied,
            threshold: self.is_up().then(|| self.unanswered_threshold()),
        });
    }

    fn on_kill_due(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Stopping { .. }) {
            warn!(
                "ssh did not exit {} s after SIGTERM; sending SIGKILL",
                KILL_GRACE.as_secs()
            );
            out.push(Action::KillSsh);
        }
    }

    /// The net timeout of the probe in flight: while confirming, it failed; when up, one
    /// more look at the path (a full link gets more time, a dead one does not).
    fn on_probe_hard(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.probe() else { return };
        let waited = now.since(p.sent);
        if self.is_up() {
            self.set_probe(Some(InFlight {
                hard_look: true,
                ..p
            }));
            self.inspect_path(waited, now, out);
        } else {
            self.probe_failed(
                format!("probe timed out after {:.1} s", waited.as_secs_f64()),
                now,
                out,
            );
        }
    }

    /// A new ssh has not proven its tunnel in time.
    fn on_confirm_by(&mut self, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.phase(), Some(Phase::Confirming { .. })) {
            return;
        }
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
                self.finish(0, Ending::failure("max start count reached"), out);
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
        let quiet = self.quiet();
        let level = if quiet {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        match self.cfg.max_start {
            Some(max) => log::log!(level, "starting ssh (count {} of {max})", self.start_count),
            None => log::log!(level, "starting ssh (count {})", self.start_count),
        }
        self.run = Run::new(now);
        if blind {
            self.run.reaching = Reaching::Blind;
        }
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
        self.state = State::Running { phase, probe: None };
        out.push(Action::Spawn {
            quiet,
            gen: self.start_count,
        });
    }

    pub(super) fn on_spawn_failed(&mut self, e: String, now: Time, out: &mut Vec<Action>) {
        self.clear_probe(out);
        self.give_up_old(now, out);
        if self.start_count <= 1 {
            log::error!("cannot run ssh: {e}");
            self.finish(1, Ending::failure(format!("cannot run ssh: {e}")), out);
            return;
        }
        warn!("cannot run ssh: {e}");
        self.after_exit(true, Some("ssh could not be started".into()), now, out);
    }

    pub(super) fn on_exit(&mut self, end: SshEnd, now: Time, out: &mut Vec<Action>) {
        self.timers.clear(Timer::KillEscalation);
        self.clear_probe(out);
        self.timers.clear(Timer::ConfirmBy);
        match self.state.clone() {
            State::Stopping { then } => match then {
                Then::Exit(code) => self.finish(code, Ending::of_code(code), out),
                Then::Restart { paced } => self.after_exit(paced, None, now, out),
                Then::Sleep => self.state = State::Dormant,
            },
            State::Running { phase, .. } => self.judge_exit(end, phase, now, out),
            other => debug!("ssh exit while {other:?}; ignored"),
        }
    }

    /// ssh ended on its own: the exit table says whether to restart or to exit.
    fn judge_exit(&mut self, end: SshEnd, phase: Phase, now: Time, out: &mut Vec<Action>) {
        // Proven by a probe, or (-M 0) alive past the gate and serving: an outage begins.
        if phase == Phase::Up || self.healthy() {
            self.note_down(now);
        }
        self.give_up_old(now, out);
        let facts = RunFacts {
            start_count: self.start_count,
            lived: self.run.lived(now),
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
                let ending = Ending {
                    failed: code != 0,
                    reason: said,
                };
                self.finish(code, ending, out);
            }
            Verdict::Restart(why) => {
                self.stats
                    .record_restart(RestartKind::SshExit, why.clone(), now);
                self.after_exit(true, Some(why), now, out);
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
                State::Running { .. } => self.restart_planned(now, out),
                State::BackingOff | State::WaitingForServer(_) => {
                    info!("signalled to restart ssh; skipping the wait");
                    self.skip_wait(now, out);
                }
                _ => {}
            },
            Sig::Retry => match self.state {
                State::BackingOff | State::WaitingForServer(_) => {
                    info!("SIGHUP: retrying now");
                    self.skip_wait(now, out);
                }
                State::Running { probe: None, .. }
                    if self.cfg.monitored || self.cfg.session_probe =>
                {
                    info!("SIGHUP: probing the tunnel now");
                    self.timers.set(Timer::Probe, now);
                }
                _ => {}
            },
            Sig::Wake => debug!("SIGUSR2: awake"),
        }
    }

    /// SIGUSR1 while ssh runs: make-before-break where it can be, else stop it and start
    /// another at once.
    fn restart_planned(&mut self, now: Time, out: &mut Vec<Action>) {
        if !self.planned_restart(now, out) {
            self.restart_ssh(
                RestartKind::Signal,
                "signalled to kill and restart ssh".into(),
                false,
                now,
                out,
            )
        }
    }

    /// A signal cut a wait short: ssh starts now.
    fn skip_wait(&mut self, now: Time, out: &mut Vec<Action>) {
        self.timers.clear(Timer::Restart);
        self.stop_checks(out);
        self.spawn(now, out);
    }

    /// Stop everything and exit with `code`.
    pub(super) fn terminate(&mut self, code: i32, now: Time, out: &mut Vec<Action>) {
        self.stop_old(now, out);
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
            // The old ssh was told to go above; its end ends autossh.
            State::Closing => {}
            State::Idle
            | State::BackingOff
            | State::WaitingForServer(_)
            | State::Queued { .. }
            | State::Dormant => {
                self.stop_checks(out);
                self.finish(code, Ending::of_code(code), out)
            }
            State::Done(_) => {}
        }
    }

    /// Ends: every deadline disarmed, `Exit(code)` for the loop.
    pub(super) fn finish(&mut self, code: i32, ending: Ending, out: &mut Vec<Action>) {
        if self.timers.get(Timer::ReachCheck).is_some() {
            out.push(Action::StopReach);
        }
        self.timers = Timers::default();
        self.state = State::Done(ending);
        out.push(Action::Exit(code));
    }

    pub(super) fn stop_ssh(&mut self, then: Then, now: Time, out: &mut Vec<Action>) {
        self.give_up_old(now, out);
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

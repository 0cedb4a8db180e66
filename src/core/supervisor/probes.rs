//! Probes: when they are sent (the poll, unanswered requests, network changes), how a late one is judged, and what a failed one does.

use super::*;

impl Supervisor {
    /// How long an application's request must go unanswered, with the server silent as
    /// long, before it draws a probe: `max(500 ms, 2·srtt + 4·rttvar)` of the probes' RTT.
    pub fn unanswered_threshold(&self) -> Duration {
        self.probes.rtt.patience(
            unanswered::FLOOR,
            self.cfg.net_timeout.max(unanswered::FLOOR),
        )
    }

    /// An address or route change reached ssh's connection: a vanished local address
    /// means a dead connection (restart now); another way to the server means a probe now.
    pub(super) fn on_net_path(&mut self, p: NetPath, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        match p {
            NetPath::Gone(what) => {
                self.restart_ssh(RestartKind::Network, what, false, now, out);
                // Its connection cannot send a byte: SIGTERM would only wait out the grace.
                out.push(Action::KillSsh);
            }
            NetPath::Moved(what) => {
                if self.is_up() && self.probe().is_none() {
                    info!("{what}; probing the tunnel now");
                    self.send_probe(now, true, out);
                } else {
                    debug!("{what}");
                }
            }
            NetPath::Same | NetPath::Unknown => debug!("network change: ssh's path unchanged"),
        }
    }

    /// Whether the last data each way on ssh's connection (`sent`, `recv`: how long ago)
    /// was our own probe's exchange: no sign that the tunnel is in use.
    pub(super) fn only_probe_traffic(
        &self,
        sent: Option<Duration>,
        recv: Option<Duration>,
        now: Time,
    ) -> bool {
        let ours = |age: Option<Duration>| {
            let at = age.map(|a| now.before(a));
            matches!((at, self.probes.answered_at), (Some(t), Some(a)) if t <= a + PROBE_TAIL)
        };
        ours(sent) && ours(recv)
    }

    /// A look at ssh's sockets: look again sooner while the tunnel carries traffic, and
    /// probe now when an application's request has gone unanswered (whatever the poll).
    pub(super) fn on_traffic(&mut self, t: Traffic, now: Time, out: &mut Vec<Action>) {
        if !self.is_up() {
            return;
        }
        if let Some(heard) = t.server_recv.map(|r| now.before(r)) {
            let proof = &mut self.health.last_proof;
            *proof = Some(proof.map_or(heard, |p| p.max(heard)));
        }
        let only_probes = self.only_probe_traffic(t.server_sent, t.server_recv, now);
        let again = if only_probes {
            WATCH_EVERY
        } else if t.server_owes() {
            WATCH_OWED
        } else if t.active(ACTIVE_WITHIN) {
            WATCH_ACTIVE
        } else {
            WATCH_EVERY
        };
        let next = if again == WATCH_EVERY {
            self.idle_watch(now)
        } else {
            now + again
        };
        if self.timers.get(Timer::Watch).is_some_and(|at| next < at) {
            self.timers.set(Timer::Watch, next);
        }
        if self.probe().is_some() {
            return;
        }
        if self
            .run
            .unanswered
            .look(&t, self.unanswered_threshold(), now)
        {
            if let Waiting::For { waited: w, .. } = t.waiting {
                debug!(
                    "a request through the tunnel unanswered for {} ms, the server silent: \
                     probing now",
                    ms(w)
                );
            }
            self.send_probe(now, true, out);
        }
    }

    pub(super) fn send_probe(&mut self, now: Time, drawn: bool, out: &mut Vec<Action>) {
        if self.probe().is_some() {
            return;
        }
        let seq = self.probes.next_seq;
        self.probes.next_seq += 1;
        self.set_probe(Some(InFlight {
            seq,
            sent: now,
            drawn,
            hard_look: false,
        }));
        let confirming = !self.is_up();
        let hard = self.cfg.net_timeout;
        if !confirming {
            let floor = if drawn {
                DRAWN_PATIENCE_FLOOR
            } else {
                PATIENCE_FLOOR
            };
            let soft = self.probes.rtt.patience(floor.min(hard), hard);
            if soft < hard {
                self.timers.set(Timer::ProbeSoft, now + soft);
            }
        }
        self.timers.set(Timer::ProbeHard, now + hard);
        if self.cfg.flush_acks && !self.server.proxied {
            self.timers.set(Timer::AckFlush, now + ACK_FLUSH_FIRST);
        }
        out.push(Action::SendProbe { seq });
    }

    /// The probe in flight is not back: flush ssh's delayed acknowledgements, and again at
    /// doubling gaps (1, 2, 4 … 128 ms after it left), since an answer held by the server
    /// can only follow an acknowledgement ssh owes it for a packet that came after the probe
    /// left (a round trip later).
    pub(super) fn on_ack_flush_due(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.probe() else {
            return;
        };
        out.push(Action::FlushAcks);
        let next = now.since(p.sent).saturating_mul(2).max(ACK_FLUSH_FIRST * 2);
        if next < ACK_FLUSH_SPAN {
            self.timers.set(Timer::AckFlush, p.sent + next);
        }
    }

    pub(super) fn clear_probe(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(Timer::Probe);
        self.timers.clear(Timer::ProbeSoft);
        self.timers.clear(Timer::ProbeHard);
        self.timers.clear(Timer::AckFlush);
        if self.probe().is_some() {
            self.set_probe(None);
            out.push(Action::DropProbe);
        }
    }

    /// Records the probe in flight (only a running ssh carries one).
    pub(super) fn set_probe(&mut self, p: Option<InFlight>) {
        // INVARIANT: a probe is only ever out through a running ssh.
        debug_assert!(p.is_none() || matches!(self.state, State::Running { .. }));
        if let State::Running { probe, .. } = &mut self.state {
            *probe = p;
        }
    }

    /// Asks for a look at ssh's connection while a probe is late; through a proxy ssh has
    /// none of its own: the path is unknown.
    pub(super) fn inspect_path(&mut self, waited: Duration, now: Time, out: &mut Vec<Action>) {
        if self.server.proxied {
            self.on_path(PathState::Unknown, now, out);
        } else {
            out.push(Action::InspectPath { waited });
        }
    }

    pub(super) fn on_echo(&mut self, seq: u64, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.probe().filter(|p| p.seq == seq) else {
            return;
        };
        self.set_probe(None);
        self.timers.clear(Timer::ProbeSoft);
        self.timers.clear(Timer::ProbeHard);
        self.timers.clear(Timer::AckFlush);
        if let Some(port) = self
            .run
            .forward_refused
            .filter(|_| self.cfg.refusal_ends_ssh)
        {
            // The session answers, but without the user's remote forward: no proof (ssh
            // ends on it, ExitOnForwardFailure).
            debug!("probe {seq} back, but the server refused remote port {port}");
            return;
        }
        if self.server.port_held.is_some() && !self.run.proof_waited && !self.is_up() {
            // Retrying a held port: ssh's word on the forward may come just after this
            // answer. The proof is the next answer, [`FORWARD_WORD`] later.
            self.run.proof_waited = true;
            self.timers.set(Timer::Probe, now + FORWARD_WORD);
            return;
        }
        let rtt = now.since(p.sent);
        self.health.last_proof = Some(now);
        self.probes.answered_at = Some(now);
        self.probes.rtt.sample(rtt);
        self.stats.record_rtt(rtt);
        match self.phase() {
            Some(Phase::Unmonitored) => {
                // The session probe answered: the first proof this ssh works (ssh alive past
                // the gate only counted as up); from now on the tunnel is watched by probes.
                self.log_up("session probe", rtt, now);
                self.health.down_since = None;
                self.set_phase(Phase::Up);
                self.became_up(now, out);
            }
            Some(Phase::Confirming { .. }) => {
                self.timers.clear(Timer::ConfirmBy);
                if let Some(ports) = self.ports.as_mut() {
                    ports.moves = 0;
                }
                self.log_up("probe", rtt, now);
                self.set_phase(Phase::Up);
                self.became_up(now, out);
            }
            _ => debug!("probe {seq} ok, rtt {} ms", ms(rtt)),
        }
        let mut next = (p.sent + self.cfg.poll).max(now);
        if self.cfg.gated {
            next = next.on_grid(PROBE_GRID);
        }
        self.timers.set(Timer::Probe, next);
    }

    pub(super) fn on_path(&mut self, path: PathState, now: Time, out: &mut Vec<Action>) {
        let Some(p) = self.probe() else { return };
        if p.hard_look {
            self.set_probe(Some(InFlight {
                hard_look: false,
                ..p
            }));
            return self.on_hard_look(p, path, now, out);
        }
        match path {
            PathState::Quiet => {
                let waited = now.since(p.sent);
                let drawn = if p.drawn {
                    "; a request through the tunnel went unanswered"
                } else {
                    ""
                };
                self.probe_failed(
                    format!(
                        "probe timed out after {:.1} s (server acknowledged it, session \
                         silent{drawn})",
                        waited.as_secs_f64()
                    ),
                    now,
                    out,
                );
            }
            PathState::Busy | PathState::Alive | PathState::Lossy | PathState::Unknown => {
                debug!(
                    "probe {} late; path {path:?}: waiting for the net timeout",
                    p.seq
                )
            }
        }
    }

    /// The path at the net timeout of probe `p`: a link that is alive gets more time (up to
    /// [`MAX_PROBE_WAIT`]), anything else fails the probe.
    fn on_hard_look(&mut self, p: InFlight, path: PathState, now: Time, out: &mut Vec<Action>) {
        let waited = now.since(p.sent);
        if matches!(path, PathState::Alive | PathState::Lossy) && waited < MAX_PROBE_WAIT {
            debug!(
                "probe {} late after {:.1} s, path {path:?}: the link is alive, waiting",
                p.seq,
                waited.as_secs_f64()
            );
            self.timers
                .set(Timer::ProbeHard, now + self.cfg.net_timeout);
            return;
        }
        let why = match path {
            PathState::Alive => "the server sends, but not the echo",
            PathState::Lossy => "lossy link, no echo",
            PathState::Quiet => "server acknowledged it, session silent",
            PathState::Busy => "nothing from the server",
            PathState::Unknown => "path unknown",
        };
        self.probe_failed(
            format!(
                "probe timed out after {:.1} s ({why})",
                waited.as_secs_f64()
            ),
            now,
            out,
        );
    }

    /// When the next idle look at ssh's connection is due.
    pub(super) fn idle_watch(&self, now: Time) -> Time {
        if self.cfg.gated {
            (now + WATCH_EVERY).on_grid(FLEET_GRID)
        } else {
            now + WATCH_EVERY
        }
    }

    /// ssh bound its sockets, so the tunnel can answer now: one not proven yet is probed
    /// [`LISTEN_SETTLE`] later instead of at its next try (a unix socket's file is there at
    /// bind(2), before ssh's listen(2): a connect in between is refused).
    pub(super) fn on_bound(&mut self, now: Time) {
        let unproven = matches!(
            self.phase(),
            Some(Phase::Confirming { .. } | Phase::Unmonitored)
        );
        let at = now + LISTEN_SETTLE;
        let later = self.timers.get(Timer::Probe).is_some_and(|t| t > at);
        if unproven && later && self.probe().is_none() && !self.run.proof_waited {
            self.timers.set(Timer::Probe, at);
        }
    }

    /// The gap before confirmation try `tries` (0: the first after a start).
    pub(super) fn confirm_gap(&self, tries: u32) -> Duration {
        if self.cfg.gated && tries < GATED_QUICK_TRIES {
            return GATED_CONFIRM_GAP;
        }
        (CONFIRM_FIRST_GAP * 2u32.saturating_pow(tries)).min(CONFIRM_MAX_GAP)
    }

    pub(super) fn probe_failed(&mut self, why: String, now: Time, out: &mut Vec<Action>) {
        match self.phase() {
            Some(Phase::Confirming { attempt }) => {
                debug!("tunnel not up yet: {why}");
                self.run.last_failure = Some(why);
                self.clear_probe(out);
                let gap = self.confirm_gap(attempt + 1).min(self.cfg.poll);
                self.timers.set(Timer::Probe, now + gap);
                self.set_phase(Phase::Confirming {
                    attempt: attempt + 1,
                });
            }
            Some(Phase::Up) => {
                self.stats.probe_failures += 1;
                self.restart_ssh(RestartKind::Probe, why, true, now, out);
                self.run.server_silent = true;
                // The dead session may still hold the remote port on the server for a
                // while: the next ssh asks for another one instead of failing on it.
                self.relocate(false, out);
            }
            Some(Phase::Unmonitored) => {
                // The session probe's socket is not there yet (ssh still authenticating),
                // or the session does not answer: ServerAlive is still watching; retry, at
                // most once a second early on, then every 30 s.
                debug!("session probe: {why}");
                self.clear_probe(out);
                let early = self
                    .run
                    .started_at
                    .is_some_and(|s| now.since(s) < CONFIRM_FLOOR);
                let cap = if early {
                    CONFIRM_MAX_GAP
                } else {
                    SESSION_RETRY_MAX_GAP
                };
                let gap = self.confirm_gap(self.run.session_tries).min(cap);
                self.run.session_tries += 1;
                self.timers.set(Timer::Probe, now + gap);
            }
            None => self.clear_probe(out),
        }
    }

    /// ssh said the server would not listen on `port` for a remote forward: when that is
    /// loop mode's remote monitor port, the next ssh asks for another (at most
    /// [`MAX_RELOCATIONS`] in a row without a proven tunnel); when it is one of the user's,
    /// the run remembers it (its end is then paced as a port held, see `recovery.rs`).
    pub(super) fn on_forward_failed(&mut self, port: u16, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        let Some(ports) = self.ports.as_mut().filter(|p| p.remote == port) else {
            self.run.forward_refused.get_or_insert(port);
            return;
        };
        if ports.moves >= MAX_RELOCATIONS {
            warn!(
                "remote monitor port {port} busy on the server, and {MAX_RELOCATIONS} others \
                 before it; keeping this ssh (is remote forwarding allowed?)"
            );
            return;
        }
        ports.moves += 1;
        let own = if port == ports.local {
            format!(" (if the server is this host, by our own -L {port})")
        } else {
            String::new()
        };
        self.restart_ssh(
            RestartKind::PortBusy,
            format!("remote monitor port {port} busy on the server{own}"),
            false,
            now,
            out,
        );
        self.relocate(true, out);
    }

    /// Moves loop mode's remote port for the next ssh (`busy`: ssh said the server holds
    /// it; else the tunnel just failed).
    pub(super) fn relocate(&mut self, busy: bool, out: &mut Vec<Action>) {
        let Some(ports) = self.ports.as_mut() else {
            return;
        };
        let old = ports.remote;
        ports.remote = ports.next_remote();
        let to = ports.remote;
        if busy {
            info!("next ssh uses remote monitor port {to}");
        } else {
            info!("next ssh uses remote monitor port {to} (the old session may still hold {old})");
        }
        out.push(Action::RelocateMonitor { to });
    }
}

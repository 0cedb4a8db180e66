//! Recovery: what follows a failed ssh. The backoff paces handshakes; between them cheap
//! reachability checks find a returning server within a fraction of a second, and a
//! transition from unreachable to reachable starts ssh at once. The same checks run while a
//! live ssh's connection is stalled, so a black hole that lifts is noticed at once instead
//! of at TCP's next retransmission.
//!
//! Through a jump host or a proxy command the server's address cannot be checked from here.
//! When the jump host answers and the target behind it does not ("stdio forwarding failed"),
//! the handshake through the jump host is the only check there is: it is retried at a
//! steady pace instead of the growing backoff, so the target's return is seen within
//! [`THROUGH_PROXY_EVERY`] however long the outage, at a bounded cost to the jump host.

use super::*;

/// While the server does not answer checks, handshakes are still tried this often at least.
const BLIND_RETRY_FLOOR: Duration = Duration::from_secs(1);
/// While the target does not answer through a proxy that does, a handshake starts this
/// long after the previous one started (or at once when that one took longer). Each costs
/// the jump host one connection and one authentication (about 25 ms of its CPU; the `-W`
/// channel fails at once), so the rate is bounded to 40 a minute, and the tunnel is back
/// within this plus one handshake of the target's return.
pub const THROUGH_PROXY_EVERY: Duration = Duration::from_millis(1500);
/// While a remote forward's port is held on the server by another session, a handshake
/// starts this long after the previous one started: the tunnel is back within about this
/// of the port's release (one connection and one login on the server each time).
pub const PORT_HELD_EVERY: Duration = Duration::from_millis(600);
/// A tunnel never up in this run may be refused its port for good (a forward the server
/// forbids says the same): its steady retries last this long, then the backoff paces them.
const PORT_HELD_STEADY_UNPROVEN: Duration = Duration::from_secs(300);
/// Reachability checks run this often while the server is away: a server that is back is
/// seen 60 ms later on average (a check to a server that is down is one refused SYN).
pub const CHECK_EVERY: Duration = Duration::from_millis(125);
/// An ssh still in its TCP connect this long after its start has lost its SYN (the first
/// retransmission is due at 1 s): the server is checked, and when it answers after failing
/// a check, that ssh is replaced instead of waiting out its connect's backoff.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(1);

/// Why the last ssh went away, for pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// ssh said a person must fix something.
    Config,
    /// The server or the network did not answer.
    Network,
    /// Through a proxy that answered, the target did not.
    Target,
    /// The server answered and refused one of the user's remote forwards (this port).
    PortHeld(u16),
    Other,
}

impl Supervisor {
    fn cause(&self) -> Cause {
        if let Some(port) = self.run.forward_refused {
            return Cause::PortHeld(port);
        }
        match self.reason() {
            Some(Reason::Config(_)) => Cause::Config,
            Some(Reason::Network(_)) => Cause::Network,
            Some(Reason::TargetUnreachable { .. }) => Cause::Target,
            // A probe went unanswered, or the server failed a check and has not answered
            // one since (a stalled ssh in a black hole): the network, whatever ssh said.
            None if self.run.server_silent || self.server.unreachable_since.is_some() => {
                Cause::Network
            }
            None => Cause::Other,
        }
    }

    /// ssh goes through a proxy: the server cannot be checked from here.
    pub(super) fn on_proxied(&mut self, target: Option<String>) {
        if !self.server.proxied {
            debug!(
                "ssh goes through a proxy{}: handshakes are the only check of the server",
                target
                    .as_deref()
                    .map(|t| format!(" to {t}"))
                    .unwrap_or_default()
            );
        }
        self.server.proxied = true;
        self.server.unknown = true;
        if target.is_some() {
            self.server.target = target;
        }
    }

    /// ssh is gone and will be restarted: now, after the backoff, or when the server answers.
    /// `why` is logged when the reason was not logged already (an exit we did not cause).
    pub(super) fn after_exit(
        &mut self,
        paced: bool,
        why: Option<String>,
        now: Time,
        out: &mut Vec<Action>,
    ) {
        if self.out_of_starts(&why, out) {
            return;
        }
        let cause = self.cause();
        if cause == Cause::Target && paced {
            self.retry_through_proxy(why, now);
            return;
        }
        // Whatever ended this ssh, it was not the target missing behind the proxy.
        self.server.target_away_since = None;
        if let Cause::PortHeld(port) = cause {
            if paced && self.port_held_steady(port, now) {
                return self.retry_port_held(port, why, now);
            }
        } else {
            self.server.port_held = None;
        }
        let delay = if paced {
            let lived = self.run.lived(now);
            self.backoff.next_delay(lived, cause == Cause::Config)
        } else {
            Duration::ZERO
        };
        self.log_restart(why, delay);
        if self.backoff.tries() == 0 {
            // The last ssh lived long: any earlier outage is over.
            self.server.unreachable_since = None;
        }
        // A port refused by a server that answered: nothing to check (a port forbidden,
        // not held, ends up here once its steady retries are over).
        let check_first = !self.server.unknown
            && !matches!(cause, Cause::Config | Cause::PortHeld(_))
            && (cause == Cause::Network || !delay.is_zero());
        if check_first {
            self.wait_for_server(delay, now);
        } else if delay.is_zero() {
            self.spawn(now, out);
        } else {
            self.timers.set(Timer::Restart, now + delay);
            self.state = State::BackingOff;
        }
    }

    /// MAXSTART reached: no start is left, said now rather than announcing a restart.
    fn out_of_starts(&mut self, why: &Option<String>, out: &mut Vec<Action>) -> bool {
        if self.cfg.max_start.is_none_or(|max| self.start_count < max) {
            return false;
        }
        let reason = match why {
            Some(why) => format!("{why}; max start count reached"),
            None => "max start count reached".to_string(),
        };
        info!("{reason}; exiting");
        self.stop_checks(out);
        self.finish(0, Ending::failure(reason), out);
        true
    }

    /// "... restarting ssh in N s", with what ssh said about why it failed.
    fn log_restart(&self, why: Option<String>, delay: Duration) {
        let detail = match self.reason() {
            Some(r) => format!(" ({})", self.describe(&r)),
            None => String::new(),
        };
        match why {
            Some(why) => info!(
                "{why}{detail}, restarting ssh in {:.1} s",
                delay.as_secs_f64()
            ),
            None if !delay.is_zero() => {
                info!(
                    "waiting {:.1} s before restarting ssh{detail}",
                    delay.as_secs_f64()
                )
            }
            None => {}
        }
    }

    /// No ssh until the server answers a check (every [`CHECK_EVERY`]) or the backoff of
    /// `delay` is over. Even while the server does not answer, a handshake is tried at the
    /// backoff's pace (a check can be wrong: another route, a port knock...).
    fn wait_for_server(&mut self, delay: Duration, now: Time) {
        let blind_after = if self.server.unreachable_since.is_some() {
            // Already seen away: handshakes into the void only at the cap's pace.
            self.backoff.cap()
        } else {
            BLIND_RETRY_FLOOR
        };
        self.timers
            .set(Timer::Restart, now + delay.max(blind_after));
        // `unreachable_since` is kept across handshakes: one outage, one log line.
        self.state = State::WaitingForServer(Wait {
            quick: delay.is_zero(),
            backoff_until: now + delay,
        });
        self.timers.set(Timer::ReachCheck, now);
    }

    /// When the next handshake of a steady pace starts: `every` after the last one started,
    /// or now when that one took longer. The quick deaths are still counted: the backoff
    /// goes on from there if the failure changes.
    fn steady_retry_at(&mut self, every: Duration, now: Time) -> Time {
        let lived = self.run.lived(now);
        self.backoff.next_delay(lived, false);
        self.run.started_at.map_or(now, |s| s + every).max(now)
    }

    /// The target did not answer through a proxy that did: the next handshake at a steady
    /// pace ([`THROUGH_PROXY_EVERY`] after the last one started), the outage logged once.
    fn retry_through_proxy(&mut self, why: Option<String>, now: Time) {
        let at = self.steady_retry_at(THROUGH_PROXY_EVERY, now);
        let what = self.reason().map(|r| self.describe(&r)).unwrap_or_default();
        if self.server.target_away_since.is_none() {
            self.server.target_away_since = Some(now);
            let why = why.map(|w| format!("{w}: ")).unwrap_or_default();
            info!(
                "{why}{what}; retrying the handshake every {:.1} s until it answers",
                THROUGH_PROXY_EVERY.as_secs_f64()
            );
        } else {
            debug!(
                "{}{what}; next handshake in {:.1} s",
                why.map(|w| format!("{w}: ")).unwrap_or_default(),
                at.since(now).as_secs_f64()
            );
        }
        self.timers.set(Timer::Restart, at);
        self.state = State::BackingOff;
    }

    /// Whether a refused `port` is retried at the steady pace: always once the tunnel has
    /// been up (the port was ours: a session of ours that died holds it), else for
    /// [`PORT_HELD_STEADY_UNPROVEN`].
    fn port_held_steady(&mut self, port: u16, now: Time) -> bool {
        let held = *self.server.port_held.get_or_insert(PortHeld {
            port,
            since: now,
            logged: false,
        });
        self.health.ready_sent || now.since(held.since) < PORT_HELD_STEADY_UNPROVEN
    }

    /// One of the user's remote forwards was refused by a server that answers: the next
    /// handshake at a steady pace ([`PORT_HELD_EVERY`] after the last one started), what
    /// holds the port and the server-side fix logged once.
    fn retry_port_held(&mut self, port: u16, why: Option<String>, now: Time) {
        let at = self.steady_retry_at(PORT_HELD_EVERY, now);
        let why = why.map(|w| format!("{w}: ")).unwrap_or_default();
        if !self.server.port_held.is_some_and(|h| h.logged) {
            let who = if self.health.ready_sent {
                "the server's session of an earlier ssh of this tunnel, whose connection died \
                 without the server noticing (a changed client address, a connection lost \
                 without a reset)"
            } else {
                "another session: most likely one of an earlier ssh of this tunnel whose \
                 connection died without the server noticing (or the server forbids this \
                 forward)"
            };
            warn!(
                "{why}remote port {port} is held on the server by {who}; retrying every \
                 {:.1} s until it is free. Fix on the server: sshd_config \
                 ClientAliveInterval 10 and ClientAliveCountMax 3 end such a session within \
                 30 s (sshd's default, 0, keeps it until TCP keepalive gives up: 2 hours or \
                 more)",
                PORT_HELD_EVERY.as_secs_f64()
            );
        } else {
            debug!("{why}remote port {port} still held on the server");
        }
        if let Some(h) = self.server.port_held.as_mut() {
            h.logged = true;
        }
        self.timers.set(Timer::Restart, at);
        self.state = State::BackingOff;
    }

    pub(super) fn on_reach_tick(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.server.proxied {
            // Learnt meanwhile (ssh_config): the server behind the proxy cannot be checked.
            return self.on_reach_unknown(now, out);
        }
        let checking = match self.state {
            State::WaitingForServer(_) => true,
            State::Running { .. } => self.run.stalled || self.run.reaching.checking(),
            State::Queued { blind } => blind,
            _ => false,
        };
        if checking {
            out.push(Action::CheckReach);
            self.timers.set(Timer::ReachCheck, self.next_check(now));
        }
    }

    /// When the next check is due. One of many tunnels takes the next point of the
    /// [`CHECK_EVERY`] grid: the tunnels of one server then ask together, one wake-up and
    /// one connect for all.
    fn next_check(&self, now: Time) -> Time {
        if !self.cfg.gated {
            return now + CHECK_EVERY;
        }
        let at = now.on_grid(CHECK_EVERY);
        if at > now {
            at
        } else {
            at + CHECK_EVERY
        }
    }

    pub(super) fn stop_checks(&mut self, out: &mut Vec<Action>) {
        if self.timers.get(Timer::ReachCheck).is_some() {
            self.timers.clear(Timer::ReachCheck);
            out.push(Action::StopReach);
        }
    }

    pub(super) fn on_reachable(&mut self, ok: bool, now: Time, out: &mut Vec<Action>) {
        match (&self.state, ok) {
            (State::WaitingForServer(w), true) => {
                let w = *w;
                self.server_answers(w, now, out)
            }
            (State::WaitingForServer(_), false) if self.server.unreachable_since.is_none() => {
                self.server.unreachable_since = Some(now);
                info!(
                    "server unreachable; checking every {} ms until it answers",
                    CHECK_EVERY.as_millis()
                );
            }
            (State::Running { .. }, true)
                if self.run.reaching.checking() && !self.run.ssh_connected =>
            {
                self.unreached_ssh_meets_server(now, out)
            }
            (State::Running { .. }, true) if self.run.stalled => {
                if let Some(since) = self.server.unreachable_since.take() {
                    self.restart_ssh(
                        RestartKind::Stall,
                        format!(
                            "ssh's connection stalled; the server answers again after {:.1} s",
                            now.since(since).as_secs_f64()
                        ),
                        false,
                        now,
                        out,
                    );
                    // Its connection is dead: SIGTERM would only wait out the grace.
                    out.push(Action::KillSsh);
                }
            }
            (State::Running { .. }, false) if self.run.stalled || self.run.reaching.checking() => {
                self.server.unreachable_since.get_or_insert(now);
            }
            _ => {}
        }
    }

    /// The server answered a check while ssh has not reached it: an ssh started blind, or
    /// one seen connecting after the server failed a check, sits in its TCP connect's
    /// backoff (its next SYN seconds away): it is replaced at once. One seen connecting
    /// while the server answered all along is left to its connect.
    fn unreached_ssh_meets_server(&mut self, now: Time, out: &mut Vec<Action>) {
        let reaching = std::mem::replace(&mut self.run.reaching, Reaching::Unwatched);
        self.stop_checks(out);
        let away = self.server.unreachable_since.take();
        if reaching == Reaching::Connecting && away.is_none() {
            debug!("the server answers checks while ssh still connects; leaving ssh to it");
            self.run.reaching = Reaching::LeftAlone;
            return;
        }
        let away = away
            .map(|t| format!(" after {:.1} s", now.since(t).as_secs_f64()))
            .unwrap_or_default();
        self.restart_ssh(
            RestartKind::Stall,
            format!(
                "the server answers again{away} while ssh (started {:.1} s ago) is still \
                 trying to connect",
                self.run.lived(now).as_secs_f64()
            ),
            false,
            now,
            out,
        );
        // It hangs in connect(): no point in waiting for it to go.
        out.push(Action::KillSsh);
    }

    /// Where ssh's connection to the server stands, as last looked at. An ssh still
    /// connecting past [`CONNECT_PATIENCE`] starts checks of the server (not through a
    /// proxy: nothing to check).
    pub(super) fn on_link(&mut self, link: SshLink, now: Time, out: &mut Vec<Action>) {
        self.run.ssh_connected = link == SshLink::Established;
        match link {
            SshLink::Established if self.run.reaching.checking() => {
                self.run.reaching = Reaching::Unwatched;
                // It reached the server: whatever the checks said, the outage is over.
                self.server.unreachable_since = None;
                if !self.run.stalled {
                    self.stop_checks(out);
                }
            }
            SshLink::Connecting
                if self.run.reaching == Reaching::Unwatched
                    && !self.server.unknown
                    && matches!(self.state, State::Running { .. })
                    && self.run.lived(now) >= CONNECT_PATIENCE =>
            {
                info!(
                    "ssh has not reached the server {:.1} s after its start; checking the server",
                    self.run.lived(now).as_secs_f64()
                );
                self.run.reaching = Reaching::Connecting;
                self.timers.set(Timer::ReachCheck, now);
            }
            _ => {}
        }
    }

    /// The server answered a check while no ssh runs: one that was seen away gets ssh at
    /// once, as does one whose backoff asked for no wait; otherwise the backoff is waited
    /// out.
    fn server_answers(&mut self, w: Wait, now: Time, out: &mut Vec<Action>) {
        let was_away = self.server.unreachable_since.take();
        if let Some(since) = was_away {
            info!(
                "server reachable again after {:.1} s; starting ssh",
                now.since(since).as_secs_f64()
            );
        }
        self.stop_checks(out);
        if was_away.is_some() || w.quick {
            self.timers.clear(Timer::Restart);
            self.spawn(now, out);
        } else {
            self.wait_out_backoff(w.backoff_until);
        }
    }

    pub(super) fn on_reach_unknown(&mut self, now: Time, out: &mut Vec<Action>) {
        if !self.server.unknown {
            debug!("the server's address cannot be checked; pacing by backoff alone");
        }
        self.server.unknown = true;
        self.stop_checks(out);
        if let State::WaitingForServer(w) = self.state {
            if w.quick {
                self.timers.clear(Timer::Restart);
                self.spawn(now, out);
            } else {
                self.wait_out_backoff(w.backoff_until);
            }
        }
    }

    /// The server answers TCP (or cannot be checked): only the backoff holds the next
    /// handshake.
    fn wait_out_backoff(&mut self, until: Time) {
        self.timers.set(Timer::Restart, until);
        self.state = State::BackingOff;
    }

    pub(super) fn on_stall(&mut self, stalled: bool, now: Time, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Running { .. }) || stalled == self.run.stalled {
            return;
        }
        self.run.stalled = stalled;
        self.server.unreachable_since = None;
        if stalled {
            info!("ssh's connection to the server is stalled; checking the server");
            if !self.server.unknown {
                self.timers.set(Timer::ReachCheck, now);
            }
        } else {
            debug!("ssh's connection moves again");
            self.stop_checks(out);
        }
    }

    pub(super) fn on_resumed(&mut self, now: Time) {
        info!("the system resumed from suspend; checking the tunnel now");
        match self.state {
            State::Running {
                phase: Phase::Up,
                probe: None,
            } => self.timers.set(Timer::Probe, now),
            State::WaitingForServer(_) => self.timers.set(Timer::ReachCheck, now),
            _ => {}
        }
    }
}

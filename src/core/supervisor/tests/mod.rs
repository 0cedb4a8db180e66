//! Unit tests of the supervisor with a fake clock: no processes, no sockets.

use super::*;
use crate::core::ssh_stderr::{classify, Complaint};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn cfg() -> Config {
    Config {
        gate_time: secs(30.0),
        max_start: None,
        max_lifetime: None,
        poll: secs(600.0),
        first_poll: secs(600.0),
        net_timeout: secs(15.0),
        monitored: false,
        session_probe: false,
        seed: 1,
        gated: false,
        loop_monitor: None,
        proxied: false,
        held: false,
        handover: false,
        drain_time: secs(300.0),
        on_demand: None,
        refusal_ends_ssh: true,
        flush_acks: false,
    }
}

/// A look at ssh's connection before the tunnel is proven.
const LOOK: Action = Action::InspectStall {
    proxied: false,
    threshold: None,
};

/// A start outside any outage (the sim numbers its starts itself: `Sim::gens`).
const SPAWN: Action = Action::Spawn {
    quiet: false,
    gen: 0,
};

/// ssh writing the line that says `c` on its stderr (checked to be read back as `c`).
fn said(c: Complaint) -> Event {
    let line = match &c {
        Complaint::Config(l)
        | Complaint::Network(l)
        | Complaint::Ended(l)
        | Complaint::ChannelRefused(l) => l.clone(),
        Complaint::StdioForwardFailed => "stdio forwarding failed".into(),
        Complaint::RemoteForwardFailed(p) => {
            format!("Warning: remote port forwarding failed for listen port {p}")
        }
    };
    assert_eq!(classify(&line), Some(c), "{line:?}");
    Event::SshSaid(line)
}

fn monitored(poll: f64) -> Config {
    Config {
        poll: secs(poll),
        first_poll: secs(poll),
        net_timeout: secs((poll / 2.0).min(15.0)),
        monitored: true,
        gate_time: Duration::ZERO,
        ..cfg()
    }
}

/// A supervisor and a fake clock.
struct Sim {
    sup: Supervisor,
    now: Time,
    /// Answer the once-a-second stall inspection with "not stalled", out of sight.
    auto_stall: bool,
    /// `Action::Ready` is counted here rather than returned.
    readies: usize,
    /// The numbers of the ssh started, in order (`Action::Spawn` is returned with 0).
    gens: Vec<u32>,
}

impl Sim {
    fn new(cfg: Config) -> Sim {
        Sim {
            sup: Supervisor::new(cfg),
            now: Time::from_origin(secs(1000.0)),
            auto_stall: true,
            readies: 0,
            gens: Vec::new(),
        }
    }

    fn ev(&mut self, e: Event) -> Vec<Action> {
        let out = self.sup.handle(e, self.now);
        self.without_ready(out)
    }

    fn without_ready(&mut self, acts: Vec<Action>) -> Vec<Action> {
        let before = acts.len();
        let rest: Vec<Action> = acts.into_iter().filter(|a| *a != Action::Ready).collect();
        self.readies += before - rest.len();
        rest.into_iter()
            .map(|a| match a {
                Action::Spawn { quiet, gen } => {
                    self.gens.push(gen);
                    Action::Spawn { quiet, gen: 0 }
                }
                a => a,
            })
            .collect()
    }

    /// Advances the clock by `s` seconds, firing deadlines on the way, in order.
    fn advance(&mut self, s: f64) -> Vec<Action> {
        let end = self.now + secs(s);
        let mut out = Vec::new();
        while let Some(next) = self.sup.timers.next().filter(|&t| t <= end) {
            self.now = self.now.max(next);
            let acts = self.sup.on_time(self.now);
            for a in self.without_ready(acts) {
                if matches!(a, Action::InspectStall { .. }) && self.auto_stall {
                    let more = self.sup.handle(Event::Stall(false), self.now);
                    out.extend(self.without_ready(more));
                } else {
                    out.push(a);
                }
            }
        }
        self.now = end;
        out
    }

    fn exit(&mut self, end: SshEnd) -> Vec<Action> {
        self.ev(Event::SshExited(end))
    }

    /// Lets a restart run its course with a reachable server: answers checks, waits out
    /// the backoff. Returns the actions other than the checks (a Spawn or an Exit).
    fn settle(&mut self) -> Vec<Action> {
        for _ in 0..1000 {
            let mut acts = self.advance(0.05);
            let mut rest = Vec::new();
            while let Some(a) = acts.pop() {
                match a {
                    Action::CheckReach => acts.extend(self.ev(Event::Reachable(true))),
                    Action::StopReach => {}
                    other => rest.push(other),
                }
            }
            if !rest.is_empty() {
                return rest;
            }
        }
        panic!("nothing happened in 50 s")
    }

    /// When `t` is due next, from now.
    fn until(&self, t: Timer) -> Duration {
        self.sup.timers.get(t).expect("armed").since(self.now)
    }

    /// Advances to the next probe, which must be sent; returns its number.
    fn next_probe(&mut self) -> u64 {
        let wait = self.until(Timer::Probe);
        match self.advance(wait.as_secs_f64())[..] {
            [Action::SendProbe { seq }] => seq,
            ref other => panic!("expected a probe, got {other:?}"),
        }
    }

    /// Answers every SendProbe in `acts` with an echo after `rtt` seconds.
    fn echo_all(&mut self, acts: &[Action], rtt: f64) {
        for a in acts {
            if let Action::SendProbe { seq } = a {
                self.now = self.now + secs(rtt);
                let out = self.ev(Event::ProbeEchoed { seq: *seq });
                assert!(out.is_empty(), "{out:?}");
            }
        }
    }
}

fn exit_code(acts: &[Action]) -> Option<i32> {
    acts.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

/// Starts a monitored supervisor and proves the tunnel; returns the sim.
fn up(poll: f64) -> Sim {
    let mut s = Sim::new(monitored(poll));
    s.ev(Event::Begin);
    let acts = s.advance(0.2);
    assert_eq!(acts, [Action::SendProbe { seq: 1 }]);
    s.echo_all(&acts, 0.002);
    assert_eq!(
        *s.sup.state(),
        State::Running {
            phase: Phase::Up,
            probe: None
        }
    );
    s
}

fn gate0() -> Config {
    Config {
        gate_time: Duration::ZERO,
        ..cfg()
    }
}

/// ssh refused twice quickly: autossh is waiting for the server, a check under way.
fn waiting() -> Sim {
    let mut s = Sim::new(gate0());
    s.ev(Event::Begin);
    let refused = || said(Complaint::Network("Connection refused".into()));
    s.ev(refused());
    assert_eq!(
        s.exit(SshEnd::Exited(255)),
        [],
        "network trouble: check before spawning"
    );
    assert!(
        matches!(s.sup.state(), State::WaitingForServer(_)),
        "{:?}",
        s.sup.state()
    );
    assert_eq!(s.advance(0.0), [Action::CheckReach]);
    s
}

fn app_waits(app: f64, server_recv: f64) -> Event {
    Event::Traffic(Traffic {
        server_sent: Some(secs(app)),
        server_recv: Some(secs(server_recv)),
        waiting: Waiting::For {
            waited: secs(app),
            sure: true,
        },
    })
}

/// What OpenSSH 9.2 prints through `-J jump` when the jump host cannot reach the target.
fn target_refused() -> [Complaint; 4] {
    [
        Complaint::ChannelRefused(
            "channel 0: open failed: connect failed: Connection refused".into(),
        ),
        Complaint::StdioForwardFailed,
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
        Complaint::Ended("Connection closed by UNKNOWN port 65535".into()),
    ]
}

/// ... and when the jump host itself is down.
fn jump_refused() -> [Complaint; 3] {
    [
        Complaint::Network("ssh: connect to host 10.0.0.1 port 22: Connection refused".into()),
        Complaint::Ended("kex_exchange_identification: Connection closed by remote host".into()),
        Complaint::Ended("Connection closed by UNKNOWN port 65535".into()),
    ]
}

/// A supervisor whose ssh goes through a jump host, after its first start.
fn proxied(cfg: Config) -> Sim {
    let mut s = Sim::new(cfg);
    s.ev(Event::Proxied {
        target: Some("10.0.0.9:22".into()),
    });
    assert_eq!(s.ev(Event::Begin), [SPAWN]);
    s
}

/// Runs `secs` of an outage where every handshake fails after `lasts` seconds saying
/// `lines`; returns the start times of the handshakes, from now.
fn failing_handshakes(s: &mut Sim, lines: &[Complaint], lasts: f64, secs_: f64) -> Vec<f64> {
    let start = s.now;
    let mut spawns = Vec::new();
    let mut running_since = Some(s.now);
    while s.now.since(start) < secs(secs_) {
        match running_since {
            Some(at) if s.now.since(at) >= secs(lasts) => {
                for l in lines {
                    s.ev(said(l.clone()));
                }
                let acts = s.exit(SshEnd::Exited(255));
                running_since = None;
                if acts.contains(&SPAWN) {
                    spawns.push(s.now.since(start).as_secs_f64());
                    running_since = Some(s.now);
                }
            }
            _ => {
                for a in s.advance(0.05) {
                    match a {
                        Action::Spawn { .. } => {
                            spawns.push(s.now.since(start).as_secs_f64());
                            running_since = Some(s.now);
                        }
                        Action::CheckReach => panic!("no check through a proxy"),
                        _ => {}
                    }
                }
            }
        }
    }
    spawns
}

/// Whether `acts` is exactly one look at the path.
fn inspects(acts: &[Action]) -> bool {
    matches!(acts, [Action::InspectPath { .. }])
}

mod held;
mod lifecycle;
mod probes;
mod proxy;
mod recovery;
mod reverse;

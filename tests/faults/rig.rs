//! The rig: sshd + echo service in SRV, autossh in CLI.

use super::*;

/// Field order is drop order: autossh first, the test dir last.
pub(crate) struct NsRig {
    pub(crate) autossh: Proc,
    pub(crate) sshd: NsSshd,
    pub(crate) echo: EchoService,
    pub(crate) net: TestNet,
    pub(crate) dir: TestDir,
    pub(crate) loop_mode: bool,
}

impl NsRig {
    /// `monitor`: the `-M` value. `Err`: namespaces unavailable (skip).
    pub(crate) fn start(name: &str, monitor: &str, env: &[(&str, &str)]) -> Result<NsRig, String> {
        let net = TestNet::create()?;
        let dir = TestDir::named(name);
        let sshd = NsSshd::start(&dir, &net);
        let echo = EchoService::start_in(net.srv(), SERVICE_PORT);
        let mut cmd = sshd.autossh_in(&net, monitor, TUNNEL_PORT, SERVICE_PORT);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let autossh = cmd.spawn(&dir);
        Ok(NsRig {
            autossh,
            sshd,
            echo,
            net,
            dir,
            loop_mode: monitor != "0",
        })
    }

    /// Loop mode on MONITOR_PORT with AUTOSSH_POLL=4, GATETIME=0 and debug
    /// logging (one line per probe with its round trip).
    pub(crate) fn start_loop(name: &str) -> Result<NsRig, String> {
        NsRig::start(
            name,
            &MONITOR_PORT.to_string(),
            &[
                ("AUTOSSH_POLL", "4"),
                ("AUTOSSH_GATETIME", "0"),
                ("AUTOSSH_LOGLEVEL", "7"),
            ],
        )
    }

    pub(crate) fn cli(&self) -> &str {
        self.net.cli()
    }

    fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    pub(crate) fn log_len(&self) -> usize {
        self.log().len()
    }

    pub(crate) fn log_since(&self, offset: usize) -> String {
        let l = self.log();
        l.get(offset..).unwrap_or("").to_string()
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// (ssh starts, "restarting ssh" decisions) logged so far.
    pub(crate) fn churn(&self) -> (usize, usize) {
        let log = self.log();
        (
            log.matches(STARTING).count(),
            log.matches("restarting ssh").count(),
        )
    }

    /// Starts and restart decisions since `base` (from [`NsRig::churn`]).
    fn churn_since(&self, base: (usize, usize)) -> (usize, usize) {
        let now = self.churn();
        (now.0 - base.0, now.1 - base.1)
    }

    pub(crate) fn tunnel_works(&self) -> bool {
        tunnel_works_in(self.cli(), TUNNEL_PORT)
    }

    /// Time until the tunnel works, attempting every 100 ms.
    /// Ends a fault window that began at `base` (churn) and `offset` (log):
    /// counts what happened in it, lifts the fault with `lift`, then times the
    /// tunnel (up to 10 s).
    pub(crate) fn end_window<T>(
        &self,
        base: (usize, usize),
        offset: usize,
        lift: impl FnOnce() -> T,
    ) -> Window {
        let (starts, restarts) = self.churn_since(base);
        let log = self.log_since(offset);
        lift();
        Window {
            starts,
            restarts,
            log,
            after_lift: self.time_to_tunnel(Duration::from_secs(10)),
        }
    }

    pub(crate) fn time_to_tunnel(&self, timeout: Duration) -> Option<Duration> {
        time_until_tunnel_works(self.cli(), TUNNEL_PORT, Duration::from_millis(100), timeout)
    }

    /// Everything for a failure message: autossh (command, env, log,
    /// children), the sshd logs (tails), the namespaces.
    pub(crate) fn story(&self) -> String {
        let sshd_logs = self.sshd.all_logs(&self.dir);
        let tail: Vec<&str> = sshd_logs.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "namespaces {:?}, server {}\n{}\n--- sshd logs (last 60 lines) ---\n{}",
            self.net.names(),
            self.net.srv_ip(),
            self.autossh.describe(),
            tail.join("\n")
        )
    }

    /// Waits for the first working tunnel and, in loop mode, the first
    /// "tunnel up" line.
    pub(crate) fn settle(&self, notes: &Notes) {
        let t = self.time_to_tunnel(Duration::from_secs(30));
        let Some(t) = t else {
            panic!("the tunnel never worked\n{}", self.story());
        };
        notes.note(format!("first tunnel after {:.2} s", t.as_secs_f64()));
        if self.loop_mode {
            let up = wait_until(Duration::from_secs(20), || self.count("tunnel up") >= 1);
            assert!(up, "no \"tunnel up\" line within 20 s\n{}", self.story());
        }
        assert!(self.autossh.is_running(), "{}", self.story());
    }

    /// Live (non-zombie) ssh children of autossh.
    fn ssh_children(&self) -> Vec<i32> {
        self.autossh.ssh_children()
    }

    /// Checks one ssh child, stops autossh with SIGTERM, tears everything
    /// down and checks that nothing is left (processes, namespaces).
    pub(crate) fn finish(self, notes: &Notes) {
        let one = wait_until(Duration::from_secs(5), || self.ssh_children().len() == 1);
        assert!(
            one,
            "expected exactly one ssh child, got {:?}\n{}",
            self.ssh_children(),
            self.story()
        );
        self.autossh.signal(Signal::SIGTERM);
        let status = self.autossh.wait_timeout(Duration::from_secs(10));
        assert!(
            status.is_some(),
            "autossh ignored SIGTERM\n{}",
            self.story()
        );
        let NsRig {
            autossh,
            sshd,
            echo,
            net,
            dir,
            ..
        } = self;
        let marker = dir.marker();
        let names = net.names();
        drop(autossh);
        drop(sshd);
        drop(echo);
        drop(net);
        drop(dir);
        if let Err(e) = no_process_left(&marker) {
            panic!("left behind: {e}");
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        notes.note(format!(
            "cleanup: autossh exited ({}), no process left, namespaces {names:?} removed",
            status.map(|s| s.to_string()).unwrap_or_default()
        ));
    }
}

/// Round trips (ms) of the probe lines in `log` ("... rtt N ms").
pub(crate) fn rtts(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("rtt ")? + 4..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            num.parse().ok()
        })
        .collect()
}

pub(crate) fn rtt_summary(log: &str) -> String {
    let v = rtts(log);
    if v.is_empty() {
        return "no probe rtt lines".into();
    }
    let max = v.iter().max().copied().unwrap_or(0);
    let min = v.iter().min().copied().unwrap_or(0);
    let mut sorted = v.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    format!(
        "{} probes, rtt min {min} ms, median {median} ms, max {max} ms",
        v.len()
    )
}

/// The lines of `log` that mention ssh starts, restarts and the tunnel state.
pub(crate) fn key_lines(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.contains(STARTING)
                || l.contains("restarting")
                || l.contains("tunnel up")
                || l.contains("down")
                || l.contains("timeout")
                || l.contains("failed")
        })
        .take(80)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits out `length` (the fault's duration), polling the log every 100 ms;
/// returns when (after `from`) the count of `needle` first grew past `base`.
pub(crate) fn wait_out(
    rig: &NsRig,
    from: Instant,
    length: Duration,
    needle: &str,
    base: usize,
) -> Option<Duration> {
    let end = from + length;
    let mut seen = None;
    let max_rounds = length.as_millis() / 100 + 20;
    for _ in 0..max_rounds {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if seen.is_none() && rig.count(needle) > base {
            seen = Some(from.elapsed());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
    if seen.is_none() && rig.count(needle) > base {
        seen = Some(from.elapsed());
    }
    seen
}

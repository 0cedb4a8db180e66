//! 3. Loss and latency: no restart.

use super::*;

/// What a fault window saw: ssh starts and "restarting ssh" lines, the log,
/// and how soon after the lift the tunnel worked.
pub(crate) struct Window {
    pub(crate) starts: usize,
    pub(crate) restarts: usize,
    pub(crate) log: String,
    pub(crate) after_lift: Option<Duration>,
}

impl Window {
    /// Notes the recovery (and the log when anything restarted or `show_log`),
    /// then asserts that nothing restarted on this `link` (slow, saturated:
    /// working) and that the tunnel works after the lift.
    pub(crate) fn assert_no_restart(&self, notes: &Notes, rig: &NsRig, link: &str, show_log: bool) {
        notes.note(match self.after_lift {
            Some(t) => format!("tunnel works {:.2} s after the lift", t.as_secs_f64()),
            None => "tunnel did not work within 10 s of the lift".into(),
        });
        if self.starts + self.restarts > 0 || show_log {
            notes.note(format!(
                "autossh log during the fault:\n{}",
                key_lines(&self.log)
            ));
        }
        assert_eq!(
            (self.starts, self.restarts),
            (0, 0),
            "autossh restarted ssh on a {link} but working link (new starts, restart lines)\n{}",
            rig.story()
        );
        assert!(
            self.after_lift.is_some(),
            "tunnel dead after the lift\n{}",
            rig.story()
        );
    }
}

/// Applies `fault` for `length` to a settled loop-mode tunnel; checks the
/// tunnel every ~3 s meanwhile (informational), then asserts no new ssh start
/// and a working tunnel after the lift.
pub(crate) fn no_restart_under(
    notes: &Notes,
    name: &str,
    length: Duration,
    fault: fn(&TestNet) -> Fault,
) {
    let rig = match NsRig::start_loop(name) {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let base = rig.churn();
    let offset = rig.log_len();
    let f = fault(&rig.net);
    let applied = f.applied_at();
    let (mut ok, mut tried) = (0u32, 0u32);
    let end = applied + length;
    for _ in 0..(length.as_secs() + 10) {
        if Instant::now() + Duration::from_secs(3) > end {
            break;
        }
        let t0 = Instant::now();
        tried += 1;
        if rig.tunnel_works() {
            ok += 1;
        }
        let next = t0 + Duration::from_secs(3);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let w = rig.end_window(base, offset, || f.lift());
    notes.note(format!(
        "{} s of fault: ssh starts during it: {}, \"restarting ssh\" lines: {}; echo checks \
         through the tunnel during it: {ok}/{tried} ok; {}",
        length.as_secs(),
        w.starts,
        w.restarts,
        rtt_summary(&w.log)
    ));
    w.assert_no_restart(notes, &rig, "slow", false);
    rig.finish(notes);
}

pub(crate) fn scenario_loss(notes: &Notes) {
    notes.note("fault: 20% random loss on each end's egress (iptables statistic)");
    no_restart_under(
        notes,
        "loss_20pct_no_restart",
        Duration::from_secs(60),
        |net| net.loss(20),
    );
}

pub(crate) fn scenario_latency(notes: &Notes) {
    notes.note("fault: +300 ms on every client-to-server packet (NFQUEUE delayer)");
    no_restart_under(
        notes,
        "latency_300ms_no_restart",
        Duration::from_secs(60),
        |net| net.delay(Duration::from_millis(300)),
    );
}

#[test]
pub(crate) fn loss_20pct_no_restart() {
    run_ns("loss_20pct_no_restart", scenario_loss);
}

#[test]
pub(crate) fn latency_300ms_no_restart() {
    run_ns("latency_300ms_no_restart", scenario_latency);
}

//! Faults.

use super::*;

/// An applied fault. [`Fault::lift`] (or drop) removes its iptables rules and
/// qdiscs (in reverse order) and stops its delayer.
pub struct Fault {
    what: String,
    /// Commands (argv) that undo what was applied, in application order.
    undo: Vec<Vec<String>>,
    pub(crate) delayer: Option<Delayer>,
    applied_at: Instant,
}

impl Fault {
    pub(crate) fn new(what: &str) -> Fault {
        Fault {
            what: what.to_string(),
            undo: Vec::new(),
            delayer: None,
            applied_at: Instant::now(),
        }
    }

    pub(crate) fn iptables(&mut self, ns: &str, rule: &[&str]) {
        let (chain, spec) = rule.split_first().expect("chain");
        let add: Vec<&str> = ["iptables", "-w", "5", "-A", chain]
            .into_iter()
            .chain(spec.iter().copied())
            .collect();
        let del: Vec<String> = [
            "ip", "netns", "exec", ns, "iptables", "-w", "5", "-D", chain,
        ]
        .into_iter()
        .chain(spec.iter().copied())
        .map(str::to_string)
        .collect();
        if let Err(e) = ns_exec(ns, &add) {
            self.undo_all();
            panic!("applying {}: {e}", self.what);
        }
        self.undo.push(del);
        self.applied_at = Instant::now();
    }

    pub(crate) fn qdisc(&mut self, ns: &str, dev: &str, spec: &[&str]) {
        let add: Vec<&str> = ["tc", "qdisc", "add", "dev", dev, "root"]
            .into_iter()
            .chain(spec.iter().copied())
            .collect();
        if let Err(e) = ns_exec(ns, &add) {
            self.undo_all();
            panic!("applying {} (qdisc unavailable?): {e}", self.what);
        }
        self.undo.push(
            [
                "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root",
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
        );
        self.applied_at = Instant::now();
    }

    /// When the last piece was applied.
    pub fn applied_at(&self) -> Instant {
        self.applied_at
    }

    fn undo_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(cmd) = self.undo.pop() {
            let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
            if let Err(e) = run_bounded(&argv, CMD_TIMEOUT) {
                errors.push(e);
            }
        }
        if let Some(d) = self.delayer.take() {
            if let Err(e) = d.stop() {
                errors.push(e);
            }
        }
        errors
    }

    /// Removes the fault; returns the instant it was fully lifted. Panics if
    /// something could not be removed.
    pub fn lift(mut self) -> Instant {
        let errors = self.undo_all();
        assert!(errors.is_empty(), "lifting {}: {errors:?}", self.what);
        Instant::now()
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        for e in self.undo_all() {
            eprintln!("fault cleanup ({}): {e}", self.what);
        }
    }
}

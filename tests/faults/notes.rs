//! Scenario bookkeeping.

use super::*;

/// What a scenario measured, printed as it goes and kept for the summary.
#[derive(Clone)]
pub(crate) struct Notes {
    name: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    skipped: Arc<Mutex<Option<String>>>,
}

impl Notes {
    fn new(name: &'static str) -> Notes {
        Notes {
            name,
            lines: Arc::new(Mutex::new(Vec::new())),
            skipped: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn note(&self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        eprintln!("[{}] {msg}", self.name);
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.to_string());
    }

    pub(crate) fn skip(&self, why: &str) {
        *self.skipped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    fn skipped(&self) -> Option<String> {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn summary(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| format!("  {l}\n"))
            .collect()
    }
}

/// Runs the scenario `name` in this test's thread and turns its outcome into this test's
/// outcome, with what it measured.
pub(crate) fn run_ns(name: &'static str, scenario: fn(&Notes)) {
    let notes = Notes::new(name);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&notes)));
    if let Some(why) = notes.skipped() {
        eprintln!("{name}: skipped: {why}");
        return;
    }
    if let Err(payload) = result {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".to_string());
        panic!(
            "{name} failed: {msg}\n--- measured ---\n{}",
            notes.summary()
        );
    }
    eprintln!("=== {name} ===\n{}", notes.summary());
}

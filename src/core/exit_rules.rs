//! What an ended ssh means: restart or exit, following autossh 1.4g's table, except that an
//! ssh killed with SIGKILL was killed on purpose, so autossh stops too.

use std::time::Duration;

/// How ssh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshEnd {
    Exited(i32),
    Signaled(i32),
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Restart(String),
    Exit { code: i32, why: String },
}

/// Facts about the run that just ended.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts {
    /// 1 for the first ssh started.
    pub start_count: u32,
    pub lived: Duration,
    pub gate_time: Duration,
}

/// The exit table.
pub fn judge(end: SshEnd, run: RunFacts) -> Verdict {
    let gate_on = !run.gate_time.is_zero();
    let first = run.start_count == 1;
    match end {
        SshEnd::Signaled(9) => Verdict::Exit {
            code: 0,
            why: "ssh was killed with SIGKILL (on purpose); exiting".into(),
        },
        SshEnd::Signaled(sig) => Verdict::Restart(format!("ssh exited on signal {sig}")),
        SshEnd::Exited(code) if first && gate_on && run.lived <= run.gate_time => Verdict::Exit {
            code: 1,
            why: format!(
                "ssh exited prematurely with status {code} (within the {} s gate time); exiting",
                run.gate_time.as_secs()
            ),
        },
        SshEnd::Exited(0) => Verdict::Exit {
            code: 0,
            why: "ssh exited with status 0; exiting".into(),
        },
        SshEnd::Exited(255) => Verdict::Restart("ssh exited with error status 255".into()),
        SshEnd::Exited(code @ (1 | 2)) if !first || !gate_on => {
            Verdict::Restart(format!("ssh exited with error status {code}"))
        }
        SshEnd::Exited(code) => Verdict::Exit {
            code: 1,
            why: format!("ssh exited with status {code}; exiting"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(start_count: u32, lived: u64, gate: u64) -> RunFacts {
        RunFacts {
            start_count,
            lived: Duration::from_secs(lived),
            gate_time: Duration::from_secs(gate),
        }
    }

    fn restarts(v: Verdict) -> bool {
        matches!(v, Verdict::Restart(_))
    }

    fn code(v: Verdict) -> i32 {
        match v {
            Verdict::Exit { code, .. } => code,
            Verdict::Restart(r) => panic!("restart: {r}"),
        }
    }

    #[test]
    fn inside_the_gate_on_first_run_any_status_exits_1() {
        for s in [0, 1, 2, 3, 255] {
            assert_eq!(
                code(judge(SshEnd::Exited(s), run(1, 5, 30))),
                1,
                "status {s}"
            );
        }
    }

    #[test]
    fn after_the_gate() {
        assert_eq!(code(judge(SshEnd::Exited(0), run(1, 40, 30))), 0);
        assert!(restarts(judge(SshEnd::Exited(255), run(1, 40, 30))));
        assert_eq!(code(judge(SshEnd::Exited(1), run(1, 40, 30))), 1);
        assert_eq!(code(judge(SshEnd::Exited(2), run(1, 40, 30))), 1);
        assert!(restarts(judge(SshEnd::Exited(1), run(2, 1, 30))));
        assert!(restarts(judge(SshEnd::Exited(2), run(3, 1, 30))));
        assert_eq!(code(judge(SshEnd::Exited(3), run(2, 40, 30))), 1);
        assert_eq!(code(judge(SshEnd::Exited(254), run(2, 40, 30))), 1);
    }

    #[test]
    fn gate_zero_disables_the_first_run_rule() {
        assert!(restarts(judge(SshEnd::Exited(1), run(1, 0, 0))));
        assert!(restarts(judge(SshEnd::Exited(255), run(1, 0, 0))));
        assert_eq!(code(judge(SshEnd::Exited(0), run(1, 0, 0))), 0);
    }

    #[test]
    fn signals() {
        assert_eq!(code(judge(SshEnd::Signaled(9), run(2, 100, 30))), 0);
        assert!(restarts(judge(SshEnd::Signaled(15), run(2, 100, 30))));
        assert!(restarts(judge(SshEnd::Signaled(1), run(1, 0, 0))));
    }
}

//! The real autossh binary against a scripted stand-in ssh: exit table, signals in each
//! state, argv handling, -f, pidfile, log file and bad input.

use std::time::Duration;
use test_support::*;

pub(crate) const T: Duration = Duration::from_secs(10);

/// autossh with the fake ssh, `-M 0` unless `args` says otherwise.
pub(crate) fn autossh(dir: &TestDir, fake: &FakeSsh, env: &[(&str, &str)], args: &[&str]) -> Proc {
    let mut cmd = Cmd::new(autossh_bin!()).env("AUTOSSH_PATH", fake.path());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.args(args).spawn(dir)
}

/// Waits for the exit and returns its code, failing with the whole story otherwise.
pub(crate) fn exit_code(p: &Proc, fake: &FakeSsh) -> i32 {
    let st = p.wait_timeout(T).unwrap_or_else(|| {
        panic!(
            "autossh did not exit\n{}\n{}",
            p.describe(),
            fake.describe()
        )
    });
    st.code()
        .unwrap_or_else(|| panic!("autossh killed by a signal\n{}", p.describe()))
}

pub(crate) fn assert_clean(dir: &TestDir) {
    if let Err(e) = no_process_left(&dir.marker()) {
        panic!("processes left behind: {e}");
    }
}

mod argv;
mod background;
mod bad_input;
mod exit_table;
mod signals;

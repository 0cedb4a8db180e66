//! Echo mode against the hostile service.

use super::*;

pub(crate) fn count(p: &Proc, needle: &str) -> usize {
    p.stderr_text().matches(needle).count()
}

pub(crate) fn story(p: &Proc, sshd: &Sshd) -> String {
    format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log())
}

/// SIGTERM: autossh must still be running, exit 0, and leave nothing behind.
pub(crate) fn finish(dir: TestDir, sshd: Sshd, autossh: Proc) {
    assert!(
        autossh.is_running(),
        "autossh is gone\n{}",
        story(&autossh, &sshd)
    );
    autossh.signal(Signal::SIGTERM);
    let st = autossh.wait_timeout(Duration::from_secs(15));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "exit on SIGTERM\n{}",
        story(&autossh, &sshd)
    );
    let marker = dir.marker();
    drop(autossh);
    drop(sshd);
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

/// Runs autossh in echo mode against a hostile service until it restarted ssh twice: no
/// "tunnel up" may appear, `why` (the probe failure) must, and SIGTERM still exits 0.
pub(crate) fn echo_mode_against(answer: Answer, why: &str) {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let hostile = Hostile::start(answer);
    let monitor = format!("{}:{}", free_port(), hostile.port);
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_POLL", "2")
        .env("AUTOSSH_GATETIME", "0")
        .env("AUTOSSH_LOGLEVEL", "7")
        .args(["-M", &monitor, "-N"])
        .args(sshd.client_args())
        .spawn(&dir);
    let restarted = wait_until(LONG, || {
        count(&autossh, "restarting ssh") >= 2 || !autossh.is_running()
    });
    let log = autossh.stderr_text();
    assert!(
        restarted && autossh.is_running(),
        "expected two restarts, autossh running\n{}",
        story(&autossh, &sshd)
    );
    assert!(
        !log.contains("tunnel up"),
        "{answer:?} counted as a working tunnel\n{}",
        story(&autossh, &sshd)
    );
    assert!(
        log.contains(why),
        "{answer:?}: expected {why:?} in the log\n{}",
        story(&autossh, &sshd)
    );
    assert!(hostile.connections() >= 2, "the service saw no probe");
    if !matches!(answer, Answer::Garbage) {
        let lines = hostile.lines();
        assert!(
            lines.iter().any(|l| l.contains(" autossh ")),
            "no probe line reached the service: {lines:?}"
        );
    }
    drop(hostile);
    finish(dir, sshd, autossh);
}

#[test]
pub(crate) fn echo_mode_garbage_is_not_an_echo() {
    echo_mode_against(Answer::Garbage, "wrong bytes came back on the monitor");
}

#[test]
pub(crate) fn echo_mode_partial_echo_then_silence_is_not_an_echo() {
    echo_mode_against(Answer::Partial, "probe timed out");
}

#[test]
pub(crate) fn echo_mode_echo_later_than_the_net_timeout_is_not_an_echo() {
    // POLL=2: the net timeout is 1 s.
    echo_mode_against(Answer::Late(Duration::from_millis(1800)), "probe timed out");
}

#[test]
pub(crate) fn echo_mode_echo_of_another_sequence_number_is_not_an_echo() {
    echo_mode_against(Answer::WrongSeq, "wrong bytes came back on the monitor");
}

#[test]
pub(crate) fn echo_mode_echo_with_extra_bytes_is_not_an_echo() {
    // Only the exact bytes count (probe::compare): trailing bytes make it wrong.
    echo_mode_against(Answer::Extra, "wrong bytes came back on the monitor");
}

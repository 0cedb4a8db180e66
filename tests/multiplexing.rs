//! Connection sharing in the user's ssh_config (`ControlMaster auto`, `ControlPersist yes`):
//! the supervised ssh must hold the session itself, not hand it to a background master that
//! nobody watches and that outlives autossh. Real sshd on loopback.

use std::time::Duration;
use test_support::*;

const UP: Duration = Duration::from_secs(20);

#[test]
fn a_control_master_in_ssh_config_does_not_take_the_session_away() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let service = Service::start();
    let tunnel = free_port();
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  ControlMaster auto\n  ControlPath {}/cm-%C\n  ControlPersist yes\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut args = sshd.client_args();
    let f = args
        .iter()
        .position(|a| a == "-F")
        .expect("-F in the client args");
    args[f + 1] = config.to_string_lossy().into_owned();
    let autossh = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tunnel}:127.0.0.1:{}", service.port()))
        .args(&args)
        .spawn(&dir);
    let story = || format!("{}\n--- sshd ---\n{}", autossh.describe(), sshd.log());
    assert!(wait_until(UP, || tunnel_works(tunnel)), "{}", story());
    assert!(
        wait_until(UP, || autossh.stderr_text().contains("tunnel up")),
        "{}",
        story()
    );
    // Without the fix ssh handed the session to a background master and exited 0, and
    // autossh with it, about a second after the start.
    assert!(autossh.is_running(), "{}", story());
    assert!(
        autossh.stderr_text().contains("ControlMaster=no"),
        "{}",
        story()
    );
    // The supervised ssh holds the session: killing it on the server brings it back.
    assert!(sshd.stop_sessions(Signal::SIGKILL) > 0);
    assert!(
        wait_until(UP, || autossh
            .stderr_text()
            .contains("starting ssh (count 2)")),
        "{}",
        story()
    );
    assert!(wait_until(UP, || tunnel_works(tunnel)), "{}", story());
    autossh.signal(Signal::SIGTERM);
    let st = autossh.wait_timeout(UP).expect("autossh exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", story());
    let masters: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cm-"))
        .collect();
    assert!(masters.is_empty(), "a control socket was made: {masters:?}");
    let marker = dir.marker();
    drop(autossh);
    drop(sshd);
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

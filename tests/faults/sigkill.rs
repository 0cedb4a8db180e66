//! 6. SIGKILL of autossh.

use super::*;

#[test]
pub(crate) fn sigkill_of_autossh_leaves_no_ssh() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir);
    let svc = Service::start();
    let tport = free_port();
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tport}:127.0.0.1:{}", svc.port()))
        .args(sshd.client_args())
        .spawn(&dir);
    let story = || format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log());
    assert!(
        wait_until(Duration::from_secs(20), || tunnel_works(tport)),
        "tunnel never worked\n{}",
        story()
    );
    let kids = live_children(&p);
    assert_eq!(kids.len(), 1, "{}", story());
    let ssh = kids[0];
    let ssh_cmd = cmdline_string(ssh);
    p.signal(Signal::SIGKILL);
    assert!(p.wait_timeout(Duration::from_secs(5)).is_some());
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(5), || !process_exists(ssh));
    let took = killed.elapsed();
    eprintln!(
        "[sigkill_of_autossh_leaves_no_ssh] ssh {} {:.2} s after SIGKILL of autossh",
        if gone { "gone" } else { "still running" },
        took.as_secs_f64()
    );
    assert!(
        gone,
        "ssh (pid {ssh}: {ssh_cmd}) still runs 5 s after autossh was SIGKILLed\n{}",
        describe_pids(&[ssh])
    );
    drop(p);
    drop(sshd);
    let marker = dir.marker();
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

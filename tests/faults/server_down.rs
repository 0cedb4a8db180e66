//! 2. Server down.

use super::*;

pub(crate) fn scenario_server_down_60s(notes: &Notes) {
    let mut rig = match NsRig::start("server_down_60s", "0", &[("AUTOSSH_GATETIME", "0")]) {
        Ok(r) => r,
        Err(why) => return notes.skip(&why),
    };
    rig.settle(notes);
    let starts0 = rig.count(STARTING);
    let offset = rig.log_len();

    let down_at = Instant::now();
    let killed = rig.sshd.kill();
    notes.note(format!(
        "killed sshd listener and sessions: {killed} processes"
    ));
    // The fault took effect: nothing answers through the tunnel.
    let dead = !rig.tunnel_works();
    notes.note(format!("tunnel dead during the outage: {dead}"));
    assert!(dead, "tunnel still works with sshd down\n{}", rig.story());
    // The outage itself: a fixed 60 s.
    std::thread::sleep(
        (down_at + Duration::from_secs(60)).saturating_duration_since(Instant::now()),
    );
    let starts_during = rig.count(STARTING) - starts0;
    let up_at = {
        let NsRig { sshd, dir, .. } = &mut rig;
        sshd.restart(dir)
    };
    let gap = up_at.elapsed();
    let since_up = rig.time_to_tunnel(Duration::from_secs(90)).map(|t| t + gap);
    let during = rig.log_since(offset);
    notes.note(format!(
        "server down 60 s: ssh starts during the outage: {starts_during}"
    ));
    notes.note(match since_up {
        Some(t) => format!(
            "tunnel works again {:.2} s after sshd listens again",
            t.as_secs_f64()
        ),
        None => "tunnel did not work within 90 s of sshd's restart".to_string(),
    });
    notes.note(format!(
        "autossh log since the outage:\n{}",
        key_lines(&during)
    ));
    assert!(rig.autossh.is_running(), "autossh exited\n{}", rig.story());
    let t = since_up.unwrap_or_else(|| panic!("tunnel never came back\n{}", rig.story()));
    assert!(
        t <= RECOVERY_LIMIT,
        "tunnel back {:.2} s after sshd listens again (limit {:?})\n{}",
        t.as_secs_f64(),
        RECOVERY_LIMIT,
        rig.story()
    );
    rig.finish(notes);
}

#[test]
pub(crate) fn server_down_60s() {
    run_ns("server_down_60s", scenario_server_down_60s);
}

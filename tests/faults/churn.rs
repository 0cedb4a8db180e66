//! 5. Restart churn: no leak.

use super::*;

/// Like [`wait_until`], polling every 2 ms (for tight restart loops).
pub(crate) fn wait_fast(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    for _ in 0..1_000_000 {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    cond()
}

/// autossh's live ssh children (not its janitor, not a zombie).
pub(crate) fn live_children(p: &Proc) -> Vec<i32> {
    p.ssh_children()
}

pub(crate) fn zombie_children(p: &Proc) -> Vec<i32> {
    p.children().into_iter().filter(|&c| is_zombie(c)).collect()
}

/// fd count and RSS (KiB) of `pid`, sampled once the fd count has stayed the
/// same for 0.5 s (waiting at most 5 s), so that a restart or a reachability
/// check in flight does not count.
pub(crate) fn steady_sample(pid: i32) -> (usize, u64) {
    let mut last = usize::MAX;
    let mut since = Instant::now();
    wait_until(Duration::from_secs(5), || {
        let n = count_open_fds(pid);
        if n != last {
            last = n;
            since = Instant::now();
        }
        since.elapsed() >= Duration::from_millis(500)
    });
    (count_open_fds(pid), rss_kib(pid))
}

/// Checks an autossh after churn: fds back to `fds0` (bounded wait), RSS
/// growth, no zombie child, exactly one live child; returns a report line.
pub(crate) fn check_after_churn(
    label: &str,
    p: &Proc,
    fds0: usize,
    rss0: u64,
    story: &dyn Fn() -> String,
) -> String {
    let mut fds1 = 0;
    let mut rss1 = 0;
    let back = wait_until(Duration::from_secs(5), || {
        (fds1, rss1) = steady_sample(p.pid());
        fds1 == fds0
    });
    let no_zombie = wait_until(Duration::from_secs(3), || zombie_children(p).is_empty());
    let one = wait_until(Duration::from_secs(5), || live_children(p).len() == 1);
    let line = format!(
        "{label}: fds {fds0} -> {fds1}, VmRSS {rss0} KiB -> {rss1} KiB ({:+} KiB), zombie \
         children {:?}, live children {:?}",
        rss1 as i64 - rss0 as i64,
        zombie_children(p),
        live_children(p)
    );
    assert!(
        back && fds1 == fds0,
        "{line}: fd count changed\n{}",
        story()
    );
    assert!(
        rss1 < rss0 + 2048,
        "{line}: RSS grew by 2 MiB or more\n{}",
        story()
    );
    assert!(no_zombie, "{line}: zombie children\n{}", story());
    assert!(one, "{line}: not exactly one ssh child\n{}", story());
    line
}

/// Prints a churn report line at once and keeps it for the summary.
pub(crate) fn note(report: &mut Vec<String>, line: String) {
    eprintln!("[thousand_forced_restarts_no_leak] {line}");
    report.push(line);
}

/// 1000 SIGUSR1 restarts of a fake ssh that hangs.
pub(crate) fn fake_churn(dir: &TestDir, restarts: usize, deadline: Instant) -> Vec<String> {
    let mut report = Vec::new();
    let fake = FakeSsh::new(dir, &["hang"]);
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_PATH", fake.path())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "churn.invalid"])
        .name("autossh-fake")
        .spawn(dir);
    let runs = fake.state_dir().join("runs");
    let run_done = |n: usize| {
        fs::read_to_string(runs.join(format!("{n}.pid")))
            .map(|s| s.ends_with('\n'))
            .unwrap_or(false)
    };
    let story = || format!("{}\n{}", p.describe(), fake.describe());
    assert!(
        wait_fast(Duration::from_secs(10), || run_done(1)),
        "fake ssh never started\n{}",
        story()
    );
    let warmup = 100.min(restarts);
    let mut resent = 0;
    let mut fds0 = 0;
    let mut rss0 = 0;
    let started = Instant::now();
    for n in 1..=restarts {
        assert!(
            Instant::now() < deadline,
            "time budget spent after {} of {restarts} restarts\n{}",
            n - 1,
            story()
        );
        // Settle: the current ssh runs before the next signal.
        p.signal(Signal::SIGUSR1);
        let mut ok = wait_fast(Duration::from_secs(3), || run_done(n + 1));
        if !ok {
            resent += 1;
            p.signal(Signal::SIGUSR1);
            ok = wait_fast(Duration::from_secs(5), || run_done(n + 1));
        }
        assert!(ok, "restart {n}: no new ssh after SIGUSR1\n{}", story());
        if n == warmup {
            let one = wait_until(Duration::from_secs(5), || live_children(&p).len() == 1);
            assert!(
                one,
                "after warm-up: children {:?}\n{}",
                p.children(),
                story()
            );
            (fds0, rss0) = steady_sample(p.pid());
        }
    }
    let took = started.elapsed();
    note(
        &mut report,
        format!(
            "fake ssh: {restarts} SIGUSR1 restarts in {:.1} s ({:.1} ms each); signals re-sent: \
         {resent}; samples after {warmup} (warm-up) and {restarts}",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / restarts as f64
        ),
    );
    note(
        &mut report,
        check_after_churn("fake ssh", &p, fds0, rss0, &story),
    );
    let last = fake.pids().last().copied().unwrap_or(0);
    assert_eq!(live_children(&p), vec![last], "{}", story());
    p.signal(Signal::SIGTERM);
    assert!(
        p.wait_timeout(Duration::from_secs(10)).is_some(),
        "{}",
        story()
    );
    let gone = wait_until(Duration::from_secs(5), || fake.live_pids().is_empty());
    assert!(gone, "fake ssh left after SIGTERM: {:?}", fake.live_pids());
    note(
        &mut report,
        format!(
            "fake ssh: starts logged {}, runs recorded {}, none left after SIGTERM",
            p.stderr_text().matches(STARTING).count(),
            fake.run_count()
        ),
    );
    report
}

/// `kills` real ssh sessions killed on the server (SIGKILL of the sshd
/// session processes); SIGUSR1 cuts a backoff wait short.
pub(crate) fn real_churn(dir: &TestDir, kills: usize, deadline: Instant) -> Vec<String> {
    let mut report = Vec::new();
    let sshd = Sshd::start(dir);
    let svc = Service::start();
    let tport = free_port();
    let p = Cmd::new(autossh_bin!())
        .env("AUTOSSH_GATETIME", "0")
        .args(["-M", "0", "-N", "-L"])
        .arg(format!("{tport}:127.0.0.1:{}", svc.port()))
        .args(sshd.client_args())
        .name("autossh-real")
        .spawn(dir);
    let story = || format!("{}\n--- sshd log ---\n{}", p.describe(), sshd.log());
    assert!(
        wait_until(Duration::from_secs(20), || tunnel_works(tport)),
        "tunnel never worked\n{}",
        story()
    );
    let warmup = 3.min(kills);
    let (mut fds0, mut rss0) = (0, 0);
    let mut hastened = 0;
    let started = Instant::now();
    for i in 1..=kills {
        assert!(
            Instant::now() < deadline,
            "time budget spent after {} of {kills} kills\n{}",
            i - 1,
            story()
        );
        let mut old = Vec::new();
        let ready = wait_until(Duration::from_secs(10), || {
            old = live_children(&p);
            old.len() == 1 && !sshd.logged_in_pids().is_empty()
        });
        assert!(ready, "kill {i}: no single logged-in ssh\n{}", story());
        let old = old[0];
        assert!(
            sshd.stop_sessions(Signal::SIGKILL) > 0,
            "kill {i}: no session"
        );
        let new_child = |p: &Proc| live_children(p).iter().any(|&c| c != old);
        if !wait_until(Duration::from_millis(300), || new_child(&p)) {
            hastened += 1;
            p.signal(Signal::SIGUSR1);
        }
        let back = wait_until(Duration::from_secs(10), || {
            new_child(&p) && tunnel_works(tport)
        });
        assert!(back, "kill {i}: tunnel not back within 10 s\n{}", story());
        if i == warmup {
            (fds0, rss0) = steady_sample(p.pid());
        }
    }
    note(
        &mut report,
        format!(
            "real ssh: {kills} server sessions killed in {:.1} s; backoff waits cut short with \
         SIGUSR1: {hastened}",
            started.elapsed().as_secs_f64()
        ),
    );
    note(
        &mut report,
        check_after_churn("real ssh", &p, fds0, rss0, &story),
    );
    let ssh = live_children(&p);
    p.signal(Signal::SIGTERM);
    assert!(
        p.wait_timeout(Duration::from_secs(10)).is_some(),
        "{}",
        story()
    );
    let gone = wait_until(Duration::from_secs(5), || {
        ssh.iter().all(|&s| !process_exists(s))
    });
    assert!(gone, "ssh {ssh:?} left after SIGTERM");
    note(&mut report, "real ssh: none left after SIGTERM".into());
    report
}

#[test]
pub(crate) fn thousand_forced_restarts_no_leak() {
    let dir = TestDir::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    let (fake, real) = std::thread::scope(|s| {
        let f = s.spawn(|| fake_churn(&dir, 1000, deadline));
        let r = s.spawn(|| real_churn(&dir, 50, deadline));
        let f = f.join();
        let r = r.join();
        match (f, r) {
            (Ok(f), Ok(r)) => (f, r),
            (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
        }
    });
    eprintln!("=== thousand_forced_restarts_no_leak ===");
    for l in fake.iter().chain(real.iter()) {
        eprintln!("  {l}");
    }
    eprintln!(
        "[thousand_forced_restarts_no_leak] total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let marker = dir.marker();
    if let Err(e) = no_process_left(&marker) {
        panic!("left behind: {e}");
    }
}

//! The two hosts.

use super::*;

pub(crate) static NET_SEQ: AtomicU32 = AtomicU32::new(1);
pub(crate) static STALE_CLEANUP: Once = Once::new();

/// Two namespaces joined by a veth pair. Drop kills every process inside
/// them, deletes the veth and both namespaces.
pub struct TestNet {
    /// The `n` of 10.203.n.0/30.
    pub n: u32,
    cli: String,
    srv: String,
    cli_if: String,
    srv_if: String,
    /// Namespaces created so far (for cleanup after a failure midway).
    created: Vec<String>,
}

impl TestNet {
    /// Creates the pair. `Err(reason)` when namespaces cannot be made here
    /// (not root, or `ip netns add` fails): the caller skips. Any later step
    /// failing panics (after cleaning up).
    /// [`TestNet::create`], or `None` after saying on stderr why the test is skipped.
    pub fn create_or_skip() -> Option<TestNet> {
        TestNet::create()
            .map_err(|why| eprintln!("skipped: {why}"))
            .ok()
    }

    pub fn create() -> Result<TestNet, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: network namespaces need CAP_SYS_ADMIN".into());
        }
        STALE_CLEANUP.call_once(remove_stale_namespaces);
        let seq = NET_SEQ.fetch_add(1, Ordering::SeqCst);
        assert!(seq <= 250, "more than 250 test networks in one process");
        let pid = std::process::id();
        let mut net = TestNet {
            n: seq,
            cli: format!("as-{pid}-{seq}-cli"),
            srv: format!("as-{pid}-{seq}-srv"),
            // Interface names: at most 15 bytes.
            cli_if: format!("v{}c{seq}", pid % 1_000_000),
            srv_if: format!("v{}s{seq}", pid % 1_000_000),
            created: Vec::new(),
        };
        // Skip only if the very first namespace cannot be made.
        if let Err(e) = ip(&["netns", "add", &net.srv]) {
            return Err(format!("cannot create a network namespace: {e}"));
        }
        net.created.push(net.srv.clone());
        if let Err(e) = net.build() {
            drop(net);
            panic!("setting up the test network failed: {e}");
        }
        Ok(net)
    }

    fn build(&mut self) -> Result<(), String> {
        ip(&["netns", "add", &self.cli])?;
        self.created.push(self.cli.clone());
        ip(&[
            "link",
            "add",
            &self.cli_if,
            "netns",
            &self.cli,
            "type",
            "veth",
            "peer",
            "name",
            &self.srv_if,
            "netns",
            &self.srv,
        ])?;
        let (srv_cidr, cli_cidr) = (
            format!("{}/30", self.srv_ip()),
            format!("{}/30", self.cli_ip()),
        );
        ip(&[
            "-n",
            &self.srv,
            "addr",
            "add",
            &srv_cidr,
            "dev",
            &self.srv_if,
        ])?;
        ip(&[
            "-n",
            &self.cli,
            "addr",
            "add",
            &cli_cidr,
            "dev",
            &self.cli_if,
        ])?;
        for (ns, dev) in [
            (&self.srv, self.srv_if.as_str()),
            (&self.cli, self.cli_if.as_str()),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Bounded wait until the link carries traffic (veth comes up at once,
        // but DAD/carrier can lag a moment).
        let srv_ip = self.srv_ip();
        let ok = wait_until(Duration::from_secs(5), || {
            ip(&["-n", &self.cli, "route", "get", &srv_ip]).is_ok()
        });
        if !ok {
            return Err(format!("no route to {srv_ip} in {}", self.cli));
        }
        Ok(())
    }

    /// The client namespace (autossh runs here).
    pub fn cli(&self) -> &str {
        &self.cli
    }

    /// The server namespace (sshd and the services run here).
    pub fn srv(&self) -> &str {
        &self.srv
    }

    pub fn cli_if(&self) -> &str {
        &self.cli_if
    }

    pub fn srv_if(&self) -> &str {
        &self.srv_if
    }

    pub fn srv_ip(&self) -> String {
        format!("10.203.{}.1", self.n)
    }

    pub fn cli_ip(&self) -> String {
        format!("10.203.{}.2", self.n)
    }

    /// Both namespace names.
    pub fn names(&self) -> Vec<String> {
        vec![self.cli.clone(), self.srv.clone()]
    }

    /// Black hole: every packet between the hosts is dropped in the client
    /// namespace (out to the server and in from it). TCP sees no error.
    pub fn black_hole(&self) -> Fault {
        let srv = self.srv_ip();
        let mut f = Fault::new("black hole");
        f.iptables(&self.cli, &["OUTPUT", "-d", &srv, "-j", "DROP"]);
        f.iptables(&self.cli, &["INPUT", "-s", &srv, "-j", "DROP"]);
        f
    }

    /// Random loss of `percent` % of the packets leaving each end (like
    /// `netem loss` on both veth ends), with iptables' statistic match.
    pub fn loss(&self, percent: u32) -> Fault {
        let p = format!("{:.4}", percent as f64 / 100.0);
        let mut f = Fault::new(&format!("loss {percent}%"));
        let (srv, cli) = (self.srv_ip(), self.cli_ip());
        for (ns, dst) in [(&self.cli, &srv), (&self.srv, &cli)] {
            f.iptables(
                ns,
                &[
                    "OUTPUT",
                    "-d",
                    dst,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            );
        }
        f
    }

    /// Every packet from the client to the server is held `delay` before it
    /// leaves (like `netem delay` on the client's veth: the round trip grows
    /// by `delay`). NFQUEUE queue 0 in the client namespace and a [`Delayer`].
    pub fn delay(&self, delay: Duration) -> Fault {
        let mut f = Fault::new(&format!("delay {} ms", delay.as_millis()));
        let d = Delayer::start(&self.cli, 0, delay)
            .unwrap_or_else(|e| panic!("cannot start the NFQUEUE delayer: {e}"));
        f.delayer = Some(d);
        f.iptables(
            &self.cli,
            &[
                "OUTPUT",
                "-d",
                &self.srv_ip(),
                "-j",
                "NFQUEUE",
                "--queue-num",
                "0",
                "--queue-bypass",
            ],
        );
        f
    }

    /// A token bucket on both veth ends: `tbf rate <rate> burst <burst>
    /// latency <latency>` (e.g. "1mbit", "32kbit", "400ms").
    pub fn rate_limit(&self, rate: &str, burst: &str, latency: &str) -> Fault {
        let mut f = Fault::new(&format!("tbf rate {rate}"));
        for (ns, dev) in [(&self.cli, &self.cli_if), (&self.srv, &self.srv_if)] {
            f.qdisc(
                ns,
                dev,
                &["tbf", "rate", rate, "burst", burst, "latency", latency],
            );
        }
        f
    }

    /// Removes everything; returns what could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for ns in self.created.clone() {
            kill_all_in(&ns);
        }
        if self.created.contains(&self.cli) {
            // Deleting one end deletes its peer too; it may already be gone.
            let _ = ip(&["-n", &self.cli, "link", "del", &self.cli_if]);
        }
        for ns in std::mem::take(&mut self.created) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                errors.push(e);
            }
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| *n == self.cli || *n == self.srv)
            .collect();
        if !left.is_empty() {
            errors.push(format!("namespaces still listed: {left:?}"));
        }
        errors
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("test network cleanup: {e}");
        }
    }
}

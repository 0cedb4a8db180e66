//! Test hosts in network namespaces, for the fault-injection tests (tests/faults.rs).
//!
//! A test file does `mod util; mod netns;` (this module uses `crate::util`).
//!
//! Topology of one [`TestNet`]: two namespaces created by the test itself,
//! `as-<pid>-<n>-srv` and `as-<pid>-<n>-cli`, joined by a veth pair created
//! directly inside them (it never exists in the root namespace), with
//! 10.203.<n>.1/30 on the server end and 10.203.<n>.2/30 on the client end,
//! and loopback up in both. No traffic leaves these two namespaces.
//!
//! Faults ([`Fault`]) are applied inside the namespaces only:
//! - black hole: iptables DROP in the client namespace (both directions);
//! - random loss: iptables `statistic` DROP on each end's egress (netem is not
//!   needed, and not every kernel has it);
//! - latency: an NFQUEUE rule in the client namespace and a userspace
//!   [`Delayer`] holding each outgoing packet for the delay (again no netem);
//! - rate limit: a `tbf` qdisc on each veth end.
//!
//! Everything is removed on drop, also while panicking: [`Fault`] removes its
//! rules, qdiscs and delayer; [`TestNet`] kills every process in its
//! namespaces and deletes the veth and the namespaces. Namespaces left behind
//! by a test process that died (SIGKILL) are removed by the next run
//! ([`remove_stale_namespaces`]).
//!
//! Every wait is bounded polling, every loop bounded in time and count, and
//! every external command runs with a time limit ([`run_bounded`]).
#![allow(dead_code)]

use crate::util::{
    current_user, descendants_of, keygen, process_exists, signal_pid, sshd_config_text, wait_until,
    Cmd, Proc, Signal, TestDir,
};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest any helper thread of this module runs, whatever happens.
const MAX_THREAD_LIFE: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Runs `argv` (stdin from /dev/null), waiting at most `timeout`; `Ok(stdout)`
/// on exit status 0, else `Err` with the command, status and output.
pub fn run_bounded(argv: &[&str], timeout: Duration) -> Result<String, String> {
    let shown = argv.join(" ");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: cannot run: {e}"))?;
    // The outputs are small; read them in threads so a full pipe cannot block.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown}: still running after {timeout:?}; killed"));
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{shown}: {status}\n{stdout}{stderr}"))
    }
}

const CMD_TIMEOUT: Duration = Duration::from_secs(15);

/// `ip netns exec <ns> argv...`.
pub fn ns_exec(ns: &str, argv: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(argv);
    run_bounded(&full, CMD_TIMEOUT)
}

fn ip(argv: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip"];
    full.extend_from_slice(argv);
    run_bounded(&full, CMD_TIMEOUT)
}

/// Names of all namespaces `ip netns list` shows.
pub fn netns_list() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Pids of the processes in namespace `ns` (`ip netns pids`), never this
/// test process itself.
pub fn netns_pids(ns: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p| p != me)
        .collect()
}

/// Kills (SIGKILL) every process in namespace `ns`, a few rounds, bounded.
fn kill_all_in(ns: &str) {
    for _ in 0..5 {
        let pids = netns_pids(ns);
        if pids.is_empty() {
            return;
        }
        for &p in &pids {
            signal_pid(p, Signal::SIGCONT);
            signal_pid(p, Signal::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || {
            pids.iter().all(|&p| !process_exists(p))
        });
    }
}

/// Removes namespaces named like ours (`as-<pid>-<n>-cli|srv`) whose creating
/// process is gone (a test process killed before its drops ran). Only names
/// of this pattern are touched.
pub fn remove_stale_namespaces() {
    for name in netns_list() {
        let Some(pid) = our_ns_owner(&name) else {
            continue;
        };
        if pid as u32 == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(&name);
        let _ = ip(&["netns", "del", &name]);
    }
}

fn our_ns_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("as-")?;
    let mut parts = rest.split('-');
    let pid: i32 = parts.next()?.parse().ok()?;
    let _n: u32 = parts.next()?.parse().ok()?;
    let side = parts.next()?;
    if parts.next().is_some() || (side != "cli" && side != "srv") {
        return None;
    }
    Some(pid)
}

// ---------------------------------------------------------------------------
// Entering a namespace from a thread
// ---------------------------------------------------------------------------

/// Moves the calling thread into network namespace `ns` (setns is per thread;
/// sockets made afterwards belong to `ns` for good). Only ever call this on a
/// helper thread of one's own, never on a test thread.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let f = fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid, open namespace fd; it only changes this
    // thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result.
pub fn run_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let ns2 = ns.to_string();
    std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            enter_netns(&ns2)?;
            Ok(f())
        })
        .map_err(|e| format!("spawn: {e}"))?
        .join()
        .map_err(|_| "thread panicked".to_string())?
}

// ---------------------------------------------------------------------------
// The two hosts
// ---------------------------------------------------------------------------

static NET_SEQ: AtomicU32 = AtomicU32::new(1);
static STALE_CLEANUP: Once = Once::new();

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

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// An applied fault. [`Fault::lift`] (or drop) removes its iptables rules and
/// qdiscs (in reverse order) and stops its delayer.
pub struct Fault {
    what: String,
    /// Commands (argv) that undo what was applied, in application order.
    undo: Vec<Vec<String>>,
    delayer: Option<Delayer>,
    applied_at: Instant,
}

impl Fault {
    fn new(what: &str) -> Fault {
        Fault {
            what: what.to_string(),
            undo: Vec::new(),
            delayer: None,
            applied_at: Instant::now(),
        }
    }

    fn iptables(&mut self, ns: &str, rule: &[&str]) {
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

    fn qdisc(&mut self, ns: &str, dev: &str, spec: &[&str]) {
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

// ---------------------------------------------------------------------------
// NFQUEUE delayer (latency without netem)
// ---------------------------------------------------------------------------

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NF_ACCEPT: u32 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;

fn nl_align(n: usize) -> usize {
    (n + 3) & !3
}

/// One nfnetlink message: nlmsghdr + nfgenmsg + attributes.
fn nfq_msg(msg: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(libc::AF_UNSPEC as u8);
    b.push(0); // NFNETLINK_V0
    b.extend_from_slice(&queue.to_be_bytes());
    for (ty, data) in attrs {
        b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(data);
        b.resize(nl_align(b.len()), 0);
    }
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

fn nl_send(fd: RawFd, msg: &[u8]) -> Result<(), String> {
    // SAFETY: sends a valid buffer on an open netlink socket (to the kernel).
    let r = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if r < 0 {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Waits up to `timeout` for the socket to be readable; then one
/// non-blocking recv. `Ok(None)`: nothing arrived.
fn nl_recv(fd: RawFd, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, String> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(60_000) as libc::c_int;
    // SAFETY: polls one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r <= 0 {
        return Ok(None);
    }
    // SAFETY: receives into a valid, writable buffer of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(format!("netlink recv: {e}")),
        };
    }
    Ok(Some(n as usize))
}

/// The netlink messages in `buf`: (type, seq, payload after nlmsghdr).
fn nl_messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() && out.len() < 10_000 {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
        out.push((ty, seq, &buf[off + 16..off + len]));
        off += nl_align(len);
    }
    out
}

/// The packet id of an NFQNL_MSG_PACKET payload (after nlmsghdr).
fn packet_id(payload: &[u8]) -> Option<u32> {
    let mut off = 4; // nfgenmsg
    for _ in 0..64 {
        if off + 4 > payload.len() {
            return None;
        }
        let len = u16::from_ne_bytes(payload[off..off + 2].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(payload[off + 2..off + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if ty == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(
                payload[off + 4..off + 8].try_into().ok()?,
            ));
        }
        off += nl_align(len);
    }
    None
}

/// Sends a config message and waits (≤ 2 s) for its acknowledgement.
fn nfq_config(fd: RawFd, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Result<(), String> {
    nl_send(fd, &nfq_msg(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queue, attrs))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 8192];
    for _ in 0..100 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(n) = nl_recv(fd, &mut buf, left)? else {
            continue;
        };
        for (ty, s, payload) in nl_messages(&buf[..n]) {
            if ty == NLMSG_ERROR && s == seq && payload.len() >= 4 {
                let err = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                if err == 0 {
                    return Ok(());
                }
                return Err(format!(
                    "nfqueue config: {}",
                    std::io::Error::from_raw_os_error(-err)
                ));
            }
        }
    }
    Err("nfqueue config: no acknowledgement".into())
}

/// Holds every packet of NFQUEUE queue `queue` in a namespace for a fixed
/// delay, then accepts it (in order). Stopping accepts what is still held.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Delayer {
    pub fn start(ns: &str, queue: u16, delay: Duration) -> Result<Delayer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let (stop2, packets2, ns2) = (stop.clone(), packets.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("delayer-{ns}"))
            .spawn(move || {
                let fd = match Delayer::open(&ns2, queue) {
                    Ok(fd) => {
                        let _ = tx.send(Ok(()));
                        fd
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let r = Delayer::serve(fd.as_raw_fd(), queue, delay, &stop2, &packets2);
                let unbind = [NFQNL_CFG_CMD_UNBIND, 0, 0, 0];
                let _ = nfq_config(fd.as_raw_fd(), 9, queue, &[(NFQA_CFG_CMD, &unbind)]);
                r
            })
            .map_err(|e| format!("spawn: {e}"))?;
        let d = Delayer {
            stop,
            packets,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(d),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("delayer did not start".into()),
        }
    }

    fn open(ns: &str, queue: u16) -> Result<OwnedFd, String> {
        enter_netns(ns)?;
        // SAFETY: plain socket(2) call; the fd is owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(format!(
                "netlink socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid; we set the family.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binds with a valid sockaddr_nl of the right size.
        let r = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(format!("netlink bind: {}", std::io::Error::last_os_error()));
        }
        let one: libc::c_int = 1;
        let rcvbuf: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with pointers to live c_ints of the stated size.
        unsafe {
            libc::setsockopt(
                raw,
                SOL_NETLINK,
                NETLINK_NO_ENOBUFS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let bind = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
        nfq_config(raw, 1, queue, &[(NFQA_CFG_CMD, &bind)])?;
        // copy_range (be32) 0 + copy_mode META: ids only, no payload.
        let params = [0, 0, 0, 0, NFQNL_COPY_META];
        nfq_config(raw, 2, queue, &[(NFQA_CFG_PARAMS, &params)])?;
        let maxlen = 8192u32.to_be_bytes();
        nfq_config(raw, 3, queue, &[(NFQA_CFG_QUEUE_MAXLEN, &maxlen)])?;
        Ok(fd)
    }

    fn verdict(fd: RawFd, queue: u16, id: u32) -> Result<(), String> {
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&NF_ACCEPT.to_be_bytes());
        hdr[4..].copy_from_slice(&id.to_be_bytes());
        nl_send(
            fd,
            &nfq_msg(NFQNL_MSG_VERDICT, 0, 0, queue, &[(NFQA_VERDICT_HDR, &hdr)]),
        )
    }

    fn serve(
        fd: RawFd,
        queue: u16,
        delay: Duration,
        stop: &AtomicBool,
        packets: &AtomicU64,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
        let mut buf = vec![0u8; 65536];
        let mut result = Ok(());
        while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
            let now = Instant::now();
            while let Some(&(due, id)) = held.front() {
                if due > now {
                    break;
                }
                held.pop_front();
                Delayer::verdict(fd, queue, id)?;
            }
            let wait = held
                .front()
                .map(|(due, _)| due.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            // Drain what is readable (bounded per round).
            let mut timeout = wait;
            for _ in 0..256 {
                match nl_recv(fd, &mut buf, timeout) {
                    Ok(Some(n)) => {
                        let at = Instant::now() + delay;
                        for (ty, _, payload) in nl_messages(&buf[..n]) {
                            if ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                                if let Some(id) = packet_id(payload) {
                                    held.push_back((at, id));
                                    packets.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                timeout = Duration::ZERO;
            }
            if result.is_err() {
                break;
            }
        }
        // Let everything still held go at once.
        while let Some((_, id)) = held.pop_front() {
            let _ = Delayer::verdict(fd, queue, id);
        }
        result
    }

    /// Packets held so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Releases everything held and stops.
    pub fn stop(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err("delayer panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

// ---------------------------------------------------------------------------
// An echo service inside a namespace
// ---------------------------------------------------------------------------

/// A TCP echo service on 127.0.0.1:`port` inside a namespace, run by threads
/// of the test process (nothing to leave behind). It echoes every byte, with
/// no write timeout (a slow tunnel only slows it down); stopping shuts all
/// its connections down, which unblocks any blocked write.
pub struct EchoService {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoService {
    pub fn start_in(ns: &str, port: u16) -> EchoService {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let (stop2, conns2, ns2) = (stop.clone(), conns.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("echo-{ns}"))
            .spawn(move || {
                let listener = enter_netns(&ns2).and_then(|()| {
                    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
                    l.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Ok(l)
                });
                match listener {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        echo_accept_loop(l, stop2, conns2);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn echo service");
        let svc = EchoService {
            port,
            stop,
            conns,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => svc,
            Ok(Err(e)) => panic!("echo service in {ns}: {e}"),
            Err(_) => panic!("echo service in {ns} did not start"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn echo_accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
) {
    let started = Instant::now();
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Ok(clone) = stream.try_clone() {
                    let mut list = conns.lock().unwrap_or_else(|e| e.into_inner());
                    list.push(clone);
                    if list.len() > 512 {
                        list.remove(0);
                    }
                }
                let stop = stop.clone();
                if let Ok(h) = std::thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || echo_conn(stream, stop, started))
                {
                    handlers.push(h);
                }
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    stop.store(true, Ordering::SeqCst);
    drop(listener);
    for c in conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    for h in handlers {
        let _ = h.join();
    }
}

fn echo_conn(mut stream: TcpStream, stop: Arc<AtomicBool>, started: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 32 * 1024];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_THREAD_LIFE {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if retryable(&e) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------
// Checking the tunnel from inside the client namespace
// ---------------------------------------------------------------------------

static PROBE_SEQ: AtomicU64 = AtomicU64::new(1);

/// One echo round trip through 127.0.0.1:`port` in the calling thread's
/// namespace: connect (1 s), send a line, read it back (within `wait`).
/// Returns the time from sending the line to reading it back.
fn echo_rtt(port: u16, wait: Duration) -> Option<Duration> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let line = format!(
        "probe {} {}\n",
        std::process::id(),
        PROBE_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let sent = Instant::now();
    s.write_all(line.as_bytes()).ok()?;
    let deadline = sent + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < line.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    (got == line.as_bytes()).then(|| sent.elapsed())
}

fn echo_once(port: u16) -> bool {
    echo_rtt(port, Duration::from_secs(1)).is_some()
}

/// The echo round trip of one short line through 127.0.0.1:`port` inside
/// namespace `ns`, waiting up to `wait` for the answer; None if none came.
pub fn echo_rtt_in(ns: &str, port: u16, wait: Duration) -> Option<Duration> {
    run_in_netns(ns, move || echo_rtt(port, wait)).unwrap_or(None)
}

/// A read or write on a socket with a timeout that may simply be tried again.
pub fn retryable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// True if 127.0.0.1:`port` inside namespace `ns` echoes a line back within
/// ~2 s (connect 1 s, echo 1 s). About a millisecond when the tunnel works.
pub fn tunnel_works_in(ns: &str, port: u16) -> bool {
    run_in_netns(ns, move || echo_once(port)).unwrap_or(false)
}

/// Measures how long until the tunnel works: starts an attempt
/// ([`tunnel_works_in`]) every `every`, overlapping, so that one attempt stuck
/// on a dead connection does not hide a recovery; returns the time from the
/// call to the end of the first successful attempt, or None after `timeout`.
/// Waits (≤ ~2 s) for the attempts still running before returning.
pub fn time_until_tunnel_works(
    ns: &str,
    port: u16,
    every: Duration,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Option<Duration>>();
    let mut attempts: Vec<JoinHandle<()>> = Vec::new();
    let max_attempts = (timeout.as_millis() / every.as_millis().max(1)) as usize + 2;
    let mut found = None;
    let mut next = start;
    while attempts.len() < max_attempts {
        let now = Instant::now();
        if now >= start + timeout {
            break;
        }
        if now >= next {
            let (tx, ns) = (tx.clone(), ns.to_string());
            let h = std::thread::Builder::new()
                .name("tunnel-attempt".into())
                .spawn(move || {
                    let ok = tunnel_works_in(&ns, port);
                    let _ = tx.send(ok.then(|| start.elapsed()));
                })
                .expect("spawn attempt");
            attempts.push(h);
            next += every;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if let Ok(Some(t)) = rx.recv_timeout(wait) {
            found = Some(t);
            break;
        }
    }
    // A success may have landed right at the deadline.
    if found.is_none() {
        wait_until(Duration::from_secs(3), || {
            attempts.iter().all(|h| h.is_finished())
        });
        while let Ok(r) = rx.try_recv() {
            if let Some(t) = r {
                if t <= timeout {
                    found = Some(found.map_or(t, |f: Duration| f.min(t)));
                }
            }
        }
    }
    for h in attempts {
        let _ = h.join();
    }
    found
}

// ---------------------------------------------------------------------------
// sshd inside the server namespace
// ---------------------------------------------------------------------------

/// OpenSSH's sshd on `<server ip>:22` inside the server namespace, with its
/// own host key, client key, authorized_keys, config and pid file in
/// `<test dir>/nsshd/`. [`NsSshd::kill`] takes it down hard (listener and
/// sessions); [`NsSshd::restart`] brings it back on the same address.
pub struct NsSshd {
    ns: String,
    addr: String,
    dir: PathBuf,
    config: PathBuf,
    client_key: PathBuf,
    user: String,
    listener: Option<Proc>,
    starts: usize,
}

impl NsSshd {
    pub fn start(dir: &TestDir, net: &TestNet) -> NsSshd {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd");
        let sdir = dir.join("nsshd");
        fs::create_dir_all(&sdir).unwrap_or_else(|e| panic!("mkdir {}: {e}", sdir.display()));
        let host_key = sdir.join("host_ed25519_key");
        let client_key = sdir.join("client_ed25519_key");
        keygen(&host_key, "autossh-faults-host");
        keygen(&client_key, "autossh-faults-client");
        let authorized = sdir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized)
            .unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
        let user = current_user();
        let addr = net.srv_ip();
        let config = sdir.join("sshd_config");
        let text = sshd_config_text(
            22,
            &addr.to_string(),
            &host_key,
            &authorized,
            &user,
            &sdir.join("sshd.pid"),
        );
        fs::write(&config, text).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let mut sshd = NsSshd {
            ns: net.srv().to_string(),
            addr,
            dir: sdir,
            config,
            client_key,
            user,
            listener: None,
            starts: 0,
        };
        sshd.restart_within(dir, Duration::from_secs(15));
        sshd
    }

    /// Starts the listener (retrying, bounded by `timeout`) and waits until
    /// its log says it listens. Returns when that was seen.
    fn restart_within(&mut self, dir: &TestDir, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        let want = format!("Server listening on {} port 22", self.addr);
        let mut last = String::new();
        for _ in 0..20 {
            if Instant::now() >= deadline {
                break;
            }
            self.starts += 1;
            let p = Cmd::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "/usr/sbin/sshd",
                    "-D",
                    "-e",
                    "-f",
                ])
                .arg(&self.config)
                .name("sshd")
                .spawn(dir);
            let left = deadline.saturating_duration_since(Instant::now());
            let ok = wait_until(left, || p.stderr_text().contains(&want) || !p.is_running());
            if ok && p.is_running() {
                let at = Instant::now();
                self.listener = Some(p);
                return at;
            }
            last = p.describe();
            drop(p);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd in {} did not start:\n{last}", self.ns);
    }

    /// Starts sshd again on the same address (after [`NsSshd::kill`]); returns
    /// the instant it was seen listening.
    pub fn restart(&mut self, dir: &TestDir) -> Instant {
        if self.listener.is_some() {
            self.kill();
        }
        self.restart_within(dir, Duration::from_secs(15))
    }

    /// SIGKILLs the listener and every session process (its descendants, and
    /// then anything else in the server namespace), and waits until they are
    /// gone. Returns how many processes were killed.
    pub fn kill(&mut self) -> usize {
        let mut killed = 0;
        if let Some(p) = self.listener.take() {
            let mut victims = descendants_of(p.pid());
            victims.push(p.pid());
            for &v in &victims {
                signal_pid(v, Signal::SIGKILL);
            }
            killed += victims.len();
            p.kill();
        }
        // Sessions that were already orphaned, if any.
        let rest = netns_pids(&self.ns);
        for &v in &rest {
            signal_pid(v, Signal::SIGKILL);
        }
        killed += rest.len();
        let gone = wait_until(Duration::from_secs(5), || netns_pids(&self.ns).is_empty());
        assert!(
            gone,
            "processes survive in {}: {:?}",
            self.ns,
            netns_pids(&self.ns)
        );
        killed
    }

    pub fn is_running(&self) -> bool {
        self.listener.as_ref().is_some_and(|p| p.is_running())
    }

    /// The log of the current listener (sshd -e writes to stderr).
    pub fn log(&self) -> String {
        self.listener
            .as_ref()
            .map(|p| p.stderr_text())
            .unwrap_or_default()
    }

    /// The logs of all listeners started so far, in order.
    pub fn all_logs(&self, dir: &TestDir) -> String {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let seq: u64 = name
                            .strip_prefix("sshd.")?
                            .strip_suffix(".stderr")?
                            .parse()
                            .ok()?;
                        Some((seq, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        for (_, f) in files {
            let _ = writeln!(
                out,
                "--- {} ---\n{}",
                f.display(),
                String::from_utf8_lossy(&fs::read(&f).unwrap_or_default())
            );
        }
        out
    }

    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `user@addr`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.addr)
    }
}

impl Drop for NsSshd {
    fn drop(&mut self) {
        if let Some(p) = self.listener.take() {
            for v in descendants_of(p.pid()) {
                signal_pid(v, Signal::SIGKILL);
            }
            p.kill();
        }
        kill_all_in(&self.ns);
    }
}

"""Shared pieces of the benchmark suite: process bookkeeping, a private sshd, a tunnel checker,
/proc readings, autossh logs; and for the benchmarks in network namespaces (recovery_bench.py,
app_bench.py, field_bench.py) the namespace pairs, sshd inside them, faults and the checks
while a fault runs its course. Used by every *_bench.py; run.sh is the entry point.

Every process started here is recorded in $BENCH_WORK/pids (and frozen ones in
$BENCH_WORK/frozen) so that run.sh's EXIT trap can remove them even if Python dies.
"""
import json
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

WORK = os.environ.get("BENCH_WORK") or "/tmp/autossh-bench"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target/release/autossh")
ECHO = os.path.join(ROOT, "target/release/autossh-echo")
THEIRS = "/usr/lib/autossh/autossh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# both log "starting ssh (count N)" (ours may add " of MAX"); "restarting ssh" must not count
STARTS = re.compile(r": starting ssh \(count ")

_started = []  # Popen objects, each the leader of its own session/process group
_frozen = set()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def log_result(r, prefix, describe):
    """Logs one result row: prefix, then its error or describe(r)."""
    if "error" in r:
        log(f"{prefix}ERROR {r['error']}")
    else:
        log(prefix + describe(r))


def read_log(path):
    """A log file's text ("" if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def starts(text):
    """How many times an autossh log text says it starts ssh."""
    return len(STARTS.findall(text))


def autossh_env(logfile, poll):
    """This environment without AUTOSSH_* variables, then the ones of a run under test:
    AUTOSSH_POLL=poll (unless poll is 0 or None: the default), no gate time, /usr/bin/ssh,
    debug output to logfile."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AUTOSSH_"):
            del env[k]
    env.update(AUTOSSH_GATETIME="0", AUTOSSH_PATH="/usr/bin/ssh", AUTOSSH_LOGFILE=logfile,
               AUTOSSH_DEBUG="1")
    if poll:
        env["AUTOSSH_POLL"] = str(poll)
    return env


def _record(name, line):
    with open(os.path.join(WORK, name), "a") as f:
        f.write(line + "\n")


def _on_term(signum, _frame):
    raise SystemExit(128 + signum)


def install_signal_handlers():
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)


def start(argv, *, env=None, stdout=None, stderr=None, cpu=None, pass_fds=()):
    """Starts argv in a new session (so its whole group can be killed) and records its pid."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + list(argv)
    out = open(stdout, "ab") if isinstance(stdout, str) else (stdout or subprocess.DEVNULL)
    err = open(stderr, "ab") if isinstance(stderr, str) else (stderr or subprocess.DEVNULL)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                         start_new_session=True, pass_fds=pass_fds)
    for f in (out, err):
        if hasattr(f, "close"):
            f.close()
    _started.append(p)
    _record("pids", str(p.pid))
    return p


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, grace=1.0):
    """SIGTERM the process group (and every descendant, wherever its group), then SIGKILL."""
    if p is None:
        return
    kids = descendants(p.pid)
    _signal_group(p.pid, signal.SIGTERM)
    for k in kids:
        _signal(k, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    kids += descendants(p.pid)
    _signal_group(p.pid, signal.SIGKILL)
    _signal(p.pid, signal.SIGKILL)
    for k in kids:
        _signal(k, signal.SIGKILL)
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    if p in _started:
        _started.remove(p)


def freeze(pids):
    for p in pids:
        _frozen.add(p)
        _record("frozen", str(p))
    for p in pids:
        _signal(p, signal.SIGSTOP)


def unfreeze_and_kill(pids):
    for p in pids:
        _signal(p, signal.SIGCONT)
        _signal(p, signal.SIGKILL)
        _frozen.discard(p)


def cleanup_all():
    unfreeze_and_kill(list(_frozen))
    for p in list(reversed(_started)):
        stop(p, grace=0.5)


def free_block(n, lo=20000, hi=60000, rng=random.Random()):
    """A run of n consecutive free TCP ports on 127.0.0.1 (checked by binding each)."""
    for _ in range(500):
        base = rng.randrange(lo, hi - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def wait_port(port, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------
# sshd

def sshd_config(port, address, piddir, tail):
    """An sshd_config for root logins with the keys in WORK/keys (see make_keys) and TCP
    forwarding, listening on address:port, its pid file in piddir; tail (whole lines) ends it."""
    keys = os.path.join(WORK, "keys")
    return f"""Port {port}
ListenAddress {address}
HostKey {keys}/host_key
AuthorizedKeysFile {keys}/authorized_keys
PidFile {piddir}/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
""" + tail


class Sshd:
    """A private sshd on 127.0.0.1 with keys generated once in WORK/keys."""

    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(WORK, "sshd-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.keys = os.path.join(WORK, "keys")
        self.port = free_block(1)
        cfg = os.path.join(self.dir, "sshd_config")
        with open(cfg, "w") as f:
            f.write(sshd_config(self.port, "127.0.0.1", self.dir,
                                "LogLevel ERROR\n"
                                "MaxStartups 100:30:200\n"))
        self.proc = start(["/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                          stderr=os.path.join(self.dir, "sshd.log"))
        if not wait_port(self.port, 5):
            raise RuntimeError(f"sshd {name} did not come up; see {self.dir}/sshd.log")
        self.pid = self.proc.pid

    def ssh_args(self, tunnel_port, service_port):
        return ["-F", "/dev/null", "-i", os.path.join(self.keys, "client_key"), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-N",
                "-L", f"{tunnel_port}:127.0.0.1:{service_port}", "root@127.0.0.1"]

    def sessions(self):
        """Every descendant of the listener: the per-connection sshd processes."""
        return descendants(self.pid)

    def kill_sessions(self):
        pids = self.sessions()
        unfreeze_and_kill(pids)
        return pids


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def wait_gone(pids, timeout=5.0):
    """Waits (at most timeout s) until none of pids is in /proc any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.02)


class ListenerSshd:
    """OpenSSH's sshd (`sshd -D -e -f cfg`, keys of make_keys) on address:port that can be
    killed (listener and sessions together, the server's outage) and started again on the same
    port; each start logs to a file of its own (sshd-1.log, sshd-2.log, ... in d/sshd-NAME).
    tail: config lines (LogLevel, MaxStartups, ...); ns: a network namespace to run it in
    (`ip netns exec`), None for this one."""

    def __init__(self, address, port, d, name, tail, ns=None):
        self.ns, self.address, self.port, self.name = ns, address, port, name
        self.dir = os.path.join(d, "sshd-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.cfg = os.path.join(self.dir, "sshd_config")
        with open(self.cfg, "w") as f:
            f.write(sshd_config(port, address, self.dir, tail))
        self.proc = None
        self.count = 0
        self.logs = []

    @property
    def logf(self):
        return self.logs[-1] if self.logs else None

    def start(self, timeout=10.0):
        """Starts the listener; returns the monotonic time its log said it listens."""
        self.count += 1
        logf = os.path.join(self.dir, f"sshd-{self.count}.log")
        self.logs.append(logf)
        pre = ["ip", "netns", "exec", self.ns] if self.ns else []
        self.proc = start(pre + ["/usr/sbin/sshd", "-D", "-e", "-f", self.cfg], stderr=logf)
        t = wait_listening(self.proc, logf, f"Server listening on {self.address} port {self.port}", timeout)
        if t is None:
            raise RuntimeError(f"sshd {self.name} did not start; see {logf}")
        return t

    def sessions(self):
        return descendants(self.proc.pid) if self.proc is not None else []

    def kill_sessions(self):
        """SIGKILLs every session process (the listener stays); returns how many."""
        victims = self.sessions()
        for p in victims:
            _signal(p, signal.SIGKILL)
        wait_gone(victims)
        return len(victims)

    def kill(self):
        """SIGKILLs the listener and its sessions together; returns how many processes. The
        listener is stopped first (and every session found), so that no session forked while
        they are listed survives as an orphan still carrying its tunnel."""
        if self.proc is None:
            return 0
        victims = [self.proc.pid]
        # SIGSTOP directly (not freeze(): the pids die right below and are not to be recorded)
        _signal(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and proc_state(self.proc.pid) not in ("T", "t", "Z", None):
            time.sleep(0.005)
        for _ in range(5):  # sessions may fork their privilege-separated children meanwhile
            new = [p for p in self.sessions() if p not in victims]
            if not new:
                break
            for p in new:
                _signal(p, signal.SIGSTOP)
            victims += new
            time.sleep(0.01)
        for p in victims:
            _signal(p, signal.SIGKILL)
        stop(self.proc, grace=0)
        self.proc = None
        wait_gone(victims)
        return len(victims)


def make_keys():
    keys = os.path.join(WORK, "keys")
    if os.path.exists(os.path.join(keys, "client_key")):
        return
    os.makedirs(keys, exist_ok=True)
    for k in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(keys, k)],
                       check=True)
    with open(os.path.join(keys, "client_key.pub")) as s, \
            open(os.path.join(keys, "authorized_keys"), "w") as d:
        d.write(s.read())
    os.makedirs("/run/sshd", exist_ok=True)


# ---------------------------------------------------------------------------------------------
# tunnel checker

class _Try:
    """One check in flight: a non-blocking connect to 127.0.0.1:port, then `line` sent and
    expected back byte for byte."""

    def __init__(self, port, line, start):
        self.port, self.line, self.start = port, line, start
        self.got, self.sent = b"", False
        self.sock = socket.socket()
        # close with RST: thousands of checks would otherwise pile up in TIME_WAIT
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.setblocking(False)

    def connect(self, sel):
        """Starts the connect; False (socket closed) when it failed at once."""
        try:
            self.sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            self.sock.close()
            return False
        sel.register(self.sock, selectors.EVENT_WRITE)
        return True

    def step(self, sel):
        """Advances on readiness: (done, ok)."""
        s = self.sock
        try:
            if not self.sent:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return True, False
                s.send(self.line)
                self.sent = True
                sel.modify(s, selectors.EVENT_READ)
                return False, False
            data = s.recv(4096)
            if not data:
                return True, False
            self.got += data
            if len(self.got) >= len(self.line):
                return True, self.got == self.line
            return False, False
        except OSError:
            return True, False

    def close(self, sel):
        sel.unregister(self.sock)
        self.sock.close()


class Checker:
    """Starts a check every `interval` s: connect to the tunnel port, send a line, expect it back
    within `timeout` s. Checks overlap, so a frozen tunnel does not slow the sampling down."""

    def __init__(self, port, timeout=0.5):
        self.port = port
        self.timeout = timeout
        self.seq = 0

    def run(self, interval, until, stop_on_success=False, on_tick=None, stop=None):
        """Runs checks until monotonic time `until` (or the first success, or until
        `stop(results)` returns true; results rows are [start, end, ok], end None while the
        check is in flight). Returns a list of (start, end, ok) per check, in start order."""
        sel = selectors.DefaultSelector()
        results = []
        live = {}  # sock -> (_Try, index in results)
        next_start = time.monotonic()
        try:
            while True:
                t = time.monotonic()
                if on_tick:
                    on_tick(t)
                if t >= next_start and t < until:
                    next_start += interval
                    if next_start < t:
                        next_start = t + interval
                    self.seq += 1
                    line = f"check {self.seq} {random.getrandbits(48):012x}\n".encode()
                    idx = len(results)
                    results.append([t, None, False])
                    tr = _Try(self.port, line, t)
                    if tr.connect(sel):
                        live[tr.sock] = (tr, idx)
                    else:
                        results[idx][1:] = [time.monotonic(), False]
                # expire
                t = time.monotonic()
                for s, (tr, idx) in list(live.items()):
                    if t - tr.start >= self.timeout:
                        results[idx][1:] = [t, False]
                        tr.close(sel)
                        del live[s]
                if stop_on_success and any(r[2] for r in results):
                    break
                if stop is not None and stop(results):
                    break
                if t >= until and not live:
                    break
                wait = min([next_start - t if t < until else 0.05] +
                           [tr.start + self.timeout - t for tr, _ in live.values()])
                for key, ev in sel.select(max(0.0, min(wait, 0.05))):
                    entry = live.get(key.fileobj)
                    if entry is None:
                        continue
                    tr, idx = entry
                    done, ok = tr.step(sel)
                    if done:
                        results[idx][1:] = [time.monotonic(), ok]
                        tr.close(sel)
                        del live[key.fileobj]
        finally:
            for s in live:
                s.close()
            sel.close()
        return [tuple(r) for r in results]

    def once(self):
        r = self.run(1.0, time.monotonic() + 0.001)
        return bool(r and r[0][2])


def check_ports(ports, until, interval=0.1, timeout=0.5, stop=None):
    """Tunnel checks on many ports at once (a fleet): each port of `ports` on 127.0.0.1 is
    tried (connect, send a line, expect it back within `timeout` s; one try in flight per port,
    the next starts `interval` s after the last one started) until it has answered once, or
    until monotonic time `until`, or until `stop()` returns true. Returns ({port: monotonic
    time its first answered try ended}, number of tries)."""
    sel = selectors.DefaultSelector()
    ok, tries = {}, 0
    nxt = {p: time.monotonic() for p in ports}
    live = {}  # sock -> _Try
    try:
        while len(ok) < len(nxt):
            t = time.monotonic()
            if t >= until or (stop is not None and stop()):
                break
            busy = {tr.port for tr in live.values()}
            for p, when in nxt.items():
                if p in ok or p in busy or t < when:
                    continue
                nxt[p] = t + interval
                tries += 1
                line = f"check {p} {tries} {random.getrandbits(48):012x}\n".encode()
                tr = _Try(p, line, t)
                if tr.connect(sel):
                    live[tr.sock] = tr
            t = time.monotonic()
            for s, tr in list(live.items()):
                if t - tr.start >= timeout:
                    tr.close(sel)
                    del live[s]
            for key, _ev in sel.select(0.01):
                tr = live.get(key.fileobj)
                if tr is None:
                    continue
                done, good = tr.step(sel)
                if done:
                    if good and tr.port not in ok:
                        ok[tr.port] = time.monotonic()
                    tr.close(sel)
                    del live[key.fileobj]
    finally:
        for s in live:
            s.close()
        sel.close()
    return ok, tries


# ---------------------------------------------------------------------------------------------
# /proc

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def cpu_ns(pid):
    """Nanoseconds on CPU (sum_exec_runtime from /proc/PID/schedstat): finer than ticks."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def pss_kb(pid):
    """Proportional set size in kB (/proc/PID/smaps_rollup), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def die(msg):
    log("ERROR: " + msg)
    sys.exit(1)


def collect(workers, end, keys, results, report_one):
    """Waits for each (spec, process) worker until `end` (CLOCK_MONOTONIC), stops it, and
    appends its JSON result (spec["out"]), or a record of `keys` from spec with an error."""
    for spec, p in workers:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        stop(p, grace=3)
        try:
            with open(spec["out"]) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {k: spec[k] for k in keys}
            r["error"] = f"worker gave no result (exit {p.returncode}); see {spec['dir']}/worker.log"
        results.append(r)
        report_one(r)


def wait_listening(proc, logf, want, timeout=10.0):
    """Polls `logf` until it says `want` (e.g. sshd's "Server listening on ..."); the
    CLOCK_MONOTONIC time it did, or None when `proc` ended or `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if want in read_log(logf):
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    return None


def dispatch(args, worker, run):
    """The common end of a benchmark script's main(): `worker` (one run, from its JSON spec)
    or `run` (the coordinator), with everything started killed afterwards, also on error."""
    install_signal_handlers()
    os.makedirs(WORK, exist_ok=True)
    try:
        if args.what == "worker":
            with open(args.spec) as f:
                worker(json.load(f))
        else:
            run(args)
    finally:
        cleanup_all()


# ---------------------------------------------------------------------------------------------
# commands and waits of the network-namespace benchmarks (recovery, app, field): each run gets
# a CLI and a SRV namespace joined by a veth pair made inside them (Pair)

NS_PREFIX = "asbench"
NS_RE = re.compile(rf"{NS_PREFIX}-(\d+)-(\d+)-(cli|srv)")
TUNNEL, SERVICE = 8022, 7007  # the tunnel's -L port in CLI, the service's port in SRV
CMD_TIMEOUT = 15
# the script whose `delayer` subcommand holds packets for Fault("delay")
RECOVERY_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recovery_bench.py")


def sh(argv, timeout=CMD_TIMEOUT):
    """Runs a command (bounded); its stdout, or RuntimeError with its stderr."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def nsx(ns, argv, timeout=CMD_TIMEOUT):
    return sh(["ip", "netns", "exec", ns] + list(argv), timeout)


def sleep_until(t):
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def wait_file(path, timeout, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------------------------
# network namespaces (the coordinator's side)

def netns_list():
    try:
        out = sh(["ip", "netns", "list"])
    except (RuntimeError, subprocess.TimeoutExpired):
        return []
    return [l.split()[0] for l in out.splitlines() if l.split()]


def netns_pids(ns):
    try:
        out = sh(["ip", "netns", "pids", ns])
    except (RuntimeError, subprocess.TimeoutExpired):
        return []
    me = os.getpid()
    return [int(x) for x in out.split() if x.isdigit() and int(x) != me]


def kill_all_in(ns):
    """SIGKILLs every process in namespace ns (a few rounds, bounded)."""
    for _ in range(5):
        pids = netns_pids(ns)
        if not pids:
            return
        for p in pids:
            _signal(p, signal.SIGCONT)
            _signal(p, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.05)


def delete_ns(ns):
    kill_all_in(ns)
    try:
        sh(["ip", "netns", "del", ns])
    except (RuntimeError, subprocess.TimeoutExpired):
        pass


def remove_stale_namespaces():
    """Namespaces named like ours whose creating process is gone (a run killed with SIGKILL)."""
    for name in netns_list():
        m = NS_RE.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            log(f"removing stale namespace {name}")
            delete_ns(name)


class Pair:
    """CLI and SRV namespaces joined by a veth pair 10.203.n.0/30 made inside them."""

    def __init__(self, n):
        pid = os.getpid()
        self.n = n
        self.cli = f"{NS_PREFIX}-{pid}-{n}-cli"
        self.srv = f"{NS_PREFIX}-{pid}-{n}-srv"
        self.cli_if = f"vb{pid % 100000}c{n}"
        self.srv_if = f"vb{pid % 100000}s{n}"
        self.srv_ip = f"10.203.{n}.1"
        self.cli_ip = f"10.203.{n}.2"
        self.made = []

    def create(self):
        for ns in (self.srv, self.cli):
            with open(os.path.join(WORK, "netns"), "a") as f:  # for run.sh's trap
                f.write(ns + "\n")
            sh(["ip", "netns", "add", ns])
            self.made.append(ns)
        # created in CLI with its peer straight in SRV: never in the root namespace
        sh(["ip", "-n", self.cli, "link", "add", self.cli_if, "type", "veth", "peer", "name",
            self.srv_if, "netns", self.srv])
        sh(["ip", "-n", self.srv, "addr", "add", f"{self.srv_ip}/30", "dev", self.srv_if])
        sh(["ip", "-n", self.cli, "addr", "add", f"{self.cli_ip}/30", "dev", self.cli_if])
        for ns, dev in ((self.srv, self.srv_if), (self.cli, self.cli_if)):
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
        deadline = time.monotonic() + 5
        while True:
            try:
                sh(["ip", "-n", self.cli, "route", "get", self.srv_ip])
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def info(self):
        return {k: getattr(self, k) for k in ("n", "cli", "srv", "cli_if", "srv_if", "srv_ip",
                                              "cli_ip")}

    def destroy(self):
        for ns in reversed(self.made):
            delete_ns(ns)
        self.made = []


# ---------------------------------------------------------------------------------------------
# inside a pair: sshd in SRV, faults, the tunnel checked while a fault runs its course

class SrvSshd:
    """OpenSSH's sshd on SRV_IP:22 in the SRV namespace; kill() takes down the listener and
    every session at once, start() brings it back on the same address."""

    def __init__(self, net, d):
        self.net, self.dir = net, d
        self.cfg = os.path.join(d, "sshd_config")
        with open(self.cfg, "w") as f:
            f.write(sshd_config(22, net["srv_ip"], d,
                                  "ClientAliveInterval 0\n"
                                  "LogLevel VERBOSE\n"
                                  "MaxStartups 100:30:200\n"
                                  "MaxSessions 100\n"
                                  "UseDNS no\n"))
        self.proc = None
        self.count = 0

    def start(self, timeout=10.0):
        """Starts the listener; returns the monotonic time its log said it listens."""
        self.count += 1
        logf = os.path.join(self.dir, f"sshd-{self.count}.log")
        self.proc = start(["ip", "netns", "exec", self.net["srv"], "/usr/sbin/sshd", "-D", "-e",
                             "-f", self.cfg], stderr=logf)
        t = wait_listening(self.proc, logf, f"Server listening on {self.net['srv_ip']} port 22", timeout)
        if t is None:
            raise RuntimeError(f"sshd did not start; see {logf}")
        return t

    def kill(self):
        """SIGKILLs the listener and all sessions together; returns how many processes."""
        victims = set()
        if self.proc is not None:
            victims.add(self.proc.pid)
            victims.update(descendants(self.proc.pid))
        for p in netns_pids(self.net["srv"]):
            if cmdline(p).startswith("sshd"):
                victims.add(p)
        for p in victims:
            _signal(p, signal.SIGKILL)
        if self.proc is not None:
            stop(self.proc, grace=0)
            self.proc = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in victims):
            time.sleep(0.02)
        return len(victims)


def iptables(ns, op, rule):
    nsx(ns, ["iptables", "-w", "5", op] + rule)


class Fault:
    """One fault, applied and lifted inside the pair's namespaces."""

    def __init__(self, kind, net, sshd, d):
        self.kind, self.net, self.sshd, self.dir = kind, net, sshd, d
        self.rules = []  # (ns, rule) added
        self.qdiscs = []  # (ns, dev)
        self.delayer = None
        self.info = {}

    def _rule(self, ns, rule):
        iptables(ns, "-A", rule)
        self.rules.append((ns, rule))

    def apply(self):
        n = self.net
        if self.kind == "blackhole":
            # lost in flight: each end drops what arrives from the other, so neither sender
            # learns anything (a DROP in the sender's own OUTPUT chain fails every packet it
            # sends locally with EPERM, which its TCP treats differently from silent loss)
            self._rule(n["cli"], ["INPUT", "-s", n["srv_ip"], "-j", "DROP"])
            self._rule(n["srv"], ["INPUT", "-s", n["cli_ip"], "-j", "DROP"])
        elif self.kind == "blackhole-out":
            # the fault-injection tests' black hole (tests/netns/): both rules in CLI
            self._rule(n["cli"], ["OUTPUT", "-d", n["srv_ip"], "-j", "DROP"])
            self._rule(n["cli"], ["INPUT", "-s", n["srv_ip"], "-j", "DROP"])
        elif self.kind == "serverdown":
            self.info["killed"] = self.sshd.kill()
        elif self.kind == "loss":
            # on arrival (in flight, as above), each direction
            for ns, src in ((n["cli"], n["srv_ip"]), (n["srv"], n["cli_ip"])):
                self._rule(ns, ["INPUT", "-s", src, "-m", "statistic", "--mode", "random",
                                "--probability", "0.2000", "-j", "DROP"])
        elif self.kind == "delay":
            ready = os.path.join(self.dir, "delayer.ready")
            self.delayer = start([sys.executable, RECOVERY_BENCH, "delayer",
                             "--queue", "0", "--delay", "0.3", "--ready", ready,
                             "--max-life", "400"],
                            stdout=os.path.join(self.dir, "delayer.log"),
                            stderr=os.path.join(self.dir, "delayer.log"))
            if not wait_file(ready, 10, lambda: self.delayer.poll() is None):
                raise RuntimeError("NFQUEUE delayer did not start; see delayer.log")
            self._rule(n["cli"], ["OUTPUT", "-d", n["srv_ip"], "-j", "NFQUEUE", "--queue-num",
                                  "0", "--queue-bypass"])
        elif self.kind == "tbf":
            for ns, dev in ((n["cli"], n["cli_if"]), (n["srv"], n["srv_if"])):
                nsx(ns, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "1mbit",
                         "burst", "32kbit", "latency", "400ms"])
                self.qdiscs.append((ns, dev))
        else:
            raise ValueError(self.kind)

    def lift(self):
        """Removes the fault; returns the monotonic time the server counts as back."""
        for ns, rule in reversed(self.rules):
            iptables(ns, "-D", rule)
        self.rules = []
        for ns, dev in self.qdiscs:
            nsx(ns, ["tc", "qdisc", "del", "dev", dev, "root"])
        self.qdiscs = []
        t = time.monotonic()
        if self.delayer is not None:
            stop(self.delayer, grace=2)  # SIGTERM: it lets everything held go, then exits
            with open(os.path.join(self.dir, "delayer.log"), errors="replace") as f:
                self.info["delayer"] = f.read().strip()[-300:]
            self.delayer = None
        if self.kind == "serverdown":
            t = self.sshd.start()
        return t


PROBE_OK = re.compile(r"probe \d+ ok|check on child|set alarm|connection ok|checking for grace|"
                      r"received SIGALRM|clear alarm timer")


def key_lines(text, limit=300):
    """The log without per-probe chatter, at most `limit` lines (head and tail)."""
    lines = [l for l in text.splitlines() if not PROBE_OK.search(l)]
    if len(lines) > limit:
        lines = lines[:limit // 2] + [f"... ({len(lines) - limit} lines left out) ..."] + \
            lines[-limit // 2:]
    return lines



def fault_checks(fault, logfile, t_fault, during, *, lifted, check_timeout, until, ok_key,
                 ok_field, hold, give_up, on_ok=None):
    """Runs a fault's timeline in a thread while the tunnel is checked every 0.1 s (checks of
    `check_timeout` s, started until monotonic time `until` at the latest). The timeline sleeps
    until t_fault and applies the fault (st: log_fault, t_fault, t_applied), then during(st)
    lifts it and sets st[lifted]; an exception there lands in st["error"] and ends the checks.
    Once st[lifted] is set, the first successful check whose start (ok_field 0) or end (ok_field
    1) is not before it puts its end in st[ok_key] (then on_ok(st) is called); the checks stop
    `hold` s after that, or `give_up` s after st[lifted] without one. Returns (st, checks, the
    log's text)."""
    st = {}

    def timeline():
        try:
            sleep_until(t_fault)
            st["log_fault"] = log_size(logfile)
            st["t_fault"] = time.monotonic()
            fault.apply()
            st["t_applied"] = time.monotonic()
            during(st)
        except Exception as e:  # noqa: BLE001
            st["error"] = f"{type(e).__name__}: {e}"

    th = threading.Thread(target=timeline, daemon=True)
    th.start()
    scan = [0]

    def stop(results):
        if "error" in st:
            return True
        t_lifted = st.get(lifted)
        if t_lifted is None:
            return False
        now = time.monotonic()
        if ok_key not in st:
            for i in range(scan[0], len(results)):
                r = results[i]
                if r[1] is None:
                    break
                if r[2] and r[ok_field] >= t_lifted:
                    st[ok_key] = r[1]
                    if on_ok is not None:
                        on_ok(st)
                    break
                scan[0] = i + 1
        if ok_key in st:
            return now >= st[ok_key] + hold
        return now >= t_lifted + give_up

    checks = Checker(TUNNEL, timeout=check_timeout).run(0.1, until, stop=stop)
    th.join(timeout=30)
    if "error" in st:
        raise RuntimeError(st["error"])
    if lifted not in st:
        raise RuntimeError("the fault was not lifted in time")
    return st, checks, read_log(logfile)

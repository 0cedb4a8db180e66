"""Shared pieces of the benchmark suite: process bookkeeping, a private sshd, a tunnel checker,
/proc readings, autossh logs. Used by tunnel_bench.py, echo_bench.py and recovery_bench.py;
run.sh is the entry point.

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

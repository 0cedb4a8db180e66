"""Recovery benchmarks: our autossh against autossh 1.4g when the server goes away and comes
back, and while the link loses packets, is slow or is saturated.

  recovery_bench.py run --out FILE [--only outage,faults] [--quick]

Every run (one program in one scenario) gets two network namespaces of its own, made here and
removed afterwards: CLI (autossh, the tunnel checker, the fault rules) and SRV (OpenSSH's sshd on
10.203.N.1:22 and an echo service on 127.0.0.1:7007, the tunnel's target), joined by a veth pair
10.203.N.0/30 created inside them. Nothing here touches the root namespace's interfaces, routes
or firewall: every rule and qdisc lives in a namespace of ours and goes away with it. The runs of
one scenario (ours and 1.4g, same settings) are started together and their faults are applied
at the same instant (a shared CLOCK_MONOTONIC deadline), so they see the same conditions.

Benchmark 1 (`outage`): default settings (no AUTOSSH_POLL: 600 s), `-M 0` and loop mode
`-M 20000`; the server becomes unreachable for 40 s or 120 s: (a) black hole, packets lost in
flight (iptables DROP on arrival: in CLI of what comes from the server, in SRV of what comes from
the client); (a') the fault-injection tests' black hole (DROP in CLI's OUTPUT and INPUT, which
the client's own TCP notices, see Fault.apply); (b) server down: sshd's listener and all its
sessions SIGKILLed, restarted after the outage. Measured: seconds from the server's return
(rules removed / the restarted sshd logged "Server listening") to the first tunnel check that
succeeds; "starting ssh" log lines during the outage and from the return to recovery.

Benchmark 2 (`faults`): AUTOSSH_POLL=4, loop mode, 60 s of 20% random loss (each direction, on
arrival, iptables statistic), +300 ms on every client-to-server packet (NFQUEUE + the userspace
delayer below; this kernel has no netem) or a 1 Mbit/s tbf link (both veth ends) saturated by a
5 MiB echo transfer through the tunnel. Measured: "starting ssh" lines after the fault starts,
tunnel checks answered, the transfer's integrity.

Subcommands used internally: `worker` (one run, inside its CLI namespace), `echo-service`
(inside SRV), `delayer` (inside CLI).
"""
import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

import benchlib as B

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "recovery")
PROGS = {"ours": B.OURS, "1.4g": B.THEIRS, "1.4g+SA": B.THEIRS}
NS_PREFIX = "asbench"
NS_RE = re.compile(rf"{NS_PREFIX}-(\d+)-(\d+)-(cli|srv)")
TUNNEL, SERVICE, MONITOR = 8022, 7007, 20000
CMD_TIMEOUT = 15


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
# namespaces (coordinator side)

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
            B._signal(p, signal.SIGCONT)
            B._signal(p, signal.SIGKILL)
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
            B.log(f"removing stale namespace {name}")
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
            with open(os.path.join(B.WORK, "netns"), "a") as f:  # for run.sh's trap
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
# worker side: one program in one scenario, running inside its CLI namespace

class SrvSshd:
    """OpenSSH's sshd on SRV_IP:22 in the SRV namespace; kill() takes down the listener and
    every session at once, start() brings it back on the same address."""

    def __init__(self, net, d):
        self.net, self.dir = net, d
        self.cfg = os.path.join(d, "sshd_config")
        with open(self.cfg, "w") as f:
            f.write(B.sshd_config(22, net["srv_ip"], d,
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
        self.proc = B.start(["ip", "netns", "exec", self.net["srv"], "/usr/sbin/sshd", "-D", "-e",
                             "-f", self.cfg], stderr=logf)
        t = B.wait_listening(self.proc, logf, f"Server listening on {self.net['srv_ip']} port 22", timeout)
        if t is None:
            raise RuntimeError(f"sshd did not start; see {logf}")
        return t

    def kill(self):
        """SIGKILLs the listener and all sessions together; returns how many processes."""
        victims = set()
        if self.proc is not None:
            victims.add(self.proc.pid)
            victims.update(B.descendants(self.proc.pid))
        for p in netns_pids(self.net["srv"]):
            if B.cmdline(p).startswith("sshd"):
                victims.add(p)
        for p in victims:
            B._signal(p, signal.SIGKILL)
        if self.proc is not None:
            B.stop(self.proc, grace=0)
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
            self.delayer = B.start([sys.executable, os.path.abspath(__file__), "delayer",
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
            B.stop(self.delayer, grace=2)  # SIGTERM: it lets everything held go, then exits
            with open(os.path.join(self.dir, "delayer.log"), errors="replace") as f:
                self.info["delayer"] = f.read().strip()[-300:]
            self.delayer = None
        if self.kind == "serverdown":
            t = self.sshd.start()
        return t


def transfer(port, total, deadline, seed=20240601):
    """Sends `total` pseudo-random bytes through 127.0.0.1:port to the echo service from one
    thread, reads them back in this one, compares every byte."""
    data = random.Random(seed).randbytes(total)
    res = {"total": total, "sent": 0, "received": 0, "first_mismatch": None, "error": None}
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        res["error"] = f"connect: {e}"
        return res
    s.settimeout(1.0)
    werr = []

    def writer():
        off = 0
        try:
            while off < total:
                if time.monotonic() >= deadline:
                    werr.append("writer: time limit")
                    break
                try:
                    off += s.send(data[off:off + 65536])
                except socket.timeout:
                    continue
            else:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            werr.append(f"writer: {e}")
        res["sent"] = off

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    got = 0
    try:
        while got < total:
            if time.monotonic() >= deadline:
                res["error"] = "reader: time limit"
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                res["error"] = "reader: EOF before all bytes came back"
                break
            if res["first_mismatch"] is None and chunk != data[got:got + len(chunk)]:
                ref = data[got:got + len(chunk)]
                res["first_mismatch"] = got + next(
                    (i for i in range(len(chunk)) if i >= len(ref) or chunk[i] != ref[i]), 0)
            got += len(chunk)
    except OSError as e:
        res["error"] = f"reader: {e}"
    res["received"] = got
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    w.join(timeout=5)
    s.close()
    if res["error"] is None and werr:
        res["error"] = werr[0]
    res["elapsed_s"] = round(time.monotonic() - t0, 2)
    res["mbit_s"] = round(got * 8 / max(0.001, res["elapsed_s"]) / 1e6, 3)
    res["intact"] = (res["error"] is None and got == total and res["sent"] == total
                     and res["first_mismatch"] is None)
    return res


PROBE_OK = re.compile(r"probe \d+ ok|check on child|set alarm|connection ok|checking for grace|"
                      r"received SIGALRM|clear alarm timer")


def key_lines(text, limit=300):
    """The log without per-probe chatter, at most `limit` lines (head and tail)."""
    lines = [l for l in text.splitlines() if not PROBE_OK.search(l)]
    if len(lines) > limit:
        lines = lines[:limit // 2] + [f"... ({len(lines) - limit} lines left out) ..."] + \
            lines[-limit // 2:]
    return lines


def worker(spec):
    net, d = spec["net"], spec["dir"]
    os.makedirs(d, exist_ok=True)
    res = {k: spec[k] for k in ("bench", "scenario", "prog", "mode", "kind", "tag")}
    res["n"] = net["n"]
    logfile = os.path.join(d, "autossh.log")
    proc = None
    try:
        sshd = SrvSshd(net, d)
        sshd.start()
        ready = os.path.join(d, "echo.ready")
        echo = B.start(["ip", "netns", "exec", net["srv"], sys.executable,
                        os.path.abspath(__file__), "echo-service", "--port", str(SERVICE),
                        "--ready", ready, "--max-life", "900"],
                       stderr=os.path.join(d, "echo.log"))
        if not wait_file(ready, 10, lambda: echo.poll() is None):
            raise RuntimeError("echo service did not start")
        ssh_args = ["-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        if spec["prog"] == "1.4g+SA":
            ssh_args += ["-o", "ServerAliveInterval=60", "-o", "ServerAliveCountMax=3"]
        ssh_args += ["-N", "-L", f"{TUNNEL}:127.0.0.1:{SERVICE}", f"root@{net['srv_ip']}"]
        monitor = "0" if spec["mode"] == "M0" else str(MONITOR)
        argv = [PROGS[spec["prog"]], "-M", monitor] + ssh_args
        res["argv"] = " ".join(argv)
        res["env"] = " ".join(f"{k}={v}" for k, v in sorted(B.autossh_env(logfile, spec["poll"]).items())
                              if k.startswith("AUTOSSH_"))
        proc = B.start(argv, env=B.autossh_env(logfile, spec["poll"]),
                       stdout=os.path.join(d, "autossh.stderr"),
                       stderr=os.path.join(d, "autossh.stderr"))
        checker = B.Checker(TUNNEL, timeout=0.5)
        deadline = time.monotonic() + 30
        while not checker.once():
            if proc.poll() is not None:
                raise RuntimeError(f"autossh exited with {proc.returncode} before the tunnel was up")
            if time.monotonic() > deadline:
                raise RuntimeError("tunnel did not come up within 30 s")
            time.sleep(0.1)
        B.write_json(spec["ready"], {"t": time.monotonic()})
        if not wait_file(spec["go"], 120):
            raise RuntimeError("no go signal from the coordinator")
        with open(spec["go"]) as f:
            t_fault = json.load(f)["t0"] + spec["offset"]
        fault = Fault(spec["kind"], net, sshd, d)
        if spec["bench"] == "outage":
            outage(spec, res, fault, proc, logfile, t_fault)
        else:
            under_fault(spec, res, fault, proc, logfile, t_fault)
        res["alive_at_end"] = proc.poll() is None
        res["fault_info"] = fault.info
    except Exception as e:  # noqa: BLE001 - reported in the results
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        if proc is not None:
            B.stop(proc)
        res["log_key_lines"] = key_lines(B.read_log(logfile)[res.get("log_fault_offset", 0):])
        res["starts_total"] = B.starts(B.read_log(logfile))
        B.write_json(spec["out"], res)
        os.makedirs(LOGDIR, exist_ok=True)
        for src, dst in ((logfile, f"{spec['tag']}.log"),
                         (os.path.join(d, "autossh.stderr"), f"{spec['tag']}.stderr")):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(LOGDIR, dst))


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

    checks = B.Checker(TUNNEL, timeout=check_timeout).run(0.1, until, stop=stop)
    th.join(timeout=30)
    if "error" in st:
        raise RuntimeError(st["error"])
    if lifted not in st:
        raise RuntimeError("the fault was not lifted in time")
    return st, checks, B.read_log(logfile)


def outage(spec, res, fault, proc, logfile, t_fault):
    def during(st):
        sleep_until(st["t_fault"] + spec["outage"])
        st["t_lift"] = time.monotonic()
        t_ret = fault.lift()
        st["log_return"] = log_size(logfile)
        st["t_return"] = t_ret

    def recovered(st):
        st["log_recovered"] = log_size(logfile)

    cap = spec["cap"]
    # recovered: the first check that ends after the return succeeds; then 3 s more
    st, checks, text = fault_checks(fault, logfile, t_fault, during, lifted="t_return",
                                    check_timeout=0.5, until=t_fault + spec["outage"] + cap + 20,
                                    ok_key="recovered_at", ok_field=1, hold=3, give_up=cap,
                                    on_ok=recovered)
    tf, tr = st["t_fault"], st["t_return"]
    res["log_fault_offset"] = st["log_fault"]
    res["outage_s"] = spec["outage"]
    res["outage_real_s"] = round(tr - tf, 2)
    res["apply_s"] = round(st["t_applied"] - tf, 3)
    res["return_after_lift_s"] = round(tr - st["t_lift"], 3)
    res["baseline_failed"] = sum(1 for c in checks if c[0] < tf - 0.5 and not c[2])
    res["ok_during_outage"] = sum(1 for c in checks if c[2] and st["t_applied"] + 0.5 < c[1] < tr)
    res["starts_during_outage"] = B.starts(text[st["log_fault"]:st["log_return"]])
    if "recovered_at" in st:
        res["recover_s"] = round(st["recovered_at"] - tr, 3)
        res["starts_to_recovery"] = B.starts(text[st["log_return"]:st["log_recovered"]])
        ra = st["recovered_at"]
        res["failed_after_recovery"] = sum(1 for c in checks if c[0] > ra and not c[2])
    else:
        res["recover_s"] = None
        res["not_recovered_within_s"] = cap
        res["starts_to_recovery"] = B.starts(text[st["log_return"]:])
    res["checks"] = len(checks)


def under_fault(spec, res, fault, proc, logfile, t_fault):
    window = spec["window"]

    def during(st):
        tr = None
        if spec["kind"] == "tbf":
            out = {}
            limit = st["t_applied"] + window + spec["transfer_extra"]
            tr = threading.Thread(target=lambda: out.update(
                transfer(TUNNEL, spec["transfer_bytes"], limit)), daemon=True)
            tr.start()
        sleep_until(st["t_fault"] + window)
        st["log_window"] = log_size(logfile)
        st["t_window"] = time.monotonic()
        if tr is not None:
            tr.join(timeout=max(0.0, st["t_applied"] + window + spec["transfer_extra"] + 10
                                - time.monotonic()))
            st["transfer"] = out if out else {"error": "transfer thread did not finish"}
        st["log_lift"] = log_size(logfile)
        st["t_lift"] = fault.lift()

    limit = t_fault + window + spec.get("transfer_extra", 0) + 40
    # after_lift_ok: the first check started after the lift that succeeds; then 1 s more
    st, checks, text = fault_checks(fault, logfile, t_fault, during, lifted="t_lift",
                                    check_timeout=3.0, until=limit, ok_key="after_lift_ok",
                                    ok_field=0, hold=1, give_up=10)
    tf, tw = st["t_fault"], st["t_window"]
    res["log_fault_offset"] = st["log_fault"]
    res["window_s"] = window
    res["restarts"] = B.starts(text[st["log_fault"]:st["log_window"]])
    res["restarts_until_lift"] = B.starts(text[st["log_fault"]:st["log_lift"]])
    res["fault_s"] = round(st["t_lift"] - tf, 1)
    win = [c for c in checks if tf <= c[0] and c[0] + 3.0 <= tw]
    ok = [c for c in win if c[2]]
    res["checks_in_window"] = len(win)
    res["checks_answered"] = len(ok)
    lat = sorted((c[1] - c[0]) * 1000 for c in ok)
    res["check_ms_p50"] = round(statistics.median(lat), 1) if lat else None
    res["check_ms_max"] = round(lat[-1], 1) if lat else None
    res["baseline_failed"] = sum(1 for c in checks if c[0] < tf - 3 and not c[2])
    if "after_lift_ok" in st:
        res["tunnel_after_lift_s"] = round(st["after_lift_ok"] - st["t_lift"], 2)
    else:
        res["tunnel_after_lift_s"] = None
    if "transfer" in st:
        res["transfer"] = st["transfer"]


# ---------------------------------------------------------------------------------------------
# echo service (inside SRV): every byte back, a thread per connection, blocking writes (a slow
# tunnel only slows it down)

def echo_service(args):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(256)
    ls.settimeout(1.0)
    with open(args.ready, "w") as f:
        f.write("ok\n")

    def serve(c):
        c.settimeout(300)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    deadline = time.monotonic() + args.max_life
    while time.monotonic() < deadline:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.01)
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()


# ---------------------------------------------------------------------------------------------
# NFQUEUE delayer (inside CLI): holds every queued packet for a fixed delay, then accepts it, in
# order; on SIGTERM lets everything held go and exits. Latency without netem.

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFQ = 3 << 8  # NFNL_SUBSYS_QUEUE
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NLMSG_ERROR = 2


def nfq_msg(mtype, flags, seq, queue, attrs):
    body = struct.pack("BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue)
    for ty, data in attrs:
        a = struct.pack("=HH", 4 + len(data), ty) + data
        body += a + b"\0" * (-len(a) % 4)
    return struct.pack("=IHHII", 16 + len(body), NFQ | mtype, 1 | flags, seq, 0) + body


def nl_messages(buf):
    off = 0
    while off + 16 <= len(buf):
        ln, ty, _fl, seq, _pid = struct.unpack_from("=IHHII", buf, off)
        if ln < 16 or off + ln > len(buf):
            break
        yield ty, seq, buf[off + 16:off + ln]
        off += (ln + 3) & ~3


def packet_id(payload):
    off = 4
    for _ in range(64):
        if off + 4 > len(payload):
            return None
        ln, ty = struct.unpack_from("=HH", payload, off)
        if ln < 4:
            return None
        if ty & 0x3FFF == 1 and ln >= 8:  # NFQA_PACKET_HDR
            return struct.unpack_from("!I", payload, off + 4)[0]
        off += (ln + 3) & ~3
    return None


def delayer(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    q = args.queue
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def config(seq, attrs):
        s.send(nfq_msg(NFQNL_MSG_CONFIG, 4, seq, q, attrs))  # NLM_F_ACK
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                continue
            for ty, sq, payload in nl_messages(s.recv(65536)):
                if ty == NLMSG_ERROR and sq == seq:
                    err = struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(-err, f"nfqueue config {seq}: {os.strerror(-err)}")
                    return
        raise RuntimeError(f"nfqueue config {seq}: no acknowledgement")

    config(1, [(1, bytes([1, 0, 0, 0]))])  # NFQA_CFG_CMD: BIND
    config(2, [(2, struct.pack("!IB", 0, 1))])  # NFQA_CFG_PARAMS: copy range 0, COPY_META
    config(3, [(3, struct.pack("!I", 8192))])  # NFQA_CFG_QUEUE_MAXLEN
    with open(args.ready, "w") as f:
        f.write("ok\n")

    def verdict(pid):
        s.send(nfq_msg(NFQNL_MSG_VERDICT, 0, 0, q, [(2, struct.pack("!II", 1, pid))]))  # ACCEPT

    held = []  # (due, id), in arrival order
    count = 0
    end = time.monotonic() + args.max_life
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while held and held[0][0] <= now:
            verdict(held.pop(0)[1])
        wait = min(0.05, max(0.0, held[0][0] - now)) if held else 0.05
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            continue
        for _ in range(256):
            try:
                buf = s.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            due = time.monotonic() + args.delay
            for ty, _sq, payload in nl_messages(buf):
                if ty == NFQ | NFQNL_MSG_PACKET:
                    pid = packet_id(payload)
                    if pid is not None:
                        held.append((due, pid))
                        count += 1
    for _, pid in held:
        verdict(pid)
    try:
        config(9, [(1, bytes([2, 0, 0, 0]))])  # UNBIND
    except (OSError, RuntimeError):
        pass
    print(f"delayer: held {count} packets for {args.delay * 1000:.0f} ms each", flush=True)


# ---------------------------------------------------------------------------------------------
# coordinator

def plan(args):
    """Scenarios: (bench, scenario id, kind, mode, programs, extra spec)."""
    q = args.quick
    out = []
    if "outage" in args.only:
        lengths = (8, 16) if q else (40, 120)
        cap = 30 if q else 100
        i = 0
        for length in lengths:
            for kind in ("blackhole", "serverdown", "blackhole-out"):
                for mode in ("M0", "loop"):
                    progs = ["ours", "1.4g"] + (["1.4g+SA"] if mode == "M0" else [])
                    # stagger the returns: no two scenarios come back in the same second
                    out.append(("outage", f"{kind}-{length}s-{mode}", kind, mode, progs,
                                {"outage": length, "cap": cap, "poll": None,
                                 "offset": 2.0 * (i % 6) + (1.0 if length == lengths[1] else 0)}))
                    i += 1
    if "faults" in args.only:
        window = 15 if q else 60
        for i, kind in enumerate(("loss", "delay", "tbf")):
            out.append(("faults", f"{kind}-{window}s-loop", kind, "loop", ["ours", "1.4g"],
                        {"window": window, "poll": 4, "offset": 1.0 * i,
                         "transfer_bytes": (1 if q else 5) * 1024 * 1024,
                         "transfer_extra": 10 if q else 15}))
    return out


def run_phase(bench, scenarios, seq):
    """Runs every scenario of one benchmark at once; returns the workers' results."""
    pairs, workers = [], []
    phase_dir = os.path.join(B.WORK, "recovery", bench)
    os.makedirs(phase_dir, exist_ok=True)
    go = os.path.join(phase_dir, "go.json")
    results = []
    try:
        for (_b, sid, kind, mode, progs, extra) in scenarios:
            for prog in progs:
                seq[0] += 1
                pair = Pair(seq[0])
                pairs.append(pair)
                pair.create()
                tag = f"{sid}-{prog}"
                d = os.path.join(phase_dir, tag)
                os.makedirs(d, exist_ok=True)
                spec = dict(extra, bench=bench, scenario=sid, kind=kind, mode=mode, prog=prog,
                            tag=tag, dir=d, net=pair.info(), go=go,
                            ready=os.path.join(d, "ready.json"), out=os.path.join(d, "result.json"))
                spec_file = os.path.join(d, "spec.json")
                B.write_json(spec_file, spec)
                p = B.start(["ip", "netns", "exec", pair.cli, sys.executable,
                             os.path.abspath(__file__), "worker", "--spec", spec_file],
                            stdout=os.path.join(d, "worker.log"), stderr=os.path.join(d, "worker.log"))
                workers.append((spec, p))
        B.log(f"{bench}: {len(workers)} runs in {len(pairs)} namespace pairs; waiting for the tunnels")
        deadline = time.monotonic() + 60
        for spec, p in workers:
            wait_file(spec["ready"], max(0.1, deadline - time.monotonic()), lambda: p.poll() is None)
        up = sum(1 for spec, _ in workers if os.path.exists(spec["ready"]))
        t0 = time.monotonic() + 2
        B.write_json(go, {"t0": t0})
        if bench == "outage":
            longest = max(s[5]["offset"] + s[5]["outage"] + s[5]["cap"] for s in scenarios) + 30
        else:
            longest = max(s[5]["offset"] + s[5]["window"] + s[5]["transfer_extra"] for s in scenarios) + 60
        B.log(f"{bench}: {up}/{len(workers)} tunnels up; faults start in 2 s; at most {longest:.0f} s")
        end = t0 + longest
        B.collect(workers, end, ("bench", "scenario", "prog", "mode", "kind", "tag"), results, report_one)
    finally:
        for pair in pairs:
            pair.destroy()
    return results


def report_one(r):
    head = f"  {r['scenario']:<24} {r['prog']:<8}"
    if "error" in r:
        B.log(f"{head} ERROR {r['error']}")
    elif r["bench"] == "outage":
        rec = f"{r['recover_s']:.2f} s" if r.get("recover_s") is not None else \
            f"NOT within {r.get('not_recovered_within_s')} s"
        B.log(f"{head} recovered {rec} after the return; ssh starts during outage "
              f"{r['starts_during_outage']}, return->recovery {r['starts_to_recovery']}")
    else:
        t = r.get("transfer")
        tx = (f"; transfer {'intact' if t.get('intact') else 'NOT intact'} "
              f"({t.get('received')}/{t.get('total')} B, {t.get('elapsed_s')} s, {t.get('error')})"
              if t else "")
        B.log(f"{head} restarts {r['restarts']} in {r['window_s']} s; checks answered "
              f"{r['checks_answered']}/{r['checks_in_window']}{tx}")


def run(args):
    if os.geteuid() != 0:
        B.die("run as root (network namespaces, iptables, tc)")
    for tool in ("ip", "iptables", "tc", "/usr/sbin/sshd", B.OURS, B.THEIRS):
        if not shutil.which(tool) and not os.path.exists(tool):
            B.die(f"missing: {tool}")
    remove_stale_namespaces()
    B.make_keys()
    scenarios = plan(args)
    results = []
    seq = [0]
    t_start = time.monotonic()
    try:
        for bench in ("outage", "faults"):
            sc = [s for s in scenarios if s[0] == bench]
            if not sc:
                continue
            t = time.monotonic()
            results += run_phase(bench, sc, seq)
            B.log(f"{bench}: done in {time.monotonic() - t:.0f} s")
            B.write_json(args.out, {"quick": args.quick, "results": results})
    finally:
        B.write_json(args.out, {"quick": args.quick, "results": results,
                                "duration_s": round(time.monotonic() - t_start)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "worker", "echo-service", "delayer"])
    ap.add_argument("--out")
    ap.add_argument("--only", default="outage,faults")
    ap.add_argument("--quick", action="store_true", help="short outages and windows (a smoke test)")
    ap.add_argument("--spec")
    ap.add_argument("--port", type=int)
    ap.add_argument("--ready")
    ap.add_argument("--max-life", type=float, default=600)
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.3)
    args = ap.parse_args()
    if args.what == "echo-service":
        return echo_service(args)
    if args.what == "delayer":
        return delayer(args)
    args.only = args.only.replace(",", " ").split()
    B.dispatch(args, worker, run)


if __name__ == "__main__":
    main()

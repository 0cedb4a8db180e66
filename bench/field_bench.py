"""Field benchmark: situations met in the field, ours against autossh 1.4g side by side, at
default settings (no AUTOSSH_POLL; AUTOSSH_GATETIME=0), both programs given the same
`-M 0 -N -L 8022:127.0.0.1:7007 -F <ssh_config> HOST` (the ssh_config is written per run).

  field_bench.py run --out FILE        the benchmark (coordinator; `bash bench/run.sh field`)
  field_bench.py report --json FILE --facts FACTS --md bench/results-field.md

Cases (each run in a CLI/SRV network-namespace pair of its own, benchlib.Pair: a veth
pair 10.203.N.0/30 made inside the namespaces; sshd and the echo service 127.0.0.1:7007 in SRV;
autossh and the tunnel checker in CLI). The runs of one case start together and get their fault
at the same CLOCK_MONOTONIC instant; the cases run one after the other.

  jump       HOST `target` reached with ProxyJump through `jump`: jump's sshd on 10.203.N.1:22,
             target's sshd on 127.0.0.1:2222 in SRV (reachable only through the jump). The
             target's sshd (listener and sessions) is SIGKILLed for 30 s, the jump's stays up.
             Measured: seconds from the new target sshd's "Server listening" to a working tunnel;
             TCP connections ("Connection from") and logins ("Accepted publickey") on the jump
             during the outage; "starting ssh" lines.
  mux        the ssh_config has ControlMaster auto, ControlPath <dir>/cm-%C, ControlPersist yes.
             `kill` runs: every sshd session process SIGKILLed (listener kept): seconds until the
             tunnel works again. `term` runs: SIGTERM to autossh: ssh processes (and control
             masters) left in CLI a second later. Both: autossh alive 5 s after start?
  blackhole  20 s black hole (iptables DROP on arrival at both ends, benchlib.Fault):
             seconds from the lift to a working tunnel.
  reverse    `-R 8022:127.0.0.1:7007` (the echo service in CLI, the checker in SRV), ssh's
             ServerAlive 2 s x 2 on the command line, `-M 0` and loop (`-M 20000`) runs; a 20 s
             black hole (as blackhole; sshd's defaults: the old session, and its port, live
             until the server hears of the dead ssh's end): seconds from the lift to a working
             tunnel.
  held       `-R` as reverse, `-M 0`; the client's address changes (as addr) behind a black
             hole of its old address kept to the end: the server never sees a reset and keeps
             the old session, and its port, until its ClientAlive (2 s x 2) gives up. Seconds
             from the old session's listener going to a working tunnel; ssh starts meanwhile.
  addr       an idle tunnel; the client's address changes: 10.204.N.2/24 added to CLI's veth
             (SRV got 10.204.N.1/24 at setup), 10.203.N.2/30 deleted, a route 10.203.N.1/32 dev
             veth src 10.204.N.2 added (one `ip -batch`). Runs: ours `log` (no traffic at all:
             seconds until autossh logs a new "tunnel up"), ours and 1.4g `checks` (tunnel
             checks every 100 ms from 2 s after the change: seconds until one succeeds).

Environment: FIELD_BENCH_QUICK=1 (10 s target outage, 8 s black hole, give-up 20 s: a smoke test),
FIELD_BENCH_REPEAT (1), FIELD_BENCH_GIVEUP (60 s, quick 20), FIELD_BENCH_ONLY (cases, e.g.
"jump addr"), FIELD_BENCH_OURS (our binary; default target/release/autossh).

Subcommand used internally: `worker` (one run, inside its CLI namespace).
"""
import argparse
import json
import os
import re
import shutil
import signal
import sys
import time

import benchlib as B
from report import rec_value, sec_cell

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "field")
PROGS = {"ours": os.environ.get("FIELD_BENCH_OURS") or B.OURS, "1.4g": B.THEIRS}
TUNNEL, SERVICE = B.TUNNEL, B.SERVICE
TARGET_PORT = 2222
CASES = ("jump", "mux", "blackhole", "addr", "reverse", "held")
REVERSE = ("reverse", "held")  # the worker runs in SRV (the checker's side), autossh in CLI
MONITOR_PORT = 20000    # reverse, loop runs: -M 20000
SRV_ALIVE = {"held": "ClientAliveInterval 2\nClientAliveCountMax 2\n"}
ALIVE_AFTER = 5.0       # mux: is autossh still running this long after its start?
CHECKS_AFTER = 2.0      # addr: the checks start this long after the change
# The jump host's rate: autossh's stated pace through a proxy is one handshake every 1.5 s
# (README, "Through a jump host or a proxy"), what keeps it within 2 s of the target's return.
JUMP_GOAL, JUMP_RATE_GOAL, MUX_GOAL, HOLE_GOAL, ADDR_GOAL = 2.0, 1 / 1.5, 1.0, 1.0, 2.0
REVERSE_GOAL, HELD_GOAL = 1.5, 1.0
CONN_RE = re.compile(r"Connection from \S+ port \d+ on ")
LOGIN_RE = re.compile(r"Accepted publickey for ")


def settings():
    quick = os.environ.get("FIELD_BENCH_QUICK", "") not in ("", "0")
    giveup = float(os.environ.get("FIELD_BENCH_GIVEUP") or (20 if quick else 60))
    repeat = int(os.environ.get("FIELD_BENCH_REPEAT") or 1)
    only = (os.environ.get("FIELD_BENCH_ONLY") or " ".join(CASES)).replace(",", " ").split()
    for c in only:
        if c not in CASES:
            raise SystemExit(f"FIELD_BENCH_ONLY: unknown case {c!r} ({', '.join(CASES)})")
    if repeat < 1 or giveup <= 0:
        raise SystemExit("FIELD_BENCH_REPEAT and FIELD_BENCH_GIVEUP must be positive")
    return {"quick": quick, "giveup": giveup, "repeat": repeat, "cases": only,
            "jump_down": 10 if quick else 30, "hole": 8 if quick else 20,
            "mux_giveup": 10 if quick else 20}


def runs_of(case):
    """(variant, program) of every run of a case; they run side by side."""
    if case == "mux":
        return [("kill", "ours"), ("kill", "1.4g"), ("term", "ours"), ("term", "1.4g")]
    if case == "addr":
        return [("log", "ours"), ("checks", "ours"), ("checks", "1.4g")]
    if case == "reverse":
        return [("m0", "ours"), ("m0", "1.4g"), ("loop", "ours"), ("loop", "1.4g")]
    return [("", "ours"), ("", "1.4g")]


# ---------------------------------------------------------------------------------------------
# worker side (inside CLI)

class NsSshd(B.ListenerSshd):
    """OpenSSH's sshd in namespace ns on address:port (LogLevel VERBOSE: one "Connection from"
    line per TCP connection). kill() takes down this listener and its sessions only."""

    def __init__(self, ns, address, port, d, name, alive="ClientAliveInterval 0\n"):
        super().__init__(address, port, d, name,
                         alive +
                         "LogLevel VERBOSE\n"
                         "MaxStartups 100:30:200\n"
                         "MaxSessions 100\n"
                         "UseDNS no\n", ns=ns)


def ssh_config(spec):
    """The user's ssh_config of this run: Host entries first, then the common options."""
    net = spec["net"]
    if spec["case"] == "jump":
        hosts = (f"Host jump\n  HostName {net['srv_ip']}\n  Port 22\n"
                 f"Host target\n  HostName 127.0.0.1\n  Port {TARGET_PORT}\n  ProxyJump jump\n")
    else:
        hosts = f"Host srv\n  HostName {net['srv_ip']}\n  Port 22\n"
        if spec["case"] == "mux":
            hosts += (f"  ControlMaster auto\n  ControlPath {spec['cm_dir']}/cm-%C\n"
                      f"  ControlPersist yes\n")
    return hosts + f"""Host *
  User root
  IdentityFile {os.path.join(B.WORK, 'keys', 'client_key')}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
"""


def control_socket_inodes(cm_dir):
    """Inodes of the unix sockets bound to a path in cm_dir (/proc/net/unix of this network
    namespace: the worker runs in CLI)."""
    out = set()
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7].startswith(cm_dir + "/"):
                    out.add(parts[6])
    except (OSError, StopIteration):
        pass
    return out


def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                out.add(t[8:-1])
    except OSError:
        pass
    return out


def ssh_procs(net, cm_dir):
    """ssh processes in CLI: [(pid, cmdline, is a control master)]. A master: its command line
    has `[mux]` or the ControlPath directory, or it holds a unix socket bound in that directory
    (a ControlPersist master keeps ssh's original command line here)."""
    out = []
    cm = control_socket_inodes(cm_dir)
    for p in B.netns_pids(net["cli"]):
        cl = B.cmdline(p)
        if not cl:
            continue
        exe = os.path.basename(cl.split()[0])
        if exe in ("ssh", "ssh:"):
            master = "[mux]" in cl or cm_dir in cl or bool(cm & socket_inodes(p))
            out.append((p, cl, master))
    return out


class TargetDown:
    """jump: the target's sshd (listener and sessions) down, the jump's up; the jump's log size
    is noted at the kill and at the return."""

    def __init__(self, target, jump):
        self.target, self.jump = target, jump
        self.info = {}

    def apply(self):
        self.info["jump_log_fault"] = B.log_size(self.jump.logf)
        self.info["killed"] = self.target.kill()

    def lift(self):
        t = self.target.start()
        self.info["jump_log_return"] = B.log_size(self.jump.logf)
        return t


class SessionKill:
    """mux: every sshd session process SIGKILLed, the listener kept (back at once)."""

    def __init__(self, sshd):
        self.sshd = sshd
        self.info = {}

    def apply(self):
        self.info["killed"] = self.sshd.kill_sessions()

    def lift(self):
        return time.monotonic()


def timed(res, fault, logfile, t_fault, length, cap, ok_field, on_ok=None):
    """The fault at t_fault, lifted `length` s later; checks every 100 ms (0.5 s each) from now
    until a check succeeds after the return (ok_field 1: one that ends after it; 0: one that
    starts after it), then 2 s more, or `cap` s after the return."""
    def during(st):
        B.sleep_until(st["t_fault"] + length)
        st["t_lift"] = time.monotonic()
        t_ret = fault.lift()
        st["log_return"] = B.log_size(logfile)
        st["t_return"] = t_ret

    def recovered(st):
        st["log_recovered"] = B.log_size(logfile)
        if on_ok is not None:
            on_ok(st)

    st, checks, text = B.fault_checks(fault, logfile, t_fault, during, lifted="t_return",
                                      check_timeout=0.5, until=t_fault + length + cap + 20,
                                      ok_key="recovered_at", ok_field=ok_field, hold=2,
                                      give_up=cap, on_ok=recovered)
    tf, tr = st["t_fault"], st["t_return"]
    res["log_fault_offset"] = st["log_fault"]
    res["fault_s"] = round(tr - tf, 2)
    res["apply_s"] = round(st["t_applied"] - tf, 3)
    res["return_after_lift_s"] = round(tr - st["t_lift"], 3)
    res["baseline_failed"] = sum(1 for c in checks if c[0] < tf - 0.5 and not c[2])
    if length > 0:
        res["ok_during_fault"] = sum(1 for c in checks if c[2] and st["t_applied"] + 0.5 < c[1] < tr)
    res["starts_during_fault"] = B.starts(text[st["log_fault"]:st["log_return"]])
    if "recovered_at" in st:
        res["back_s"] = round(st["recovered_at"] - tr, 3)
        res["starts_to_recovery"] = B.starts(text[st["log_return"]:st["log_recovered"]])
    else:
        res["back_s"] = None
        res["back_more_than_s"] = cap
        res["starts_to_recovery"] = B.starts(text[st["log_return"]:])
    res["checks"] = len(checks)
    return st


def wait_log(logfile, off, what, until):
    """Polls the log (every 20 ms) until `what` appears after offset `off`; its monotonic time
    or None."""
    while time.monotonic() < until:
        if what in B.read_log(logfile)[off:]:
            return time.monotonic()
        time.sleep(0.02)
    return None


def addr_change(spec, res, logfile, t_fault):
    net, d = spec["net"], spec["dir"]
    n, dev = net["n"], net["cli_if"]
    batch = os.path.join(d, "addr.batch")
    with open(batch, "w") as f:
        f.write(f"addr add 10.204.{n}.2/24 dev {dev}\n"
                f"addr del {net['cli_ip']}/30 dev {dev}\n"
                f"route add {net['srv_ip']}/32 dev {dev} src 10.204.{n}.2\n")
    giveup = spec["giveup"]
    B.sleep_until(t_fault)
    off = B.log_size(logfile)
    res["log_fault_offset"] = off
    t0 = time.monotonic()
    B.sh(["ip", "-n", net["cli"], "-batch", batch])
    t1 = time.monotonic()
    res["change_took_s"] = round(t1 - t0, 3)
    res["addresses_after"] = B.sh(["ip", "-n", net["cli"], "-br", "addr", "show", "dev", dev]).split()[2:]
    checker = B.Checker(TUNNEL, timeout=0.5)
    if spec["variant"] == "log":
        # no traffic through the tunnel at all: only autossh's log is watched
        t_up = wait_log(logfile, off, "tunnel up", t1 + giveup)
        if t_up is not None:
            res["log_up_s"] = round(t_up - t1, 3)
            # then the tunnel itself: checks every 100 ms, 5 s at most
            checks = checker.run(0.1, time.monotonic() + 5, stop_on_success=True)
            ok = [c for c in checks if c[2]]
            res["confirm_check_s"] = round(ok[0][1] - t1, 3) if ok else None
        else:
            res["log_up_s"] = None
            res["log_up_more_than_s"] = giveup
    else:
        # no traffic for CHECKS_AFTER s (the log is watched meanwhile), then checks
        t_up = wait_log(logfile, off, "tunnel up", t1 + CHECKS_AFTER)
        if t_up is not None:
            res["log_up_s"] = round(t_up - t1, 3)
        B.sleep_until(t1 + CHECKS_AFTER)
        checks = checker.run(0.1, t1 + giveup, stop_on_success=True)
        ok = [c for c in checks if c[2]]
        res["checks"] = len(checks)
        if ok:
            res["check_ok_s"] = round(ok[0][1] - t1, 3)
        else:
            res["check_ok_s"] = None
            res["check_ok_more_than_s"] = giveup
    text = B.read_log(logfile)
    res["starts_after_change"] = B.starts(text[off:])
    res["observed_s"] = round(time.monotonic() - t1, 2)


def listener_inode(port):
    """The inode of the socket listening on 127.0.0.1:port in this namespace, or None."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                if len(p) > 9 and p[1] == want and p[3] == "0A":
                    return p[9]
    except (OSError, StopIteration):
        pass
    return None


def held_case(spec, res, logfile, t_fault):
    """held: the client moves to 10.204.N.2 behind a black hole of its old address (kept to the
    end); the old session's listener (SRV, where this worker runs) is watched every 5 ms until
    it goes, then the tunnel is checked every 100 ms until it works."""
    net, d, giveup = spec["net"], spec["dir"], spec["giveup"]
    n, dev, old = net["n"], net["cli_if"], net["cli_ip"]
    batch = os.path.join(d, "held.batch")
    with open(batch, "w") as f:
        f.write(f"addr add 10.204.{n}.2/24 dev {dev}\n"
                f"addr del {old}/30 dev {dev}\n"
                f"route add {net['srv_ip']}/32 dev {dev} src 10.204.{n}.2\n")
    inode = listener_inode(TUNNEL)
    res["listener_before"] = inode is not None
    B.sleep_until(t_fault)
    off = B.log_size(logfile)
    res["log_fault_offset"] = off
    hole = [["OUTPUT", "-s", old, "-j", "DROP"], ["INPUT", "-d", old, "-j", "DROP"]]
    for rule in hole:
        B.iptables(net["cli"], "-A", rule)
    try:
        B.sh(["ip", "-n", net["cli"], "-batch", batch])
        t1 = time.monotonic()
        t_freed = None
        while time.monotonic() < t1 + giveup:
            if listener_inode(TUNNEL) != inode:
                t_freed = time.monotonic()
                break
            time.sleep(0.005)
        log_freed = B.log_size(logfile)
        if t_freed is None:
            res["held_s"], res["held_more_than_s"] = None, giveup
            return
        res["held_s"] = round(t_freed - t1, 3)
        checks = B.Checker(TUNNEL, timeout=0.5).run(0.1, t_freed + giveup, stop_on_success=True)
        ok = [c for c in checks if c[2]]
        res["checks"] = len(checks)
        if ok:
            res["back_s"] = round(ok[0][1] - t_freed, 3)
        else:
            res["back_s"], res["back_more_than_s"] = None, giveup
        text = B.read_log(logfile)
        res["starts_while_held"] = B.starts(text[off:log_freed])
        res["starts_rate"] = round(res["starts_while_held"] / max(0.001, res["held_s"]), 2)
        res["held_lines"] = text[off:].count("is held on the server by")
    finally:
        for rule in hole:
            B.iptables(net["cli"], "-D", rule)


def mux_term(spec, res, proc, t_fault):
    """SIGTERM to autossh (only its pid, as a user would); what is left in CLI a second later."""
    net = spec["net"]
    B.sleep_until(t_fault)
    res["alive_at_term"] = proc.poll() is None
    res["ssh_before_term"] = len(ssh_procs(net, spec["cm_dir"]))
    B._signal(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    res["exited_after_term"] = proc.poll() is not None
    time.sleep(1.0)
    left = ssh_procs(net, spec["cm_dir"])
    res["ssh_left"] = len(left)
    res["masters_left"] = sum(1 for p in left if p[2])
    res["left_cmdlines"] = [p[1][:200] for p in left]
    res["tunnel_after_term"] = B.Checker(TUNNEL, timeout=0.5).once()
    for p in left:
        B._signal(p[0], signal.SIGKILL)


def make_sshds(spec):
    """The run's sshds in SRV (not started): jump: the jump's and the target's."""
    net, d = spec["net"], spec["dir"]
    if spec["case"] == "jump":
        jump = NsSshd(net["srv"], net["srv_ip"], 22, d, "jump")
        target = NsSshd(net["srv"], "127.0.0.1", TARGET_PORT, d, "target")
        return [jump, target]
    alive = SRV_ALIVE.get(spec["case"], "ClientAliveInterval 0\n")
    sshd = NsSshd(net["srv"], net["srv_ip"], 22, d, "srv", alive)
    return [sshd]


def start_servers(spec, sshds):
    """The sshds, the new subnet's server side (addr) and the echo service, in SRV."""
    net, d, case = spec["net"], spec["dir"], spec["case"]
    for s in sshds:
        s.start()
    if case in ("addr", "held"):  # the server's side of the new subnet, ready before the change
        B.sh(["ip", "-n", net["srv"], "addr", "add", f"10.204.{net['n']}.1/24", "dev",
              net["srv_if"]])
    ready = os.path.join(d, "echo.ready")
    echo_ns = net["cli"] if case in REVERSE else net["srv"]  # what the tunnel leads to
    echo = B.start(["ip", "netns", "exec", echo_ns, sys.executable,
                    os.path.join(HERE, "recovery_bench.py"), "echo-service", "--port",
                    str(SERVICE), "--ready", ready, "--max-life", "900"],
                   stderr=os.path.join(d, "echo.log"))
    if not B.wait_file(ready, 10, lambda: echo.poll() is None):
        raise RuntimeError("echo service did not start")


def start_autossh(spec, res, logfile):
    """Writes the run's ssh_config and starts the autossh under test: (start time, process)."""
    d, case = spec["dir"], spec["case"]
    if case == "mux":
        os.makedirs(spec["cm_dir"], exist_ok=True)
    cfg = os.path.join(d, "ssh_config")
    with open(cfg, "w") as f:
        f.write(ssh_config(spec))
    host = "target" if case == "jump" else "srv"
    prog = spec["ours"] if spec["prog"] == "ours" else PROGS[spec["prog"]]
    argv = [prog, "-M", "0", "-N", "-L", f"{TUNNEL}:127.0.0.1:{SERVICE}", "-F", cfg, host]
    if case in REVERSE:
        mon = str(MONITOR_PORT) if spec["variant"] == "loop" else "0"
        argv = ["ip", "netns", "exec", spec["net"]["cli"], prog, "-M", mon, "-N", "-R",
                f"{TUNNEL}:127.0.0.1:{SERVICE}", "-o", "ServerAliveInterval=2", "-o",
                "ServerAliveCountMax=2", "-F", cfg, host]
    env = B.autossh_env(logfile, None)
    res["argv"] = " ".join(argv)
    res["env"] = " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("AUTOSSH_"))
    t_start = time.monotonic()
    return t_start, B.start(argv, env=env, stdout=os.path.join(d, "autossh.stderr"),
                            stderr=os.path.join(d, "autossh.stderr"))


def wait_tunnel(spec, res, proc, logfile, t_start):
    """Waits (30 s at most) for a working tunnel; returns when autossh exited (None: it runs;
    only mux may see it exit)."""
    exited_at = None
    checker = B.Checker(TUNNEL, timeout=0.5)
    deadline = t_start + 30
    while True:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
            if spec["case"] != "mux":
                raise RuntimeError(f"autossh exited with {proc.returncode} before the tunnel was up")
        if checker.once():
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the tunnel did not work within 30 s of the start")
        time.sleep(0.1)
    res["tunnel_after_start_s"] = round(time.monotonic() - t_start, 2)
    if spec["prog"] == "ours" and exited_at is None:
        if B.wait_file(logfile, 5) and wait_log(logfile, 0, "tunnel up", time.monotonic() + 10) is None:
            res["note"] = "no \"tunnel up\" in our log within 10 s of a working tunnel"
    return exited_at


def mux_alive(spec, res, proc, t_start, exited_at):
    """mux: is autossh still running ALIVE_AFTER s after its start, and its ssh processes."""
    while time.monotonic() < t_start + ALIVE_AFTER:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        time.sleep(0.02)
    if exited_at is None and proc.poll() is not None:
        exited_at = time.monotonic()
    res["alive_after_start"] = exited_at is None
    if exited_at is not None:
        res["exit_code"] = proc.returncode
        res["exited_after_s"] = round(exited_at - t_start, 2)
    procs = ssh_procs(spec["net"], spec["cm_dir"])
    res["masters_running"] = sum(1 for p in procs if p[2])
    res["ssh_running"] = len(procs)


def wait_go(spec):
    """Says ready; the fault's instant from the coordinator's go."""
    B.write_json(spec["ready"], {"t": time.monotonic()})
    if not B.wait_file(spec["go"], 120):
        raise RuntimeError("no go signal from the coordinator")
    with open(spec["go"]) as f:
        return json.load(f)["t0"] + spec["offset"]


def case_fault(spec, res, proc, sshds, logfile, t_fault):
    """The case's fault at t_fault, and what it measures."""
    net, d, case = spec["net"], spec["dir"], spec["case"]
    if case == "jump":
        jump, target = sshds
        fault = TargetDown(target, jump)
        timed(res, fault, logfile, t_fault, spec["jump_down"], spec["giveup"], ok_field=1)
        text = B.read_log(jump.logf)
        a, b = fault.info["jump_log_fault"], fault.info["jump_log_return"]
        res["jump_conns"] = len(CONN_RE.findall(text[a:b]))
        res["jump_logins"] = len(LOGIN_RE.findall(text[a:b]))
        res["jump_conn_rate"] = round(res["jump_conns"] / max(0.001, res["fault_s"]), 3)
        res["jump_conns_after_return"] = len(CONN_RE.findall(text[b:]))
        res["fault_info"] = fault.info
    elif case in ("blackhole", "reverse"):
        fault = B.Fault("blackhole", net, None, d)
        timed(res, fault, logfile, t_fault, spec["hole"], spec["giveup"], ok_field=1)
    elif case == "held":
        held_case(spec, res, logfile, t_fault)
    elif case == "mux" and spec["variant"] == "kill":
        fault = SessionKill(sshds[0])
        res["alive_at_fault"] = proc.poll() is None
        res["masters_at_fault"] = sum(1 for p in ssh_procs(net, spec["cm_dir"]) if p[2])
        timed(res, fault, logfile, t_fault, 0, spec["mux_giveup"], ok_field=0)
        res["fault_info"] = fault.info
    elif case == "mux":
        mux_term(spec, res, proc, t_fault)
    elif case == "addr":
        addr_change(spec, res, logfile, t_fault)


def finish(spec, res, proc, sshds, logfile):
    """Stops what still runs, writes the result and keeps the logs."""
    net, d = spec["net"], spec["dir"]
    if proc is not None:
        B.stop(proc)
    # whatever ssh is left in CLI (a ControlPersist master lives on outside autossh's group)
    for p in ssh_procs(net, spec.get("cm_dir", "/nonexistent")):
        B._signal(p[0], signal.SIGKILL)
    for s in sshds:
        s.kill()
    text = B.read_log(logfile)
    res["log_key_lines"] = B.key_lines(text[res.get("log_fault_offset", 0):], 120)
    res["starts_total"] = B.starts(text)
    B.write_json(spec["out"], res)
    os.makedirs(LOGDIR, exist_ok=True)
    copies = [(logfile, ".log"), (os.path.join(d, "autossh.stderr"), ".stderr"),
              (os.path.join(d, "ssh_config"), ".ssh_config")]
    for s in sshds:
        copies += [(lf, f".{s.name}-sshd-{i + 1}.log") for i, lf in enumerate(s.logs)]
    for src, suffix in copies:
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copy(src, os.path.join(LOGDIR, spec["tag"] + suffix))


def worker(spec):
    os.makedirs(spec["dir"], exist_ok=True)
    res = {k: spec[k] for k in ("case", "variant", "prog", "tag", "rep")}
    logfile = os.path.join(spec["dir"], "autossh.log")
    proc = None
    sshds = []
    try:
        sshds = make_sshds(spec)
        start_servers(spec, sshds)
        t_start, proc = start_autossh(spec, res, logfile)
        exited_at = wait_tunnel(spec, res, proc, logfile, t_start)
        if spec["case"] == "mux":
            mux_alive(spec, res, proc, t_start, exited_at)
        t_fault = wait_go(spec)
        case_fault(spec, res, proc, sshds, logfile, t_fault)
        res["alive_at_end"] = proc.poll() is None
    except Exception as e:  # noqa: BLE001 - reported in the results
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        finish(spec, res, proc, sshds, logfile)


# ---------------------------------------------------------------------------------------------
# coordinator

def case_limit(cfg, case):
    """How long a case may run after its go signal (its workers are stopped then)."""
    return {"jump": cfg["jump_down"] + cfg["giveup"],
            "mux": max(cfg["mux_giveup"], 10),
            "blackhole": cfg["hole"] + cfg["giveup"],
            "reverse": cfg["hole"] + cfg["giveup"],
            "held": 2 * cfg["giveup"],
            "addr": 2 + cfg["giveup"] + 5}[case] + 40


def run_case(cfg, rep, case, seq, results):
    base = os.path.join(B.WORK, "field", f"r{rep}-{case}")
    go = os.path.join(base, "go.json")
    pairs, workers = [], []
    offset = 2.0 if case == "addr" else 0.0  # addr: >= 3 s without traffic before the change
    try:
        for variant, prog in runs_of(case):
            seq[0] += 1
            n = (seq[0] - 1) % 250 + 1
            pair = B.Pair(n)
            pairs.append(pair)
            pair.create()
            name = (f"{variant}-" if variant else "") + prog
            tag = f"r{rep}-{case}-{name}"
            d = os.path.join(base, name)
            os.makedirs(d, exist_ok=True)
            spec = dict(cfg, case=case, variant=variant, prog=prog, tag=tag, rep=rep, dir=d,
                        ours=PROGS["ours"], net=pair.info(), go=go, offset=offset,
                        ready=os.path.join(d, "ready.json"), out=os.path.join(d, "result.json"),
                        cm_dir=os.path.join(B.WORK, f"cm{n}"))  # short: a socket path
            spec_file = os.path.join(d, "spec.json")
            B.write_json(spec_file, spec)
            home = pair.srv if case in REVERSE else pair.cli  # where the checker runs
            p = B.start(["ip", "netns", "exec", home, sys.executable,
                         os.path.abspath(__file__), "worker", "--spec", spec_file],
                        stdout=os.path.join(d, "worker.log"), stderr=os.path.join(d, "worker.log"))
            workers.append((spec, p))
        deadline = time.monotonic() + 60
        for spec, p in workers:
            B.wait_file(spec["ready"], max(0.1, deadline - time.monotonic()),
                        lambda p=p: p.poll() is None)
        up = sum(1 for spec, _ in workers if os.path.exists(spec["ready"]))
        t0 = time.monotonic() + 1.0
        B.write_json(go, {"t0": t0})
        limit = case_limit(cfg, case)
        B.log(f"rep {rep} {case}: {up}/{len(workers)} ready; fault in {1 + offset:.0f} s; "
              f"at most {limit:.0f} s")
        B.collect(workers, t0 + limit, ("case", "variant", "prog", "tag", "rep"), results, report_one)
    finally:
        for pair in pairs:
            pair.destroy()


def secs(r, key):
    v = r.get(key)
    if v is not None:
        return f"{v:.2f} s"
    more = r.get(key.replace("_s", "_more_than_s"))
    return f"> {more:.0f} s" if more is not None else "n/a"


def report_one(r):
    head = f"  {r['tag']:<26}"
    if "error" in r:
        B.log(f"{head} ERROR {r['error']}")
        return
    c = r["case"]
    if c == "jump":
        s = (f"target back -> tunnel {secs(r, 'back_s')}; jump connections during the outage "
             f"{r['jump_conns']} ({r['jump_conn_rate']}/s), logins {r['jump_logins']}; "
             f"ssh starts {r['starts_during_fault']}")
    elif c in ("blackhole", "reverse"):
        s = f"lift -> tunnel {secs(r, 'back_s')}; ssh starts during the hole {r['starts_during_fault']}"
    elif c == "held":
        s = (f"port held {secs(r, 'held_s')}; freed -> tunnel {secs(r, 'back_s')}; ssh starts "
             f"meanwhile {r.get('starts_while_held')}")
    elif c == "mux" and r["variant"] == "kill":
        s = (f"alive after {ALIVE_AFTER:g} s: {r['alive_after_start']}; masters {r['masters_running']}; "
             f"kill -> tunnel {secs(r, 'back_s')}; ssh starts {r['starts_during_fault'] + r['starts_to_recovery']}")
    elif c == "mux":
        s = (f"alive after {ALIVE_AFTER:g} s: {r['alive_after_start']}; after SIGTERM: ssh left "
             f"{r['ssh_left']} (masters {r['masters_left']}), tunnel answers: {r['tunnel_after_term']}")
    else:
        s = (f"log 'tunnel up' {secs(r, 'log_up_s')}"
             + (f"; check ok {secs(r, 'check_ok_s')}" if r["variant"] == "checks" else "")
             + f"; ssh starts {r['starts_after_change']}")
    B.log(f"{head} {s}")


def run(args):
    if os.geteuid() != 0:
        B.die("run as root (network namespaces, iptables, sshd)")
    cfg = settings()
    for tool in ("ip", "iptables", "/usr/sbin/sshd", "/usr/bin/ssh", PROGS["ours"], PROGS["1.4g"]):
        if not shutil.which(tool) and not os.path.exists(tool):
            B.die(f"missing: {tool}")
    # a copy of ours: a rebuild of target/release during the run does not change what is measured
    os.makedirs(os.path.join(B.WORK, "bin"), exist_ok=True)
    ours_copy = os.path.join(B.WORK, "bin", "autossh-field")
    shutil.copy2(PROGS["ours"], ours_copy)
    meta = dict(cfg, ours=PROGS["ours"], alive_after_s=ALIVE_AFTER, checks_after_s=CHECKS_AFTER)
    PROGS["ours"] = ours_copy
    B.remove_stale_namespaces()
    B.make_keys()
    B.log(f"cases {' '.join(cfg['cases'])}; repeat {cfg['repeat']}; give-up {cfg['giveup']:.0f} s"
          + ("; QUICK" if cfg["quick"] else ""))
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR, exist_ok=True)
    results, seq = [], [0]
    t_start = time.monotonic()
    try:
        for rep in range(1, cfg["repeat"] + 1):
            for case in cfg["cases"]:
                run_case(cfg, rep, case, seq, results)
                B.write_json(args.out, {"meta": meta, "results": results})
    finally:
        meta["duration_s"] = round(time.monotonic() - t_start)
        B.write_json(args.out, {"meta": meta, "results": results})
        B.log(f"field benchmark done in {meta['duration_s']} s")


# ---------------------------------------------------------------------------------------------
# report

def each(rs, f):
    """f(r) of every run, joined with ' · ' (err for a failed run)."""
    if not rs:
        return "not run"
    return " · ".join("err" if "error" in r else f(r) for r in rs)


def all_ok(rs, pred):
    return bool(rs) and all("error" not in r and pred(r) for r in rs)


def within(key, limit):
    def pred(r):
        v, c = rec_value(r, key)
        return v is not None and not c and v <= limit
    return pred


class FieldTable:
    """The results table, goals and odd runs of the report, filled case by case."""

    def __init__(self, res):
        self.res = res
        self.rows, self.goals, self.odd = [], [], []
        self.last = None

    def sel(self, case, prog, variant=""):
        return [r for r in self.res if r.get("case") == case and r.get("prog") == prog
                and r.get("variant", "") == variant]

    def row(self, case, what, ours, theirs, goal=""):
        # the case's name on its first row only
        self.rows.append([case if case != self.last else "", what, ours, theirs, goal])
        self.last = case


def jump_rows(tab, down):
    o, t = tab.sel("jump", "ours"), tab.sel("jump", "1.4g")
    name = f"1. jump host: target sshd down {down} s, jump up (`-F cfg target`, ProxyJump)"
    tab.row(name, "target back → tunnel works, s", sec_cell(o, "back_s"), sec_cell(t, "back_s"),
            f"≤ {JUMP_GOAL:g}")
    conns = lambda r: f"{r['jump_conns']} ({r['jump_conn_rate']:.2f}/s)"  # noqa: E731
    tab.row(name, "TCP connections to the jump during the outage (per s)", each(o, conns),
            each(t, conns), f"≤ {JUMP_RATE_GOAL:g}/s")
    tab.row(name, "logins on the jump / ssh starts, during the outage",
            each(o, lambda r: f"{r['jump_logins']} / {r['starts_during_fault']}"),
            each(t, lambda r: f"{r['jump_logins']} / {r['starts_during_fault']}"))
    tab.row(name, "ssh starts from the return to a working tunnel",
            each(o, lambda r: str(r["starts_to_recovery"])), each(t, lambda r: str(r["starts_to_recovery"])))
    ok = all_ok(o, within("back_s", JUMP_GOAL))
    tab.goals.append((f"jump host: ours' tunnel works within {JUMP_GOAL:g} s of the target's return",
                      sec_cell(o, "back_s") + " s", ok))
    ok2 = all_ok(o, lambda r: r["jump_conn_rate"] <= JUMP_RATE_GOAL + 0.005)
    tab.goals.append((f"jump host: ours connects to the jump at most once every {1 / JUMP_RATE_GOAL:g} s "
                      "during the outage", each(o, conns), ok2))
    if not (ok and ok2):
        tab.odd += [r for r in o if "error" not in r]


def mux_rows(tab):
    ok_, tk = tab.sel("mux", "ours", "kill"), tab.sel("mux", "1.4g", "kill")
    ot, tt = tab.sel("mux", "ours", "term"), tab.sel("mux", "1.4g", "term")
    name = "2. ControlMaster auto + ControlPersist yes in ssh_config (`-F cfg srv`)"

    def alive(r):
        if r.get("alive_after_start"):
            return "yes"
        return f"no (exit {r.get('exit_code')} after {r.get('exited_after_s')} s)"

    tab.row(name, f"autossh running {ALIVE_AFTER:g} s after its start (kill run · term run)", each(ok_ + ot, alive),
            each(tk + tt, alive), "yes")
    tab.row(name, "control masters running then (kill run · term run)", each(ok_ + ot, lambda r: str(r["masters_running"])),
            each(tk + tt, lambda r: str(r["masters_running"])))
    tab.row(name, "server's sessions SIGKILLed → tunnel works, s", sec_cell(ok_, "back_s"),
            sec_cell(tk, "back_s"), f"≤ {MUX_GOAL:g}")
    tab.row(name, "ssh starts from the kill to a working tunnel (or the give-up)",
            each(ok_, lambda r: str(r["starts_during_fault"] + r["starts_to_recovery"])),
            each(tk, lambda r: str(r["starts_during_fault"] + r["starts_to_recovery"])))
    left = lambda r: f"{r['ssh_left']} ({r['masters_left']})"  # noqa: E731
    tab.row(name, "ssh processes (masters) left 1 s after SIGTERM of autossh", each(ot, left),
            each(tt, left), "0")
    tab.row(name, "tunnel still answers then", each(ot, lambda r: "yes" if r["tunnel_after_term"] else "no"),
            each(tt, lambda r: "yes" if r["tunnel_after_term"] else "no"))
    g1 = all_ok(ok_ + ot, lambda r: r.get("alive_after_start"))
    tab.goals.append(("connection sharing: ours keeps running", each(ok_ + ot, alive), g1))
    g2 = all_ok(ok_, within("back_s", MUX_GOAL))
    tab.goals.append((f"connection sharing: ours' tunnel works within {MUX_GOAL:g} s of the session kill "
                      "(the server answers throughout)", sec_cell(ok_, "back_s") + " s", g2))
    g3 = all_ok(ot, lambda r: r["ssh_left"] == 0)
    tab.goals.append(("connection sharing: no ssh process left after SIGTERM of ours", each(ot, left), g3))
    if not (g1 and g2):
        tab.odd += [r for r in ok_ if "error" not in r]


def hole_rows(tab, hole):
    o, t = tab.sel("blackhole", "ours"), tab.sel("blackhole", "1.4g")
    name = f"3. `-M 0`, black hole {hole} s (DROP on arrival, both ends)"
    tab.row(name, "lift → tunnel works, s", sec_cell(o, "back_s"), sec_cell(t, "back_s"), f"≤ {HOLE_GOAL:g}")
    tab.row(name, "ssh starts during the hole / from the lift to a working tunnel",
            each(o, lambda r: f"{r['starts_during_fault']} / {r['starts_to_recovery']}"),
            each(t, lambda r: f"{r['starts_during_fault']} / {r['starts_to_recovery']}"))
    ok = all_ok(o, within("back_s", HOLE_GOAL))
    tab.goals.append((f"black hole: ours' tunnel works within {HOLE_GOAL:g} s of the lift",
                      sec_cell(o, "back_s") + " s", ok))
    if not ok:
        tab.odd += [r for r in o if "error" not in r]


def addr_rows(tab):
    ol, oc, tc = tab.sel("addr", "ours", "log"), tab.sel("addr", "ours", "checks"), tab.sel("addr", "1.4g", "checks")
    name = "4. the client's address changes under an idle tunnel (`-M 0`)"
    tab.row(name, "(a) change → new \"tunnel up\" in autossh's log, no traffic at all, s",
            sec_cell(ol, "log_up_s"), "— (1.4g logs no such line)", f"≤ {ADDR_GOAL:g}")
    tab.row(name, f"(b) change → a check succeeds, checks every 0.1 s from +{CHECKS_AFTER:g} s, s",
            sec_cell(oc, "check_ok_s"), sec_cell(tc, "check_ok_s"),
            f"(≥ {CHECKS_AFTER:g} by construction)")
    tab.row(name, "ssh starts after the change ((a) run · (b) run)",
            each(ol + oc, lambda r: str(r["starts_after_change"])),
            each(tc, lambda r: str(r["starts_after_change"])))
    ok = all_ok(ol, within("log_up_s", ADDR_GOAL))
    tab.goals.append((f"address change: ours' new tunnel is up within {ADDR_GOAL:g} s, no traffic needed",
                      sec_cell(ol, "log_up_s") + " s", ok))
    if not ok:
        tab.odd += [r for r in ol if "error" not in r]


def reverse_rows(tab, hole):
    name = (f"5. reverse `-R`, black hole {hole} s, ServerAlive 2 s × 2 (checked from the server; "
            "sshd keeps the dead ssh's session until it hears of its end)")
    ok_all = True
    for variant, what in (("m0", "`-M 0`"), ("loop", "loop `-M 20000`")):
        o, t = tab.sel("reverse", "ours", variant), tab.sel("reverse", "1.4g", variant)
        tab.row(name, f"{what}: lift → tunnel works, s", sec_cell(o, "back_s"), sec_cell(t, "back_s"),
                f"≤ {REVERSE_GOAL:g}")
        tab.row(name, f"{what}: ssh starts during the hole / from the lift to a working tunnel",
                each(o, lambda r: f"{r['starts_during_fault']} / {r['starts_to_recovery']}"),
                each(t, lambda r: f"{r['starts_during_fault']} / {r['starts_to_recovery']}"))
        ok = all_ok(o, within("back_s", REVERSE_GOAL))
        tab.goals.append((f"reverse, {what}: ours' tunnel works within {REVERSE_GOAL:g} s of the lift",
                          sec_cell(o, "back_s") + " s", ok))
        if not ok:
            tab.odd += [r for r in o if "error" not in r]
        ok_all &= ok
    return ok_all


def held_rows(tab):
    o, t = tab.sel("held", "ours"), tab.sel("held", "1.4g")
    name = ("6. reverse `-R`, `-M 0`: the client's address changes behind a black hole; the server "
            "keeps the dead session and its port (ClientAlive 2 s × 2)")
    tab.row(name, "port held: the change → the old session's listener gone, s", sec_cell(o, "held_s"),
            sec_cell(t, "held_s"))
    tab.row(name, "port free → tunnel works, s", sec_cell(o, "back_s"), sec_cell(t, "back_s"),
            f"≤ {HELD_GOAL:g}")
    rate = lambda r: f"{r.get('starts_while_held')} ({r.get('starts_rate')}/s)"  # noqa: E731
    tab.row(name, "ssh starts while the port was held (per s)", each(o, rate), each(t, rate))
    tab.row(name, "log lines saying what holds the port (and the sshd fix)",
            each(o, lambda r: str(r.get("held_lines"))), "— (1.4g says nothing)", "1")
    ok = all_ok(o, within("back_s", HELD_GOAL))
    tab.goals.append((f"port held: ours' tunnel works within {HELD_GOAL:g} s of the port's release",
                      sec_cell(o, "back_s") + " s", ok))
    ok2 = all_ok(o, lambda r: r.get("held_lines") == 1)
    tab.goals.append(("port held: one log line says what holds the port and the server's fix",
                      each(o, lambda r: str(r.get("held_lines"))), ok2))
    if not (ok and ok2):
        tab.odd += [r for r in o if "error" not in r]


def run_notes(res):
    """Errors and oddities of the runs, for the remarks."""
    notes = []
    for r in res:
        if "error" in r:
            notes.append(f"{r['tag']}: {r['error']}")
            continue
        if r.get("baseline_failed"):
            notes.append(f"{r['tag']}: {r['baseline_failed']} checks failed before the fault")
        if r.get("ok_during_fault"):
            notes.append(f"{r['tag']}: {r['ok_during_fault']} checks succeeded during the fault "
                         "(it did not cut the tunnel?)")
        if r.get("note"):
            notes.append(f"{r['tag']}: {r['note']}")
        if r.get("case") == "addr" and r.get("variant") == "log" and "confirm_check_s" in r:
            c = r["confirm_check_s"]
            notes.append(f"{r['tag']}: after the log's \"tunnel up\" the first check succeeded "
                         + (f"{c:.2f} s after the change" if c is not None else "NOT within 5 s"))
        if r.get("case") == "addr" and r.get("variant") == "checks" and r.get("log_up_s") is not None:
            notes.append(f"{r['tag']}: \"tunnel up\" logged {r['log_up_s']:.2f} s after the change, "
                         "before the first check")
        if r.get("case") in ("jump", "blackhole", "addr", "reverse", "held") or r.get("variant") == "kill":
            if not r.get("alive_at_end", True):
                notes.append(f"{r['tag']}: autossh had exited by the end of the run")
    return notes


def report_md(meta, facts, title, header, tab, notes, cases):
    """results-field.md."""
    from report import md_facts, md_table  # noqa: PLC0415

    giveup = meta.get("giveup", 60)
    down, hole, mux_giveup = meta.get("jump_down", 30), meta.get("hole", 20), meta.get("mux_giveup", 20)
    reps = meta.get("repeat", 1)
    rows, goals, odd = tab.rows, tab.goals, tab.odd
    md = ["# Field benchmark results", "",
          f"Generated by `bash bench/run.sh field` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode (short faults, give-up 20 s): a smoke test, not the benchmark.**"
             if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "ssh",
                           "autossh_14g", "rustc", "commit"))
    md += [f"- ours: {meta.get('ours', '?')} (copied when the benchmark started); 1.4g: {B.THEIRS}",
           f"- benchmark run: {meta.get('duration_s', '?')} s; repetitions {reps}; give-up "
           f"{giveup:g} s (mux: {mux_giveup:g} s); cases: {', '.join(cases)}",
           "- the runs of one case ran **side by side at the same time** (each in its own pair of "
           "namespaces, the fault applied at the same CLOCK_MONOTONIC instant); the cases ran one "
           "after the other", "",
           "See bench/README.md (section 6) and the notes below for what each number means.", "",
           "## " + title, ""]
    md += md_table(header, rows) if rows else ["(no results)"]
    md += ["", "Cells: one value per run (`median [each run]` for seconds when repeated, runs "
           "joined by ` · ` otherwise); `> N`: nothing within the give-up.", "", "## Goals", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {g}: {v}" for g, v, ok in goals]
    md.append("")
    if notes:
        md += ["## Remarks and errors during the run", ""] + [f"- {n}" for n in notes] + [""]
    if odd:
        md += ["## Our autossh's log where a goal failed", "",
               "Key lines (per-probe chatter left out) from the fault on; full logs in bench/logs/field/.", ""]
        for r in odd:
            lines = r.get("log_key_lines", [])
            if len(lines) > 40:
                lines = lines[:20] + [f"... ({len(lines) - 40} lines left out) ..."] + lines[-20:]
            md += [f"### {r['tag']}", "", "```"] + [l[:220] for l in lines] + ["```", ""]
    md.append(NOTES.format(giveup=giveup, down=down, hole=hole, mux_giveup=mux_giveup,
                           alive=ALIVE_AFTER, after=CHECKS_AFTER, port=TARGET_PORT))
    return md


def report(args):
    from report import load, print_results, write_md  # noqa: PLC0415

    data = load(args.json, dict)
    meta = data.get("meta", {})
    res = data.get("results", [])
    facts = load(args.facts, dict) if args.facts else {}
    down, hole = meta.get("jump_down", 30), meta.get("hole", 20)
    tab = FieldTable(res)
    cases = meta.get("cases", CASES)
    if "jump" in cases:
        jump_rows(tab, down)
    if "mux" in cases:
        mux_rows(tab)
    if "blackhole" in cases:
        hole_rows(tab, hole)
    if "addr" in cases:
        addr_rows(tab)
    if "reverse" in cases:
        reverse_rows(tab, hole)
    if "held" in cases:
        held_rows(tab)
    notes = run_notes(res)
    header = ["case", "measured", "ours", "1.4g", "goal (ours)"]
    reps = meta.get("repeat", 1)
    title = (f"Field cases, side by side with 1.4g, default settings ({reps} run"
             f"{'s' if reps > 1 else ''} each)")
    sections = [(title, (header, tab.rows) if tab.rows else None)]
    print_results(sections, tab.goals, notes)

    write_md(args.md, report_md(meta, facts, title, header, tab, notes, cases))


NOTES = """## Notes (fixed text, from field_bench.py)

- **Settings**, both programs: no AUTOSSH_POLL (600 s); set: `AUTOSSH_GATETIME=0
  AUTOSSH_PATH=/usr/bin/ssh AUTOSSH_LOGFILE=... AUTOSSH_DEBUG=1`. Command line, both:
  `autossh -M 0 -N -L 8022:127.0.0.1:7007 -F <run dir>/ssh_config HOST` (HOST `target` in case 1,
  `srv` otherwise). The ssh_config (copied to bench/logs/field/*.ssh_config) has the host entries,
  then `Host *` with `User root`, the client key, `IdentitiesOnly yes`, `StrictHostKeyChecking
  no`, `UserKnownHostsFile /dev/null`, `BatchMode yes`, `LogLevel ERROR`. 1.4g with `-M 0` has no
  keepalive of its own; ours adds ServerAlive 60/3, ExitOnForwardFailure and its session probe.
- **Topology.** Each run has two network namespaces, CLI (autossh, the checker) and SRV (sshd, the
  echo service on 127.0.0.1:7007 the tunnel leads to), joined by a veth pair 10.203.N.0/30 made
  inside them. **Tunnel check**: a new connection to 127.0.0.1:8022 in CLI, a line sent, the same
  line back within 0.5 s.
- **1. Jump host.** SRV runs two sshds: the jump on 10.203.N.1:22 and the target on
  127.0.0.1:{port} (reachable only from SRV, i.e. through the jump: `Host target` has
  `HostName 127.0.0.1`, `Port {port}`, `ProxyJump jump`). The target's listener and sessions are
  SIGKILLed, a new target sshd is started {down} s later; the jump's sshd runs throughout.
  *Back* = from the new target sshd's "Server listening" to the end of the first successful check
  ending after it (checks every 100 ms throughout). *Connections to the jump* = its sshd's
  "Connection from" lines (LogLevel VERBOSE: one per TCP connection) from the kill to the return;
  *logins* = its "Accepted publickey" lines. The goal's rate is that count over the outage.
- **2. Connection sharing.** The `Host srv` entry has `ControlMaster auto`, `ControlPath
  <dir>/cm-%C`, `ControlPersist yes`. Four runs side by side: per program a *kill* run (every sshd
  session process SIGKILLed, the listener kept, so the server answers throughout; *back* = from the
  kill to the end of the first successful check started after it; give-up {mux_giveup:g} s) and a
  *term* run (SIGTERM to the autossh process only, then after 1 s the ssh processes in CLI are
  listed: a master is one whose command line has `[mux]` or the ControlPath, or that holds a unix
  socket bound in the ControlPath's directory (a ControlPersist master keeps ssh's original
  command line); then one tunnel check: a master left behind still serves the `-L` forward,
  unwatched). "Running {alive:g} s after its start" is read in both runs.
- **3. Black hole**: iptables DROP on arrival at both ends (CLI drops what comes from SRV, SRV
  what comes from CLI) for {hole} s; *back* = from the rules' deletion to the end of the first
  successful check ending after it. Checks run every 100 ms throughout (they are traffic into the
  tunnel during the hole: an ssh kept through the hole has unacknowledged data, and comes back at
  its TCP's next retransmission after the lift).
- **4. Address change.** SRV gets 10.204.N.1/24 at setup. The tunnel is proven, then left idle
  (no check for >= 3 s), then in CLI one `ip -batch`: `addr add 10.204.N.2/24`, `addr del
  10.203.N.2/30`, `route add 10.203.N.1/32 dev <veth> src 10.204.N.2`; times count from its end.
  The old TCP connection keeps its old source address, which is gone: its packets get no answer.
  (a) ours, a run of its own with no traffic through the tunnel at all: autossh's log is read
  every 20 ms until a new "tunnel up" line (then checks confirm the tunnel, see the remarks).
  (b) ours and 1.4g: no traffic for {after:g} s (ours' log watched meanwhile), then a check every
  100 ms until one succeeds; give-up {giveup:g} s after the change. A check is traffic, which may
  itself make a program notice the dead connection, hence (a); (b) cannot be under {after:g} s.
  1.4g has nothing that notices an idle dead connection before its poll (600 s); its ssh has no
  ServerAlive here.
- **5. Reverse.** `autossh -M 0 -N -R 8022:127.0.0.1:7007 -o ServerAliveInterval=2 -o
  ServerAliveCountMax=2 -F <run dir>/ssh_config srv` (loop runs: `-M 20000`), started in CLI; the
  echo service is in CLI, the tunnel check (and this run's worker) in SRV: 127.0.0.1:8022 there
  is sshd's listener for the forward. sshd at its defaults (no ClientAlive; and the checks through
  the forward wake sshd every 100 ms, which keeps a ClientAlive from firing anyway): the session
  of the ssh that died in the hole (ServerAlive), and its port, live until the server hears of
  that ssh's end: ours resets that connection once the server answers; 1.4g's ssh leaves an
  orphaned socket whose FIN is retransmitted on TCP's backoff. Black hole as in case 3, {hole} s;
  *back* likewise.
- **6. Port held.** As case 5 (`-M 0`), sshd with `ClientAliveInterval 2`, `ClientAliveCountMax 2`.
  In CLI, iptables DROP of everything from and to its old address 10.203.N.2 (kept to the end:
  not even the FIN of a killed ssh reaches the server, as when a client's address changes behind
  a NAT or a dead link), then the address change of case 4. *Port held* = from the change until
  the old session's listener (its inode in SRV's /proc/net/tcp, read every 5 ms) is gone; *back*
  = from then to the end of the first successful check (every 100 ms). 1.4g's ssh (no
  ExitOnForwardFailure) keeps running without its forward.
- **ssh starts** are "starting ssh (count N)" log lines. Give-up {giveup:g} s (`> N`): nothing
  within that time.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "worker", "report"])
    ap.add_argument("--out")
    ap.add_argument("--spec")
    ap.add_argument("--json")
    ap.add_argument("--facts")
    ap.add_argument("--md")
    args = ap.parse_args()
    if args.what == "report":
        return report(args)
    B.dispatch(args, worker, run)


if __name__ == "__main__":
    main()

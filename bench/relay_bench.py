"""Relay benchmark: what the held forwards (docs/held.md) cost a tunnel's traffic.

  relay_bench.py run --bin DIR --out FILE     the benchmark (`bash bench/run.sh relay`)
  relay_bench.py report --json FILE --facts FACTS --md bench/results-relay.md

One private sshd on 127.0.0.1 (keys of benchlib.make_keys, LogLevel VERBOSE) and, behind it,
three services: minimal_echo (the echo), `relay_tool sink` (reads to the end, counts and hashes)
and `relay_tool source` (sends the bytes asked for). Three tunnels to that sshd, up together
and each used in turn (the order rotated every repetition), each with `-L E:127.0.0.1:ECHO
-L S:127.0.0.1:SINK -L O:127.0.0.1:SOURCE` and the same ssh options:

  plain     /usr/bin/ssh run directly (ssh owns its listeners)
  ours      target/release/autossh -M 0 -N ... at its defaults: held forwards (autossh listens
            and relays each connection to ssh's unix socket with splice(2))
  nohold    the same with AUTOSSH_HOLD=no (ssh gets exactly its own -L again)

Measured, per repetition and tunnel (each client run with a time limit):
  bulk      BULK_MIB MiB up (client -> sink: a half-close, then the sink's count and hash) and
            down (source -> client, hashed by the client), MiB/s from the first byte written
            to the answer / the end of the stream; every byte checked
  rr        RR round trips of 64 bytes over one connection to the echo (each waits for its
            echo), latency percentiles in microseconds
  connect   CONNECTS times: connect, 64 bytes, their echo, close (RST); timed from before
            connect() to the echo's last byte
  for each: CPU (schedstat ns) of autossh, of the tunnel's ssh and of the sshd sessions
Then the held connections through a restart (ours only, a fresh autossh with one forward to
the echo): sshd's listener and sessions SIGKILLed (ssh dies, autossh waits for the server),
HOLD_CONNS connections opened to the held port (each sends a line), sshd started again; every
line must come back. Times from sshd's "Server listening", autossh's peak RSS (VmHWM; VmRSS
sampled every 10 ms), refusals in the sshd log.

Environment: RELAY_BENCH_QUICK=1 (16 MiB, 300 round trips, 200 connects, 500 held
connections, 2 repetitions: a smoke test), RELAY_BENCH_REPEAT (5), RELAY_BENCH_BULK_MIB (256),
RELAY_BENCH_RR (10000), RELAY_BENCH_CONNECTS (3000), RELAY_BENCH_HOLD_CONNS (10000),
RELAY_BENCH_COLUMNS ("plain ours nohold"), RELAY_BENCH_CIPHER (unset: ssh's default),
RELAY_BENCH_OURS (our binary; default target/release/autossh).
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import threading
import time

import benchlib as B
import fleet_bench as F

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "relay")
OURS = os.environ.get("RELAY_BENCH_OURS") or B.OURS
SSH = "/usr/bin/ssh"
KINDS = ("plain", "ours", "nohold")
LABEL = {"plain": "plain ssh -L", "ours": "ours (held)", "nohold": "ours, AUTOSSH_HOLD=no"}
MSG = 64                      # bytes of a request/response and of the connect's echo
BULK_GOAL = 0.90              # ours >= 0.90 x plain's throughput
RR_P50_ADD_US = 60            # p50 <= plain + 60 us
RR_P99_MUL, RR_P99_ADD_US = 1.5, 100   # p99 <= 1.5 x plain + 100 us
CONN_MUL, CONN_ADD_US = 2.0, 200       # connect p50 <= 2 x plain + 200 us
RSS_GOAL_KB = 16 * 1024       # the supervisor's peak RSS through the held restart
HOLD_WAIT_S = 90              # the hold client gives up after this (autossh's hold time: 60 s)
NOFILE = 65536
RELAYING_RE = re.compile(r"tunnel up: relaying (\d+) waiting connection")
# sshd's words when it refuses or fails something (the session probe's refusal excluded)
REFUSAL_RE = re.compile(r"refused|open failed|failed|prohibited|error|fatal|drop connection|"
                        r"[Tt]oo many|denied", re.I)


def settings():
    quick = os.environ.get("RELAY_BENCH_QUICK", "") not in ("", "0")
    e = lambda k, full, q: int(os.environ.get(k) or (q if quick else full))  # noqa: E731
    cols = (os.environ.get("RELAY_BENCH_COLUMNS") or " ".join(KINDS)).replace(",", " ").split()
    if "plain" not in cols or "ours" not in cols or any(c not in KINDS for c in cols):
        raise SystemExit("RELAY_BENCH_COLUMNS: plain and ours, and optionally nohold")
    cfg = {"quick": quick, "repeat": e("RELAY_BENCH_REPEAT", 5, 2),
           "bulk_mib": e("RELAY_BENCH_BULK_MIB", 256, 16), "rr": e("RELAY_BENCH_RR", 10000, 300),
           "connects": e("RELAY_BENCH_CONNECTS", 3000, 200),
           "hold_conns": e("RELAY_BENCH_HOLD_CONNS", 10000, 500), "columns": cols,
           "cipher": os.environ.get("RELAY_BENCH_CIPHER") or "", "msg": MSG}
    if min(cfg[k] for k in ("repeat", "bulk_mib", "rr", "connects", "hold_conns")) < 1:
        raise SystemExit("RELAY_BENCH_* counts must be positive integers")
    return cfg


# ---------------------------------------------------------------------------------------------
# the tunnels

def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTOSSH_")}


class Tunnel:
    """One column's tunnel: `ssh -N -L ...` run directly, or our autossh around it."""

    def __init__(self, kind, name, sshd_port, forwards, d, cipher):
        self.kind, self.name, self.forwards = kind, name, forwards  # forwards: [(local, remote)]
        self.log = os.path.join(d, f"{name}.log")
        self.err = os.path.join(d, f"{name}.stderr")
        opts = ["-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),
                "-p", str(sshd_port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        if cipher:
            opts += ["-o", f"Ciphers={cipher}"]
        opts.append("-N")
        for local, remote in forwards:
            opts += ["-L", f"{local}:127.0.0.1:{remote}"]
        opts.append("root@127.0.0.1")
        self.argv = [SSH] + opts if kind == "plain" else [OURS, "-M", "0"] + opts
        self.env = clean_env()
        if kind != "plain":
            # held forwards at their defaults; only the log and the gate (no first-run gate)
            self.env.update(AUTOSSH_PATH=SSH, AUTOSSH_GATETIME="0", AUTOSSH_LOGFILE=self.log)
            if kind == "nohold":
                self.env["AUTOSSH_HOLD"] = "no"
        self.proc = None

    def start(self):
        self.proc = B.start(self.argv, env=self.env, stderr=self.err)

    def wait_ready(self, timeout=30.0):
        """Until a line sent through the first forward comes back (and ours has its ssh)."""
        deadline = time.monotonic() + timeout
        checker = B.Checker(self.forwards[0][0], timeout=1.0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.err}")
            if checker.once() and self.ssh_pid():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: the tunnel did not answer within {timeout:.0f} s")

    def sup_pid(self):
        return None if self.kind == "plain" else self.proc.pid

    def ssh_pid(self):
        """ssh's pid: the process itself, or ours' newest ssh child."""
        if self.kind == "plain":
            return self.proc.pid
        kids = [c for c in B.children(self.proc.pid) if B.cmdline(c).startswith(SSH + " ")]
        return max(kids) if kids else None

    def stop(self):
        if self.proc is not None:
            B.stop(self.proc, grace=3)


def cpu_now(tun, sshd):
    """ns on CPU so far: autossh (None for plain), the tunnel's ssh, every sshd session."""
    sup = tun.sup_pid()
    return {"autossh": B.cpu_ns(sup) if sup else None, "ssh": B.cpu_ns(tun.ssh_pid() or -1),
            "sshd": sum(B.cpu_ns(p) or 0 for p in sshd.sessions())}


def cpu_delta(a, b):
    return {k: None if a[k] is None or b[k] is None else round((b[k] - a[k]) / 1e6, 2) for k in a}


def tool(argv, timeout):
    """Runs a relay_tool client (bounded); its last JSON line, or a record of the error."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s: {' '.join(argv[1:])}"}
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        out = {"error": f"exit {r.returncode}, no result: {r.stderr.strip()[-300:]}"}
    if r.returncode != 0 and "error" not in out:
        out["error"] = f"exit {r.returncode}"
    return out


def measured(tun, sshd, argv, timeout):
    """One client run through a tunnel, with the CPU each process used meanwhile."""
    c0, t0 = cpu_now(tun, sshd), time.monotonic()
    res = tool(argv, timeout)
    res["wall_s"] = round(time.monotonic() - t0, 4)
    res["cpu_ms"] = cpu_delta(c0, cpu_now(tun, sshd))
    return res


# ---------------------------------------------------------------------------------------------
# the throughput and latency rounds

def order(cols, rep):
    """The columns in the order of repetition rep (rotated, so that none always goes first)."""
    k = rep % len(cols)
    return cols[k:] + cols[:k]


def rounds(cfg, tuns, sshd, name, argv_of, limit, out, describe):
    """Every repetition of one measurement, through each tunnel in turn: out[kind] = [result]."""
    for rep in range(cfg["repeat"]):
        for kind in order(cfg["columns"], rep):
            r = measured(tuns[kind], sshd, argv_of(tuns[kind]), limit)
            r["rep"] = rep
            out.setdefault(kind, []).append(r)
            B.log_result(r, f"{name} {kind} #{rep + 1}: ", describe)
            time.sleep(0.3)


def cpu_text(r):
    c = r.get("cpu_ms", {})
    return f"CPU ms autossh {c.get('autossh')} ssh {c.get('ssh')} sshd {c.get('sshd')}"


def traffic(cfg, tuns, sshd, relay_tool, res):
    """Bulk both ways, request/response, connect + first echo: res[measure][kind] = [result]."""
    n = cfg["bulk_mib"] * 1048576
    bulk_limit = 60 + cfg["bulk_mib"] / 4          # s: even 4 MiB/s would finish
    bulk_text = lambda r: f"{r['mib_s']:.1f} MiB/s ok={r['ok']}; {cpu_text(r)}"  # noqa: E731
    lat_text = lambda r: (f"p50 {r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us errors {r['errors']}; "  # noqa: E731
                          + cpu_text(r))
    steps = [("up", lambda t: [relay_tool, "up", str(t.forwards[1][0]), str(n)], bulk_limit, bulk_text),
             ("down", lambda t: [relay_tool, "down", str(t.forwards[2][0]), str(n)], bulk_limit, bulk_text),
             ("rr", lambda t: [relay_tool, "rr", str(t.forwards[0][0]), str(cfg["rr"]), str(MSG)],
              30 + cfg["rr"] * 0.005, lat_text),
             ("connect", lambda t: [relay_tool, "connect", str(t.forwards[0][0]), str(cfg["connects"]), str(MSG)],
              30 + cfg["connects"] * 0.02, lat_text)]
    for name, argv_of, limit, describe in steps:
        res[name] = {}
        try:
            rounds(cfg, tuns, sshd, name, argv_of, limit, res[name], describe)
        except Exception as e:  # noqa: BLE001  (recorded; the other measurements still run)
            res.setdefault("errors", []).append(f"{name}: {type(e).__name__}: {e}")
            B.log(f"ERROR {name}: {e}")


# ---------------------------------------------------------------------------------------------
# held connections through a restart

class RssSampler(threading.Thread):
    """VmRSS of the supervisor every 10 ms (and of its ssh every 100 ms): the peaks seen."""

    def __init__(self, tun):
        super().__init__(daemon=True)
        self.tun, self.done = tun, threading.Event()
        self.peak = self.ssh_peak = self.samples = 0

    def run(self):
        pid, k = self.tun.proc.pid, 0
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, B.mem_kb(pid).get("VmRSS", 0))
                self.samples += 1
                if k % 10 == 0 and self.tun.ssh_pid():
                    self.ssh_peak = max(self.ssh_peak, B.mem_kb(self.tun.ssh_pid()).get("VmRSS", 0))
            except OSError:
                pass
            k += 1
            self.done.wait(0.01)

    def stop(self):
        self.done.set()
        self.join(timeout=5)


def fds(pid):
    """How many descriptors pid has open (None if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nofile_of(pid):
    """pid's soft open-files limit (/proc/PID/limits), None if unknown."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def json_lines(path):
    out = []
    for line in B.read_log(path).splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait_lines(path, n, proc, timeout):
    """Until the file has n JSON lines (the hold client's), or proc ended, or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = json_lines(path)
        if len(got) >= n or proc.poll() is not None:
            return json_lines(path)
        time.sleep(0.01)
    return json_lines(path)


def text_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def hold_outage(cfg, r, t, sshd, relay_tool, d):
    """sshd away, the connections opened and held, sshd back: fills r with the times (s after
    sshd's "Server listening"), the counts and the client's record."""
    n, sup = cfg["hold_conns"], t.proc.pid
    old_ssh, cpu0 = t.ssh_pid(), B.cpu_ns(sup)
    r["killed"] = sshd.kill()
    B.wait_gone([old_ssh], 10)
    if os.path.exists(f"/proc/{old_ssh}"):
        raise RuntimeError("ssh did not end within 10 s of sshd's kill")
    time.sleep(0.5)  # autossh has seen its ssh end: new connections wait
    out = os.path.join(d, "hold-client.json")
    cl = B.start([relay_tool, "hold", str(t.forwards[0][0]), str(n), str(HOLD_WAIT_S)],
                 stdout=out, stderr=os.path.join(d, "hold-client.stderr"))
    first = wait_lines(out, 1, cl, HOLD_WAIT_S)
    if not first:
        raise RuntimeError(f"the hold client gave nothing (exit {cl.poll()})")
    r["client_connect_s"], r["client_sent"] = first[0]["connect_s"], first[0]["sent"]
    log0 = B.log_size(t.log)
    time.sleep(0.5)  # the last connections accepted (held) by autossh
    r["autossh_alive_at_return"] = t.proc.poll() is None
    r["rss_held_kb"] = B.mem_kb(sup).get("VmRSS")
    r["autossh_fds_held"], r["autossh_nofile"] = fds(sup), nofile_of(sup)
    t_ret = sshd.start()
    t_rel, deadline, k = None, time.monotonic() + HOLD_WAIT_S + 10, 0
    peak_fds = r["autossh_fds_held"] or 0
    while cl.poll() is None and time.monotonic() < deadline:
        m = RELAYING_RE.search(text_from(t.log, log0)) if t_rel is None else None
        if m:
            t_rel, r["relaying_logged"] = time.monotonic(), int(m.group(1))
        if k % 25 == 0:  # every 0.25 s: a listing of 20,000 descriptors is not free
            peak_fds = max(peak_fds, fds(sup) or 0)
            r["ssh_nofile"] = nofile_of(t.ssh_pid() or -1) or r.get("ssh_nofile")
        k += 1
        time.sleep(0.01)
    r["autossh_fds_peak_sampled"] = peak_fds
    B.stop(cl, grace=1)
    r["cpu_ms_autossh"] = round((B.cpu_ns(sup) - cpu0) / 1e6, 1)
    lines = json_lines(out)
    if len(lines) < 2:
        raise RuntimeError("the hold client did not finish")
    c = lines[-1]
    r["client"] = c
    since = lambda k: round(c[k] - t_ret, 3) if c.get(k, -1) > 0 else None  # noqa: E731
    r.update(echoed=c["echoed"], return_to_first_s=since("t_first_ok"), return_to_p50_s=since("t_p50_ok"),
             return_to_p99_s=since("t_p99_ok"), return_to_last_s=since("t_last_ok"),
             return_to_relaying_s=round(t_rel - t_ret, 3) if t_rel else None,
             relaying_to_last_s=round(c["t_last_ok"] - t_rel, 3) if t_rel and c["t_last_ok"] > 0 else None,
             held_before_return_s=round(t_ret - c["t_sent"], 3))
    r["autossh_log"] = [l for l in text_from(t.log, log0).splitlines()
                        if re.search(r"reset|cannot|wait already|warn|error", l, re.I)][:20]


def sshd_refusals(logs):
    """Lines of the sshd logs that say something was refused or failed (session probe's out)."""
    out = []
    for lf in logs:
        for line in B.read_log(lf).splitlines():
            if REFUSAL_RE.search(line) and "autossh-session-probe" not in line:
                out.append(line)
    return out


def hold_phase(cfg, sshd, ports, relay_tool, d):
    """A fresh autossh (held forward to the echo) kept through sshd's outage: the record."""
    r = {"conns": cfg["hold_conns"]}
    t = Tunnel("ours", "hold", ports["sshd"], [(ports["hold"], ports["echo"])], d, cfg["cipher"])
    sampler = None
    try:
        t.start()
        t.wait_ready()
        time.sleep(1)
        r["rss_before_kb"] = B.mem_kb(t.proc.pid).get("VmRSS")
        sampler = RssSampler(t)
        sampler.start()
        logs0 = len(sshd.logs)
        hold_outage(cfg, r, t, sshd, relay_tool, d)
        time.sleep(1)  # sshd's last lines
        r["sshd_refusals"] = sshd_refusals(sshd.logs[logs0:])[:50]
        r["sshd_refusal_count"] = len(sshd_refusals(sshd.logs[logs0:]))
    except Exception as e:  # noqa: BLE001  (the record says what went wrong)
        r["error"] = f"{type(e).__name__}: {e}"
        B.log(f"ERROR hold: {r['error']}")
    finally:
        if sampler is not None:
            sampler.stop()
            r.update(rss_peak_sampled_kb=sampler.peak, rss_samples=sampler.samples,
                     ssh_rss_peak_sampled_kb=sampler.ssh_peak)
        if t.proc is not None and t.proc.poll() is None:
            r["hwm_kb"] = B.mem_kb(t.proc.pid).get("VmHWM")
        t.stop()
    return r


# ---------------------------------------------------------------------------------------------
# the run

def raise_nofile():
    """Open files for everything started from here (sshd, the echo, the clients): 10,000 held
    connections are 10,000 descriptors in the echo and in the client, and more in sshd."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in ((NOFILE, max(hard, NOFILE)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ssh_defaults():
    """The first cipher and key exchange ssh offers here (what sshd picks when both have it)."""
    try:
        out = subprocess.run([SSH, "-G", "-F", "/dev/null", "127.0.0.1"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    got = dict(l.split(" ", 1) for l in out.splitlines() if " " in l)
    return {k: got.get(k, "?").split(",")[0] for k in ("ciphers", "kexalgorithms", "macs")}


def allot_ports(cols):
    """sshd, echo, sink, source, each column's three forwards, the held test's forward; below
    the ephemeral range, so that no ssh's own connection takes one of them first."""
    base = B.free_block(5 + 3 * len(cols), lo=10000, hi=F.ephemeral_low())
    p = {"sshd": base, "echo": base + 1, "sink": base + 2, "source": base + 3,
         "hold": base + 4 + 3 * len(cols)}
    for i, kind in enumerate(cols):
        p[kind] = [(base + 4 + 3 * i, p["echo"]), (base + 5 + 3 * i, p["sink"]),
                   (base + 6 + 3 * i, p["source"])]
    return p


def start_services(bin_dir, ports, d, svcs):
    """minimal_echo, the sink and the source, appended to svcs as they start."""
    tool = os.path.join(bin_dir, "relay_tool")
    for argv, port in (([os.path.join(bin_dir, "minimal_echo"), str(ports["echo"])], ports["echo"]),
                       ([tool, "sink", str(ports["sink"])], ports["sink"]),
                       ([tool, "source", str(ports["source"])], ports["source"])):
        svcs.append(B.start(argv, stderr=os.path.join(d, "services.stderr")))
        if not B.wait_port(port, 5):
            raise RuntimeError(f"{os.path.basename(argv[0])} {' '.join(argv[1:])} did not start")


def phase(cfg, bin_dir, d):
    """Everything against one sshd: the traffic rounds, then the held restart."""
    res = {}
    ports = allot_ports(cfg["columns"])
    sshd = B.ListenerSshd("127.0.0.1", ports["sshd"], d, "relay", "LogLevel VERBOSE\n")
    svcs, tuns = [], {}
    relay_tool = os.path.join(bin_dir, "relay_tool")
    try:
        sshd.start()
        start_services(bin_dir, ports, d, svcs)
        for kind in cfg["columns"]:
            tuns[kind] = Tunnel(kind, kind, ports["sshd"], ports[kind], d, cfg["cipher"])
            tuns[kind].start()
        for t in tuns.values():
            t.wait_ready()
        time.sleep(1)
        B.log("tunnels up: " + ", ".join(f"{k} (ssh {t.ssh_pid()})" for k, t in tuns.items()))
        traffic(cfg, tuns, sshd, relay_tool, res)
        res["alive_after_traffic"] = {k: t.proc.poll() is None for k, t in tuns.items()}
        res["sshd_refusals_traffic"] = sshd_refusals(sshd.logs)[:50]
        for t in tuns.values():
            t.stop()
        res["hold"] = hold_phase(cfg, sshd, ports, relay_tool, d)
        h = res["hold"]
        B.log(f"hold: {h.get('echoed')}/{h['conns']} echoed, last {h.get('return_to_last_s')} s after "
              f"sshd's return; autossh VmHWM {h.get('hwm_kb')} kB; sshd refusals {h.get('sshd_refusal_count')}")
    except Exception as e:  # noqa: BLE001  (the record says what went wrong)
        res["error"] = f"{type(e).__name__}: {e}"
        B.log(f"ERROR {res['error']}")
    finally:
        for t in tuns.values():
            t.stop()
        for p in svcs:
            B.stop(p, grace=0.5)
        sshd.kill()
        save_logs(d, sshd)
    return res


def save_logs(d, sshd):
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR, exist_ok=True)
    for f in os.listdir(d):
        src = os.path.join(d, f)
        if os.path.isfile(src) and not f.endswith(".sock"):
            shutil.copy2(src, LOGDIR)
    for i, lf in enumerate(sshd.logs):
        if os.path.exists(lf):
            shutil.copy2(lf, os.path.join(LOGDIR, f"sshd-{i + 1}.log"))


def run(args):
    global OURS  # noqa: PLW0603  (a copy: a rebuild during the run does not change what is measured)
    if os.geteuid() != 0:
        B.die("run as root (sshd, the open-files limit)")
    cfg = settings()
    for f in (OURS, SSH, "/usr/sbin/sshd", os.path.join(args.bin, "relay_tool"),
              os.path.join(args.bin, "minimal_echo")):
        if not os.path.exists(f):
            B.die(f"missing: {f}")
    copy = os.path.join(B.WORK, "bin", "autossh-relay")
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copy2(OURS, copy)
    meta_ours, OURS = OURS, copy
    meta = dict(cfg, ours=meta_ours, nofile=raise_nofile(), ssh_offers=ssh_defaults())
    if meta["nofile"] < 2 * cfg["hold_conns"] + 64:
        B.log(f"WARNING: open-files limit {meta['nofile']} (hard limit not raisable here): autossh cannot "
              f"relay {cfg['hold_conns']} connections at once (two descriptors each); the held test will show it")
    B.make_keys()
    d = os.path.join(B.WORK, "relay")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    B.log(f"columns {' '.join(cfg['columns'])}, R={cfg['repeat']}, bulk {cfg['bulk_mib']} MiB, "
          f"{cfg['rr']} round trips, {cfg['connects']} connects, {cfg['hold_conns']} held connections; "
          f"open files {meta['nofile']}" + ("; QUICK" if cfg["quick"] else ""))
    t0 = time.monotonic()
    res = {}
    try:
        res = phase(cfg, args.bin, d)
    finally:
        meta["duration_s"] = round(time.monotonic() - t0)
        B.write_json(args.out, {"meta": meta, "results": res})
        B.log(f"relay benchmark done in {meta['duration_s']} s")


# ---------------------------------------------------------------------------------------------
# report

def series(res, measure, kind, get):
    """One measure's values for a column, a run each (runs with an error left out)."""
    out = []
    for r in res.get(measure, {}).get(kind, []):
        v = None if "error" in r else get(r)
        if v is not None:
            out.append(v)
    return out


def cpu_of(proc, per_op=False):
    """A run's CPU of proc in ms, or per operation in µs (the unrecorded first ones counted)."""
    def get(r):
        ms = r.get("cpu_ms", {}).get(proc)
        if ms is None or not per_op:
            return ms
        return ms * 1000 / max(1, r.get("count", 0) + r.get("warmup", 0))
    return get


def table(res, cols, spec, compare):
    """Rows of `median [each run]` per column, and each other column against plain: the ratio
    of the medians ("ratio") or their difference ("diff")."""
    from report import cell, med, ratio  # noqa: PLC0415

    others = [k for k in cols if k != "plain"]
    sign = "/" if compare == "ratio" else "−"
    header = ["measured"] + [LABEL[k] for k in cols] + [f"{k} {sign} plain" for k in others]
    rows = []
    for label, measure, get, digits in spec:
        s = {k: series(res, measure, k, get) for k in cols}
        row = [label] + [cell(s[k], digits) for k in cols]
        p = med(s["plain"])
        for k in others:
            m = med(s[k])
            if compare == "ratio":
                row.append(ratio(m, p))
            else:
                row.append("n/a" if m is None or p is None else f"{m - p:+.{digits}f}")
        rows.append(row)
    return header, rows


def bulk_sections(res, cols, meta):
    mib = meta.get("bulk_mib")
    spec = [(f"up: {mib} MiB client → sink, MiB/s", "up", lambda r: r.get("mib_s"), 1),
            (f"down: {mib} MiB source → client, MiB/s", "down", lambda r: r.get("mib_s"), 1)]
    cpu = []
    for d in ("up", "down"):
        cpu += [(f"{d}: autossh CPU, ms", d, cpu_of("autossh"), 1),
                (f"{d}: ssh CPU, ms", d, cpu_of("ssh"), 1),
                (f"{d}: sshd sessions CPU, ms", d, cpu_of("sshd"), 1)]
    return [(f"Bulk throughput ({mib} MiB each way, every byte counted and hashed)",
             table(res, cols, spec, "ratio")),
            ("CPU during one bulk transfer (schedstat; autossh: the supervisor only, not its ssh)",
             table(res, cols, cpu, "ratio"))]


def latency_section(res, cols, measure, title):
    spec = [(f"{p}, µs", measure, (lambda k: lambda r: r.get(k))(key), 1)
            for p, key in (("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"),
                           ("p99.9", "p999_us"), ("max", "max_us"), ("mean", "mean_us"))]
    spec += [("autossh CPU per operation, µs", measure, cpu_of("autossh", True), 2),
             ("ssh CPU per operation, µs", measure, cpu_of("ssh", True), 2),
             ("sshd sessions CPU per operation, µs", measure, cpu_of("sshd", True), 2),
             ("errors", measure, lambda r: r.get("errors"), 0)]
    return title, table(res, cols, spec, "diff")


def hold_section(h):
    """The held restart as measured/value rows."""
    if not h:
        return None
    rows = [["connections opened while sshd was away", f"{h.get('client_sent')} / {h['conns']}"],
            ["  time to open them, s", h.get("client_connect_s")],
            ["  waiting when sshd came back, s (since the last was sent)", h.get("held_before_return_s")],
            ["autossh logged \"relaying N waiting\"", h.get("relaying_logged")],
            ["sshd back → autossh relays (its log line), s", h.get("return_to_relaying_s")],
            ["sshd back → first line echoed, s", h.get("return_to_first_s")],
            ["sshd back → half / 99 % echoed, s",
             f"{h.get('return_to_p50_s')} / {h.get('return_to_p99_s')}"],
            ["sshd back → every line echoed, s", h.get("return_to_last_s")],
            ["  relaying → every line echoed, s", h.get("relaying_to_last_s")]]
    c = h.get("client", {})
    rows += [["echoed byte for byte", f"{h.get('echoed')} / {h['conns']}"],
             ["reset / closed / wrong / unanswered / failed",
              " / ".join(str(c.get(k, "?")) for k in ("reset", "eof", "wrong", "unanswered", "failed"))],
             ["autossh VmRSS before the outage, kB", h.get("rss_before_kb")],
             ["autossh VmRSS with every connection waiting, kB", h.get("rss_held_kb")],
             ["autossh peak RSS (VmHWM), kB", h.get("hwm_kb")],
             [f"  VmRSS sampled every 10 ms, peak ({h.get('rss_samples')} samples), kB",
              h.get("rss_peak_sampled_kb")],
             ["ssh VmRSS sampled every 100 ms, peak, kB", h.get("ssh_rss_peak_sampled_kb")],
             ["autossh CPU from the kill to the end, ms", h.get("cpu_ms_autossh")],
             ["autossh descriptors: waiting / peak seen (every 0.25 s) / its limit",
              f"{h.get('autossh_fds_held')} / {h.get('autossh_fds_peak_sampled')} / {h.get('autossh_nofile')}"],
             ["ssh's open-files limit (inherited from autossh)", h.get("ssh_nofile")],
             ["sshd log lines of refusals/failures after the return", h.get("sshd_refusal_count")]]
    return ["measured", "value"], [[a, "n/a" if b is None else b] for a, b in rows]


def goal_rows(res, meta):
    """(goal, plain, ours, ours against plain, met) from the medians."""
    from report import med  # noqa: PLC0415

    m = lambda measure, kind, key: med(series(res, measure, kind, lambda r: r.get(key)))  # noqa: E731
    f = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    out = []
    for d in ("up", "down"):
        p, o = m(d, "plain", "mib_s"), m(d, "ours", "mib_s")
        out.append((f"bulk {d} {meta.get('bulk_mib')} MiB: ours ≥ {BULK_GOAL:.2f} × plain (MiB/s)", f(p), f(o),
                    "n/a" if not p or o is None else f"× {o / p:.3f}", bool(p and o is not None and o >= BULK_GOAL * p)))
    p, o = m("rr", "plain", "p50_us"), m("rr", "ours", "p50_us")
    out.append((f"request/response p50 ≤ plain + {RR_P50_ADD_US} µs", f(p), f(o),
                "n/a" if p is None or o is None else f"{o - p:+.1f} µs",
                p is not None and o is not None and o <= p + RR_P50_ADD_US))
    p, o = m("rr", "plain", "p99_us"), m("rr", "ours", "p99_us")
    out.append((f"request/response p99 ≤ {RR_P99_MUL} × plain + {RR_P99_ADD_US} µs", f(p), f(o),
                "n/a" if p is None or o is None else f"limit {RR_P99_MUL * p + RR_P99_ADD_US:.1f} µs",
                p is not None and o is not None and o <= RR_P99_MUL * p + RR_P99_ADD_US))
    p, o = m("connect", "plain", "p50_us"), m("connect", "ours", "p50_us")
    out.append((f"connect + first echo p50 ≤ {CONN_MUL:g} × plain + {CONN_ADD_US} µs", f(p), f(o),
                "n/a" if p is None or o is None else f"limit {CONN_MUL * p + CONN_ADD_US:.1f} µs",
                p is not None and o is not None and o <= CONN_MUL * p + CONN_ADD_US))
    runs = [r for ms in ("up", "down", "rr", "connect") for rs in res.get(ms, {}).values() for r in rs]
    bad = [r for r in runs if "error" in r or r.get("ok") is False or r.get("errors")]
    out.append(("every transfer intact, every echo right (all columns)", "", "",
                f"{len(runs) - len(bad)} / {len(runs)} runs clean", bool(runs) and not bad))
    h = res.get("hold") or {}
    n = h.get("conns", meta.get("hold_conns"))
    out.append((f"{n} connections held through sshd's restart: every line echoed", "—",
                f"{h.get('echoed', 'n/a')} / {n}",
                f"last {h.get('return_to_last_s', 'n/a')} s after sshd's return",
                "error" not in h and h.get("echoed") == n))
    hwm = h.get("hwm_kb")
    out.append((f"autossh's peak RSS through it ≤ {RSS_GOAL_KB // 1024} MiB (VmHWM, kB)", "—", f(hwm, 0),
                "n/a" if hwm is None else f"{hwm / 1024:.1f} MiB", hwm is not None and hwm <= RSS_GOAL_KB))
    return out


def errors_of(res):
    out = list(res.get("errors", []))
    for what in ("error",):
        if what in res:
            out.append(res[what])
    h = res.get("hold") or {}
    if "error" in h:
        out.append("hold: " + h["error"])
    if h.get("autossh_nofile") and h["autossh_nofile"] < 2 * h["conns"] + 32:
        out.append(f"autossh's open-files limit ({h['autossh_nofile']}) is below what {h['conns']} relayed "
                   f"connections need (two descriptors each, and a few more): the hard limit could not be "
                   f"raised here (no CAP_SYS_RESOURCE?); connections past it wait for a descriptor, then "
                   f"their hold time")
    for ms in ("up", "down", "rr", "connect"):
        for kind, rs in res.get(ms, {}).items():
            out += [f"{ms} {kind} #{r.get('rep', 0) + 1}: {r['error']}" for r in rs if "error" in r]
    for k, alive in (res.get("alive_after_traffic") or {}).items():
        if not alive:
            out.append(f"{k}'s process had ended by the end of the traffic rounds")
    return out


def report(args):
    from report import load, md_facts, md_table, print_results, write_md  # noqa: PLC0415

    data = load(args.json, dict)
    meta, res = data.get("meta", {}), data.get("results", {})
    facts = load(args.facts, dict) if args.facts else {}
    cols = [k for k in KINDS if k in meta.get("columns", KINDS)]
    sections = bulk_sections(res, cols, meta)
    sections.append(latency_section(res, cols, "rr", f"Request/response: {meta.get('rr')} round trips "
                                    f"of {MSG} bytes over one connection (per run)"))
    sections.append(latency_section(res, cols, "connect", f"Connect + first echo: {meta.get('connects')} "
                                    f"new connections of {MSG} bytes each (per run)"))
    hs = hold_section(res.get("hold"))
    if hs:
        sections.append((f"{meta.get('hold_conns')} connections held through a restart of sshd (ours only)", hs))
    goals = goal_rows(res, meta)
    notes = errors_of(res)
    print_results(sections, [(g, f"plain {p}, ours {o}: {v}" if p else " ".join(x for x in (o, v) if x), ok)
                             for g, p, o, v, ok in goals], notes)
    cipher = meta.get("cipher") or f"ssh's default ({meta.get('ssh_offers', {}).get('ciphers', '?')})"
    md = ["# Relay benchmark results", "",
          f"Generated by `bash bench/run.sh relay` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode: a smoke test, not the benchmark.**" if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "private_netns",
                           "ssh", "rustc", "commit"))
    md += [f"- ours: {meta.get('ours', '?')} (held forwards at their defaults; `-M 0`); columns: "
           f"{', '.join(LABEL[k] for k in cols)}; {meta.get('repeat')} repetitions, the columns' order "
           f"rotated each time; cipher: {cipher}; open files: {meta.get('nofile')}; "
           f"benchmark run {meta.get('duration_s', '?')} s", "",
           "Cells read `median [value of each run]`; the last columns compare each column's median "
           "with plain ssh's (a ratio, or a difference for latencies). See bench/README.md (9.).", ""]
    for title, (header, rows) in sections:
        md += ["## " + title, ""] + md_table(header, rows) + [""]
    md += ["## Goals", ""] + md_table(["goal", LABEL["plain"], LABEL["ours"], "ours vs plain", "met"],
                                      [[g, p, o, v, "**yes**" if ok else "**NO**"] for g, p, o, v, ok in goals])
    md.append("")
    if notes:
        md += ["## Errors during the run", ""] + [f"- {x}" for x in notes] + [""]
    md.append(NOTES)
    write_md(args.md, md)


NOTES = """## Notes (fixed text, from relay_bench.py)

- **Setup**: one private sshd on 127.0.0.1 (in a private network namespace when run.sh can
  make one), three services behind it (minimal_echo; `relay_tool sink`, which hashes what it
  reads and answers its count and hash after the end of the stream; `relay_tool source`), and
  three tunnels to it, up at the same time with the same ssh options (`-F /dev/null`, key login,
  `LogLevel=ERROR`, `-N`, one `-L` per service): plain ssh run directly, ours (`autossh -M 0`,
  held forwards at their defaults: ssh gets `-L <private dir>/fwd-G-N.sock:127.0.0.1:PORT`),
  and ours with `AUTOSSH_HOLD=no` (ssh gets the `-L` as given). Ours' `-M 0` adds
  `ServerAliveInterval=60`, `ServerAliveCountMax=3`, `ExitOnForwardFailure=yes` and a session
  probe every AUTOSSH_POLL (600 s: none during the run). The tunnels take turns; no CPU is pinned.
- **Bulk**: one connection per transfer; *up* is timed from the first write to the sink's
  answer (it comes after the half-close has passed through), *down* from the request to the
  end of the stream; MiB/s = size / that time. Each transfer is checked (count and hash).
- **CPU** is each process's own time (`/proc/PID/schedstat`) over the client's run: autossh the
  supervisor alone (its relay works in it), ssh the tunnel's ssh, sshd every session process of
  the private sshd (the idle tunnels' sessions included; they use next to nothing).
- **Request/response**: a C client (`relay_tool rr`), TCP_NODELAY, a 64-byte message written,
  its 64-byte echo read in full, then the next; COUNT/10 (at most 200) round trips first,
  unrecorded. Percentiles per run; the table shows the median over runs.
- **Connect + first echo**: `relay_tool connect`: socket, connect, 64 bytes, their echo, close
  with RST (no TIME_WAIT pile), timed from before connect() to the echo's last byte; 10 % (at
  most 50) first, unrecorded.
- **Held restart**: a fresh `autossh -M 0 -N -L HOLD:127.0.0.1:ECHO` (nothing else changed);
  once it answers, sshd's listener and sessions are SIGKILLed together; once its ssh has ended
  (autossh then checks the server every 250 ms), `relay_tool hold` opens the connections (256
  handshakes in flight) and each sends one line; 0.5 s after the last, sshd starts again on the
  same port. Times count from its "Server listening" line; *relays* is when autossh's log first
  said "tunnel up: relaying N waiting connection(s)" (the log is read every 10 ms). The echoed
  connections stay open to the end. *Peak RSS* is autossh's VmHWM (the kernel's own peak of
  the process's resident memory, its whole life: the held restart is most of it), read before
  it stops; a 10 ms VmRSS sampler shows the same from outside. autossh raises its own open-files
  limit (as root to 65536) and ssh inherits it; the benchmark raises its own for sshd, the echo
  and the client. sshd's MaxSessions does not limit forwarding channels; its log (LogLevel
  VERBOSE) is searched for refusals and failures (the session probe's refusals left out).
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--bin", default=os.path.join(B.WORK, "bin"))
    ap.add_argument("--out")
    ap.add_argument("--json")
    ap.add_argument("--facts")
    ap.add_argument("--md")
    args = ap.parse_args()
    if args.what == "report":
        return report(args)
    B.dispatch(args, F.no_worker, run)


if __name__ == "__main__":
    main()

"""Fleet benchmark (issue 12): many tunnels to ONE private sshd on 127.0.0.1, kept by one
`autossh --tunnels FILE` (ours) against one autossh 1.4g process per tunnel, one program after
the other in the same run (never at the same time: they would share the sshd's MaxStartups and
the two cores).

  fleet_bench.py run --out FILE        the benchmark (`bash bench/run.sh fleet`)
  fleet_bench.py report --json FILE --facts FACTS --md bench/results-fleet.md

Per program (a phase of its own, with a fresh sshd, services and ports):
  setup     sshd `-D -e -f cfg` on 127.0.0.1 (keys of benchlib.make_keys, UsePAM no, StrictModes
            no, key login only, LogLevel VERBOSE, MaxStartups NOT set: OpenSSH's default
            10:30:100), line_service.py behind every tunnel (and, in echo mode, a second one as
            the monitors' echo service).
  start     N tunnels, each `-N -L TUN_i:127.0.0.1:SVC` with its own monitor ports (loop mode
            `-M MON_i`, MON_i = base + 4 i, so that ours may move its remote port to MON_i + 2),
            every ssh with -o KexAlgorithms=curve25519-sha256. Ours: one `autossh --tunnels FILE`;
            1.4g: N processes of /usr/lib/autossh/autossh. Waits until every tunnel answers.
  memory    VmRSS, VmHWM and PSS (smaps_rollup) of the supervisor process(es) only (no ssh).
  cpu       utime+stime ticks (and schedstat ns) of the supervisor(s) over CPU_S seconds of a
            healthy fleet at AUTOSSH_POLL=10; no checks during the window.
  outage    the sshd's listener and every session process SIGKILLed (every tunnel dies), OUTAGE_S
            seconds, then sshd started again on the same port. Measured from its "Server
            listening" line: until every tunnel carried a request end to end through its -L port
            (each not yet back is tried every 100 ms: connect, a line, the same line back within
            0.5 s), and the handshakes sshd refused ("drop connection #N ... past MaxStartups",
            "beginning MaxStartups throttling" in its log).

Before the phases, the machine's floor (no supervisor): N plain `ssh -N -L SOCK:...` logins to a
fresh sshd, at most 8 in flight (ours' handshake window, under the default MaxStartups), then all
N at once (MaxStartups raised so that none is dropped): seconds until every ssh is past
authentication (its -L socket bound) and the whole machine's CPU meanwhile. No tunnel of either
program can be back faster than its logins.

Environment: FLEET_BENCH_QUICK=1 (20 tunnels, 10 s outage, 15 s CPU phase, give-up 60 s: a smoke
test), FLEET_BENCH_TUNNELS (100; quick 20), FLEET_BENCH_GIVEUP (180 s; quick 60),
FLEET_BENCH_PROGS ("ours 1.4g"), FLEET_BENCH_MONITOR ("loop echo zero": loop monitors `-M MON_i`,
then echo monitors `-M MON_i:ECHO`, then no monitor port `-M 0`, a table each), FLEET_BENCH_OURS
(our binary; default target/release/autossh).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import benchlib as B
from report import ratio

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "fleet")
PROGS = {"ours": os.environ.get("FLEET_BENCH_OURS") or B.OURS, "1.4g": B.THEIRS}
POLL = 10
KEX = "curve25519-sha256"
SSH_BIN = "/usr/bin/ssh"
RSS_GOAL_KB = 6 * 1024          # 6 MiB
BACK_GOAL_S = 2.0               # issue 20 (issue 12: 5 s)
DROP_RE = re.compile(r"drop connection #\d+ from \S+ on \S+ past MaxStartups")
BEGIN_RE = re.compile(r"beginning MaxStartups throttling")
EXITED_RE = re.compile(r"exited MaxStartups throttling after .*?, (\d+) connections dropped")
CONN_RE = re.compile(r"Connection from \S+ port \d+ on ")
LOGIN_RE = re.compile(r"Accepted publickey for ")
# ssh's own words when sshd closed or reset the connection before its banner (MaxStartups)
CUT_RE = re.compile(r"kex_exchange_identification: ")


def settings():
    quick = os.environ.get("FLEET_BENCH_QUICK", "") not in ("", "0")
    n = int(os.environ.get("FLEET_BENCH_TUNNELS") or (20 if quick else 100))
    giveup = float(os.environ.get("FLEET_BENCH_GIVEUP") or (60 if quick else 180))
    progs = (os.environ.get("FLEET_BENCH_PROGS") or "ours 1.4g").replace(",", " ").split()
    monitors = (os.environ.get("FLEET_BENCH_MONITOR") or "loop echo zero").replace(",", " ").split()
    if n < 1 or giveup <= 0:
        raise SystemExit("FLEET_BENCH_TUNNELS and FLEET_BENCH_GIVEUP must be positive")
    if any(p not in PROGS for p in progs) or not progs:
        raise SystemExit(f"FLEET_BENCH_PROGS: programs among {' '.join(PROGS)}")
    if not monitors or any(m not in ("loop", "echo", "zero") for m in monitors):
        raise SystemExit("FLEET_BENCH_MONITOR: among loop, echo, zero")
    return {"quick": quick, "tunnels": n, "giveup": giveup, "progs": progs, "monitors": monitors,
            "poll": POLL, "kex": KEX, "outage_s": 10 if quick else 30, "cpu_s": 15 if quick else 60,
            "settle_s": 5 if quick else POLL}


# ---------------------------------------------------------------------------------------------
# one program's phase

class Fleet:
    """The supervisor process(es) of one program and the N tunnels they keep."""

    def __init__(self, cfg, mode, prog, d):
        self.cfg, self.mode, self.prog, self.d = cfg, mode, prog, d
        n = cfg["tunnels"]
        mon_span = 4 if mode == "loop" else 1
        # below the ephemeral range: an ssh's own connection to sshd (a random local port from
        # that range) must not take a tunnel's or a monitor's port before its ssh binds it
        base = B.free_block(3 + n + mon_span * n, lo=10000, hi=ephemeral_low())
        self.sshd_port, self.svc, self.echo = base, base + 1, base + 2
        self.tun = [base + 3 + i for i in range(n)]
        self.mon = [base + 3 + n + mon_span * i for i in range(n)]
        w = max(2, len(str(n - 1)))
        self.names = [f"t{i:0{w}d}" for i in range(n)]
        self.procs = []
        self.logs = []
        self.errs = []  # where ssh's stderr lines land: ours logs them, 1.4g's go to its stderr

    def ssh_args(self, i):
        return ["-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),
                "-p", str(self.sshd_port), "-o", f"KexAlgorithms={KEX}",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-N", "-L", f"{self.tun[i]}:127.0.0.1:{self.svc}", "root@127.0.0.1"]

    def monitor(self, i):
        if self.mode == "zero":
            return "0"
        return str(self.mon[i]) if self.mode == "loop" else f"{self.mon[i]}:{self.echo}"

    def start(self):
        if self.prog == "ours":
            toml = os.path.join(self.d, "tunnels.toml")
            with open(toml, "w") as f:
                f.write(f"# fleet benchmark: {len(self.tun)} tunnels (AUTOSSH_POLL etc. from the "
                        "environment, as for 1.4g)\n")
                for i, name in enumerate(self.names):
                    args = ", ".join(f'"{a}"' for a in self.ssh_args(i))
                    f.write(f"\n[tunnel.{name}]\nssh = [{args}]\nmonitor = \"{self.monitor(i)}\"\n")
            log = os.path.join(self.d, "ours.log")
            self.logs = [log]
            self.errs = [log]
            self.ctl = os.path.join(self.d, "control.sock")
            self.procs = [B.start([PROGS["ours"], "--tunnels", toml, "--control-socket", self.ctl],
                                  env=B.autossh_env(log, POLL),
                                  stderr=os.path.join(self.d, "ours.stderr"))]
        else:
            ld = os.path.join(self.d, "1.4g")
            os.makedirs(ld, exist_ok=True)
            for i, name in enumerate(self.names):
                log = os.path.join(ld, f"{name}.log")
                self.logs.append(log)
                self.errs.append(os.path.join(ld, f"{name}.stderr"))
                self.procs.append(B.start([PROGS["1.4g"], "-M", self.monitor(i)] + self.ssh_args(i),
                                          env=B.autossh_env(log, POLL),
                                          stderr=os.path.join(ld, f"{name}.stderr")))

    def pids(self):
        return [p.pid for p in self.procs]

    def alive(self):
        return sum(1 for p in self.procs if p.poll() is None)

    def log_sizes(self):
        return [size(f) for f in self.logs]

    def err_sizes(self):
        return [size(f) for f in self.errs]

    def starts_between(self, a, b=None):
        """"starting ssh" lines between two log_sizes() readings (b: now)."""
        return sum(B.starts(t) for t in texts(self.logs, a, b))

    def cut_between(self, a, b=None):
        """ssh's "kex_exchange_identification: ..." lines between two err_sizes() readings."""
        return sum(len(CUT_RE.findall(t)) for t in texts(self.errs, a, b))


    def ssh_pids(self):
        return [c for p in self.pids() for c in B.descendants(p)
                if B.cmdline(c).startswith("/usr/bin/ssh ")]

    def memory(self):
        rss = hwm = pss = 0
        one = 0
        for pid in self.pids():
            try:
                m = B.mem_kb(pid)
            except OSError:
                continue
            rss += m.get("VmRSS", 0)
            hwm += m.get("VmHWM", 0)
            one = max(one, m.get("VmRSS", 0))
            pss += B.pss_kb(pid) or 0
        ssh = self.ssh_pids()
        ssh_rss = 0
        for pid in ssh:
            try:
                ssh_rss += B.mem_kb(pid).get("VmRSS", 0)
            except OSError:
                pass
        return {"rss_kb": rss, "hwm_kb": hwm, "pss_kb": pss, "rss_kb_max_one": one,
                "ssh_procs": len(ssh), "ssh_rss_kb": ssh_rss}

    def cpu(self):
        ticks = ns = 0
        for pid in self.pids():
            try:
                ticks += B.cpu_ticks(pid)
                ns += B.cpu_ns(pid) or 0
            except OSError:
                pass
        return ticks, ns

    def stop(self):
        for p in self.procs:
            B._signal_group(p.pid, signal.SIGTERM)
            B._signal(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.05)
        for p in self.procs:
            B.stop(p, grace=0.1)


def ephemeral_low():
    """The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def texts(files, a, b=None):
    """The text of each file between offsets a[i] and b[i] (b: the end)."""
    out = []
    for i, f in enumerate(files):
        try:
            with open(f, "rb") as fh:
                fh.seek(a[i])
                out.append(fh.read(None if b is None else max(0, b[i] - a[i])).decode(errors="replace"))
        except OSError:
            pass
    return out


def log_summary(text, top=15):
    """The kinds of lines in an autossh log text (time, pid, tunnel name and numbers left out),
    most frequent first: [(count, line)]."""
    kinds = {}
    for line in text.splitlines():
        line = re.sub(r"^\S+ \S+ autossh\[\d+\]: ", "", line)
        line = re.sub(r"^t\d+: ", "", line)
        line = re.sub(r"\d+", "N", line)[:160]
        kinds[line] = kinds.get(line, 0) + 1
    return [[c, k] for k, c in sorted(kinds.items(), key=lambda x: -x[1])[:top]]

def sshd_counts(path, a=0, b=None):
    """Counts in an sshd log between byte offsets a and b (b: the end)."""
    try:
        with open(path, "rb") as f:
            f.seek(a)
            text = f.read(None if b is None else max(0, b - a)).decode(errors="replace")
    except OSError:
        text = ""
    return {"dropped": len(DROP_RE.findall(text)), "throttling_began": len(BEGIN_RE.findall(text)),
            "dropped_by_exit_lines": sum(int(x) for x in EXITED_RE.findall(text)),
            "connections": len(CONN_RE.findall(text)), "logins": len(LOGIN_RE.findall(text))}


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def back_stats(ok, ports, t0):
    """Seconds from t0 until each port first answered: sorted list, and summary."""
    secs = sorted(ok[p] - t0 for p in ports if p in ok)
    out = {"back": len(secs), "of": len(ports),
           "all_back_s": round(secs[-1], 3) if len(secs) == len(ports) else None,
           "median_s": round(secs[len(secs) // 2], 3) if secs else None,
           "p90_s": round(secs[min(len(secs) - 1, int(0.9 * len(ports)))], 3)
           if len(secs) > int(0.9 * len(ports)) else None,
           "first_s": round(secs[0], 3) if secs else None,
           "within_goal": sum(1 for s in secs if s <= BACK_GOAL_S),
           "times_s": [round(s, 3) for s in secs]}
    return out


def start_services(fl, mode, svcs):
    """The services the tunnels lead to (the line service; echo mode: the echo service too),
    appended to svcs as they start."""
    svcs.append(B.start([sys.executable, os.path.join(HERE, "line_service.py"), str(fl.svc)]))
    if mode == "echo":
        svcs.append(B.start([sys.executable, os.path.join(HERE, "line_service.py"), str(fl.echo)]))
    for port in [fl.svc] + ([fl.echo] if mode == "echo" else []):
        if not B.wait_port(port, 5):
            raise RuntimeError(f"line_service on {port} did not start")


def fleet_start(cfg, r, fl, prog, d):
    """Starts the supervisors; every tunnel answering (or the give-up)."""
    n, giveup = cfg["tunnels"], cfg["giveup"]
    t0 = time.monotonic()
    fl.start()
    ok, _ = B.check_ports(fl.tun, t0 + giveup, interval=0.2, stop=lambda: fl.alive() == 0)
    st = back_stats(ok, fl.tun, t0)
    r["start"] = {k: st[k] for k in ("back", "all_back_s", "median_s")}
    r["supervisors"] = len(fl.procs)
    r["supervisors_alive_after_start"] = fl.alive()
    B.log(f"{prog}: {st['back']}/{n} tunnels answer"
          + (f", all {st['all_back_s']:.1f} s after start" if st["all_back_s"] is not None
             else f" after {giveup:.0f} s (give-up)"))
    if fl.alive() == 0:
        raise RuntimeError(f"every {prog} supervisor exited; see {d}")
    time.sleep(cfg["settle_s"])


def fleet_healthy(cfg, r, fl, prog):
    """Memory and CPU while every tunnel is healthy."""
    n = cfg["tunnels"]
    r["mem_before_cpu"] = fl.memory()
    sizes0 = fl.log_sizes()
    ssh0 = set(fl.ssh_pids())
    c0, ns0, w0 = *fl.cpu(), time.monotonic()
    time.sleep(cfg["cpu_s"])
    c1, ns1, w1 = *fl.cpu(), time.monotonic()
    ssh1 = set(fl.ssh_pids())
    r["cpu"] = {"ticks": c1 - c0, "ms": round((ns1 - ns0) / 1e6, 1), "window_s": round(w1 - w0, 2),
                "starts": fl.starts_between(sizes0), "ssh_replaced": len(ssh0 - ssh1),
                "ssh_at_start": len(ssh0), "ssh_at_end": len(ssh1)}
    r["mem"] = fl.memory()
    ok, _ = B.check_ports(fl.tun, time.monotonic() + 3, interval=0.2)
    r["cpu"]["answering_after"] = len(ok)
    B.log(f"{prog}: supervisor RSS {r['mem']['rss_kb']} kB (PSS {r['mem']['pss_kb']} kB) in "
          f"{len(fl.procs)} process(es); CPU {r['cpu']['ticks']} ticks in {cfg['cpu_s']} s; "
          f"ssh starts in the window {r['cpu']['starts']}; answering after it {len(ok)}/{n}")


def fleet_outage(cfg, r, fl, sshd, prog):
    """sshd (listener and sessions) killed for outage_s, then back: how the tunnels return."""
    n, giveup = cfg["tunnels"], cfg["giveup"]
    log1 = sshd.logf
    r["sshd_start"] = sshd_counts(log1)
    r["sshd_start"]["ssh_cut"] = fl.cut_between([0] * len(fl.errs))
    sessions = len(sshd.sessions())
    sizes_kill = fl.log_sizes()
    t_kill = time.monotonic()
    killed = sshd.kill()
    time.sleep(2)
    ok, _ = B.check_ports(fl.tun, time.monotonic() + 0.7, interval=10)
    r["outage"] = {"outage_s": cfg["outage_s"], "killed": killed, "sessions_before": sessions,
                   "answering_2s_into": len(ok)}
    B.log(f"{prog}: sshd killed ({killed} processes); {len(ok)}/{n} tunnels answer 2 s later")
    time.sleep(max(0.0, t_kill + cfg["outage_s"] - time.monotonic()))
    sizes_ret, errs_ret = fl.log_sizes(), fl.err_sizes()
    r["outage"]["ssh_running_at_return"] = len(fl.ssh_pids())
    t_ret = sshd.start()
    log2 = sshd.logf
    ok, tries = B.check_ports(fl.tun, t_ret + giveup, interval=0.1, timeout=0.5)
    t_done = time.monotonic()
    sizes_done, errs_done = fl.log_sizes(), fl.err_sizes()
    bs = back_stats(ok, fl.tun, t_ret)
    r["outage"].update(bs, tries=tries, giveup_s=giveup,
                       starts_during=fl.starts_between(sizes_kill, sizes_ret),
                       starts_to_back=fl.starts_between(sizes_ret, sizes_done),
                       ssh_cut_to_back=fl.cut_between(errs_ret, errs_done))
    if fl.prog == "ours":
        r["outage"]["log_to_back"] = log_summary("".join(texts(fl.logs, sizes_ret, sizes_done)))
    off_done = size(log2)
    time.sleep(3)  # sshd's last lines of the episode
    r["refusals"] = sshd_counts(log2)
    r["refusals_to_back"] = sshd_counts(log2, 0, off_done)
    r["outage"]["alive_after"] = fl.alive()
    r["outage"]["took_s"] = round(t_done - t_ret, 2)
    B.log(f"{prog}: sshd back -> {bs['back']}/{n} tunnels answer, "
          + (f"all within {bs['all_back_s']:.2f} s" if bs["all_back_s"] is not None
             else f"not all within {giveup:.0f} s")
          + f"; sshd refused {r['refusals']['dropped']} handshakes "
          f"(throttling began {r['refusals']['throttling_began']}x)")


FLOOR_WINDOW = 8  # ours' handshake window (src/core/handshakes.rs, MOST)


def busy_cpu_s():
    """CPU seconds the whole machine has been busy (every CPU; /proc/stat, not idle/iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def floor_logins(cfg, at_once):
    """N plain `ssh -N` logins, no supervisor, at most `at_once` in flight (from exec until its
    -L socket is bound: past authentication); None: all at once with sshd's MaxStartups raised
    so that none is dropped. Seconds until all are logged in, the machine's CPU meanwhile."""
    n = cfg["tunnels"]
    d = os.path.join(B.WORK, f"fleet-floor-{at_once or 'all'}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    port = B.free_block(1, lo=10000, hi=ephemeral_low())
    tail = "LogLevel VERBOSE\n" + ("" if at_once else "MaxStartups 300:30:400\n")
    sshd = B.ListenerSshd("127.0.0.1", port, d, "floor", tail)
    socks = [os.path.join(d, f"l{i}.sock") for i in range(n)]
    procs, r = [], {"at_once": at_once, "tunnels": n}
    try:
        sshd.start()
        argv = lambda i: [SSH_BIN, "-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),  # noqa: E731
                          "-p", str(port), "-o", f"KexAlgorithms={KEX}", "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                          "-N", "-L", f"{socks[i]}:127.0.0.1:9", "root@127.0.0.1"]
        limit = at_once or n
        c0, t0 = busy_cpu_s(), time.monotonic()
        up = failed = 0
        while up + failed < n and time.monotonic() < t0 + cfg["giveup"]:
            up = sum(1 for x in socks if os.path.exists(x))
            failed = sum(1 for i, p in enumerate(procs) if p.poll() is not None and not os.path.exists(socks[i]))
            while len(procs) < n and len(procs) - up - failed < limit:
                procs.append(subprocess.Popen(argv(len(procs)), stdin=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            time.sleep(0.005)
        r.update(logged_in=up, failed=failed, all_s=round(time.monotonic() - t0, 3) if up == n else None,
                 busy_cpu_s=round(busy_cpu_s() - c0, 2))
        r["dropped"] = sshd_counts(sshd.logf)["dropped"]
    except Exception as e:  # noqa: BLE001
        r["error"] = f"{type(e).__name__}: {e}"
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        sshd.kill()
    what = f"{at_once} at once" if at_once else "all at once"
    B.log(f"floor, plain ssh, {what}: {r.get('logged_in')}/{n} logged in"
          + (f" after {r['all_s']:.2f} s" if r.get("all_s") is not None else "")
          + f"; machine busy {r.get('busy_cpu_s')} CPU-s; sshd dropped {r.get('dropped')}")
    return r


def save_status(fl, d):
    """Ours: `autossh status` at the end, kept beside the logs."""
    try:
        st = subprocess.run([PROGS["ours"], "status", "--control-socket", fl.ctl],
                            capture_output=True, timeout=5, text=True)
        with open(os.path.join(d, "ours-status.txt"), "w") as f:
            f.write(st.stdout + st.stderr)
    except (OSError, subprocess.TimeoutExpired):
        pass


def phase(cfg, mode, prog):
    """One program's whole phase with monitors of one mode; returns its result record."""
    d = os.path.join(B.WORK, f"fleet-{mode}-{prog}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = {"mode": mode, "prog": prog, "tunnels": cfg["tunnels"]}
    fl = Fleet(cfg, mode, prog, d)
    prog = f"{mode}/{prog}"  # in the messages
    sshd = B.ListenerSshd("127.0.0.1", fl.sshd_port, d, "fleet", "LogLevel VERBOSE\n")
    svcs = []
    try:
        sshd.start()
        start_services(fl, mode, svcs)
        fleet_start(cfg, r, fl, prog, d)
        fleet_healthy(cfg, r, fl, prog)
        fleet_outage(cfg, r, fl, sshd, prog)
        if fl.prog == "ours":
            save_status(fl, d)
    except Exception as e:  # noqa: BLE001  (the record says what went wrong; the run goes on)
        r["error"] = f"{type(e).__name__}: {e}"
        B.log(f"{prog}: ERROR {r['error']}")
    finally:
        fl.stop()
        sshd.kill()
        for p in svcs:
            B.stop(p, grace=0.5)
        save_logs(f"{mode}-{fl.prog}", d, fl, sshd)
    return r


def save_logs(name, d, fl, sshd):
    dest = os.path.join(LOGDIR, name)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(d):
        src = os.path.join(d, f)
        if os.path.isfile(src) and not f.endswith(".sock"):
            shutil.copy2(src, dest)
    if fl.prog == "1.4g" and os.path.isdir(os.path.join(d, "1.4g")):
        shutil.copytree(os.path.join(d, "1.4g"), os.path.join(dest, "tunnels"))
    for i, lf in enumerate(sshd.logs):
        if os.path.exists(lf):
            shutil.copy2(lf, os.path.join(dest, f"sshd-{i + 1}.log"))
    shutil.copy2(sshd.cfg, os.path.join(dest, "sshd_config"))


def run(args):
    if os.geteuid() != 0:
        B.die("run as root (sshd)")
    cfg = settings()
    if "1.4g" in cfg["progs"] and not os.path.exists(B.THEIRS):
        B.log("installing Debian's autossh (apt-get install -y autossh)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "autossh"], check=False,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    for p in cfg["progs"]:
        if not os.path.exists(PROGS[p]):
            B.die(f"missing: {PROGS[p]}")
    for tool in ("/usr/sbin/sshd", "/usr/bin/ssh"):
        if not os.path.exists(tool):
            B.die(f"missing: {tool}")
    meta = dict(cfg, ours=PROGS["ours"], theirs=B.THEIRS)
    if "ours" in cfg["progs"]:
        # a copy: a rebuild of target/release during the run does not change what is measured
        os.makedirs(os.path.join(B.WORK, "bin"), exist_ok=True)
        copy = os.path.join(B.WORK, "bin", "autossh-fleet")
        shutil.copy2(PROGS["ours"], copy)
        PROGS["ours"] = copy
    B.make_keys()
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR, exist_ok=True)
    B.log(f"{cfg['tunnels']} tunnels, monitors {' '.join(cfg['monitors'])}, POLL={POLL}, outage "
          f"{cfg['outage_s']} s, CPU window {cfg['cpu_s']} s, give-up {cfg['giveup']:.0f} s; "
          f"programs one after the other: {' '.join(cfg['progs'])}" + ("; QUICK" if cfg["quick"] else ""))
    results = []
    t_start = time.monotonic()
    try:
        meta["floor"] = [floor_logins(cfg, FLOOR_WINDOW), floor_logins(cfg, None)]
        B.write_json(args.out, {"meta": meta, "results": results})
        for mode in cfg["monitors"]:
            for prog in cfg["progs"]:
                if results:
                    time.sleep(3)
                results.append(phase(cfg, mode, prog))
                B.write_json(args.out, {"meta": meta, "results": results})
    finally:
        meta["duration_s"] = round(time.monotonic() - t_start)
        B.write_json(args.out, {"meta": meta, "results": results})
        B.log(f"fleet benchmark done in {meta['duration_s']} s")


def no_worker(_spec):
    raise SystemExit("fleet_bench.py has no worker")


# ---------------------------------------------------------------------------------------------
# report

def kb(v):
    return "n/a" if v is None else f"{v} kB ({v / 1024:.1f} MiB)"


def secs(v, giveup):
    return f"> {giveup:.0f}" if v is None else f"{v:.2f}"


def get(r, *path):
    """r[path[0]][path[1]]..., None where missing (or when the run failed before it)."""
    for k in path:
        r = r.get(k) if isinstance(r, dict) else None
        if r is None:
            return None
    return r


def mode_section(mode, o, t, meta, goals, notes):
    """The table of one monitor mode (ours o, 1.4g t: result records or None); adds goals/notes."""
    n, giveup = meta.get("tunnels", "?"), meta.get("giveup", 180)
    cpu_s, outage = meta.get("cpu_s", 60), meta.get("outage_s", 30)
    rows = []

    def row(what, f, goal="", rat=""):
        rows.append([what] + ["not run" if r is None else f(r) for r in (o, t)] + [rat, goal])

    def num(*path):
        return lambda r: "n/a" if get(r, *path) is None else str(get(r, *path))

    def pair(a, b, sep=" / "):
        return lambda r: f"{num(*a)(r)}{sep}{num(*b)(r)}"

    row("supervisor processes", num("supervisors"))
    so, st = get(o, "start", "all_back_s"), get(t, "start", "all_back_s")
    row("start → every tunnel answers, s", lambda r: secs(get(r, "start", "all_back_s"), giveup),
        "≤ 1.4g", ratio(so, st) if so is not None and st is not None else "")
    row("connections refused by sshd from the start to the outage / ssh cut before its banner",
        pair(("sshd_start", "dropped"), ("sshd_start", "ssh_cut")))
    ro, rt = get(o, "mem", "rss_kb"), get(t, "mem", "rss_kb")
    row(f"VmRSS of the supervisor(s), sum (after the {cpu_s} s window)", lambda r: kb(get(r, "mem", "rss_kb")),
        "≤ 6 MiB", ratio(ro, rt))
    row("PSS of the supervisor(s), sum", lambda r: kb(get(r, "mem", "pss_kb")), "",
        ratio(get(o, "mem", "pss_kb"), get(t, "mem", "pss_kb")))
    row("VmHWM of the supervisor(s), sum", lambda r: kb(get(r, "mem", "hwm_kb")))
    row("largest single supervisor VmRSS", lambda r: kb(get(r, "mem", "rss_kb_max_one")))
    row("ssh clients: count, VmRSS sum (not counted above)",
        lambda r: f"{get(r, 'mem', 'ssh_procs')}, {kb(get(r, 'mem', 'ssh_rss_kb'))}")
    co, ct = get(o, "cpu", "ticks"), get(t, "cpu", "ticks")
    mo, mt = get(o, "cpu", "ms"), get(t, "cpu", "ms")
    row(f"CPU of the supervisor(s) in {cpu_s} s healthy, ticks (utime+stime)", num("cpu", "ticks"),
        "≤ 1.4g", ratio(co, ct))
    row("  same, ms (schedstat, exact)", num("cpu", "ms"), "≤ 1.4g", ratio(mo, mt))
    row("  ssh starts in the window / ssh processes replaced", pair(("cpu", "starts"), ("cpu", "ssh_replaced")))
    row("  tunnels answering right after the window", lambda r: f"{num('cpu', 'answering_after')(r)}/{n}")
    row(f"outage {outage} s: tunnels answering 2 s into it",
        lambda r: f"{num('outage', 'answering_2s_into')(r)}/{n}", "0")
    bo, bt = get(o, "outage", "all_back_s"), get(t, "outage", "all_back_s")
    row("sshd listening again → every tunnel answers, s", lambda r: secs(get(r, "outage", "all_back_s"), giveup),
        f"≤ {BACK_GOAL_S:g}", ratio(bo, bt) if bo is not None and bt is not None else "")
    floor8 = next((f.get("all_s") for f in meta.get("floor") or [] if f.get("at_once")), None)
    if floor8:
        row("  the same over the machine's floor (8 logins at a time, no supervisor: "
            f"{floor8:.2f} s)", lambda r: "n/a" if get(r, "outage", "all_back_s") is None
            else f"{get(r, 'outage', 'all_back_s') / floor8:.2f}")
    row("  tunnels back: first / median / 90 %, s", lambda r: " / ".join(
        secs(get(r, "outage", k), giveup) for k in ("first_s", "median_s", "p90_s")))
    def within(r):
        ts = get(r, "outage", "times_s")
        return "n/a" if ts is None else str(sum(1 for x in ts if x <= BACK_GOAL_S))

    row(f"  tunnels answering within {BACK_GOAL_S:g} s · within the give-up",
        lambda r: f"{within(r)}/{n} · {num('outage', 'back')(r)}/{n}")
    row("handshakes refused by sshd after its return (\"drop connection ... past MaxStartups\")",
        num("refusals", "dropped"), "0")
    row("  ssh clients cut before the banner (ssh's \"kex_exchange_identification\" lines), to all back",
        num("outage", "ssh_cut_to_back"))
    row("  \"beginning MaxStartups throttling\" lines", num("refusals", "throttling_began"))
    row("  TCP connections / logins at sshd after its return", pair(("refusals", "connections"), ("refusals", "logins")))
    row("  ssh starts during the outage / from the return to all back",
        pair(("outage", "starts_during"), ("outage", "starts_to_back")))

    if o is not None and "error" not in o:
        goals.append((f"{mode}: memory: ours' VmRSS ≤ 6 MiB for {n} tunnels", kb(ro),
                      ro is not None and ro <= RSS_GOAL_KB))
        # Not a goal on ticks: each of 1.4g's processes rounds its few ms down to 0 ticks, so
        # their sum is no measure of what they use (the row is in the table for reference).
        goals.append((f"{mode}: CPU while healthy: ours ≤ 1.4g's, exact (schedstat)", f"{mo} vs {mt} ms",
                      mo is not None and mt is not None and mo <= mt))
        goals.append((f"{mode}: after a {outage} s outage every tunnel of ours answers within "
                      f"{BACK_GOAL_S:g} s of sshd's return", secs(bo, giveup) + " s",
                      bo is not None and bo <= BACK_GOAL_S))
        dr = get(o, "refusals", "dropped")
        goals.append((f"{mode}: handshakes sshd refused after its return: 0 for ours", str(dr), dr == 0))
        goals.append((f"{mode}: from cold every tunnel of ours answers no later than 1.4g's",
                      f"{secs(so, giveup)} vs {secs(st, giveup)} s",
                      so is not None and st is not None and so <= st))
    for r in (o, t):
        if r is None:
            continue
        tag = f"{mode}/{r['prog']}"
        if "error" in r:
            notes.append(f"{tag}: {r['error']}")
        if get(r, "outage", "answering_2s_into"):
            notes.append(f"{tag}: {r['outage']['answering_2s_into']} tunnels still answered 2 s "
                         "into the outage (did the kill not cut them?)")
        alive = get(r, "outage", "alive_after")
        if alive is not None and alive < r.get("supervisors", 0):
            notes.append(f"{tag}: only {alive} of {r['supervisors']} supervisor processes still ran "
                         "after the recovery")
        dr, cut = get(r, "refusals_to_back", "dropped"), get(r, "outage", "ssh_cut_to_back")
        if r["prog"] == "ours" and dr and cut is not None and cut < dr:
            notes.append(f"{tag}: from sshd's return until every tunnel answered sshd refused {dr} "
                         f"connections, {cut} of them an ssh's (ssh said \"kex_exchange_identification\"); "
                         "the others were ours' plain TCP reachability checks (each waiting tunnel "
                         f"connects every 125 ms while the server is down, so ~{n} connections land at once "
                         "on the new listener)")
        d = get(r, "refusals", "dropped_by_exit_lines")
        if d and d != get(r, "refusals", "dropped"):
            notes.append(f"{tag}: sshd's \"exited MaxStartups throttling\" lines count {d} dropped "
                         f"connections (against {r['refusals']['dropped']} drop lines)")
    header = ["measured", "ours (1 process)", f"1.4g ({n} processes)", "ours/1.4g", "goal (ours)"]
    mon = {"loop": "`-M MON_i` (loop)", "echo": "`-M MON_i:ECHO` (echo service on the server)",
           "zero": "`-M 0` (no monitor port; ours: its session probe, ServerAlive)"}[mode]
    title = f"{mode} monitors, {mon}: {n} tunnels to one sshd (default MaxStartups), AUTOSSH_POLL={meta.get('poll', POLL)}"
    return title, (header, rows)


def floor_section(meta):
    """The machine's floor (plain ssh logins, no supervisor) as markdown lines."""
    fl = meta.get("floor") or []
    if not fl:
        return []
    n = meta.get("tunnels", "?")
    head = ["plain ssh -N logins, no supervisor", "all logged in, s", "machine busy, CPU-s",
            "CPU per login, ms", "failed / dropped by sshd"]
    rows = []
    for r in fl:
        what = (f"at most {r['at_once']} in flight (ours' handshake window), default MaxStartups"
                if r.get("at_once") else f"all {n} at once, MaxStartups 300:30:400 (none dropped)")
        per = (f"{1000 * r['busy_cpu_s'] / r['tunnels']:.0f}" if r.get("busy_cpu_s") is not None
               and r.get("tunnels") else "n/a")
        rows.append([what, "n/a" if r.get("all_s") is None else f"{r['all_s']:.2f}",
                     str(r.get("busy_cpu_s", "n/a")), per,
                     f"{r.get('failed', 'n/a')} / {r.get('dropped', 'n/a')}" + (f" ({r['error']})" if r.get("error") else "")])
    from report import md_table  # noqa: PLC0415
    return (["## The machine's floor: the logins alone", "",
             f"{n} plain `ssh -N -L SOCK:127.0.0.1:9` (the phases' ssh options) to a fresh sshd, measured "
             "before the phases: seconds from the first exec until every ssh is past authentication "
             "(its -L socket bound), and the whole machine's CPU meanwhile (sshd and ssh: a login's "
             "CPU is theirs). No tunnel can answer before its ssh has logged in, so the first row is "
             "the least a supervisor that starts 8 handshakes at a time (ours) can take to bring "
             f"{n} tunnels back, the second the least with all at once (under sshd's default "
             "MaxStartups some of those would be dropped: 1.4g's way).", ""]
            + md_table(head, rows) + [""])


def report(args):
    from report import load, md_facts, md_table, print_results, write_md  # noqa: PLC0415

    data = load(args.json, dict)
    meta = data.get("meta", {})
    res = data.get("results", [])
    facts = load(args.facts, dict) if args.facts else {}
    n, giveup = meta.get("tunnels", "?"), meta.get("giveup", 180)
    goals, notes, sections = [], [], []
    for mode in meta.get("monitors", ["loop"]):
        by = {r["prog"]: r for r in res if r.get("mode") == mode}
        if by:
            sections.append(mode_section(mode, by.get("ours"), by.get("1.4g"), meta, goals, notes))
    print_results(sections, goals, notes)

    md = ["# Fleet benchmark results", "",
          f"Generated by `bash bench/run.sh fleet` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode (fewer tunnels, short windows): a smoke test, not the benchmark.**"
             if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "private_netns",
                           "ssh", "autossh_14g", "rustc", "commit"))
    md += [f"- ours: {meta.get('ours', '?')} (copied when the benchmark started); 1.4g: {meta.get('theirs', B.THEIRS)}",
           f"- benchmark run: {meta.get('duration_s', '?')} s; {n} tunnels; monitors: "
           f"{', '.join(meta.get('monitors', []))}; CPU window {meta.get('cpu_s', '?')} s; outage "
           f"{meta.get('outage_s', '?')} s; give-up {giveup:g} s",
           f"- **every ssh runs with `-o KexAlgorithms={meta.get('kex', KEX)}`** (both programs): "
           "OpenSSH's default key exchange costs about 0.33 s of CPU per handshake on 2 cores",
           "- the programs ran **one after the other**, each with a fresh sshd and fresh ports "
           "(order: " + ", ".join(f"{m}/{p}" for m in meta.get("monitors", []) for p in meta.get("progs", []))
           + ")", ""]
    md += floor_section(meta)
    for title, sec in sections:
        md += ["## " + title, ""] + md_table(*sec) + [""]
    if not sections:
        md += ["(no results)", ""]
    md += ["## Goals", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {g}: {v}" for g, v, ok in goals]
    md.append("")
    if notes:
        md += ["## Remarks and errors during the run", ""] + [f"- {x}" for x in notes] + [""]
    summ = [r for r in res if get(r, "outage", "log_to_back")]
    if summ:
        md += ["## What ours' log said from sshd's return until every tunnel answered", "",
               "Kinds of lines (time, pid, tunnel name and numbers as N), most frequent first; full "
               "logs in bench/logs/fleet/MODE-ours/ours.log.", ""]
        for r in summ:
            md += [f"{r['mode']}:", "", "```"] + [f"{c:5d}  {k}" for c, k in r["outage"]["log_to_back"]] + ["```", ""]
    md += ["## Seconds from sshd's return until each tunnel answered (sorted)", ""]
    for r in res:
        ts = get(r, "outage", "times_s")
        if ts:
            md += [f"- {r['mode']}/{r['prog']}: " + ", ".join(f"{x:.2f}" for x in ts)]
    md.append("")
    md.append(NOTES.format(n=n, poll=meta.get("poll", POLL), kex=meta.get("kex", KEX),
                           cpu=meta.get("cpu_s", 60), outage=meta.get("outage_s", 30), giveup=giveup,
                           settle=meta.get("settle_s", POLL)))
    write_md(args.md, md)


NOTES = """## Notes (fixed text, from fleet_bench.py)

- **Setup.** One private `sshd -D -e -f cfg` on 127.0.0.1 per program and mode (ed25519 host and
  client keys generated, `UsePAM no`, `StrictModes no`, key login for root only, `LogLevel
  VERBOSE`, `MaxStartups` not set: OpenSSH's default `10:30:100`, i.e. from 10 unauthenticated
  connections on, each new one is dropped with a probability rising from 30 % to 100 % at 100).
  The service behind every tunnel is `line_service.py` (echoes; in echo mode a second one is the
  monitors' echo service ECHO). The benchmark runs in a private network namespace (loopback only)
  when run.sh can make one.
- **Tunnel i**, both programs: `-F /dev/null -i KEY -p PORT -o KexAlgorithms={kex} -o
  StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -N
  -L TUN_i:127.0.0.1:SVC root@127.0.0.1`, monitor `-M MON_i` (loop; `MON_i` = base + 4 i),
  `-M MON_i:ECHO` (echo) or `-M 0` (zero: no monitor port; ours then adds ServerAlive options and
  watches the session with its session probe, 1.4g only waits for ssh to exit), environment `AUTOSSH_POLL={poll} AUTOSSH_GATETIME=0
  AUTOSSH_PATH=/usr/bin/ssh AUTOSSH_LOGFILE=... AUTOSSH_DEBUG=1` (the suite's common settings).
  Ours: one `autossh --tunnels FILE --control-socket PATH` whose file has one `[tunnel.tNN]` table
  per tunnel (`ssh = [...]`, `monitor = "..."`; bench/logs/fleet/MODE-ours/tunnels.toml); 1.4g:
  {n} processes of `/usr/lib/autossh/autossh -M ... ARGS`, started together.
- **Ports**: a phase's ports (sshd, services, tunnels, monitors) are one free block below the
  kernel's ephemeral range (net.ipv4.ip_local_port_range), so that no ssh's own connection to
  sshd (a random local port from that range) takes a tunnel's or monitor's port before its ssh
  binds it (in a smoke run with ports inside the range, one did: that tunnel's ssh then failed
  "bind: Address already in use" at every start until the give-up).
- **Memory**: VmRSS, VmHWM (/proc/PID/status) and PSS (/proc/PID/smaps_rollup) of the supervisor
  process(es) only, summed, read after the CPU window; the ssh clients are listed apart. 1.4g's
  processes share their libc pages, so their PSS sum is far below their RSS sum; ours is one
  process. The goal (6 MiB) is on VmRSS.
- **CPU**: utime+stime ticks (1 tick = 10 ms) from /proc/PID/stat and exact ns from
  /proc/PID/schedstat of the supervisor(s), over {cpu} s that start {settle} s after every tunnel
  first answered; no tunnel check runs during the window. A process's ticks are its exact time
  rounded down to ticks, so {n} processes that each use a few ms show 0 ticks: the schedstat row
  is the fair comparison.
- **Outage**: the sshd listener and every session process SIGKILLed together (every ssh loses its
  connection at once), {outage} s later a new sshd on the same port and config. *Back* counts from
  its "Server listening" line; every tunnel not yet back is tried every 100 ms (a new connection
  to its -L port, a line sent, the same line back within 0.5 s) until each has answered once;
  give-up {giveup:g} s (`> {giveup:g}`). *Refused handshakes* are the new sshd's own "drop
  connection #N from ... past MaxStartups" lines (logged at VERBOSE), read 3 s after the last
  tunnel came back (or the give-up); "beginning MaxStartups throttling" lines are counted apart.
  sshd drops any TCP connection past MaxStartups, an ssh's or a plain connect's (ours checks
  that the server answers with a TCP connect every 125 ms while it is down; sshd logs each as a
  "Connection from" and a "kex_exchange_identification: Connection closed by remote host"), so the
  client side is counted too: *ssh clients cut before the banner* are ssh's own
  "kex_exchange_identification: ..." lines (1.4g: its ssh's stderr files; ours: its log, where
  each ssh stderr line appears as "tNN: ssh: ...").
  *ssh starts* are "starting ssh (count N)" lines of the supervisors' logs. With
  `AUTOSSH_GATETIME=0` 1.4g restarts a failed ssh at once, which is why it hammers the dead port
  during the outage (its "ssh starts during the outage").
- **Loop mode on one host.** Client and server are the same host, so a loop monitor's `-R MON_i`
  on the server collides with the client's own `-L MON_i`. 1.4g's ssh then warns "remote port
  forwarding failed", its probe goes through `-L MON_i` to the server's 127.0.0.1:MON_i, which is
  that same `-L MON_i` again (an ssh forwarding loop), never comes back, and 1.4g restarts its ssh
  every poll + net timeout (15 s): with {n} tunnels that is a handshake storm that keeps the host
  busy and sshd throttling (1.4g's documented behaviour with a busy remote monitor port, measured
  as is; see results-notes.md). Its -L tunnels still work between restarts, which is what the
  checks measure, but its fleet is never "healthy". Ours moves its remote port (MON_i + 2) when
  ssh reports the collision. The echo-mode table has no such collision: there 1.4g's probes work.
- Logs: bench/logs/fleet/MODE-ours/ (autossh's log, the tunnels file, `autossh status` after the
  recovery, sshd-1.log before and sshd-2.log after the outage), bench/logs/fleet/MODE-1.4g/ (one
  log and one stderr per tunnel under tunnels/, the sshd logs).
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--out")
    ap.add_argument("--json")
    ap.add_argument("--facts")
    ap.add_argument("--md")
    args = ap.parse_args()
    if args.what == "report":
        return report(args)
    B.dispatch(args, no_worker, run)


if __name__ == "__main__":
    main()

"""Benchmarks 1 and 2: our autossh against autossh 1.4g on a real ssh tunnel.

  tunnel_bench.py freeze --repeat R --out FILE   # 1. recovery from a frozen server session
  tunnel_bench.py cost   --repeat R --out FILE   # 2. CPU and memory of the supervisor

Each program runs with AUTOSSH_POLL=4 (cost: 2) AUTOSSH_GATETIME=0 AUTOSSH_PATH=/usr/bin/ssh
AUTOSSH_LOGFILE=... AUTOSSH_DEBUG=1 and ssh -N -L TUNNEL:127.0.0.1:SERVICE against a private
sshd. In `freeze`, the four runs of a repetition (ours/1.4g x echo/loop mode) go in parallel,
each against its own sshd, so that freezing one server's sessions touches no other run.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time

import benchlib as B

LOGDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")
PROGS = {"ours": B.OURS, "1.4g": B.THEIRS}


class Run:
    """One autossh under test: ports, log, process."""

    def __init__(self, prog, mode, sshd, echo_port, service_port, poll, tag):
        self.prog, self.mode, self.sshd, self.tag = prog, mode, sshd, tag
        base = B.free_block(30)  # tunnel = base; monitor = base+10 (+ room for relocations)
        self.tunnel = base
        self.monitor = base + 10
        spec = f"{self.monitor}:{echo_port}" if mode == "echo" else str(self.monitor)
        self.logfile = os.path.join(B.WORK, f"{tag}.log")
        self.errfile = os.path.join(B.WORK, f"{tag}.stderr")
        for f in (self.logfile, self.errfile):
            if os.path.exists(f):
                os.remove(f)
        self.argv = [PROGS[prog], "-M", spec] + sshd.ssh_args(self.tunnel, service_port)
        self.env = B.autossh_env(self.logfile, poll)
        self.checker = B.Checker(self.tunnel)
        self.proc = None

    def start(self):
        self.proc = B.start(self.argv, env=self.env, stdout=self.errfile, stderr=self.errfile)

    def wait_up(self, timeout=20.0):
        """Tunnel answers (and, for ours, the log says "tunnel up")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"{self.prog} exited with {self.proc.returncode}"
            log_ok = self.prog != "ours" or "tunnel up" in B.read_log(self.logfile)
            if log_ok and self.checker.once():
                return None
            time.sleep(0.1)
        return "tunnel did not come up within %.0f s" % timeout

    def ssh_children(self):
        return set(B.children(self.proc.pid))

    def log_text(self):
        return B.read_log(self.logfile)

    def measure(self, res, body):
        """Starts the program, waits for its tunnel, then body() fills res; whatever fails
        (start, tunnel, body) ends up in res["error"]. Returns res, the run finished."""
        try:
            self.start()
            err = self.wait_up()
            if err:
                res["error"] = err
                return res
            body()
            return res
        except Exception as e:  # noqa: BLE001 - reported in the results
            res["error"] = f"{type(e).__name__}: {e}"
            return res
        finally:
            self.finish()

    def finish(self, kill_sessions=True):
        B.stop(self.proc)
        if kill_sessions:  # not while other runs still use this sshd
            self.sshd.kill_sessions()
        os.makedirs(LOGDIR, exist_ok=True)
        for src in (self.logfile, self.errfile):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(LOGDIR, os.path.basename(src)))


# ---------------------------------------------------------------------------------------------
# 1. freeze recovery

def freeze_one(prog, mode, sshd, echo_port, service_port, delay, rep):
    tag = f"freeze-{prog}-{mode}-r{rep}"
    run = Run(prog, mode, sshd, echo_port, service_port, 4, tag)
    res = {"bench": "freeze", "prog": prog, "mode": mode, "repeat": rep, "delay_s": round(delay, 3),
           "tag": tag}

    def measure():
        time.sleep(delay)
        before = run.ssh_children()
        frozen = sshd.sessions()
        B.freeze(frozen)
        t0 = time.monotonic()
        res["frozen_pids"] = [(p, B.cmdline(p)) for p in frozen]
        new_ssh_at = []

        def track(t):
            if not new_ssh_at and run.proc.poll() is None:
                if run.ssh_children() - before:
                    new_ssh_at.append(t)

        checks = run.checker.run(0.05, t0 + 40, stop_on_success=True, on_tick=track)
        ok = [c for c in checks if c[2]]
        if not ok:
            res["error"] = "tunnel did not recover within 40 s"
            res["recover_s"] = None
            return
        res["recover_s"] = round(ok[0][1] - t0, 3)
        res["new_ssh_s"] = round(new_ssh_at[0] - t0, 3) if new_ssh_at else None
        offset = len(run.log_text())
        # keep the old sessions frozen (they hold the remote port) and watch for 25 s
        t1 = time.monotonic()
        watch = run.checker.run(0.1, t1 + 25)
        text = run.log_text()[offset:]
        res["restarts_after"] = B.starts(text)
        failed = [c for c in watch if not c[2]]
        res["outage_s"] = round(len(failed) * 0.1, 1)
        windows, prev = 0, True
        for c in watch:
            if not c[2] and prev:
                windows += 1
            prev = c[2]
        res["outage_windows"] = windows
        res["checks"] = len(watch)
        res["alive"] = run.proc.poll() is None

    return run.measure(res, measure)


def log_run(r, describe):
    B.log_result(r, f"  {r['prog']:>4} {r['mode']}: ", describe)


def freeze_report(r):
    log_run(r, lambda r: f"recovered in {r['recover_s']:.2f} s "
                         f"(new ssh after {r['new_ssh_s']} s); then {r['restarts_after']} restarts, "
                         f"{r['outage_s']:.1f} s outage in 25 s")


def bench_freeze(args):
    rng = random.Random(args.seed)
    results = []
    for rep in range(1, args.repeat + 1):
        delays = {m: rng.uniform(0, 4) for m in ("echo", "loop")}
        B.log(f"freeze: repetition {rep}/{args.repeat}, freeze delay echo {delays['echo']:.2f} s, "
              f"loop {delays['loop']:.2f} s (same for both programs); 4 runs in parallel, ~40 s")
        jobs = [(prog, mode, ["--delay", str(delays[mode])])
                for prog in ("ours", "1.4g") for mode in ("echo", "loop")]
        for r in run_workers(args, "freeze", rep, jobs, limit=100):
            results.append(r)
            freeze_report(r)
        B.write_json(args.out, results)
    return results


def run_workers(args, what, rep, jobs, limit):
    """Runs one worker process per (prog, mode), in parallel, each in a network namespace of its
    own (unless BENCH_NETNS=0): its own sshd, echo service and service, so that nothing one run
    does (1.4g's loop-mode forwarding storm, frozen sessions, piles of sockets) reaches another."""
    netns = os.environ.get("BENCH_NETNS", "1") != "0"
    procs = []
    for prog, mode, extra in jobs:
        out = os.path.join(B.WORK, f"worker-{what}-{prog}-{mode}-r{rep}.json")
        if os.path.exists(out):
            os.remove(out)
        argv = [sys.executable, os.path.abspath(__file__), "worker", what, "--prog", prog,
                "--mode", mode, "--rep", str(rep), "--out", out] + extra
        if netns:
            argv = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "netns"] + argv
        p = B.start(argv, stdout=os.path.join(B.WORK, f"worker-{what}.log"),
                    stderr=os.path.join(B.WORK, f"worker-{what}.log"))
        procs.append((prog, mode, out, p))
    deadline = time.monotonic() + limit
    results = []
    for prog, mode, out, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - TimeoutExpired
            pass
        B.stop(p)
        try:
            with open(out) as f:
                results.append(json.load(f))
        except (OSError, ValueError):
            results.append({"bench": what, "prog": prog, "mode": mode, "repeat": rep,
                            "error": f"worker gave no result (exit {p.returncode}); "
                                     f"see worker-{what}.log"})
    return results


# ---------------------------------------------------------------------------------------------
# 2. supervisor cost

def tcp_rows():
    """Sockets in this network namespace (rows of /proc/net/tcp and tcp6)."""
    n = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                n += sum(1 for _ in fh) - 1
        except OSError:
            pass
    return n


def cost_one(prog, mode, sshd, echo_port, service_port, rep, seconds, variant):
    tag = f"cost-{variant}-{prog}-{mode}-r{rep}"
    run = Run(prog, mode, sshd, echo_port, service_port, 2, tag)
    res = {"bench": "cost", "variant": variant, "prog": prog, "mode": mode, "repeat": rep,
           "tag": tag, "seconds": seconds}

    def measure():
        time.sleep(0.5)
        offset = len(run.log_text())
        res["tcp_rows"] = tcp_rows()
        c0, n0, t0 = B.cpu_ticks(run.proc.pid), B.cpu_ns(run.proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, n1, t1 = B.cpu_ticks(run.proc.pid), B.cpu_ns(run.proc.pid), time.monotonic()
        mem = B.mem_kb(run.proc.pid)
        res["ticks"] = c1 - c0
        res["cpu_ms"] = round((n1 - n0) / 1e6, 2) if n0 is not None and n1 is not None else None
        res["wall_s"] = round(t1 - t0, 2)
        res["rss_kb"] = mem.get("VmRSS")
        res["hwm_kb"] = mem.get("VmHWM")
        res["restarts"] = B.starts(run.log_text()[offset:])

    return run.measure(res, measure)


def bench_cost(args):
    results = []
    plan = [("quiet", rep) for rep in range(1, args.repeat + 1)]
    if args.busy:
        plan.append(("busy", 1))
    for variant, rep in plan:
        B.log(f"cost ({variant} host): repetition {rep}: 4 runs in parallel, {args.seconds} s measured")
        extra = ["--seconds", str(args.seconds), "--variant", variant]
        if variant == "busy":
            extra += ["--busy", str(args.busy), "--bin", args.bin]
        jobs = [(prog, mode, extra) for prog in ("ours", "1.4g") for mode in ("loop", "echo")]
        for r in run_workers(args, "cost", rep, jobs, limit=args.seconds + 40):
            results.append(r)
            log_run(r, lambda r: f"{r['ticks']} ticks ({r['cpu_ms']} ms on CPU), "
                                 f"RSS {r['rss_kb']} kB, HWM {r['hwm_kb']} kB, {r['restarts']} restarts, "
                                 f"{r['tcp_rows']} TCP sockets in its namespace")
        B.write_json(args.out, results)
    return results


def worker(args):
    """One run, in whatever network namespace it was started in."""
    sshd = B.Sshd(f"{args.what}-{args.prog}-{args.mode}-r{args.rep}")
    echo_port, service_port = B.free_block(1), B.free_block(1)
    B.start([B.ECHO, "--listen", f"127.0.0.1:{echo_port}", "-q"],
            stderr=os.path.join(B.WORK, "echo-service.log"))
    B.start([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "line_service.py"), str(service_port)],
            stderr=os.path.join(B.WORK, "line-service.log"))
    if not (B.wait_port(echo_port) and B.wait_port(service_port)):
        B.die("echo service or line service did not start")
    if args.what == "freeze":
        r = freeze_one(args.prog, args.mode, sshd, echo_port, service_port, args.delay, args.rep)
    else:
        if args.busy:
            # idle loopback connections held open during the measurement (2 sockets each):
            # a host that serves many connections
            port = B.free_block(1)
            B.start([os.path.join(args.bin, "minimal_echo"), str(port)])
            if not B.wait_port(port):
                B.die("minimal_echo did not start")
            B.start([os.path.join(args.bin, "loadgen"), "--port", str(port), "--clients",
                     str(args.busy), "--rate", "0.0001", "--duration", str(args.seconds + 60),
                     "--drain", "0"])
            time.sleep(2)
        r = cost_one(args.prog, args.mode, sshd, echo_port, service_port, args.rep, args.seconds,
                     args.variant)
    B.write_json(args.out, r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["freeze", "cost", "worker"])
    ap.add_argument("kind", nargs="?", choices=["freeze", "cost"], help="worker: which benchmark")
    ap.add_argument("--prog", choices=list(PROGS))
    ap.add_argument("--mode", choices=["echo", "loop"])
    ap.add_argument("--rep", type=int, default=1)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--variant", default="quiet")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", help="directory with loadgen and minimal_echo (for --busy)")
    ap.add_argument("--busy", type=int, default=0,
                    help="cost: one more repetition with this many idle TCP connections open")
    args = ap.parse_args()
    B.install_signal_handlers()
    os.makedirs(B.WORK, exist_ok=True)
    B.make_keys()
    try:
        if args.what == "freeze":
            bench_freeze(args)
        elif args.what == "cost":
            bench_cost(args)
        else:
            args.what = args.kind
            worker(args)
    finally:
        B.cleanup_all()


if __name__ == "__main__":
    main()

"""HTTP endpoint benchmark (issue 19): what AUTOSSH_HTTP costs an idle supervisor of many
tunnels, and how fast /healthz follows a tunnel.

  http_bench.py run --out FILE        the benchmark (`bash bench/run.sh http`)
  http_bench.py report --json FILE --facts FACTS --md bench/results-http.md

One `autossh --tunnels FILE` with N tunnels (loop monitors, AUTOSSH_POLL=10, every ssh with
-o KexAlgorithms=curve25519-sha256, as in fleet_bench.py) to one private sshd on 127.0.0.1, with
AUTOSSH_HTTP=127.0.0.1:PORT. Once every tunnel answers:

  quiet     CPU_S seconds without any request to the endpoint: the supervisor's CPU
            (/proc/PID/schedstat, exact ns), and its tunnels' probes (the debug log's
            "probe N ok, rtt X ms" lines of the window: how many, their round trips).
  scraped   CPU_S seconds with RATE GET /metrics a second (open loop: request i starts at
            t0 + i / RATE, each on a new connection, read to its end): the same figures, and
            each scrape's status and latency.
  healthz   for K tunnels in turn: its ssh killed (SIGUSR1: "killed by a signal", a restart),
            /healthz?tunnel=NAME asked every 10 ms; seconds from the kill to the first 503, and
            from the first request through its -L port answered again (a try every 20 ms) to
            the first 200.

Environment: HTTP_BENCH_QUICK=1 (20 tunnels, 15 s windows, 2 healthz rounds: a smoke test),
HTTP_BENCH_TUNNELS (100), HTTP_BENCH_RATE (100 scrapes/s), HTTP_BENCH_OURS (our binary).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import benchlib as B
import fleet_bench as F

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "http")
OURS = os.environ.get("HTTP_BENCH_OURS") or B.OURS
CPU_GOAL = 0.10          # added CPU, as a share of one core
SWITCH_GOAL_S = 1.0      # /healthz 503 after a tunnel is seen down, 200 after it is back
PROBE_RE = re.compile(r"^\S+ (\d\d):(\d\d):(\d\d) autossh\[\d+\]: (t\d+): probe \d+ ok, rtt (\d+) ms")


def settings():
    quick = os.environ.get("HTTP_BENCH_QUICK", "") not in ("", "0")
    n = int(os.environ.get("HTTP_BENCH_TUNNELS") or (20 if quick else 100))
    rate = float(os.environ.get("HTTP_BENCH_RATE") or 100)
    return {"quick": quick, "tunnels": n, "rate": rate, "poll": F.POLL, "kex": F.KEX,
            "cpu_s": 15 if quick else 60, "settle_s": 5 if quick else F.POLL,
            "healthz_rounds": 2 if quick else 5, "giveup": 60 if quick else 180,
            "monitors": ["loop"], "progs": ["ours"]}


class HttpFleet(F.Fleet):
    """Ours, with the endpoint on `http_port`."""

    def __init__(self, cfg, d):
        super().__init__(cfg, "loop", "ours", d)
        taken = {self.sshd_port, self.svc, self.echo, *self.tun, *(m + k for m in self.mon for k in range(4))}
        self.http_port = next(p for p in iter(lambda: B.free_block(1, lo=10000, hi=F.ephemeral_low()), None)
                              if p not in taken)

    def start(self):
        toml = os.path.join(self.d, "tunnels.toml")
        with open(toml, "w") as f:
            for i, name in enumerate(self.names):
                args = ", ".join(f'"{a}"' for a in self.ssh_args(i))
                f.write(f"[tunnel.{name}]\nssh = [{args}]\nmonitor = \"{self.monitor(i)}\"\n\n")
        log = os.path.join(self.d, "ours.log")
        self.logs = self.errs = [log]
        self.ctl = os.path.join(self.d, "control.sock")
        env = B.autossh_env(log, F.POLL)
        env["AUTOSSH_HTTP"] = f"127.0.0.1:{self.http_port}"
        self.procs = [B.start([OURS, "--tunnels", toml, "--control-socket", self.ctl], env=env,
                              stderr=os.path.join(self.d, "ours.stderr"))]


def get(port, target, timeout=2.0):
    """(status code, body) of GET target; (None, error) without an answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode(errors="replace")
    except (OSError, ValueError, IndexError) as e:
        return None, str(e)


def scraper(port, rate, seconds, out):
    """Open-loop GET /metrics at `rate` a second for `seconds`; appends (status, latency s)."""
    t0 = time.monotonic()
    i = 0
    while True:
        due = t0 + i / rate
        if due - t0 >= seconds:
            return
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        start = time.monotonic()
        code, _ = get(port, "/metrics")
        out.append((code, time.monotonic() - start))
        i += 1


def probes(log, since, until):
    """The probe round trips (ms) logged between two wall-clock times (the log has seconds)."""
    out = {}
    lo, hi = time.localtime(since), time.localtime(until)
    day = lambda t: t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec  # noqa: E731
    a, b = day(lo), day(hi)
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = PROBE_RE.match(line)
                if not m:
                    continue
                s = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
                if a < s < b:  # whole seconds strictly inside the window
                    out.setdefault(m[4], []).append(int(m[5]))
    except OSError:
        pass
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None


def window(fl, cfg, scrape):
    """One CPU window, scraped or not: the supervisor's CPU and its tunnels' probes."""
    lat = []
    th = None
    if scrape:
        th = threading.Thread(target=scraper, args=(fl.http_port, cfg["rate"], cfg["cpu_s"], lat))
    _, ns0 = fl.cpu()
    w0, wall0 = time.monotonic(), time.time()
    sizes0 = fl.log_sizes()
    if th:
        th.start()
        th.join()
    else:
        time.sleep(cfg["cpu_s"])
    _, ns1 = fl.cpu()
    w1, wall1 = time.monotonic(), time.time()
    p = probes(fl.logs[0], wall0, wall1)
    rtts = [r for v in p.values() for r in v]
    r = {"cpu_ms": round((ns1 - ns0) / 1e6, 1), "window_s": round(w1 - w0, 2),
         "cpu_share": round((ns1 - ns0) / 1e9 / (w1 - w0), 5),
         "starts": fl.starts_between(sizes0), "probes": len(rtts),
         "tunnels_probed": len(p), "rtt_p50_ms": pct(rtts, 0.5), "rtt_p99_ms": pct(rtts, 0.99),
         "rtt_max_ms": max(rtts) if rtts else None}
    if scrape:
        ok = [t for c, t in lat if c == 200]
        r.update(scrapes=len(lat), scrapes_ok=len(ok), scrape_p50_ms=round(1000 * pct(ok, 0.5), 2) if ok else None,
                 scrape_p99_ms=round(1000 * pct(ok, 0.99), 2) if ok else None,
                 scrape_max_ms=round(1000 * max(ok), 2) if ok else None,
                 scrape_errors=sorted({str(c) for c, _ in lat if c != 200}))
    return r


def ssh_pid(fl, name):
    code, body = get(fl.http_port, "/status")
    if code != 200:
        return None
    for t in json.loads(body).get("tunnels", []):
        if t.get("name") == name:
            return t.get("ssh_pid")
    return None


def tunnel_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.settimeout(0.2)
            s.sendall(b"healthz-bench\n")
            return s.recv(64).startswith(b"healthz-bench")
    except OSError:
        return False


def healthz_round(fl, i):
    """One tunnel's ssh killed: seconds to the first 503, and from back to the first 200."""
    name, port = fl.names[i], fl.tun[i]
    pid = ssh_pid(fl, name)
    if not pid:
        return {"tunnel": name, "error": "no ssh pid"}
    target = f"/healthz?tunnel={name}"
    t_kill = time.monotonic()
    os.kill(pid, signal.SIGUSR1)
    r = {"tunnel": name, "to_503_s": None, "back_to_200_s": None}
    t503 = t_back = t200 = None
    last_try = 0.0
    while time.monotonic() - t_kill < 30:
        t = time.monotonic()
        code, _ = get(fl.http_port, target, timeout=1.0)
        if t503 is None and code == 503:
            t503 = t
        if t503 is not None and t_back is None and t - last_try >= 0.02:
            last_try = t
            if tunnel_answers(port):
                t_back = time.monotonic()
        if t503 is not None and t200 is None and code == 200:
            t200 = t
        if t_back is not None and t200 is not None:
            break
        time.sleep(0.01)
    if t503 is not None:
        r["to_503_s"] = round(t503 - t_kill, 3)
    if t_back is not None and t200 is not None:
        r["back_to_200_s"] = round(t200 - t_back, 3)
        r["kill_to_200_s"] = round(t200 - t_kill, 3)
    return r


def measure(cfg, fl, r):
    """Everything measured once the fleet answers (fills r)."""
    time.sleep(cfg["settle_s"])
    r["quiet"] = window(fl, cfg, scrape=False)
    B.log(f"quiet: {r['quiet']}")
    r["scraped"] = window(fl, cfg, scrape=True)
    B.log(f"scraped: {r['scraped']}")
    rounds = []
    for k in range(cfg["healthz_rounds"]):
        i = (k * 17 + 3) % len(fl.names)
        rounds.append(healthz_round(fl, i))
        B.log(f"healthz: {rounds[-1]}")
        time.sleep(2)
    r["healthz"] = rounds
    code, body = get(fl.http_port, "/metrics")
    r["metrics_bytes"] = len(body) if code == 200 else None


def phase(cfg):
    d = os.path.join(B.WORK, "http")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = {"tunnels": cfg["tunnels"]}
    fl = HttpFleet(cfg, d)
    sshd = B.ListenerSshd("127.0.0.1", fl.sshd_port, d, "http", "LogLevel VERBOSE\n")
    svcs = []
    try:
        sshd.start()
        svcs.append(B.start([sys.executable, os.path.join(HERE, "line_service.py"), str(fl.svc)]))
        if not B.wait_port(fl.svc, 5):
            raise RuntimeError("line_service did not start")
        t0 = time.monotonic()
        fl.start()
        ok, _ = B.check_ports(fl.tun, t0 + cfg["giveup"], interval=0.2, stop=lambda: fl.alive() == 0)
        r["start_all_back_s"] = F.back_stats(ok, fl.tun, t0)["all_back_s"]
        B.log(f"{len(ok)}/{len(fl.tun)} tunnels answer")
        if len(ok) < len(fl.tun):
            raise RuntimeError(f"only {len(ok)} of {len(fl.tun)} tunnels answer")
        measure(cfg, fl, r)
    except Exception as e:  # noqa: BLE001  (the record says what went wrong)
        r["error"] = f"{type(e).__name__}: {e}"
        B.log(f"ERROR {r['error']}")
    finally:
        fl.stop()
        sshd.kill()
        for p in svcs:
            B.stop(p, grace=0.5)
        shutil.rmtree(LOGDIR, ignore_errors=True)
        os.makedirs(LOGDIR, exist_ok=True)
        for f in os.listdir(d):
            if os.path.isfile(os.path.join(d, f)) and not f.endswith(".sock"):
                shutil.copy2(os.path.join(d, f), LOGDIR)
    return r


def run(args):
    global OURS  # noqa: PLW0603  (a copy: a rebuild during the run does not change what is measured)
    if os.geteuid() != 0:
        B.die("run as root (sshd)")
    cfg = settings()
    if not os.path.exists(OURS):
        B.die(f"missing: {OURS}")
    os.makedirs(os.path.join(B.WORK, "bin"), exist_ok=True)
    copy = os.path.join(B.WORK, "bin", "autossh-http")
    shutil.copy2(OURS, copy)
    meta_ours, OURS = OURS, copy
    B.make_keys()
    B.log(f"{cfg['tunnels']} tunnels, POLL={F.POLL}, windows {cfg['cpu_s']} s, {cfg['rate']:g} scrapes/s"
          + ("; QUICK" if cfg["quick"] else ""))
    t0 = time.monotonic()
    res = phase(cfg)
    meta = dict(cfg, ours=meta_ours, duration_s=round(time.monotonic() - t0))
    B.write_json(args.out, {"meta": meta, "results": res})


def side_by_side(q, s, rate):
    """The table: quiet and scraped windows, their ratio."""
    g = lambda r, k: None if r is None else r.get(k)  # noqa: E731
    rows = []

    def row(what, key, fmt=str, with_ratio=True):
        a, b = g(q, key), g(s, key)
        cell = lambda v: "n/a" if v is None else fmt(v)  # noqa: E731
        rows.append([what, cell(a), cell(b), F.ratio(b, a) if with_ratio else ""])

    row("supervisor CPU in the window, ms (schedstat)", "cpu_ms")
    row("  as a share of one core", "cpu_share", lambda v: f"{100 * v:.2f} %")
    row("window, s", "window_s", with_ratio=False)
    row("tunnel probes answered in the window", "probes")
    row("  tunnels whose probes were seen", "tunnels_probed", with_ratio=False)
    row("  probe round trip p50, ms", "rtt_p50_ms")
    row("  probe round trip p99, ms", "rtt_p99_ms")
    row("  probe round trip max, ms", "rtt_max_ms")
    row("ssh starts in the window", "starts", with_ratio=False)
    rows.append([f"GET /metrics (target {rate:g}/s): answered 200 / sent", "",
                 f"{g(s, 'scrapes_ok')} / {g(s, 'scrapes')}", ""])
    rows.append(["  scrape latency p50 / p99 / max, ms", "",
                 f"{g(s, 'scrape_p50_ms')} / {g(s, 'scrape_p99_ms')} / {g(s, 'scrape_max_ms')}", ""])
    return ["measured", "quiet (no request)", f"scraped ({rate:g} GET /metrics a second)",
            "scraped/quiet"], rows


def report(args):
    from report import load, md_facts, md_table, print_results, write_md  # noqa: PLC0415

    data = load(args.json, dict)
    meta, r = data.get("meta", {}), data.get("results", {})
    facts = load(args.facts, dict) if args.facts else {}
    q, s = r.get("quiet"), r.get("scraped")
    goals, notes = [], []
    sections = [("CPU and probes of an idle supervisor, quiet and scraped", side_by_side(q, s, meta.get("rate", 100)))]
    hz = r.get("healthz", [])
    hrows = [[h.get("tunnel"), h.get("to_503_s", "n/a"), h.get("back_to_200_s", "n/a"),
              h.get("kill_to_200_s", "n/a")] for h in hz]
    sections.append(("/healthz?tunnel=NAME after the tunnel's ssh is killed",
                     (["tunnel", "kill → first 503, s", "answers again → first 200, s", "kill → first 200, s"], hrows)))
    if q and s:
        added = s["cpu_share"] - q["cpu_share"]
        goals.append((f"scraping adds ≤ {100 * CPU_GOAL:.0f} % of one core to the idle supervisor",
                      f"{100 * added:+.2f} % of a core ({q['cpu_ms']} → {s['cpu_ms']} ms in {s['window_s']} s, "
                      f"×{F.ratio(s['cpu_ms'], q['cpu_ms'])})", added <= CPU_GOAL))
        same = s["starts"] == 0 and q["starts"] == 0 and s["probes"] >= q["probes"] - q["tunnels_probed"] // 10
        goals.append(("probes unchanged by scraping: no ssh start, as many probes, round trips alike",
                      f"{q['probes']} vs {s['probes']} probes, p99 {q['rtt_p99_ms']} vs {s['rtt_p99_ms']} ms, "
                      f"max {q['rtt_max_ms']} vs {s['rtt_max_ms']} ms",
                      same and (s["rtt_p99_ms"] or 0) <= max(2 * (q["rtt_p99_ms"] or 0), (q["rtt_p99_ms"] or 0) + 5)))
        goals.append(("every scrape answered 200", f"{s.get('scrapes_ok')} / {s.get('scrapes')}",
                      s.get("scrapes_ok") == s.get("scrapes")))
    if hz:
        w503 = [h.get("to_503_s") for h in hz]
        w200 = [h.get("back_to_200_s") for h in hz]
        goals.append((f"/healthz 503 within {SWITCH_GOAL_S:g} s of the kill", f"worst {max((x for x in w503 if x is not None), default=None)} s",
                      all(x is not None and x <= SWITCH_GOAL_S for x in w503)))
        goals.append((f"/healthz 200 within {SWITCH_GOAL_S:g} s of the tunnel answering again",
                      f"worst {max((x for x in w200 if x is not None), default=None)} s",
                      all(x is not None and x <= SWITCH_GOAL_S for x in w200)))
    if "error" in r:
        notes.append(r["error"])
    print_results(sections, goals, notes)
    md = ["# HTTP endpoint benchmark results", "",
          f"Generated by `bash bench/run.sh http` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode: a smoke test, not the benchmark.**" if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "private_netns",
                           "ssh", "rustc", "commit"))
    md += [f"- ours: {meta.get('ours', '?')}; {meta.get('tunnels')} tunnels (loop monitors, "
           f"AUTOSSH_POLL={meta.get('poll')}, -o KexAlgorithms={meta.get('kex')}) in one `autossh --tunnels`; "
           f"windows of {meta.get('cpu_s')} s; {meta.get('rate', 100):g} GET /metrics a second "
           f"({r.get('metrics_bytes', '?')} bytes each); benchmark run {meta.get('duration_s', '?')} s", ""]
    for title, (header, rows) in sections:
        md += ["## " + title, ""] + md_table(header, rows) + [""]
    md += ["## Goals", ""] + [f"- **{'PASS' if ok else 'FAIL'}** {g_}: {v}" for g_, v, ok in goals] + [""]
    if notes:
        md += ["## Errors during the run", ""] + [f"- {x}" for x in notes] + [""]
    md.append(NOTES)
    write_md(args.md, md)


NOTES = """## Notes (fixed text, from http_bench.py)

- **Setup** as bench/results-fleet.md's loop table: one private sshd on 127.0.0.1, every tunnel
  `-N -L TUN_i:127.0.0.1:SVC` with `-M MON_i`, all in one `autossh --tunnels FILE` with
  `AUTOSSH_HTTP=127.0.0.1:PORT`, `AUTOSSH_POLL=10 AUTOSSH_GATETIME=0 AUTOSSH_DEBUG=1` (the debug
  log has each probe's round trip), in a private network namespace when run.sh can make one.
- **Quiet, then scraped**: two windows one after the other, on the same process, once every
  tunnel answered (and the poll's settle time passed). *CPU* is the supervisor's exact time
  (/proc/PID/schedstat), not its ssh children's nor the scraper's (a Python thread of the
  benchmark, one new connection per scrape, read to its end). The goal "adds ≤ 10 % CPU" is read
  as 10 % of one core: the quiet supervisor of 100 tunnels uses about 0.2 % of a core, and any
  request costs more than a tenth of that (accept, read, write, close: a few system calls).
- **Probes**: the "probe N ok, rtt X ms" lines whose whole second lies inside the window, per
  tunnel (the log has seconds: a probe on the window's first or last second is left out).
  *Unchanged* is judged on the count (no fewer than a tenth of a probe per tunnel below
  quiet's), no ssh start, and the p99 round trip (at most twice quiet's, or 5 ms more).
- **/healthz**: the tunnel's ssh is sent SIGUSR1 (it does not handle it: killed by a signal, so
  autossh restarts it at once); `/healthz?tunnel=NAME` is asked every 10 ms from the kill. The
  kill is when autossh sees the tunnel down (SIGCHLD comes at once), so *kill → 503* is the
  time to see it said. *Answers again* is the first request through the tunnel's -L port that
  comes back (a try every 20 ms after the 503): *→ 200* may be negative when autossh's own probe
  proved the tunnel before the benchmark's try did.
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
    B.dispatch(args, F.no_worker, run)


if __name__ == "__main__":
    main()

"""Benchmark 3: autossh-echo under paced probe load, against a minimal epoll echo server and socat.

  echo_bench.py --repeat R --bin DIR --out FILE

DIR holds the compiled loadgen and minimal_echo. The load generator runs on CPU 0 and the server
on CPU 1 (taskset), so they do not fight for one core. socat at 10,000 clients forks 20,000
processes and is slow to accept (listen backlog 5): it runs once, bounded by the connect timeout.
"""
import argparse
import json
import os
import subprocess
import time

import benchlib as B

SCENARIOS = [
    # name, clients, rate per client (1/s), seconds, connect timeout
    ("1k x 2/s x 5s", 1000, 2, 5, 10),
    ("10k x 1/s x 10s", 10000, 1, 10, 15),
]


def server_argv(name, port, bindir):
    if name == "autossh-echo":
        return [B.ECHO, "--listen", f"127.0.0.1:{port}", "--max-connections", "20000", "-q"]
    if name == "minimal":
        return [os.path.join(bindir, "minimal_echo"), str(port)]
    if name == "socat":
        return ["socat", f"TCP-LISTEN:{port},fork,reuseaddr", "EXEC:/bin/cat"]
    raise ValueError(name)


def one(server, scen, rep, bindir):
    label, clients, rate, secs, ctimeout = scen
    port = B.free_block(1)
    res = {"bench": "echo", "server": server, "scenario": label, "clients": clients, "rate": rate,
           "seconds": secs, "repeat": rep}
    errlog = os.path.join(B.WORK, f"echo-{server}.stderr")
    proc = B.start(server_argv(server, port, bindir), stderr=errlog, cpu=1)
    try:
        if not B.wait_port(port, 5):
            res["error"] = "server did not listen"
            return res
        n0 = B.cpu_ns(proc.pid)
        lg = [os.path.join(bindir, "loadgen"), "--port", str(port), "--clients", str(clients),
              "--rate", str(rate), "--duration", str(secs), "--connect-timeout", str(ctimeout),
              "--drain", "2", "--sample-pid", str(proc.pid)]
        limit = ctimeout + secs + 2 + 15
        outfile = os.path.join(B.WORK, "loadgen.out")
        if os.path.exists(outfile):
            os.remove(outfile)
        gen = B.start(lg, stdout=outfile, stderr=os.path.join(B.WORK, "loadgen.stderr"), cpu=0)
        try:
            rc = gen.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            res["error"] = f"load generator did not finish within {limit} s"
            return res
        finally:
            B.stop(gen)
        with open(outfile) as f:
            text = f.read()
        if rc != 0 or not text.strip():
            res["error"] = f"load generator failed (exit {rc})"
            return res
        res.update(json.loads(text))
        n1 = B.cpu_ns(proc.pid)
        if server != "socat" and n0 is not None and n1 is not None:
            res["server_cpu_ms"] = round((n1 - n0) / 1e6, 1)
        res["server_alive"] = proc.poll() is None
        res["missing_total"] = res["scheduled"] - res["answered"] - res["wrong"]
        return res
    finally:
        B.stop(proc, grace=2.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--socat-10k-every-time", action="store_true")
    args = ap.parse_args()
    B.install_signal_handlers()
    results = []
    try:
        for rep in range(1, args.repeat + 1):
            for scen in SCENARIOS:
                for server in ("minimal", "autossh-echo", "socat"):
                    if server == "socat" and scen[1] >= 10000 and rep > 1 \
                            and not args.socat_10k_every_time:
                        continue
                    B.log(f"echo: repetition {rep}/{args.repeat}, {scen[0]}, {server}")
                    t = time.monotonic()
                    r = one(server, scen, rep, args.bin)
                    results.append(r)
                    B.log_result(r, "  ", lambda r: (
                        f"connected {r['connected']}/{r['clients']} in {r['connect_s']:.1f} s; "
                        f"sent {r['sent']}/{r['scheduled']}, ok {r['answered']}, wrong {r['wrong']}, "
                        f"missing {r['missing_total']}; p50 {r['p50_ms']:.3f} ms, "
                        f"p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.1f} ms; "
                        f"server RSS peak {r['rss_peak_kb']} kB ({time.monotonic() - t:.0f} s)"))
                    B.write_json(args.out, results)
    finally:
        B.cleanup_all()


if __name__ == "__main__":
    main()

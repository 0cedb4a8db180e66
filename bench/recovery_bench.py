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
import select
import shutil
import signal
import socket
import statistics
import struct
import sys
import threading
import time

import benchlib as B

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "recovery")
PROGS = {"ours": B.OURS, "1.4g": B.THEIRS, "1.4g+SA": B.THEIRS}
MONITOR = 20000



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



def worker(spec):
    net, d = spec["net"], spec["dir"]
    os.makedirs(d, exist_ok=True)
    res = {k: spec[k] for k in ("bench", "scenario", "prog", "mode", "kind", "tag")}
    res["n"] = net["n"]
    logfile = os.path.join(d, "autossh.log")
    proc = None
    try:
        sshd = B.SrvSshd(net, d)
        sshd.start()
        ready = os.path.join(d, "echo.ready")
        echo = B.start(["ip", "netns", "exec", net["srv"], sys.executable,
                        os.path.abspath(__file__), "echo-service", "--port", str(B.SERVICE),
                        "--ready", ready, "--max-life", "900"],
                       stderr=os.path.join(d, "echo.log"))
        if not B.wait_file(ready, 10, lambda: echo.poll() is None):
            raise RuntimeError("echo service did not start")
        ssh_args = ["-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        if spec["prog"] == "1.4g+SA":
            ssh_args += ["-o", "ServerAliveInterval=60", "-o", "ServerAliveCountMax=3"]
        ssh_args += ["-N", "-L", f"{B.TUNNEL}:127.0.0.1:{B.SERVICE}", f"root@{net['srv_ip']}"]
        monitor = "0" if spec["mode"] == "M0" else str(MONITOR)
        argv = [PROGS[spec["prog"]], "-M", monitor] + ssh_args
        res["argv"] = " ".join(argv)
        res["env"] = " ".join(f"{k}={v}" for k, v in sorted(B.autossh_env(logfile, spec["poll"]).items())
                              if k.startswith("AUTOSSH_"))
        proc = B.start(argv, env=B.autossh_env(logfile, spec["poll"]),
                       stdout=os.path.join(d, "autossh.stderr"),
                       stderr=os.path.join(d, "autossh.stderr"))
        checker = B.Checker(B.TUNNEL, timeout=0.5)
        deadline = time.monotonic() + 30
        while not checker.once():
            if proc.poll() is not None:
                raise RuntimeError(f"autossh exited with {proc.returncode} before the tunnel was up")
            if time.monotonic() > deadline:
                raise RuntimeError("tunnel did not come up within 30 s")
            time.sleep(0.1)
        B.write_json(spec["ready"], {"t": time.monotonic()})
        if not B.wait_file(spec["go"], 120):
            raise RuntimeError("no go signal from the coordinator")
        with open(spec["go"]) as f:
            t_fault = json.load(f)["t0"] + spec["offset"]
        fault = B.Fault(spec["kind"], net, sshd, d)
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
        res["log_key_lines"] = B.key_lines(B.read_log(logfile)[res.get("log_fault_offset", 0):])
        res["starts_total"] = B.starts(B.read_log(logfile))
        B.write_json(spec["out"], res)
        os.makedirs(LOGDIR, exist_ok=True)
        for src, dst in ((logfile, f"{spec['tag']}.log"),
                         (os.path.join(d, "autossh.stderr"), f"{spec['tag']}.stderr")):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(LOGDIR, dst))



def outage(spec, res, fault, proc, logfile, t_fault):
    def during(st):
        B.sleep_until(st["t_fault"] + spec["outage"])
        st["t_lift"] = time.monotonic()
        t_ret = fault.lift()
        st["log_return"] = B.log_size(logfile)
        st["t_return"] = t_ret

    def recovered(st):
        st["log_recovered"] = B.log_size(logfile)

    cap = spec["cap"]
    # recovered: the first check that ends after the return succeeds; then 3 s more
    st, checks, text = B.fault_checks(fault, logfile, t_fault, during, lifted="t_return",
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
                transfer(B.TUNNEL, spec["transfer_bytes"], limit)), daemon=True)
            tr.start()
        B.sleep_until(st["t_fault"] + window)
        st["log_window"] = B.log_size(logfile)
        st["t_window"] = time.monotonic()
        if tr is not None:
            tr.join(timeout=max(0.0, st["t_applied"] + window + spec["transfer_extra"] + 10
                                - time.monotonic()))
            st["transfer"] = out if out else {"error": "transfer thread did not finish"}
        st["log_lift"] = B.log_size(logfile)
        st["t_lift"] = fault.lift()

    limit = t_fault + window + spec.get("transfer_extra", 0) + 40
    # after_lift_ok: the first check started after the lift that succeeds; then 1 s more
    st, checks, text = B.fault_checks(fault, logfile, t_fault, during, lifted="t_lift",
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
                pair = B.Pair(seq[0])
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
            B.wait_file(spec["ready"], max(0.1, deadline - time.monotonic()), lambda: p.poll() is None)
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
    B.remove_stale_namespaces()
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

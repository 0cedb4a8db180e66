"""Turns recovery_bench.py's JSON into tables (stdout) and bench/results-recovery.md.

  recovery_report.py --json recovery.json --facts facts.json --md bench/results-recovery.md
"""
import argparse
import os

from report import load, md_facts, md_results, print_results, write_md

HERE = os.path.dirname(os.path.abspath(__file__))
RECOVERY_GOAL_S = 2.0
KIND_NAME = {
    "blackhole": "black hole (lost in flight)",
    "blackhole-out": "black hole (CLI OUTPUT+INPUT DROP, as tests/netns)",
    "serverdown": "server down (sshd + sessions killed)",
    "loss": "20% random loss, both directions",
    "delay": "+300 ms client->server",
    "tbf": "1 Mbit/s tbf, saturated by an echo transfer",
}
MODE_NAME = {"M0": "-M 0", "loop": "loop -M 20000"}


def rec_cell(r):
    if r is None:
        return "not run"
    if "error" in r:
        return "error"
    if r.get("recover_s") is None:
        return f"> {r.get('not_recovered_within_s')}"
    return f"{r['recover_s']:.2f}"


def rec_value(r):
    """Recovery seconds; a run that never recovered counts as its give-up time (a lower bound)."""
    if r is None or "error" in r:
        return None, False
    if r.get("recover_s") is None:
        return float(r.get("not_recovered_within_s") or 0), True
    return r["recover_s"], False


def ratio_cell(a, b):
    (va, ca), (vb, cb) = rec_value(a), rec_value(b)
    if va is None or vb is None:
        return "n/a"
    if vb == 0:
        return "0/0" if va == 0 else "inf"
    q = va / vb
    if ca and cb:
        return "n/a (neither recovered)"
    if cb:  # 1.4g's value is a lower bound: the ratio is at most q
        return f"< {q:.2f}" if q >= 0.01 else "< 0.01"
    if ca:
        return f"> {q:.2f}"
    return f"{q:.3f}" if q < 0.1 else f"{q:.2f}"


def starts_cell(rs):
    out = []
    for r in rs:
        if r is None:
            continue
        if "error" in r:
            out.append("err")
        else:
            out.append(f"{r.get('starts_during_outage', '?')} / {r.get('starts_to_recovery', '?')}")
    return " · ".join(out)


def outage_section(res, goals, notes, odd):
    rows = []
    by = {(r["scenario"], r["prog"]): r for r in res if r.get("bench") == "outage"}
    scen = []
    for r in res:
        if r.get("bench") == "outage" and r["scenario"] not in scen:
            scen.append(r["scenario"])
    order = {"blackhole": 0, "blackhole-out": 1, "serverdown": 2}
    first = {}
    for r in res:
        if r.get("bench") == "outage":
            first.setdefault(r["scenario"], r)
    scen.sort(key=lambda s: (first[s].get("outage_s") or int(s.split("-")[-2].rstrip("s")),
                             order.get(first[s]["kind"], 9), first[s]["mode"] != "M0"))
    for sid in scen:
        f = first[sid]
        ours, th, sa = by.get((sid, "ours")), by.get((sid, "1.4g")), by.get((sid, "1.4g+SA"))
        length = f"{f['outage_s']} s" if f.get("outage_s") else sid.split("-")[-2]
        for r in (ours, th, sa):
            if r is not None and "error" in r:
                notes.append(f"{sid} {r['prog']}: {r['error']}")
            if r is not None and r.get("ok_during_outage"):
                notes.append(f"{sid} {r['prog']}: {r['ok_during_outage']} checks succeeded "
                             f"during the outage (the fault did not cut the tunnel?)")
            if r is not None and r.get("baseline_failed"):
                notes.append(f"{sid} {r['prog']}: {r['baseline_failed']} checks failed before "
                             f"the fault")
        v, censored = rec_value(ours)
        ok = v is not None and not censored and v <= RECOVERY_GOAL_S
        res_cell = "PASS" if ok else "FAIL"
        goals.append((f"recovery {length} {KIND_NAME[f['kind']]}, {MODE_NAME[f['mode']]}: "
                      f"ours <= {RECOVERY_GOAL_S:.0f} s", f"{rec_cell(ours)} s", ok))
        if not ok and ours is not None:
            odd.append((f"{sid} (ours recovery {rec_cell(ours)} s)", ours))
        rows.append([length, KIND_NAME[f["kind"]], MODE_NAME[f["mode"]], rec_cell(ours),
                     rec_cell(th), rec_cell(sa) if f["mode"] == "M0" else "—",
                     ratio_cell(ours, th), ratio_cell(ours, sa) if f["mode"] == "M0" else "—",
                     f"ours <= {RECOVERY_GOAL_S:.0f} s", res_cell,
                     starts_cell([ours, th, sa] if f["mode"] == "M0" else [ours, th])])
    header = ["outage", "server unreachable by", "mode", "ours s", "1.4g s", "1.4g+SA s",
              "ours/1.4g", "ours/1.4g+SA", "goal", "result",
              "ssh starts: outage / return→recovery (ours · 1.4g · 1.4g+SA)"]
    return header, rows


def faults_section(res, goals, notes, odd):
    rows = []
    for kind in ("loss", "delay", "tbf"):
        rs = {r["prog"]: r for r in res if r.get("bench") == "faults" and r["kind"] == kind}
        if not rs:
            continue
        ours, th = rs.get("ours"), rs.get("1.4g")
        name = KIND_NAME[kind]
        for r in (ours, th):
            if r is not None and "error" in r:
                notes.append(f"{r['scenario']} {r['prog']}: {r['error']}")
        window = next((r.get("window_s") for r in (ours, th) if r and "window_s" in r), "?")

        def val(r, key):
            return None if r is None or "error" in r else r.get(key)

        ro, rt = val(ours, "restarts"), val(th, "restarts")
        ok = ro == 0
        ratio = "n/a" if ro is None or rt is None else (
            "0/0" if ro == rt == 0 else ("inf" if rt == 0 else f"{ro / rt:.2f}"))
        goals.append((f"{name}, {window} s at POLL=4: ours 0 restarts", f"{ro}", ok))
        if not ok and ours is not None:
            odd.append((f"{ours['scenario']} (ours restarts {ro})", ours))
        rows.append([name, f"ssh restarts in {window} s", fmt(ro), fmt(rt), ratio, "ours 0",
                     "PASS" if ok else "FAIL"])
        rows.append([name, "  ...until the fault was lifted", fmt(val(ours, "restarts_until_lift")),
                     fmt(val(th, "restarts_until_lift")), "", "", ""])

        def checks(r):
            if r is None or "error" in r:
                return "n/a"
            n, a = r.get("checks_in_window") or 0, r.get("checks_answered") or 0
            pct = 100.0 * a / n if n else 0
            return f"{a}/{n} ({pct:.0f}%), p50 {fmt(r.get('check_ms_p50'))} ms, max {fmt(r.get('check_ms_max'))} ms"

        rows.append([name, "  tunnel checks answered within 3 s", checks(ours), checks(th), "", "", ""])
        if kind == "tbf":
            def tx(r):
                t = None if r is None else r.get("transfer")
                if not t:
                    return "n/a"
                s = "intact" if t.get("intact") else "NOT intact"
                s += f": {t.get('received')}/{t.get('total')} B back in {t.get('elapsed_s')} s ({t.get('mbit_s')} Mbit/s)"
                if t.get("first_mismatch") is not None:
                    s += f", first wrong byte at {t['first_mismatch']}"
                if t.get("error"):
                    s += f", {t['error']}"
                return s
            rows.append([name, "  transfer through the tunnel", tx(ours), tx(th), "", "report", ""])
        rows.append([name, "  tunnel works after the lift (s)",
                     fmt(val(ours, "tunnel_after_lift_s")), fmt(val(th, "tunnel_after_lift_s")),
                     "", "", ""])
    header = ["fault (loop mode, AUTOSSH_POLL=4)", "metric", "ours", "1.4g", "ours/1.4g", "goal",
              "result"]
    return header, rows


def collapse(lines):
    """Drops exec/pid lines and folds runs of the same message into one line with a count."""
    out, prev, n = [], None, 0
    for l in lines:
        if "execing " in l or "child pid is" in l:
            continue
        msg = l.split("]: ", 1)[-1]
        if msg == prev:
            n += 1
            continue
        if n:
            out.append(f"    (the line above {n} more time{'s' if n > 1 else ''})")
        out.append(l)
        prev, n = msg, 0
    if n:
        out.append(f"    (the line above {n} more time{'s' if n > 1 else ''})")
    return out


def head_tail(lines, n):
    if len(lines) <= n:
        return lines
    return lines[:n // 2] + [f"... ({len(lines) - n} lines left out) ..."] + lines[-n // 2:]


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


NOTES = """## Notes (fixed text, from recovery_report.py)

- **Settings.** Benchmark 1 runs both programs at their defaults: no AUTOSSH_POLL (600 s), no
  AUTOSSH_FIRST_POLL, etc. Set for both: `AUTOSSH_GATETIME=0` (the first ssh start has to succeed
  anyway before a fault is applied, so the gate changes nothing measured here),
  `AUTOSSH_PATH=/usr/bin/ssh`, `AUTOSSH_LOGFILE` and `AUTOSSH_DEBUG=1` (log verbosity only, in
  both programs). Benchmark 2 adds `AUTOSSH_POLL=4`. ssh options, the same for every program:
  `-F /dev/null -i KEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -o LogLevel=ERROR -N -L 8022:127.0.0.1:7007 root@10.203.N.1`, monitor
  `-M 0` or `-M 20000`.
- **1.4g with -M 0 has no keepalive of its own**; ours adds `ServerAliveInterval=60
  ServerAliveCountMax=3` to ssh itself with `-M 0`. For fairness the column **1.4g+SA** runs 1.4g
  with `-o ServerAliveInterval=60 -o ServerAliveCountMax=3` added by the benchmark; the 1.4g
  column runs it as is. Ours also always adds `-o ExitOnForwardFailure=yes`; 1.4g is not given it.
- **1.4g's loop mode works normally here.** On a single host 1.4g's `-R N` (on the server)
  collides with its own `-L N` (on the client) only when client and server share a network
  namespace (see results.md). Here autossh runs in CLI and sshd in SRV, two namespaces, so the
  ports do not collide and 1.4g's loop-mode probe passes.
- **Topology.** Every run (one program in one scenario) has two network namespaces of its own,
  CLI (autossh, the checker, the fault rules) and SRV (sshd on 10.203.N.1:22, the echo service on
  127.0.0.1:7007 that the tunnel leads to), joined by a veth pair 10.203.N.0/30. The runs of one
  scenario start together and get their fault at the same CLOCK_MONOTONIC instant; all scenarios
  of a benchmark run in parallel (returns staggered by 1-2 s so no two come back together).
  One repetition of each.
- **Tunnel checker** (inside CLI): every 100 ms a new connection to 127.0.0.1:8022, a line sent,
  the same line expected back (within 0.5 s in benchmark 1, 3 s in benchmark 2).
- **Recovery** = end of the first successful check that ended after the server's return, minus
  the return: for black holes the moment the DROP rules were deleted, for server down the moment
  the restarted sshd's log said "Server listening on 10.203.N.1 port 22" (sshd listens then).
  A run that had not recovered `cap` seconds after the return shows `> cap`; a ratio against
  such a value is a bound. *ssh starts* are "starting ssh (count N)" log lines: during the
  outage / from the return until recovery.
- **Black holes.** (a) *lost in flight*: iptables DROP on arrival at each end (CLI drops what
  comes from the server, SRV what comes from the client): neither sender's TCP learns anything,
  connections stall and back off, new connects hang. (a') *as tests/netns*: DROP in CLI's OUTPUT
  and INPUT chains. A DROP in the sender's own OUTPUT chain is not silent for the client: every
  packet it sends fails locally with EPERM, and its TCP retries on a schedule of its own, so
  stalls are seen and ended differently than in a real black hole (for both programs, e.g. 1.4g's
  stalled connection may come back well under a second after a 40 s one). Reported for comparison
  with the fault-injection tests; (a) is the realistic case.
- **Server down**: SIGKILL of sshd's listener and every session process at once (the client sees
  the connection closed and then connection refused), a new sshd on the same address after the
  outage.
- **Benchmark 2 faults.** Loss: iptables `statistic --mode random --probability 0.2` DROP on
  arrival at each end (in flight, as above). Latency: every client-to-server packet goes through
  NFQUEUE to a userspace delayer that holds it 300 ms (this kernel has no netem). Rate: `tbf rate
  1mbit burst 32kbit latency 400ms` on both veth ends, and a 5 MiB pseudo-random transfer sent
  through the tunnel to the echo service from the fault's start and read back and compared byte
  for byte (a restart of ssh breaks it). Restarts are "starting ssh" lines in the 60 s after the
  fault starts (the fault stays until the transfer ends, at most 75 s).
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--facts")
    ap.add_argument("--md", required=True)
    args = ap.parse_args()
    data = load(args.json, dict)
    res = data.get("results", [])
    facts = load(args.facts, dict) if args.facts else {}
    goals, notes, odd = [], [], []
    sections = [
        ("1. Recovery after an outage, default settings (one run each)",
         outage_section(res, goals, notes, odd) if any(r.get("bench") == "outage" for r in res) else None),
        ("2. Restarts during faults, AUTOSSH_POLL=4, loop mode (one run each)",
         faults_section(res, goals, notes, odd) if any(r.get("bench") == "faults" for r in res) else None),
    ]
    print_results(sections, goals, notes)

    md = ["# Recovery benchmark results", "",
          f"Generated by `bash bench/run.sh recovery` on {facts.get('date', '?')}. "
          "Overwritten on every run." + (" **Quick mode (short outages): not the real benchmark.**"
                                         if data.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "ssh",
                           "autossh_14g", "rustc", "commit", "duration_s"))
    md += ["", "See bench/README.md for how to run it and the notes below for what each number means.", ""]
    md += md_results(sections, goals)
    if notes:
        md += ["## Remarks and errors during the run", ""] + [f"- {n}" for n in notes] + [""]
    if odd:
        md += ["## Our autossh's log where a goal failed", "",
               "Key lines (per-probe chatter left out) from the fault's start; full logs in "
               "bench/logs/recovery/.", ""]
        for title, r in odd:
            md += [f"### {title}", "", "```"] + [l[:220] for l in head_tail(collapse(r.get("log_key_lines", [])), 50)] + ["```", ""]
    md.append(NOTES)
    write_md(args.md, md)


if __name__ == "__main__":
    main()

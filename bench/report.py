"""Turns the JSON results of the three benchmarks into a table (stdout) and bench/results.md.

  report.py --dir WORKDIR --md bench/results.md --facts FACTS.json
"""
import argparse
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path, empty=list):
    """A JSON file's content, or empty() if it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return empty()


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def cell(vals, digits=2):
    """'median [all values]'"""
    if not vals:
        return "n/a"
    m = med(vals)
    return f"{fmt(m, digits)} [{', '.join(fmt(v, digits) for v in vals)}]"


def ratio(a, b, digits=2):
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "0/0" if a == 0 else "inf"
    return f"{a / b:.{digits}f}"


def rec_value(r, key):
    """(seconds, censored) of a result's key; a run that gave up counts as its lower bound."""
    if r is None or "error" in r:
        return None, False
    if r.get(key) is not None:
        return r[key], False
    more = r.get(key.replace("_s", "_more_than_s"))
    return (more, True) if more is not None else (None, False)


def sec_cell(rs, key):
    """Seconds: one run's value, or `median [each]`; `> N` for a give-up (ordered last)."""
    if not rs:
        return "not run"
    vals = [rec_value(r, key) for r in rs]
    if all(v is None for v, _ in vals):
        return "error" if any("error" in r for r in rs) else "n/a"

    def one(v, c):
        return "err" if v is None else (f"> {v:.0f}" if c else f"{v:.2f}")

    if len(vals) == 1:
        return one(*vals[0])
    good = sorted([(v, c) for v, c in vals if v is not None], key=lambda x: (x[1], x[0]))
    k = len(good)
    lo, hi = good[(k - 1) // 2], good[k // 2]
    m = (hi[0], True) if hi[1] and k % 2 else (((lo[0] + hi[0]) / 2, hi[1]))
    return f"{one(*m)} [{', '.join(one(v, c) for v, c in vals)}]"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def text_table(header, rows):
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(c).ljust(n) for c, n in zip(r, w))  # noqa: E731
    return [line(header), line(["-" * n for n in w])] + [line(r) for r in rows]


# shared with recovery_report.py: sections are (title, (header, rows) or None), goals are
# (goal, value, passed) and notes are lines

def print_results(sections, goals, notes):
    """The results on the terminal: each section's table, the goals, the notes."""
    print()
    for title, sec in sections:
        print("== " + title)
        print("\n".join(text_table(*sec)) if sec else "(not run or no results)")
        print()
    print("== Goals")
    for g, v, ok in goals:
        print(f"  [{'PASS' if ok else 'FAIL'}] {g}: {v}")
    for n in notes:
        print("  note: " + n)


def md_facts(facts, keys):
    """The machine's facts (those of keys it has) as markdown list lines."""
    return [f"- {k}: {facts[k]}" for k in keys if k in facts]


def md_results(sections, goals):
    """Markdown lines: a heading and a table per section, then the goals."""
    md = []
    for title, sec in sections:
        md += ["## " + title, ""]
        md += md_table(*sec) if sec else ["(not run or no results)"]
        md.append("")
    md += ["## Goals", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {g}: {v}" for g, v, ok in goals]
    md.append("")
    return md


def write_md(path, md):
    with open(path, "w") as f:
        f.write("\n".join(md))
    print(f"\nwrote {path}")


def freeze_section(res, goals, notes):
    rows = []
    for mode in ("echo", "loop"):
        by = {p: [r for r in res if r["prog"] == p and r["mode"] == mode] for p in ("ours", "1.4g")}
        errs = [f"{r['prog']} {mode} r{r['repeat']}: {r['error']}" for p in by for r in by[p]
                if "error" in r]
        notes += [f"freeze {e}" for e in errs]
        ok = {p: [r for r in by[p] if "error" not in r] for p in by}
        # a run that never recovered counts as 40 s (the give-up time) in the median
        rec = {p: [r.get("recover_s") if r.get("recover_s") is not None else 40.0
                   for r in by[p] if r.get("recover_s") is not None or "recover" in r.get("error", "")]
               for p in by}
        new = {p: [r.get("new_ssh_s") for r in ok[p]] for p in by}
        rst = {p: [r.get("restarts_after") for r in ok[p]] for p in by}
        out = {p: [r.get("outage_s") for r in ok[p]] for p in by}
        r_rec = ratio(med(rec["ours"]), med(rec["1.4g"]))
        rows.append([mode, "time to recover (s)", cell(rec["ours"]), cell(rec["1.4g"]), r_rec, "ratio <= 0.6"])
        rows.append([mode, "  first new ssh after (s)", cell(new["ours"]), cell(new["1.4g"]),
                     ratio(med(new["ours"]), med(new["1.4g"])), ""])
        rows.append([mode, "restarts in 25 s after recovery", cell(rst["ours"], 0), cell(rst["1.4g"], 0),
                     ratio(med(rst["ours"]), med(rst["1.4g"])), "ours 0"])
        rows.append([mode, "outage in 25 s after recovery (s)", cell(out["ours"], 1), cell(out["1.4g"], 1),
                     ratio(med(out["ours"]), med(out["1.4g"])), "ours 0"])
        if rec["ours"] and rec["1.4g"]:
            goals.append((f"freeze/{mode}: recovery ratio ours/1.4g <= 0.6", r_rec,
                          med(rec["ours"]) / med(rec["1.4g"]) <= 0.6 if med(rec["1.4g"]) else False))
        if rst["ours"]:
            goals.append((f"freeze/{mode}: ours restarts after recovery = 0", f"{sum(rst['ours'])} in all runs",
                          sum(rst["ours"]) == 0))
            goals.append((f"freeze/{mode}: ours outage after recovery = 0",
                          f"{sum(out['ours']):.1f} s in all runs", sum(out["ours"]) == 0))
    return ["mode", "metric", "ours median [all]", "1.4g median [all]", "ours/1.4g", "goal"], rows


def cost_section(res, goals, notes, variant):
    rows = []
    res = [r for r in res if r.get("variant", "quiet") == variant]
    for mode in ("loop", "echo"):
        by = {p: [r for r in res if r["prog"] == p and r["mode"] == mode and "error" not in r]
              for p in ("ours", "1.4g")}
        notes += [f"cost ({variant}) {r['prog']} {mode} r{r['repeat']}: {r['error']}" for r in res
                  if r["mode"] == mode and "error" in r]
        for key, label, d in (("ticks", "CPU ticks in 15 s", 0), ("cpu_ms", "CPU ms (schedstat)", 1),
                              ("rss_kb", "VmRSS (kB)", 0), ("hwm_kb", "VmHWM (kB)", 0),
                              ("restarts", "restarts in window", 0),
                              ("tcp_rows", "TCP sockets in its netns", 0)):
            o = [r.get(key) for r in by["ours"]]
            t = [r.get(key) for r in by["1.4g"]]
            goal = {"ticks": "<= 1.4g", "rss_kb": "ratio <= 1.5"}.get(key, "") if variant == "quiet" else ""
            rows.append([mode, label, cell(o, d), cell(t, d),
                         ratio(med(o), med(t)) if key != "tcp_rows" else "", goal])
            if variant != "quiet":
                continue
            if key == "ticks" and o and t:
                goals.append((f"cost/{mode}: ours CPU ticks <= 1.4g's", f"{med(o)} vs {med(t)}",
                              med(o) <= med(t)))
            if key == "rss_kb" and o and t:
                goals.append((f"cost/{mode}: ours VmRSS <= 1.5 x 1.4g's", ratio(med(o), med(t)),
                              med(o) <= 1.5 * med(t)))
    if not rows or all(r[2] == "n/a" and r[3] == "n/a" for r in rows):
        return None
    return ["mode", "metric", "ours median [all]", "1.4g median [all]", "ours/1.4g", "goal"], rows


def echo_section(res, goals, notes):
    rows = []
    scen = []
    for r in res:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
    for s in scen:
        base = [r.get("p99_ms") for r in res if r["scenario"] == s and r["server"] == "minimal"
                and "error" not in r]
        for server in ("minimal", "autossh-echo", "socat"):
            rs = [r for r in res if r["scenario"] == s and r["server"] == server]
            notes += [f"echo {server} {s} r{r['repeat']}: {r['error']}" for r in rs if "error" in r]
            rs = [r for r in rs if "error" not in r]
            if not rs:
                continue
            tot = lambda k: sum(r.get(k, 0) for r in rs)  # noqa: E731
            p99 = [r["p99_ms"] if r["answered"] else None for r in rs]
            rows.append([
                s, server, len(rs),
                f"{tot('connected')}/{tot('clients')}",
                cell([r.get("connect_s") for r in rs], 1),
                f"{tot('sent')}/{tot('scheduled')}",
                tot("answered"), tot("wrong"), tot("missing_total"),
                cell([r["p50_ms"] if r["answered"] else None for r in rs], 3),
                cell(p99, 3),
                cell([r["max_ms"] if r["answered"] else None for r in rs], 1),
                ratio(med(p99), med(base)) if server != "minimal" else "1",
                cell([r.get("rss_peak_kb") for r in rs], 0) if server != "socat" else "n/a",
                cell([r.get("server_cpu_ms") for r in rs], 0) if server != "socat" else "n/a",
            ])
            if server == "autossh-echo":
                goals.append((f"echo/{s}: autossh-echo answers every probe byte for byte",
                              f"{tot('answered')}/{tot('scheduled')}, wrong {tot('wrong')}",
                              tot("answered") == tot("scheduled") and tot("wrong") == 0))
                if base and med(p99) is not None:
                    goals.append((f"echo/{s}: autossh-echo p99 <= 1.5 x minimal's",
                                  ratio(med(p99), med(base)), med(p99) <= 1.5 * med(base)))
    hdr = ["load", "server", "runs", "connected", "connect s", "sent/scheduled", "answered ok", "wrong", "missing",
           "p50 ms", "p99 ms", "max ms", "p99 / minimal", "peak VmRSS kB", "server CPU ms"]
    return hdr, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--facts", required=True)
    args = ap.parse_args()
    facts = load(args.facts) or {}
    freeze = load(os.path.join(args.dir, "freeze.json"))
    cost = load(os.path.join(args.dir, "cost.json"))
    echo = load(os.path.join(args.dir, "echo.json"))
    goals, notes = [], []
    sections = [
        ("1. Freeze recovery (AUTOSSH_POLL=4, server sessions SIGSTOPped and kept frozen)",
         freeze_section(freeze, goals, notes) if freeze else None),
        ("2. Supervisor cost on a healthy tunnel (AUTOSSH_POLL=2, 15 s)",
         cost_section(cost, goals, notes, "quiet") if cost else None),
        ("2b. Same, with 10,000 idle TCP connections open in the run's network namespace (one repetition)",
         cost_section(cost, goals, notes, "busy") if cost else None),
        ("3. Echo servers under paced probe load (loadgen on CPU 0, server on CPU 1)",
         echo_section(echo, goals, notes) if echo else None),
    ]

    # terminal
    print_results(sections, goals, notes)

    # markdown
    md = ["# Benchmark results", "",
          f"Generated by `bash bench/run.sh` on {facts.get('date', '?')}. Overwritten on every run.", "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "ulimit_n",
                           "private_netns", "ssh", "autossh_14g", "rustc", "commit", "repeat", "seed",
                           "duration_s"))
    md.append("")
    md.append("Cells read `median [value of each run]`; `ours/1.4g` is the ratio of the medians. "
              "See bench/README.md for what each number means.")
    md.append("")
    md += md_results(sections, goals)
    if notes:
        md += ["## Errors during the run", ""] + [f"- {n}" for n in notes] + [""]
    extra = os.path.join(HERE, "results-notes.md")
    if os.path.exists(extra):
        with open(extra) as f:
            md += [f.read().rstrip(), ""]
    write_md(args.md, md)


if __name__ == "__main__":
    main()

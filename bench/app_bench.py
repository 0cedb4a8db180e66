"""Application benchmark: a PostgreSQL client (psycopg2) writing through an autossh tunnel while
the SSH server side fails, ours against autossh 1.4g, at default settings.

  app_bench.py run --out FILE          the benchmark (coordinator; run by `bash bench/run.sh app`)
  app_bench.py report --json FILE --facts FACTS --md bench/results-app.md

Every run (one program x one command line x one fault) gets two network namespaces of its own,
CLI and SRV, joined by a veth pair made inside them (benchlib.Pair; nothing in the root
namespace is touched). SRV runs a private OpenSSH sshd on SRV_IP:22 and a private PostgreSQL
cluster on 127.0.0.1:5433 (Debian's binaries, a copy of a template cluster made once per
benchmark run with initdb, started as the postgres user, trust auth, its unix socket in the work
directory). CLI runs the autossh under test with `-L 15432:127.0.0.1:5433` and the application:
one psycopg2 connection through the tunnel (connect_timeout=2, nothing else changed), an
autocommitted `INSERT INTO t(id, at)` every 200 ms, on any error close + reconnect (every 50 ms),
every operation's start and end logged as JSONL.

Command lines (defaults: no AUTOSSH_POLL; only AUTOSSH_GATETIME=0, AUTOSSH_PATH, AUTOSSH_LOGFILE,
AUTOSSH_DEBUG=1 set, as benchlib.autossh_env):
  M0:   autossh -M 0 -N -o "ServerAliveInterval 60" -o "ServerAliveCountMax 3" -L ... OPTS root@SRV
  loop: autossh -M 20000 -N -L ... OPTS root@SRV
Faults: freeze (SIGSTOP of every sshd session process, kept until the end), restart (listener and
sessions SIGKILLed, a new sshd 10 s later), blackhole (DROP on arrival at both ends for 30 s).
Ours and 1.4g of one scenario run side by side and get the fault at the same CLOCK_MONOTONIC
instant; scenarios run one after the other.

Environment: APP_BENCH_REPEAT (1), APP_BENCH_GIVEUP (60 s; 20 in quick mode), APP_BENCH_QUICK=1
(8 s black hole, restart after 4 s: a smoke test of the harness), APP_BENCH_ONLY (faults to run,
e.g. "restart blackhole"; default all three), APP_BENCH_OURS (our binary; default
target/release/autossh).

Subcommands used internally: `worker` (one run, inside its CLI namespace), `client` (the
application, inside CLI; needs psycopg2).
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import benchlib as B
from report import rec_value, sec_cell

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "app")
# APP_BENCH_OURS: another build of ours (e.g. of a given commit) instead of target/release
PROGS = {"ours": os.environ.get("APP_BENCH_OURS") or B.OURS, "1.4g": B.THEIRS}
TUNNEL, PGPORT, MONITOR = 15432, 5433, 20000
INTERVAL = 0.2   # one INSERT every 200 ms
RETRY = 0.05     # reconnect every 50 ms
CONNECT_TIMEOUT = 2
SLOW = 1.0       # an operation not done within this is "blocked" (normal: a few ms)
TAIL = 5.0       # the application runs this long after its first success after the fault
FAULTS = ("freeze", "restart", "blackhole", "planned")
MODES = ("M0", "loop")
FAULT_NAME = {"planned": "planned restart (SIGUSR1 to autossh)",
              "freeze": "frozen session (SIGSTOP, kept)",
              "restart": "sshd restarted after {restart} s",
              "blackhole": "{hole} s black hole"}
MODE_NAME = {"M0": "`-M 0` + ServerAlive 60/3 (article)", "loop": "`-M 20000` (loop)"}
FREEZE_GOAL, RETURN_GOAL = 1.5, 1.0
PLANNED_WINDOW = 10.0  # a planned restart is watched this long (unless it caused an outage)


def settings():
    quick = os.environ.get("APP_BENCH_QUICK", "") not in ("", "0")
    giveup = float(os.environ.get("APP_BENCH_GIVEUP") or (20 if quick else 60))
    repeat = int(os.environ.get("APP_BENCH_REPEAT") or 1)
    only = (os.environ.get("APP_BENCH_ONLY") or " ".join(FAULTS)).replace(",", " ").split()
    for f in only:
        if f not in FAULTS:
            raise SystemExit(f"APP_BENCH_ONLY: unknown fault {f!r} ({', '.join(FAULTS)})")
    if repeat < 1 or giveup <= 0:
        raise SystemExit("APP_BENCH_REPEAT and APP_BENCH_GIVEUP must be positive")
    return {"quick": quick, "giveup": giveup, "repeat": repeat, "faults": only,
            "hole": 8 if quick else 30, "restart": 4 if quick else 10,
            "tail": 3.0 if quick else TAIL}


def app_python():
    """A python3 that has psycopg2 (Debian's python3-psycopg2 is in /usr/bin/python3 only;
    pyenv's python3 may come first on PATH)."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and subprocess.run([py, "-c", "import psycopg2"], capture_output=True).returncode == 0:
            return py
    return None


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: [int(x) for x in d.split("/")[-2].split(".") if x.isdigit()])
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "postgres"))]
    return dirs[-1] if dirs else None


def as_postgres(argv):
    return ["runuser", "-u", "postgres", "--"] + list(argv)


# ---------------------------------------------------------------------------------------------
# the application (inside CLI)

def client(args):
    import psycopg2  # noqa: PLC0415 - only the client needs it

    out = open(args.log, "a", buffering=1)

    def rec(**kw):
        out.write(json.dumps(kw, separators=(",", ":")) + "\n")

    def short(e):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        msg = re.sub(r'^connection to server at "[^"]*", port \d+ failed: ', "", msg)
        return f"{type(e).__name__}: {msg}"[:200]

    end = time.monotonic() + args.max_life
    conn = None
    n = 0
    next_t = time.monotonic()
    while time.monotonic() < end:
        if conn is None:
            t0 = time.monotonic()
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=args.port, user="postgres",
                                        dbname="postgres", connect_timeout=CONNECT_TIMEOUT)
                conn.autocommit = True
                rec(k="c", t0=t0, t1=time.monotonic(), ok=True)
                next_t = time.monotonic()  # the first operation at once
            except Exception as e:  # noqa: BLE001 - every failure is logged and retried
                rec(k="c", t0=t0, t1=time.monotonic(), ok=False, err=short(e))
                conn = None
                time.sleep(RETRY)
                continue
        wait = next_t - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        n += 1
        t0 = time.monotonic()
        next_t = t0 + INTERVAL
        rec(k="s", n=n, t0=t0)
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO t(id, at) VALUES (%s, %s)", (n, time.time()))
            rec(k="e", n=n, t1=time.monotonic(), ok=True)
        except Exception as e:  # noqa: BLE001
            rec(k="e", n=n, t1=time.monotonic(), ok=False, err=short(e))
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None


class OpLog:
    """Reads the client's JSONL as it grows: operations (INSERTs) and connect attempts."""

    def __init__(self, path):
        self.path, self.off, self.buf = path, 0, b""
        self.ops, self.by_n, self.connects = [], {}, []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return
        self.off += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r["k"] == "s":
                op = {"n": r["n"], "t0": r["t0"], "t1": None, "ok": None}
                self.ops.append(op)
                self.by_n[r["n"]] = op
            elif r["k"] == "e" and r["n"] in self.by_n:
                op = self.by_n[r["n"]]
                op["t1"], op["ok"] = r["t1"], r["ok"]
                if r.get("err"):
                    op["err"] = r["err"]
            elif r["k"] == "c":
                self.connects.append(r)


def analyse(ops, t_fault, t_return, now):
    """The application's view of the fault, from operations observed until `now`.
    Outage: from the start of the first operation (not finished before the fault) that failed or
    was not done within SLOW s, to the end of the first operation from it on that succeeded.
    After return: from the server's return to the end of the first success ending after it."""
    a = {"outage_start": None, "outage_end": None, "after_return_end": None}

    def bad(op):
        if op["t1"] is None:
            return now - op["t0"] > SLOW
        return not op["ok"] or op["t1"] - op["t0"] > SLOW

    i = None
    for k, op in enumerate(ops):
        if op["t1"] is not None and op["t1"] < t_fault:
            continue
        if op["t1"] is None and not bad(op):
            break  # in flight, not yet late: undecided
        if bad(op):
            i = k
            break
    if i is not None:
        a["outage_start"] = ops[i]["t0"]
        for op in ops[i:]:
            if op["ok"] and op["t1"] is not None:
                a["outage_end"] = op["t1"]
                break
    if t_return is not None:
        for op in ops:
            if op["ok"] and op["t1"] is not None and op["t1"] >= t_return:
                a["after_return_end"] = op["t1"]
                break
    a["recovered"] = a["outage_end"] is not None and (t_return is None or
                                                      a["after_return_end"] is not None)
    return a


# ---------------------------------------------------------------------------------------------
# PostgreSQL (inside SRV)

def make_template(pgdir, bindir):
    """initdb once per benchmark run (no network: initdb and single-user mode do not listen),
    with the table the application writes to."""
    tpl = os.path.join(pgdir, "template")
    os.makedirs(pgdir, exist_ok=True)
    shutil.chown(pgdir, "postgres", "postgres")
    os.chmod(pgdir, 0o755)
    t = time.monotonic()
    B.sh(as_postgres([os.path.join(bindir, "initdb"), "-D", tpl, "-U", "postgres",
                      "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]), timeout=120)
    r = subprocess.run(as_postgres([os.path.join(bindir, "postgres"), "--single", "-D", tpl,
                                    "-c", "fsync=off", "postgres"]),
                       input="CREATE TABLE t (id bigint PRIMARY KEY, at double precision NOT NULL);\n",
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or "ERROR" in r.stdout + r.stderr:
        raise RuntimeError(f"creating table t failed: {r.stdout[-500:]} {r.stderr[-500:]}")
    B.log(f"template cluster made in {time.monotonic() - t:.1f} s ({tpl})")
    return tpl


class Postgres:
    """A copy of the template cluster, started as the postgres user inside SRV on
    127.0.0.1:PGPORT, its unix socket in its own directory."""

    def __init__(self, net, spec):
        self.net, self.bindir = net, spec["pg_bin"]
        self.dir = os.path.join(spec["pg_root"], spec["tag"])
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.logf = os.path.join(spec["dir"], "postgres.log")
        self.proc = None

    def start(self, timeout=30):
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.sock)
        B.sh(["cp", "-a", os.path.join(os.path.dirname(self.dir), "template"), self.data], 60)
        for p in (self.dir, self.sock):
            shutil.chown(p, "postgres", "postgres")
        os.chmod(self.dir, 0o755)
        self.proc = B.start(["ip", "netns", "exec", self.net["srv"]] + as_postgres(
            [os.path.join(self.bindir, "postgres"), "-D", self.data,
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={PGPORT}",
             "-c", f"unix_socket_directories={self.sock}", "-c", "shared_buffers=32MB",
             "-c", "log_connections=on", "-c", "log_disconnections=on"]), stderr=self.logf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "database system is ready to accept connections" in B.read_log(self.logf):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start; see {self.logf}")

    def ids(self):
        """Every id in table t, asked directly inside SRV over the unix socket."""
        out = B.nsx(self.net["srv"], [os.path.join(self.bindir, "psql"), "-X", "-At", "-h",
                                      self.sock, "-p", str(PGPORT), "-U", "postgres", "-d",
                                      "postgres", "-c", "SELECT id FROM t"], timeout=30)
        return {int(x) for x in out.split()}

    def stop(self):
        if self.proc is not None:
            B.stop(self.proc, grace=2)
            self.proc = None

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# one run (inside CLI)

class AppRun:
    """One run's processes and measurements, shared by worker()'s steps; finish() stops
    whatever is still running and writes the result, also after an error."""

    def __init__(self, spec):
        self.spec, self.net, self.d = spec, spec["net"], spec["dir"]
        self.res = {k: spec[k] for k in ("scenario", "fault", "mode", "prog", "tag", "rep")}
        self.logfile = os.path.join(self.d, "autossh.log")
        self.applog = os.path.join(self.d, "app.jsonl")
        self.proc = self.app = self.pg = self.sshd = None
        self.frozen = []
        self.st = {}

    def argv(self):
        """The command line under test (M0: the article's)."""
        spec, net = self.spec, self.net
        opts = ["-F", "/dev/null", "-i", os.path.join(B.WORK, "keys", "client_key"),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        fwd = ["-L", f"{TUNNEL}:127.0.0.1:{PGPORT}"]
        prog = spec["ours"] if spec["prog"] == "ours" else PROGS[spec["prog"]]
        if spec["mode"] == "M0":  # the article's command line
            return [prog, "-M", "0", "-N", "-o", "ServerAliveInterval 60",
                    "-o", "ServerAliveCountMax 3"] + fwd + opts + [f"root@{net['srv_ip']}"]
        return [prog, "-M", str(MONITOR), "-N"] + fwd + opts + \
            [f"root@{net['srv_ip']}"]

    def start(self):
        """sshd and PostgreSQL in SRV, then autossh and the application."""
        spec, d, res = self.spec, self.d, self.res
        self.sshd = B.SrvSshd(self.net, d)
        self.sshd.start()
        self.pg = Postgres(self.net, spec)
        self.pg.start()
        argv = self.argv()
        env = B.autossh_env(self.logfile, None)
        res["argv"] = " ".join(f"'{a}'" if " " in a else a for a in argv)
        res["env"] = " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("AUTOSSH_"))
        self.proc = B.start(argv, env=env, stdout=os.path.join(d, "autossh.stderr"),
                            stderr=os.path.join(d, "autossh.stderr"))
        self.app = B.start([spec["app_py"], os.path.abspath(__file__), "client", "--port",
                            str(TUNNEL), "--log", self.applog, "--max-life",
                            str(spec["max_life"])],
                           stderr=os.path.join(d, "app.stderr"))

    def wait_ready(self):
        """Ready: >= 10 successful operations, the last 2 s of them all successful (the tunnel
        works for 2 s), and for ours in loop mode its log's "tunnel up". Returns the OpLog."""
        spec, proc, app = self.spec, self.proc, self.app
        ol = OpLog(self.applog)
        deadline = time.monotonic() + 45
        while True:
            ol.poll()
            now = time.monotonic()
            done = [op for op in ol.ops if op["t1"] is not None]
            streak = []
            for op in reversed(done):
                if not op["ok"]:
                    break
                streak.append(op)
            ok = len([op for op in done if op["ok"]]) >= 10 and streak and \
                now - streak[-1]["t0"] >= 2.0
            if ok and spec["prog"] == "ours" and spec["mode"] == "loop":
                ok = "tunnel up" in B.read_log(self.logfile)
            if ok:
                return ol
            for p, what in ((proc, "autossh"), (app, "the application client")):
                if p.poll() is not None:
                    raise RuntimeError(f"{what} exited with {p.returncode} before the tunnel worked")
            if now > deadline:
                raise RuntimeError(f"not ready within 45 s ({len(done)} operations done, "
                                   f"{sum(1 for op in done if op['ok'])} ok)")
            time.sleep(0.1)

    def wait_go(self, ol):
        """Says ready, waits for the coordinator's go and then for the fault's instant."""
        spec = self.spec
        self.res["ops_before_ready"] = len(ol.ops)
        B.write_json(spec["ready"], {"t": time.monotonic()})
        if not B.wait_file(spec["go"], 180):
            raise RuntimeError("no go signal from the coordinator")
        with open(spec["go"]) as f:
            t_fault = json.load(f)["t0"]
        B.sleep_until(t_fault)

    def apply_fault(self):
        """Freezes the sessions or applies a Fault (returned; None for a freeze)."""
        fault, st = self.spec["fault"], self.st
        st["log_fault"] = B.log_size(self.logfile)
        st["t_fault"] = time.monotonic()
        f = None
        if fault == "planned":
            os.kill(self.proc.pid, signal.SIGUSR1)
        elif fault == "freeze":
            self.frozen = sshd_sessions(self.sshd)
            if not self.frozen:
                raise RuntimeError("no sshd session process to freeze")
            B.freeze(self.frozen)
            self.res["frozen_pids"] = len(self.frozen)
        else:
            f = B.Fault("serverdown" if fault == "restart" else "blackhole", self.net,
                        self.sshd, self.d)
            f.apply()
        st["t_applied"] = time.monotonic()
        return f

    def watch(self, ol, f):
        """Lifts the fault when due and follows the application until it has recovered (then
        `tail` s more) or `giveup` s passed; returns the server's return time (None: none)."""
        spec, st = self.spec, self.st
        length = spec["restart"] if spec["fault"] == "restart" else spec["hole"]
        t_return = None
        t_lift_due = st["t_fault"] + length if f is not None else None
        giveup, tail = spec["giveup"], spec["tail"]
        give_up_at = st["t_fault"] + giveup if f is None else None
        end = None
        while True:
            now = time.monotonic()
            if f is not None and t_return is None and now >= t_lift_due:
                st["t_lift"] = now
                t_return = f.lift()  # rules deleted / new sshd says "Server listening"
                st["t_return"] = t_return
                st["log_return"] = B.log_size(self.logfile)
                give_up_at = t_return + giveup
            ol.poll()
            now = time.monotonic()
            a = analyse(ol.ops, st["t_fault"], t_return, now)
            if end is None and a["recovered"] and (f is None or t_return is not None):
                end = max(a["outage_end"], a["after_return_end"] or 0) + tail
                st["log_recovered"] = B.log_size(self.logfile)
            if end is not None and now >= end:
                return t_return
            if end is None and give_up_at is not None and now >= give_up_at:
                return t_return
            if spec["fault"] == "planned" and a["outage_start"] is None and \
                    now >= st["t_fault"] + PLANNED_WINDOW:
                return None  # nothing failed or blocked: the restart did not reach it
            if self.app.poll() is not None:
                raise RuntimeError(f"the application client exited with {self.app.returncode}")
            time.sleep(0.02)

    def stop(self, ol, t_return):
        """Stops the application and autossh; returns the end time and the final analysis."""
        t_end = time.monotonic()
        B.stop(self.app, grace=0.5)
        self.app = None
        # autossh's log ends here (stopping it, or later killing the frozen sessions, would add
        # lines that are not part of the run)
        self.st["log_end"] = B.log_size(self.logfile)
        self.res["autossh_alive_at_end"] = self.proc.poll() is None
        B.stop(self.proc)
        self.proc = None
        time.sleep(0.1)
        ol.poll()
        return t_end, analyse(ol.ops, self.st["t_fault"], t_return, t_end)

    def outage_results(self, ol, t_return, t_end, a):
        """The fault's timing as the application saw it."""
        res, st, giveup = self.res, self.st, self.spec["giveup"]
        tf = st["t_fault"]
        res["fault_apply_s"] = round(st["t_applied"] - tf, 3)
        if t_return is not None:
            res["return_after_fault_s"] = round(t_return - tf, 2)
            res["return_after_lift_s"] = round(t_return - st["t_lift"], 3)
        res["giveup_s"] = giveup
        res["observed_until_s"] = round(t_end - tf, 2)
        if a["outage_start"] is None:
            res["outage_s"] = 0.0
            res["note"] = "no operation failed or blocked: the fault did not reach the application"
        else:
            res["outage_start_after_fault_s"] = round(a["outage_start"] - tf, 3)
            if a["outage_end"] is not None:
                res["outage_s"] = round(a["outage_end"] - a["outage_start"], 3)
                res["outage_end_after_fault_s"] = round(a["outage_end"] - tf, 3)
            else:
                res["outage_s"] = None
                # censored: no success within this many seconds of the fault
                res["outage_more_than_s"] = int((t_end - tf) * 10) / 10
        if t_return is not None:
            if a["after_return_end"] is not None:
                res["after_return_s"] = round(a["after_return_end"] - t_return, 3)
            else:
                res["after_return_s"] = None
                res["after_return_more_than_s"] = int((t_end - t_return) * 10) / 10
            res["ok_during_fault"] = sum(1 for op in ol.ops if op["ok"] and op["t1"] is not None
                                         and st["t_applied"] + SLOW < op["t1"] < t_return)
        res["recovered"] = a["recovered"]

    def op_results(self, ol, t_end):
        """Operations and connects: counts and the most frequent errors."""
        res, tf = self.res, self.st["t_fault"]
        ops = ol.ops
        res["ops"] = len(ops)
        res["ops_ok"] = sum(1 for op in ops if op["ok"])
        res["ops_failed"] = sum(1 for op in ops if op["t1"] is not None and not op["ok"])
        # still in flight when the application was stopped: blocked ones count, a last
        # operation cut by the stop (started less than SLOW s before it) does not
        res["ops_unfinished"] = sum(1 for op in ops if op["t1"] is None and t_end - op["t0"] > SLOW)
        res["baseline_failed"] = sum(1 for op in ops if op["t1"] is not None and op["t1"] < tf
                                     and not op["ok"])
        after = [c for c in ol.connects if c["t0"] >= tf]
        res["connects_after_fault"] = len(after)
        res["connects_failed_after_fault"] = sum(1 for c in after if not c["ok"])
        # what the application met: a connect refused, an operation that failed
        res["connects_refused_after_fault"] = sum(
            1 for c in after if not c["ok"] and "refused" in (c.get("err") or "").lower())
        res["ops_failed_after_fault"] = sum(
            1 for op in ops if op["t1"] is not None and op["t1"] >= tf and not op["ok"])
        errs = {}
        for op in ops:
            if op.get("err"):
                errs[op["err"]] = errs.get(op["err"], 0) + 1
        for c in after:
            if c.get("err"):
                e = "connect: " + c["err"]
                errs[e] = errs.get(e, 0) + 1
        res["errors"] = dict(sorted(errs.items(), key=lambda kv: -kv[1])[:8])

    def log_results(self):
        """ssh starts in autossh's log: after the fault, until recovery, in all."""
        res, st = self.res, self.st
        text = B.read_log(self.logfile)[:st["log_end"]]
        res["log_fault_offset"] = st["log_fault"]
        res["restarts"] = B.starts(text[st["log_fault"]:])
        if "log_recovered" in st:
            res["restarts_to_recovery"] = B.starts(text[st["log_fault"]:st["log_recovered"]])
        res["starts_total"] = B.starts(text)

    def write_results(self, ol):
        """Acknowledged writes: every id whose INSERT returned without error must be in the
        table."""
        res = self.res
        if self.frozen:
            kill_frozen(self.frozen)
            self.frozen = []
        acked = {op["n"] for op in ol.ops if op["ok"]}
        present = self.pg.ids()
        res["acked"] = len(acked)
        res["rows"] = len(present)
        res["lost"] = len(acked - present)
        res["lost_ids"] = sorted(acked - present)[:20]
        res["unacked_present"] = len(present - acked)  # committed, but the reply never came

    def finish(self):
        """Stops what still runs, writes the result and keeps the logs."""
        spec, d, res, st = self.spec, self.d, self.res, self.st
        if self.app is not None:
            B.stop(self.app, grace=0.5)
        if self.frozen:
            kill_frozen(self.frozen)
        if self.proc is not None:
            B.stop(self.proc)
        if self.pg is not None:
            self.pg.stop()
        if self.sshd is not None:
            self.sshd.kill()
        if self.pg is not None:
            self.pg.remove()
        text = B.read_log(self.logfile)
        res["log_key_lines"] = B.key_lines(text[st.get("log_fault", 0):st.get("log_end", len(text))], 120)
        B.write_json(spec["out"], res)
        os.makedirs(LOGDIR, exist_ok=True)
        for src, dst in ((self.logfile, ".log"), (os.path.join(d, "autossh.stderr"), ".stderr"),
                         (self.applog, ".app.jsonl"), (os.path.join(d, "app.stderr"), ".app.stderr"),
                         (os.path.join(d, "postgres.log"), ".postgres.log")):
            if os.path.exists(src) and os.path.getsize(src) > 0:
                shutil.copy(src, os.path.join(LOGDIR, spec["tag"] + dst))


def worker(spec):
    os.makedirs(spec["dir"], exist_ok=True)
    job = AppRun(spec)
    try:
        job.start()
        ol = job.wait_ready()
        job.wait_go(ol)
        f = job.apply_fault()
        t_return = job.watch(ol, f)
        t_end, a = job.stop(ol, t_return)
        job.outage_results(ol, t_return, t_end, a)
        job.op_results(ol, t_end)
        job.log_results()
        job.write_results(ol)
    except Exception as e:  # noqa: BLE001 - reported in the results
        job.res["error"] = f"{type(e).__name__}: {e}"
    finally:
        job.finish()


def kill_frozen(pids):
    """SIGKILL first (it ends a stopped process too): a SIGCONT first would let a frozen session
    run for a moment and pass on what it holds."""
    for p in pids:
        B._signal(p, signal.SIGKILL)
    B.unfreeze_and_kill(pids)


def sshd_sessions(sshd):
    """Every descendant of the sshd listener: the server side of the session."""
    return B.descendants(sshd.proc.pid) if sshd.proc is not None else []


# ---------------------------------------------------------------------------------------------
# coordinator

def run_scenario(cfg, rep, fault, mode, seq, app_py, tpl_dir, bindir, results):
    """Ours and 1.4g side by side in one scenario: two namespace pairs, the fault at the same
    instant."""
    scen = f"{fault}-{mode}"
    base = os.path.join(B.WORK, "app", f"r{rep}-{scen}")
    go = os.path.join(base, "go.json")
    pairs, workers = [], []
    length = {"freeze": 0, "planned": PLANNED_WINDOW, "restart": cfg["restart"],
              "blackhole": cfg["hole"]}[fault]
    max_run = length + cfg["giveup"] + cfg["tail"] + 30
    try:
        for prog in ("ours", "1.4g"):
            seq[0] += 1
            pair = B.Pair((seq[0] - 1) % 250 + 1)
            pairs.append(pair)
            pair.create()
            tag = f"r{rep}-{scen}-{prog}"
            d = os.path.join(base, prog)
            os.makedirs(d, exist_ok=True)
            spec = dict(ours=PROGS["ours"], scenario=scen, fault=fault, mode=mode, prog=prog, tag=tag, rep=rep, dir=d,
                        net=pair.info(), go=go, ready=os.path.join(d, "ready.json"),
                        out=os.path.join(d, "result.json"), app_py=app_py, pg_root=tpl_dir,
                        pg_bin=bindir, giveup=cfg["giveup"], tail=cfg["tail"],
                        hole=cfg["hole"], restart=cfg["restart"], max_life=max_run + 120)
            spec_file = os.path.join(d, "spec.json")
            B.write_json(spec_file, spec)
            p = B.start(["ip", "netns", "exec", pair.cli, app_py, os.path.abspath(__file__),
                         "worker", "--spec", spec_file],
                        stdout=os.path.join(d, "worker.log"), stderr=os.path.join(d, "worker.log"))
            workers.append((spec, p))
        deadline = time.monotonic() + 75
        for spec, p in workers:
            B.wait_file(spec["ready"], max(0.1, deadline - time.monotonic()),
                        lambda p=p: p.poll() is None)
        up = sum(1 for spec, _ in workers if os.path.exists(spec["ready"]))
        t0 = time.monotonic() + 1.0
        B.write_json(go, {"t0": t0})
        B.log(f"rep {rep} {scen}: {up}/2 ready; fault in 1 s; at most {max_run:.0f} s")
        end = t0 + max_run
        B.collect(workers, end, ("scenario", "fault", "mode", "prog", "tag", "rep"), results, report_one)
    finally:
        for pair in pairs:
            pair.destroy()


def secs(v, more):
    return f"{v:.2f} s" if v is not None else (f"> {more:.0f} s" if more is not None else "n/a")


def report_one(r):
    head = f"  {r['scenario']:<16} {r['prog']:<5}"
    if "error" in r:
        B.log(f"{head} ERROR {r['error']}")
        return
    s = f"{head} outage {secs(r.get('outage_s'), r.get('outage_more_than_s'))}"
    if "return_after_fault_s" in r:
        s += f", after return {secs(r.get('after_return_s'), r.get('after_return_more_than_s'))}"
    s += (f"; ssh starts {r['restarts']}; acked {r['acked']}, lost {r['lost']}; "
          f"ops {r['ops_ok']} ok / {r['ops_failed']} failed / {r['ops_unfinished']} unfinished; "
          f"connects refused {r.get('connects_refused_after_fault')}")
    B.log(s)


def run(args):
    if os.geteuid() != 0:
        B.die("run as root (network namespaces, iptables, sshd, postgres)")
    cfg = settings()
    for tool in ("ip", "iptables", "runuser", "/usr/sbin/sshd", "/usr/bin/ssh", PROGS["ours"],
                 PROGS["1.4g"]):
        if not shutil.which(tool) and not os.path.exists(tool):
            B.die(f"missing: {tool}")
    app_py = app_python()
    if app_py is None:
        B.die("no python3 with psycopg2 (apt-get install python3-psycopg2)")
    bindir = pg_bin()
    if bindir is None:
        B.die("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    # a copy of ours: a rebuild of target/release during the run does not change what is measured
    os.makedirs(os.path.join(B.WORK, "bin"), exist_ok=True)
    ours_copy = os.path.join(B.WORK, "bin", "autossh")
    shutil.copy2(PROGS["ours"], ours_copy)
    ours_src = PROGS["ours"]
    PROGS["ours"] = ours_copy
    B.remove_stale_namespaces()
    B.make_keys()
    # the postgres user must reach its data directories inside the (0700) work directory
    os.chmod(B.WORK, 0o711)
    pg_root = os.path.join(B.WORK, "pg")
    make_template(pg_root, bindir)
    pg_version = B.sh([os.path.join(bindir, "postgres"), "--version"]).strip()
    psy = subprocess.run([app_py, "-c", "import psycopg2; print(psycopg2.__version__)"],
                         capture_output=True, text=True).stdout.strip()
    meta = dict(cfg, ours=ours_src, postgres=pg_version, psycopg2=psy, app_python=app_py,
                slow_s=SLOW, interval_s=INTERVAL, connect_timeout_s=CONNECT_TIMEOUT,
                side_by_side=True)
    B.log(f"{pg_version}; psycopg2 {psy} ({app_py}); faults {' '.join(cfg['faults'])}; "
          f"repeat {cfg['repeat']}; give-up {cfg['giveup']:.0f} s" + ("; QUICK" if cfg["quick"] else ""))
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR, exist_ok=True)
    results, seq = [], [0]
    t_start = time.monotonic()
    try:
        for rep in range(1, cfg["repeat"] + 1):
            for fault in cfg["faults"]:
                for mode in MODES:
                    run_scenario(cfg, rep, fault, mode, seq, app_py, pg_root, bindir, results)
                    B.write_json(args.out, {"meta": meta, "results": results})
    finally:
        meta["duration_s"] = round(time.monotonic() - t_start)
        B.write_json(args.out, {"meta": meta, "results": results})
        B.log(f"app benchmark done in {meta['duration_s']} s")


# ---------------------------------------------------------------------------------------------
# report

def int_cell(rs, key):
    if not rs:
        return "—"
    return ",".join("err" if "error" in r or r.get(key) is None else str(r[key]) for r in rs)


def scenario_rows(res, hole, restart):
    """Per fault and command line with results: its table row, our goal on every run (the
    worst, not the median), the remarks on its runs, and our runs whose goal failed."""
    goals, notes, rows, odd = [], [], [], []
    for fault in FAULTS:
        for mode in MODES:
            rs = {p: [r for r in res if r.get("fault") == fault and r.get("mode") == mode
                      and r.get("prog") == p] for p in PROGS}
            if not rs["ours"] and not rs["1.4g"]:
                continue
            name = FAULT_NAME[fault].format(hole=hole, restart=restart)
            rows.append(scenario_row(name, fault, mode, rs))
            new = scenario_goals(name, fault, mode, rs)
            goals += new
            if not all(ok for _, _, ok in new):
                odd += [r for r in rs["ours"] if "error" not in r]
            notes += run_notes(rs)
    return goals, notes, rows, odd


def scenario_row(name, fault, mode, rs):
    """One row of the results table."""
    ret = fault in ("restart", "blackhole")
    both = lambda key: f"{int_cell(rs['ours'], key)} / {int_cell(rs['1.4g'], key)}"  # noqa: E731
    return [name, MODE_NAME[mode], sec_cell(rs["ours"], "outage_s"),
            sec_cell(rs["1.4g"], "outage_s"),
            sec_cell(rs["ours"], "after_return_s") if ret else "—",
            sec_cell(rs["1.4g"], "after_return_s") if ret else "—",
            both("connects_refused_after_fault"), both("ops_failed_after_fault"),
            both("restarts"), both("lost")]


def scenario_goals(name, fault, mode, rs):
    """Our goals in one scenario, on every run (the worst), not the median: recovery time (a
    planned restart: no outage at all), no connect refused, and across a planned restart no
    failed query."""
    ret = fault in ("restart", "blackhole")
    if fault == "planned":
        key, limit, what = "outage_s", 0.0, "no request fails or blocks (outage 0)"
    elif ret:
        key, limit = "after_return_s", RETURN_GOAL
        what = f"requests succeed again within {limit:g} s of the server being reachable again"
    else:
        key, limit = "outage_s", FREEZE_GOAL
        what = f"requests succeed again within {limit:g} s of the freeze (outage)"
    vals = [rec_value(r, key) for r in rs["ours"]]
    ok = bool(vals) and all(v is not None and not c and v <= limit for v, c in vals)
    goals = [(f"{name}, {MODE_NAME[mode]}: ours {what}", sec_cell(rs["ours"], key) + " s", ok)]
    counts = [("connects_refused_after_fault", "0 connects refused")]
    if fault == "planned":
        counts.append(("ops_failed_after_fault", "0 failed queries"))
    for k, what in counts:
        got = [r.get(k) for r in rs["ours"] if "error" not in r]
        ok = bool(got) and len(got) == len(rs["ours"]) and all(v == 0 for v in got)
        goals.append((f"{name}, {MODE_NAME[mode]}: ours {what}", int_cell(rs["ours"], k), ok))
    return goals


def run_notes(rs):
    """Remarks on the runs of one scenario ({prog: [result]}): errors and oddities."""
    notes = []
    for p in PROGS:
        for r in rs[p]:
            if "error" in r:
                notes.append(f"{r['tag']}: {r['error']}")
                continue
            if r.get("baseline_failed"):
                notes.append(f"{r['tag']}: {r['baseline_failed']} operations failed before the fault")
            if r.get("ok_during_fault"):
                notes.append(f"{r['tag']}: {r['ok_during_fault']} operations succeeded while the "
                             "server was unreachable (the fault did not cut the tunnel?)")
            if r.get("note"):
                notes.append(f"{r['tag']}: {r['note']}")
            if not r.get("autossh_alive_at_end", True):
                notes.append(f"{r['tag']}: autossh had exited by the end of the run")
    return notes


def lost_write_goals(res):
    """Per program: no acknowledged write lost, in every run."""
    goals = []
    for p in PROGS:
        rr = [r for r in res if r.get("prog") == p]
        lost = [r.get("lost") for r in rr if "error" not in r]
        ok = bool(lost) and all(v == 0 for v in lost) and len(lost) == len(rr)
        acked = sum(r.get("acked") or 0 for r in rr if "error" not in r)
        unacked = sum(r.get("unacked_present") or 0 for r in rr if "error" not in r)
        goals.append((f"0 acknowledged writes lost, {p}, every run",
                      f"{sum(v or 0 for v in lost)} lost of {acked} acknowledged in {len(lost)} runs "
                      f"({unacked} rows committed whose acknowledgement never arrived)", ok))
    return goals


def report_head(meta, facts, title, giveup):
    """results-app.md down to the results table's title: the machine and the run."""
    from report import md_facts  # noqa: PLC0415

    md = ["# Application benchmark results", "",
          f"Generated by `bash bench/run.sh app` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode (short faults, give-up 20 s): a smoke test, not the benchmark.**"
             if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "ssh",
                           "autossh_14g", "rustc", "commit"))
    md += [f"- postgres: {meta.get('postgres', '?')}; psycopg2 {meta.get('psycopg2', '?')} "
           f"({meta.get('app_python', '?')})",
           f"- ours: {meta.get('ours', '?')} (copied when the benchmark started); 1.4g: {B.THEIRS}",
           f"- benchmark run: {meta.get('duration_s', '?')} s; repetitions {meta.get('repeat', '?')}; "
           f"give-up {giveup:g} s; faults: {', '.join(meta.get('faults', []))}",
           "- ours and 1.4g of one scenario ran **side by side at the same time** (each in its own "
           "pair of namespaces, the fault applied at the same CLOCK_MONOTONIC instant); the "
           "scenarios ran one after the other", "",
           "See bench/README.md (section 5) and the notes below for what each number means.", "",
           "## " + title, ""]
    return md


def report_body(meta, res, header, rows, goals, notes, odd, hole, restart, giveup):
    """results-app.md from the results table on: goals, runs, remarks, our odd logs."""
    from report import md_table  # noqa: PLC0415

    md = md_table(header, rows) if rows else ["(no results)"]
    md += ["", "Cells: seconds (`median [each run]` when repeated); `> N`: no successful request "
           "within N s of the fault (outage columns) or of the server's return (after-return columns): the give-up. *ssh starts*: \"starting ssh\" log "
           "lines from the fault to the end of the run, per run. *lost writes*: acknowledged "
           "INSERTs missing from the table at the end. *refused connects*: the application's "
           "connect attempts from the fault on that failed with \"Connection refused\"; "
           "*failed queries*: INSERTs that ended with an error from the fault on.", "",
           "## Goals", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {g}: {v}" for g, v, ok in goals]
    md.append("")
    md += ["## Per run", ""]
    md += md_table(["run", "outage from fault s (start → end)", "after return s",
                    "ops ok / failed / unfinished", "connect attempts after fault (failed)",
                    "acked / rows", "most frequent errors"],
                   [[r["tag"], per_run_span(r), fmt_ret(r),
                     f"{r.get('ops_ok')} / {r.get('ops_failed')} / {r.get('ops_unfinished')}",
                     f"{r.get('connects_after_fault')} ({r.get('connects_failed_after_fault')})",
                     f"{r.get('acked')} / {r.get('rows')}",
                     "; ".join(f"{k[:90]} ×{v}" for k, v in list(r.get("errors", {}).items())[:2])
                     .replace("|", "/")]
                    for r in res if "error" not in r])
    md.append("")
    if notes:
        md += ["## Remarks and errors during the run", ""] + [f"- {n}" for n in notes] + [""]
    if odd:
        md += ["## Our autossh's log where a goal failed", "",
               "Key lines (per-probe chatter left out) from the fault on; full logs in bench/logs/app/.", ""]
        for r in odd:
            lines = r.get("log_key_lines", [])
            if len(lines) > 40:
                lines = lines[:20] + [f"... ({len(lines) - 40} lines left out) ..."] + lines[-20:]
            md += [f"### {r['tag']}", "", "```"] + [l[:220] for l in lines] + ["```", ""]
    md.append(NOTES.format(slow=SLOW, giveup=giveup, hole=hole, restart=restart,
                           tail=meta.get("tail", TAIL), planned=PLANNED_WINDOW))
    return md


def report(args):
    from report import load, print_results, write_md  # noqa: PLC0415

    data = load(args.json, dict)
    meta = data.get("meta", {})
    res = data.get("results", [])
    facts = load(args.facts, dict) if args.facts else {}
    hole, restart, giveup = meta.get("hole", 30), meta.get("restart", 10), meta.get("giveup", 60)
    goals, notes, rows, odd = scenario_rows(res, hole, restart)
    goals += lost_write_goals(res)
    header = ["fault", "command line", "ours outage s", "1.4g outage s", "ours after return s",
              "1.4g after return s", "refused connects ours / 1.4g",
              "failed queries ours / 1.4g", "ssh starts ours / 1.4g", "lost writes ours / 1.4g"]
    title = (f"Application-visible outage, psycopg2 through the tunnel, default settings "
             f"({meta.get('repeat', 1)} run{'s' if meta.get('repeat', 1) > 1 else ''} each)")
    sections = [(title, (header, rows) if rows else None)]
    print_results(sections, goals, notes)

    md = report_head(meta, facts, title, giveup)
    md += report_body(meta, res, header, rows, goals, notes, odd, hole, restart, giveup)
    write_md(args.md, md)


def per_run_span(r):
    s, e = r.get("outage_start_after_fault_s"), r.get("outage_end_after_fault_s")
    if s is None:
        return "not affected"
    return f"{s:.2f} → {e:.2f}" if e is not None else f"{s:.2f} → none within {r.get('observed_until_s')}"


def fmt_ret(r):
    if "return_after_fault_s" not in r:
        return "—"
    return secs(r.get("after_return_s"), r.get("after_return_more_than_s")).replace(" s", "") + \
        f" (return at {r['return_after_fault_s']:.1f})"


NOTES = """## Notes (fixed text, from app_bench.py)

- **Setup.** Each run has two network namespaces, CLI and SRV, joined by a veth pair
  10.203.N.0/30 made inside them. SRV: OpenSSH's sshd on 10.203.N.1:22 (private host and client
  keys, `UsePAM no`, `StrictModes no`, key-only root login) and a private PostgreSQL cluster on
  127.0.0.1:5433 (a copy of a template made once with initdb, started as the postgres user, trust
  auth for 127.0.0.1). CLI: the autossh under test with `-L 15432:127.0.0.1:5433`, and the
  application.
- **Command lines**, both programs, default settings (no AUTOSSH_POLL, i.e. 600 s; set:
  `AUTOSSH_GATETIME=0 AUTOSSH_PATH=/usr/bin/ssh AUTOSSH_LOGFILE=... AUTOSSH_DEBUG=1`), ssh
  options `OPTS` = `-F /dev/null -i KEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -o LogLevel=ERROR`: the article's
  `autossh -M 0 -N -o "ServerAliveInterval 60" -o "ServerAliveCountMax 3" -L 15432:127.0.0.1:5433 OPTS root@10.203.N.1`
  and loop mode `autossh -M 20000 -N -L 15432:127.0.0.1:5433 OPTS root@10.203.N.1`.
- **Application**: psycopg2, one connection to 127.0.0.1:15432 (`connect_timeout=2`, everything
  else default: no statement_timeout, no tcp_user_timeout), autocommit, an
  `INSERT INTO t(id, at)` every 200 ms with a new id each; on any error it closes the connection
  and reconnects (a new attempt 50 ms after each failure) and goes on. Every operation's start
  and end are logged (JSONL in bench/logs/app/). A write is *acknowledged* when execute()
  returned without error.
- **Faults**, applied when the application had >= 10 successful writes, the last 2 s of them
  all successful, and (ours, loop mode) our log said "tunnel up". *Frozen session*: SIGSTOP of
  every descendant of the sshd listener (the server side of the session), kept until the end of
  the run. *sshd restarted*: SIGKILL of the listener and every session; a new sshd {restart} s
  later; "reachable again" is when its log says "Server listening". *Black hole*: iptables DROP
  on arrival at both ends (CLI drops what comes from SRV, SRV what comes from CLI) for {hole} s;
  "reachable again" is when the rules were deleted.
- **Outage** = from the start of the first operation (not finished before the fault) that failed
  or did not finish within {slow:g} s, to the end of the first operation from it on that
  succeeded (a blocked write that finally goes through ends it too). **After return** = from
  the server being reachable again to the end of the first successful operation ending after
  it. The application runs {tail:g} s after that, then stops; give-up {giveup:g} s after the freeze,
  or after the return for the other faults (`> N` in the table).
- **Planned restart**: SIGUSR1 to the autossh process (both programs: "kill ssh and start a
  new one"), under the same load; watched {planned:g} s (or, if it caused an outage, until it
  recovered). Ours holds the forward and restarts make-before-break: the application's
  connection goes on through the old ssh until the new one is proven, then drains; 1.4g kills
  ssh, the connection dies with it and the reconnects meet a closed port until ssh is back.
- **Refused connects and failed queries**: ours holds the listener (docs/held.md), so while ssh
  is replaced a connect is accepted and waits (at most AUTOSSH_HOLD_TIME, 60 s; libpq's
  connect_timeout=2 may give up first: that is the application's timeout, not a refusal);
  1.4g leaves the port to ssh, and nobody listens while ssh is away.
- **Lost writes**: after the run (fault lifted, frozen sessions killed) the table is read
  directly in SRV over postgres's unix socket; acknowledged ids missing from it are lost.
  Rows present whose INSERT was never acknowledged (the reply died with the tunnel) are counted
  separately and are not losses.
- **Reading the black-hole rows.** A write sent into a black hole sits unacknowledged in ssh's
  TCP send queue; TCP retransmits it with exponential backoff (0.2 s doubling, up to 2 min). A
  program that keeps that ssh (1.4g: its loop probe is due only every 600 s; with `-M 0`,
  ServerAlive needs 3 minutes) leaves the application blocked until the next retransmission after the return,
  typically 15-30 s after a 30 s hole; the write then goes through. Ours replaces the stalled ssh
  (during the hole, or as soon as the server answers a fresh connect), the application's
  connection is closed, and it reconnects through the new ssh.
- **1.4g after an sshd restart** is a matter of phase. When ssh fails fast, 1.4g restarts it at
  once a few times, then sleeps a growing "grace time" (2 s, 8 s, 18 s, ...) between tries (see
  its log): after the kill its starts come at about 0 s (five of them), 2 s, 10 s, 28 s. With
  sshd back after 10 s, the start at about 10 s lands just after the new listener (tunnel back
  in a fraction of a second) or just before it (then the next try is 18 s later); with sshd back after 4 s (quick mode) it comes about 6 s
  after the return. Ours connects to the server every 250 ms while it is down and starts ssh
  when it answers.
- **1.4g** is Debian's `/usr/lib/autossh/autossh` (not the `/usr/bin/autossh` wrapper). With
  `-M 0` it relies on ssh's ServerAlive (60 s x 3: a frozen session is noticed after 3-4
  minutes); in loop mode at the default poll (600 s) it probes every 10 minutes.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "worker", "client", "report"])
    ap.add_argument("--out")
    ap.add_argument("--spec")
    ap.add_argument("--port", type=int)
    ap.add_argument("--log")
    ap.add_argument("--max-life", type=float, default=600)
    ap.add_argument("--json")
    ap.add_argument("--facts")
    ap.add_argument("--md")
    args = ap.parse_args()
    if args.what == "client":
        return client(args)  # SIGTERM kills it (libpq retries a wait that a handler interrupts)
    if args.what == "report":
        return report(args)
    B.dispatch(args, worker, run)


if __name__ == "__main__":
    main()

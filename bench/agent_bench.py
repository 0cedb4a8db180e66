"""Agent benchmark (issue 18): a key with a passphrase, unattended, through restarts.

  agent_bench.py run --out FILE          the benchmark (`bash bench/run.sh agent`)
  agent_bench.py report --json FILE --facts FACTS --md bench/results-agent.md

Three tunnels side by side in one run, each to a private sshd of its own on 127.0.0.1 (keys of
benchlib.make_keys, plus an ed25519 key with a passphrase made here; LogLevel VERBOSE), all
forwarding to one echo service (line_service.py):

  1.4g     Debian's autossh 1.4g (/usr/lib/autossh/autossh) with the passphrase-protected key:
           its ssh asks for the passphrase at every start
  ours     target/release/autossh with the same key: at AUTOSSH_AGENT=auto (the default) it
           runs its own ssh-agent and asks once (ssh-add); every ssh uses that agent
  plain    target/release/autossh with a key without a passphrase: the baseline for speed

Every program asks through OpenSSH's own askpass: SSH_ASKPASS is a script of the run's that
appends a line to its counter file and prints the passphrase, SSH_ASKPASS_REQUIRE=force, no
DISPLAY, no SSH_AUTH_SOCK, its own session (no terminal). Command line, all three:

  PROG -M 0 -N -L TUN:127.0.0.1:SVC -o ServerAliveInterval=60 -o ServerAliveCountMax=3
       -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes
       -o LogLevel=ERROR -i KEY -F /dev/null -p PORT root@127.0.0.1

with AUTOSSH_GATETIME=0 AUTOSSH_PATH=/usr/bin/ssh AUTOSSH_LOGFILE AUTOSSH_DEBUG=1 and no
AUTOSSH_POLL (600 s); TMPDIR a directory of the run's own (ours' private directory lives there).

  start      each in turn, until a line through its tunnel comes back (checks every 50 ms)
  restarts   R rounds (AGENT_BENCH_RESTARTS, 5; quick 2), the three in a rotated order each
             round: every sshd session process of the tunnel's sshd SIGKILLed (ssh sees its
             connection closed and exits; both programs start a new one), seconds from the
             kill until a check started after it is echoed (give-up AGENT_BENCH_WAIT, 60 s)
  prompts    the askpass calls: at the start, during the restarts
  SIGTERM    autossh alone gets SIGTERM; 5 s later, every process it ever had below it (seen
             every 0.1 s) or that carries the run's mark in its environment, still alive, is
             left over; so is every file under the run's TMPDIR (and /tmp/autossh-PID-*)
  SIGKILL    a fresh instance of each, up and echoing, then SIGKILL of autossh: the same count
             5 s later; then (ours) a new autossh started with the killed one's TMPDIR: is the
             private directory the killed one left removed by it?

Environment: AGENT_BENCH_QUICK=1 (2 restarts: a smoke test), AGENT_BENCH_RESTARTS (5),
AGENT_BENCH_WAIT (60), AGENT_BENCH_OURS (our binary; default target/release/autossh).
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import benchlib as B

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "logs", "agent")
OURS = os.environ.get("AGENT_BENCH_OURS") or B.OURS
SSH = "/usr/bin/ssh"
PASS = "correct horse 18"
COLS = ("1.4g", "ours", "plain")
LABEL = {"1.4g": "1.4g, passphrase key", "ours": "ours, passphrase key",
         "plain": "ours, key without passphrase"}
RATIO_GOAL = 1.10       # ours (passphrase) recovery median <= 1.10 x ours (plain key)
LEFT_AFTER_S = 5.0      # leftovers are counted this long after the signal
SETTLE_S = 1.5          # a working tunnel is left alone this long before its sessions are killed
CHECK_EVERY_S = 0.05
CHECK_TIMEOUT_S = 1.0   # a held connection (ours) may wait for the new ssh a little
TRACK_EVERY_S = 0.1
MARK = "AGENT_BENCH_RUN"
RESTART_IN = re.compile(r"restarting ssh in (\d+(?:\.\d+)?) s")
ACCEPTED = re.compile(r"Accepted publickey for \S+ from \S+ port \d+ ssh2: (\S+) (\S+)")


def settings():
    quick = os.environ.get("AGENT_BENCH_QUICK", "") not in ("", "0")
    try:
        restarts = int(os.environ.get("AGENT_BENCH_RESTARTS") or (2 if quick else 5))
        wait = int(os.environ.get("AGENT_BENCH_WAIT") or 60)
    except ValueError:
        raise SystemExit("AGENT_BENCH_RESTARTS and AGENT_BENCH_WAIT must be positive integers")
    if restarts < 1 or wait < 1 or restarts > 100:
        raise SystemExit("AGENT_BENCH_RESTARTS (1-100) and AGENT_BENCH_WAIT must be positive integers")
    return {"quick": quick, "restarts": restarts, "wait_s": wait}


# ---------------------------------------------------------------------------------------------
# processes: identities that survive their parent's death, the run's mark

def start_time(pid):
    """/proc/PID/stat's starttime (with the pid, what names one process; None when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid, st):
    """Whether process (pid, starttime) still runs (a zombie counts as gone)."""
    return start_time(pid) == st and B.proc_state(pid) not in (None, "Z", "X")


def marked(mark):
    """Every process whose environment has MARK=mark: {pid: command line}."""
    want = f"{MARK}={mark}".encode() + b"\0"
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if want in env or env.endswith(want[:-1]):
            out[int(d)] = B.cmdline(int(d))
    return out


TMP_ROOT = f"/tmp/agb-{os.getpid()}"


def new_tmpdir():
    """A TMPDIR of its own for an instance, short enough (<= 20 characters) that ours puts its
    private directory in it (it falls back to /tmp when socket paths there would be too long):
    /tmp/agb-PID/N, removed at the end of the run."""
    os.makedirs(TMP_ROOT, mode=0o700, exist_ok=True)
    n = len(os.listdir(TMP_ROOT))
    d = os.path.join(TMP_ROOT, str(n))
    os.makedirs(d, mode=0o700)
    return d


def short(cmd):
    """A command line cut to its program and a little more."""
    return cmd if len(cmd) <= 70 else cmd[:67] + "..."


# ---------------------------------------------------------------------------------------------
# one instance of a program under test

class Instance:
    """One autossh (1.4g or ours) with its own directory: askpass and its counter, TMPDIR,
    logs; every process seen below it is remembered (pid, starttime)."""

    def __init__(self, kind, name, sshd, tun, svc, key, base, tmpdir=None):
        self.kind, self.name, self.sshd, self.tun = kind, name, sshd, tun
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, exist_ok=True)
        self.tmp = tmpdir or new_tmpdir()
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        self.calls = os.path.join(self.dir, "askpass.calls")
        self.askpass = os.path.join(self.dir, "askpass.sh")
        with open(self.askpass, "w") as f:
            f.write(f"#!/bin/sh\necho \"$$ $*\" >> '{self.calls}'\necho '{PASS}'\n")
        os.chmod(self.askpass, 0o755)
        self.log = os.path.join(self.dir, "autossh.log")
        self.err = os.path.join(self.dir, "stderr")
        self.mark = f"{os.getpid()}-{name}"
        prog = "/usr/lib/autossh/autossh" if kind == "1.4g" else OURS
        self.argv = [prog, "-M", "0", "-N", "-L", f"{tun}:127.0.0.1:{svc}",
                     "-o", "ServerAliveInterval=60", "-o", "ServerAliveCountMax=3",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", key,
                     "-F", "/dev/null", "-p", str(sshd.port), "root@127.0.0.1"]
        env = B.autossh_env(self.log, 0)
        for k in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY", "WAYLAND_DISPLAY", "SSH_ASKPASS",
                  "SSH_ASKPASS_REQUIRE", "AUTOSSH_AGENT"):
            env.pop(k, None)
        env.update(SSH_ASKPASS=self.askpass, SSH_ASKPASS_REQUIRE="force", TMPDIR=self.tmp)
        env[MARK] = self.mark
        self.env = env
        self.proc = None
        self.seen = {}   # (pid, starttime) -> command line
        self.t_track = 0.0
        self.recorded = set()

    def start(self):
        self.t_start = time.monotonic()
        self.proc = B.start(self.argv, env=self.env, stderr=self.err)
        self.track(force=True)

    def track(self, force=False):
        """Remembers every process below autossh (at most every TRACK_EVERY_S s)."""
        now = time.monotonic()
        if self.proc is None or (not force and now - self.t_track < TRACK_EVERY_S):
            return
        self.t_track = now
        for p in B.descendants(self.proc.pid):
            st = start_time(p)
            if st is None:
                continue
            cmd = B.cmdline(p)
            # the latest name: a child seen between fork and exec still has autossh's
            if cmd or (p, st) not in self.seen:
                self.seen[(p, st)] = cmd
            # an agent lives long and leaves autossh's process group: run.sh's trap is told
            if "ssh-agent" in cmd and p not in self.recorded:
                self.recorded.add(p)
                B._record("pids", str(p))

    def prompts(self):
        try:
            with open(self.calls) as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    def ssh_pid(self):
        if self.proc is None:
            return None
        kids = [c for c in B.children(self.proc.pid) if B.cmdline(c).startswith(SSH + " ")]
        return max(kids) if kids else None

    def wait_echo(self, t0, limit, before=None):
        """Checks through the tunnel (every 50 ms, each started after t0) until one is echoed:
        the monotonic time it was (None: give-up after `limit` s or autossh ended). With
        `before` (autossh's children then), also the time a new ssh child was first seen."""
        seen = {}

        def tick(t):
            self.track()
            if before is None or "ssh" in seen:
                return
            for c in B.children(self.proc.pid):
                if c in before:
                    continue
                cmd = B.cmdline(c)
                # 1.4g's child has autossh's command line until it execs ssh
                if not any(x in cmd for x in ("ssh-agent", "ssh-add", "janitor", "ssh-keygen")):
                    seen["ssh"] = t
                    return

        def stop(results):
            if self.proc.poll() is not None:
                return True
            return any(r[2] for r in results)

        checks = B.Checker(self.tun, timeout=CHECK_TIMEOUT_S).run(
            CHECK_EVERY_S, t0 + limit, stop=stop, on_tick=tick)
        ok = [r[1] for r in checks if r[2]]
        t_ok = min(ok) if ok else None
        return t_ok if before is None else (t_ok, seen.get("ssh"))

    def left(self):
        """Processes of this instance still alive: {pid: command line}."""
        out = {p: cmd for (p, st), cmd in self.seen.items() if alive(p, st)}
        for p, cmd in marked(self.mark).items():
            if p not in out and B.proc_state(p) not in (None, "Z", "X"):
                out[p] = cmd
        if self.proc is not None and self.proc.poll() is None:
            out[self.proc.pid] = B.cmdline(self.proc.pid)
        return out

    def files(self, pid=None):
        """Everything under TMPDIR (relative paths), and /tmp/autossh-PID-* of autossh `pid`."""
        out = []
        for root, dirs, files in os.walk(self.tmp):
            for n in dirs + files:
                out.append(os.path.relpath(os.path.join(root, n), self.tmp))
        pid = pid or (self.proc.pid if self.proc else None)
        if pid:
            out += [g for g in glob.glob(f"/tmp/autossh-{pid}-*")]
        return sorted(out)

    def kill_left(self):
        """SIGKILLs whatever of this instance is left (after it was counted)."""
        left = self.left()
        for p in left:
            B.unfreeze_and_kill([p])
        if self.proc is not None:
            B.stop(self.proc, grace=0.5)
        B.wait_gone(list(left), 5)
        return left

    def logins(self):
        """sshd's "Accepted publickey" lines for this tunnel's sshd: [key type, fingerprint]."""
        out = []
        for lf in self.sshd.logs:
            out += [list(m.groups()) for m in ACCEPTED.finditer(B.read_log(lf))]
        return out

    def starts(self):
        return B.starts(B.read_log(self.log))


def text_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def end_with(inst, sig, res):
    """Sends `sig` to autossh alone; 5 s later, what is left (processes, files) goes in res."""
    inst.track(force=True)
    pid = inst.proc.pid
    t0 = time.monotonic()
    os.kill(pid, sig)
    try:
        inst.proc.wait(timeout=LEFT_AFTER_S)
        res["exit_s"] = round(time.monotonic() - t0, 3)
        res["exit_code"] = inst.proc.returncode
    except subprocess.TimeoutExpired:
        res["exit_s"] = None
    B.sleep_until(t0 + LEFT_AFTER_S)
    left = inst.left()
    res["left"] = [{"pid": p, "cmd": short(c)} for p, c in sorted(left.items())]
    res["files"] = inst.files(pid)
    # (a child seen only between fork and exec has autossh's own command line: left out)
    res["tracked"] = sorted({os.path.basename(c.split()[0]) for c in inst.seen.values()
                             if c and c != " ".join(inst.argv)})
    inst.kill_left()


# ---------------------------------------------------------------------------------------------
# the run

def make_enc_key():
    """An ed25519 key with the passphrase, in WORK/keys, authorized beside the plain one."""
    keys = os.path.join(B.WORK, "keys")
    key = os.path.join(keys, "enc_key")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASS, "-C", "agent-bench-enc",
                        "-f", key], check=True, timeout=30)
        with open(key + ".pub") as s, open(os.path.join(keys, "authorized_keys"), "a") as d:
            d.write(s.read())
    # the key really needs it
    r = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", key], capture_output=True, timeout=30)
    if r.returncode == 0:
        raise RuntimeError("enc_key opens without a passphrase")
    return key


def fingerprint(path):
    try:
        out = subprocess.run(["ssh-keygen", "-l", "-f", path], capture_output=True, text=True,
                             timeout=10).stdout
        return out.split()[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def bring_up(inst, cfg, rec):
    """Starts inst and waits for its first echo: rec gets start_s and prompts_start."""
    inst.start()
    t_ok = inst.wait_echo(inst.t_start, cfg["wait_s"])
    if t_ok is None:
        code = inst.proc.poll()
        raise RuntimeError(f"{inst.name}: no echo within {cfg['wait_s']} s of the start"
                           + (f" (autossh exited {code})" if code is not None else "")
                           + f"; see {inst.dir}")
    rec["start_s"] = round(t_ok - inst.t_start, 3)
    rec["prompts_start"] = inst.prompts()
    B.log(f"{inst.name}: up in {rec['start_s']:.2f} s, {rec['prompts_start']} prompt(s)")


def restart_round(inst, cfg, k):
    """One restart: the tunnel's sshd sessions SIGKILLed, the time until it echoes again."""
    r = {"round": k + 1}
    if not B.Checker(inst.tun, timeout=CHECK_TIMEOUT_S).once():
        t = inst.wait_echo(time.monotonic(), cfg["wait_s"])
        r["was_down_before"] = True
        if t is None:
            r["error"] = "the tunnel did not work before the kill"
            return r
    time.sleep(SETTLE_S)
    inst.track(force=True)
    victims = inst.sshd.sessions()
    if not victims:
        r["error"] = "no sshd session to kill"
        return r
    old_ssh, p0 = inst.ssh_pid(), inst.prompts()
    before = set(B.children(inst.proc.pid))
    log0 = B.log_size(inst.log)
    t0 = time.monotonic()
    B.unfreeze_and_kill(victims)
    t_ok, t_ssh = inst.wait_echo(t0, cfg["wait_s"], before)
    r["killed"] = len(victims)
    r["prompts"] = inst.prompts() - p0
    if t_ok is None:
        r["error"] = (f"no echo within {cfg['wait_s']} s of the kill"
                      + (f" (autossh exited {inst.proc.poll()})" if inst.proc.poll() is not None else ""))
        r["recovery_more_than_s"] = cfg["wait_s"]
    else:
        r["recovery_s"] = round(t_ok - t0, 3)
    if t_ssh is not None:
        r["kill_to_new_ssh_s"] = round(t_ssh - t0, 3)
        if t_ok is not None:
            r["new_ssh_to_echo_s"] = round(t_ok - t_ssh, 3)
    # ours says how long it waits before the new ssh (its backoff after quick deaths)
    m = RESTART_IN.search(text_from(inst.log, log0))
    if m:
        r["backoff_logged_s"] = float(m.group(1))
    r["new_ssh"] = inst.ssh_pid() not in (None, old_ssh)
    return r


def main_phase(cfg, insts, res):
    """Start, R restarts (rotated order), prompts, SIGTERM: res[col] per instance."""
    for col in COLS:
        res[col] = {"restarts": []}
        try:
            bring_up(insts[col], cfg, res[col])
        except Exception as e:  # noqa: BLE001  (recorded; the others still run)
            res[col]["error"] = f"{type(e).__name__}: {e}"
            B.log(f"ERROR {res[col]['error']}")
    live = [c for c in COLS if "error" not in res[c]]
    for k in range(cfg["restarts"]):
        order = live[k % len(live):] + live[:k % len(live)] if live else []
        for col in order:
            r = restart_round(insts[col], cfg, k)
            res[col]["restarts"].append(r)
            B.log_result(r, f"restart {k + 1} {col}: ",
                         lambda r: f"{r['recovery_s']:.3f} s (new ssh after {r.get('kill_to_new_ssh_s')} s, "
                         f"then {r.get('new_ssh_to_echo_s')} s to the echo; backoff logged "
                         f"{r.get('backoff_logged_s')}), {r['prompts']} prompt(s), new ssh {r['new_ssh']}")
    for col in COLS:
        inst, rec = insts[col], res[col]
        rec["prompts_total"] = inst.prompts()
        rec["prompts_restarts"] = rec["prompts_total"] - rec.get("prompts_start", 0)
        rec["ssh_starts_logged"] = inst.starts()
        rec["logins"] = inst.logins()
        if inst.proc is None or inst.proc.poll() is not None:
            rec["term"] = {"error": "autossh was not running at the end"
                           + (f" (exit {inst.proc.returncode})" if inst.proc else "")}
            inst.kill_left()
            continue
        rec["term"] = {}
        end_with(inst, signal.SIGTERM, rec["term"])
        t = rec["term"]
        B.log(f"{col}: SIGTERM: exited {t.get('exit_code')} after {t.get('exit_s')} s; left "
              f"{len(t['left'])} process(es) {[x['cmd'] for x in t['left']]}, {len(t['files'])} file(s)")


def kill_phase(cfg, make, res):
    """A fresh instance of each, SIGKILL of autossh, what is left; then ours' next start (its
    record returned)."""
    nxt = {}
    for col in COLS:
        rec = res[col] = {}
        inst = make(col, f"{col}-kill")
        try:
            bring_up(inst, cfg, rec)
            time.sleep(SETTLE_S)
            end_with(inst, signal.SIGKILL, rec)
            rec["prompts_total"] = inst.prompts()
            B.log(f"{col}: SIGKILL: left {len(rec['left'])} process(es) "
                  f"{[x['cmd'] for x in rec['left']]}, {len(rec['files'])} file(s) {rec['files']}")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            B.log(f"ERROR {rec['error']}")
        finally:
            inst.kill_left()
        if col == "ours" and "error" not in rec:
            nxt = next_start(cfg, make, inst, rec)
    return nxt


def next_start(cfg, make, killed, krec):
    """ours (plain key) started with the killed ours' TMPDIR: does it remove what was left?"""
    r = {"left_before": krec.get("files", [])}
    inst = make("plain", "plain-next", tmpdir=killed.tmp)
    try:
        bring_up(inst, cfg, r)
        stale = [f for f in r["left_before"] if f.startswith(f"autossh-{killed.proc.pid}-")
                 or f.startswith(f"/tmp/autossh-{killed.proc.pid}-")]
        r["stale"] = stale
        r["stale_left"] = [f for f in stale if os.path.exists(os.path.join(killed.tmp, f))]
        r["term"] = {}
        end_with(inst, signal.SIGTERM, r["term"])
        B.log(f"next start: the killed one's {stale} -> left {r['stale_left']}; after its SIGTERM "
              f"{len(r['term']['left'])} process(es), files {r['term']['files']}")
    except Exception as e:  # noqa: BLE001
        r["error"] = f"{type(e).__name__}: {e}"
        B.log(f"ERROR next start: {r['error']}")
    finally:
        inst.kill_left()
    return r


def save_logs(d, sshds):
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR, exist_ok=True)
    for name in sorted(os.listdir(d)):
        src = os.path.join(d, name)
        if not os.path.isdir(src) or name.startswith("sshd-"):
            continue
        dst = os.path.join(LOGDIR, name)
        os.makedirs(dst, exist_ok=True)
        for f in ("autossh.log", "stderr", "askpass.calls"):
            if os.path.exists(os.path.join(src, f)):
                shutil.copy2(os.path.join(src, f), dst)
    for col, s in sshds.items():
        for i, lf in enumerate(s.logs):
            if os.path.exists(lf):
                shutil.copy2(lf, os.path.join(LOGDIR, f"sshd-{col}-{i + 1}.log"))


def kill_marked():
    """Anything of this run still alive (its mark in the environment): SIGKILLed."""
    prefix = f"{MARK}={os.getpid()}-".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if prefix in env:
            B.unfreeze_and_kill([int(d)])


def run(args):
    global OURS  # noqa: PLW0603  (a copy: a rebuild during the run does not change what is measured)
    if os.geteuid() != 0:
        B.die("run as root (sshd)")
    cfg = settings()
    for f in (OURS, SSH, "/usr/sbin/sshd", "/usr/lib/autossh/autossh", "/usr/bin/ssh-agent",
              "/usr/bin/ssh-add"):
        if not os.path.exists(f):
            B.die(f"missing: {f}")
    copy = os.path.join(B.WORK, "bin", "autossh-agent")
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copy2(OURS, copy)
    meta_ours, OURS = OURS, copy
    B.make_keys()
    enc = make_enc_key()
    plain = os.path.join(B.WORK, "keys", "client_key")
    d = os.path.join(B.WORK, "agent")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    import fleet_bench as F  # noqa: PLC0415  (its ephemeral_low)

    base = B.free_block(8, lo=10000, hi=F.ephemeral_low())
    ports = {"svc": base, "1.4g": base + 1, "ours": base + 2, "plain": base + 3}
    tuns = {"1.4g": base + 4, "ours": base + 5, "plain": base + 6, "next": base + 7}
    meta = dict(cfg, ours=meta_ours, passphrase_key=fingerprint(enc), plain_key=fingerprint(plain),
                ssh_agent_mode=oct(os.stat("/usr/bin/ssh-agent").st_mode & 0o7777))
    B.log(f"R={cfg['restarts']} restarts, give-up {cfg['wait_s']} s"
          + ("; QUICK" if cfg["quick"] else ""))
    t0 = time.monotonic()
    res, sshds, svc = {}, {}, None
    try:
        svc = B.start([sys.executable, os.path.join(HERE, "line_service.py"), str(ports["svc"])],
                      stderr=os.path.join(d, "service.stderr"))
        if not B.wait_port(ports["svc"], 5):
            raise RuntimeError("line_service.py did not start")
        for col in COLS:
            sshds[col] = B.ListenerSshd("127.0.0.1", ports[col], d, col, "LogLevel VERBOSE\n")
            sshds[col].start()

        def make(kind, name, tmpdir=None):
            tun = tuns["next"] if name == "plain-next" else tuns[kind]
            sshd = sshds["ours" if name == "plain-next" else kind]
            return Instance(kind, name, sshd, tun, ports["svc"], plain if kind == "plain" else enc,
                            d, tmpdir=tmpdir)

        insts = {c: make(c, c) for c in COLS}
        res["main"] = {}
        try:
            main_phase(cfg, insts, res["main"])
        finally:
            for i in insts.values():
                i.kill_left()
        res["kill"] = {}
        res["next_start"] = kill_phase(cfg, make, res["kill"])
    except Exception as e:  # noqa: BLE001  (the record says what went wrong)
        res["error"] = f"{type(e).__name__}: {e}"
        B.log(f"ERROR {res['error']}")
    finally:
        kill_marked()
        if svc is not None:
            B.stop(svc, grace=0.5)
        for s in sshds.values():
            s.kill()
        save_logs(d, sshds)
        shutil.rmtree(TMP_ROOT, ignore_errors=True)
        meta["duration_s"] = round(time.monotonic() - t0)
        B.write_json(args.out, {"meta": meta, "results": res})
        B.log(f"agent benchmark done in {meta['duration_s']} s")


def no_worker(_spec):
    raise SystemExit("agent_bench.py has no worker")


# ---------------------------------------------------------------------------------------------
# report

def series(rec, key):
    return [r[key] for r in rec.get("restarts", []) if r.get(key) is not None]


def recoveries(rec):
    return series(rec, "recovery_s")


def left_text(t):
    if not t or "error" in t:
        return (t or {}).get("error", "n/a")
    procs = t.get("left", [])
    if not procs:
        return "0"
    names = sorted({os.path.basename(x["cmd"].split()[0]) if x["cmd"] else "?" for x in procs})
    return f"{len(procs)} ({', '.join(names)})"


def files_text(t):
    if not t or "error" in t:
        return "n/a"
    fs = t.get("files", [])
    return "0" if not fs else f"{len(fs)} ({', '.join(f'`{x}`' for x in fs[:4])}{', ...' if len(fs) > 4 else ''})"


def table(data):
    from report import cell, fmt  # noqa: PLC0415

    main, kill = data.get("main", {}), data.get("kill", {})
    R = data.get("_R")
    rows = []

    def row(label, f):
        rows.append([label] + [f(main.get(c, {}), kill.get(c, {})) for c in COLS])

    row("prompts at the start", lambda m, k: fmt(m.get("prompts_start")))
    row(f"prompts during the {R} restarts", lambda m, k: fmt(m.get("prompts_restarts")))
    row(f"**prompts, start + {R} restarts**", lambda m, k: f"**{fmt(m.get('prompts_total'))}**")
    row("start → first echo, s", lambda m, k: fmt(m.get("start_s")))
    row("recovery after a kill, s: median [each]", lambda m, k: cell(recoveries(m), 3))
    row("recovery, s: max", lambda m, k: fmt(max(recoveries(m)) if recoveries(m) else None, 3))
    row("  kill → new ssh seen, s: median [each]", lambda m, k: cell(series(m, "kill_to_new_ssh_s"), 3))
    row("  new ssh → first echo, s: median [each]", lambda m, k: cell(series(m, "new_ssh_to_echo_s"), 3))
    row("  restart wait autossh logged, s [each]", lambda m, k: cell(series(m, "backoff_logged_s"), 1)
        if series(m, "backoff_logged_s") else "(not logged)")
    row("restarts recovered", lambda m, k: f"{len(recoveries(m))} / {len(m.get('restarts', []))}")
    row("new ssh every time", lambda m, k: str(all(r.get("new_ssh") for r in m.get("restarts", [])))
        if m.get("restarts") else "n/a")
    keys = {data.get("_keys", {}).get("passphrase_key"): "the passphrase key",
            data.get("_keys", {}).get("plain_key"): "the plain key"}

    def logins(m):
        by = sorted({keys.get(fp, fp) for _t, fp in m.get("logins", [])})
        return f"{fmt(m.get('ssh_starts_logged'))} / {len(m.get('logins', []))} ({', '.join(by)})"

    row("ssh starts logged / sshd logins (with)", lambda m, k: logins(m))
    row("SIGTERM: autossh exited after, s (code)",
        lambda m, k: f"{fmt(m.get('term', {}).get('exit_s'), 3)} ({fmt(m.get('term', {}).get('exit_code'))})")
    row("SIGTERM: processes left after 5 s", lambda m, k: left_text(m.get("term")))
    row("SIGTERM: files left in its TMPDIR", lambda m, k: files_text(m.get("term")))
    row("SIGKILL run: prompts (a fresh start)", lambda m, k: fmt(k.get("prompts_total")) if "error" not in k
        else k["error"])
    row("SIGKILL: processes left after 5 s", lambda m, k: left_text(k) if k else "n/a")
    row("SIGKILL: files left in its TMPDIR", lambda m, k: files_text(k) if k else "n/a")
    row("processes seen below autossh (main run, every 0.1 s)", lambda m, k: ", ".join(m.get("term", {}).get("tracked", []))
        or "n/a")
    return ["measured"] + [LABEL[c] for c in COLS], rows


def goal_rows(data):
    from report import med  # noqa: PLC0415

    main, kill, nxt = data.get("main", {}), data.get("kill", {}), data.get("next_start", {})
    R = data.get("_R")
    o, p, g = main.get("ours", {}), main.get("plain", {}), main.get("1.4g", {})
    mo, mp, mg = med(recoveries(o)), med(recoveries(p)), med(recoveries(g))
    out = []
    out.append(("ours, passphrase key: prompts over the start and the restarts = 1",
                f"{o.get('prompts_total', 'n/a')} (1.4g: {g.get('prompts_total', 'n/a')}, "
                f"expected 1 + {R} = {1 + R} if asked at every start)", o.get("prompts_total") == 1))
    rat = None if mo is None or not mp else mo / mp
    out.append((f"ours, passphrase key: recovery median ≤ {RATIO_GOAL:.2f} × ours with a key without passphrase",
                "n/a" if rat is None else f"{mo:.3f} s / {mp:.3f} s = {rat:.2f} "
                f"(ours passphrase / 1.4g passphrase: {'n/a' if not mg else f'{mo / mg:.2f}'})",
                rat is not None and rat <= RATIO_GOAL))
    ho, hp = med(series(o, "new_ssh_to_echo_s")), med(series(p, "new_ssh_to_echo_s"))
    hr = None if ho is None or not hp else ho / hp
    out.append((f"ours, passphrase key: new ssh → first echo median ≤ {RATIO_GOAL:.2f} × with the plain key "
                "(the handshake alone, without the wait before it)",
                "n/a" if hr is None else f"{ho:.3f} s / {hp:.3f} s = {hr:.2f}", hr is not None and hr <= RATIO_GOAL))
    for col in ("ours", "plain"):
        m = main.get(col, {})
        n = len(m.get("restarts", []))
        out.append((f"{LABEL[col]}: every restart recovered within {data.get('_wait')} s",
                    f"{len(recoveries(m))} / {n}", n == R and len(recoveries(m)) == n))
    out.append((f"{LABEL['plain']}: no prompt", f"{p.get('prompts_total', 'n/a')}", p.get("prompts_total") == 0))
    for col in ("ours", "plain"):
        t = main.get(col, {}).get("term", {})
        ok = "error" not in t and "left" in t and not t["left"] and not t.get("files")
        out.append((f"{LABEL[col]}: nothing left 5 s after SIGTERM (processes, files)",
                    f"{left_text(t)} process(es), {files_text(t)} file(s)", ok))
    for col in ("ours", "plain"):
        k = kill.get(col, {})
        ok = "error" not in k and "left" in k and not k["left"]
        out.append((f"{LABEL[col]}: no process left 5 s after SIGKILL of autossh"
                    + (" (its ssh-agent goes too)" if col == "ours" else ""),
                    left_text(k) if k else "n/a", ok))
    k = kill.get("ours", {})
    if "error" in k or "files" not in k:
        out.append((f"{LABEL['ours']}: no file left after SIGKILL of autossh", k.get("error", "n/a"), False))
    elif not k["files"]:
        out.append((f"{LABEL['ours']}: no file left 5 s after SIGKILL of autossh (its janitor removes the "
                    "private directory)", "0", True))
    else:
        ok = bool(nxt) and "error" not in nxt and not nxt.get("stale_left")
        out.append((f"{LABEL['ours']}: what a SIGKILLed autossh left in TMPDIR is removed by the next start",
                    nxt.get("error") or f"left {files_text(k)} → after the next start "
                    f"{nxt.get('stale_left', 'n/a')}", ok))
    return out


def errors_of(data):
    out = []
    if "error" in data:
        out.append(data["error"])
    for phase in ("main", "kill"):
        for col, rec in data.get(phase, {}).items():
            if "error" in rec:
                out.append(f"{phase} {col}: {rec['error']}")
            for r in rec.get("restarts", []):
                if "error" in r:
                    out.append(f"{col} restart {r['round']}: {r['error']}")
    nxt = data.get("next_start") or {}
    if "error" in nxt:
        out.append(f"next start: {nxt['error']}")
    return out


def report(args):
    from report import load, md_facts, md_table, print_results, write_md  # noqa: PLC0415

    d = load(args.json, dict)
    meta, res = d.get("meta", {}), d.get("results", {})
    res["_R"], res["_wait"] = meta.get("restarts"), meta.get("wait_s")
    res["_keys"] = {k: meta.get(k) for k in ("passphrase_key", "plain_key")}
    facts = load(args.facts, dict) if args.facts else {}
    sec = table(res)
    goals = goal_rows(res)
    notes = errors_of(res)
    print_results([("Passphrase prompts, recovery, leftovers", sec)], goals, notes)
    md = ["# Agent benchmark results (issue 18)", "",
          f"Generated by `bash bench/run.sh agent` on {facts.get('date', '?')}. Overwritten on every run."
          + (" **Quick mode: a smoke test, not the benchmark.**" if meta.get("quick") else ""), "",
          "## Machine", ""]
    md += md_facts(facts, ("nproc", "kernel", "cpu", "memory", "os", "loadavg_at_start", "private_netns",
                           "ssh", "autossh_14g", "rustc", "commit"))
    md += [f"- ours: {meta.get('ours', '?')}; {meta.get('restarts')} restarts per program, give-up "
           f"{meta.get('wait_s')} s; passphrase key {meta.get('passphrase_key')}, plain key "
           f"{meta.get('plain_key')}; /usr/bin/ssh-agent mode {meta.get('ssh_agent_mode')}; "
           f"benchmark run {meta.get('duration_s', '?')} s", "",
           "Prompts are SSH_ASKPASS calls (counted by the askpass script). Recovery: seconds from "
           "the SIGKILL of the tunnel's sshd sessions to the first echo through it. See "
           "bench/README.md (10.).", "",
           "## Passphrase prompts, recovery, leftovers", ""]
    md += md_table(*sec) + [""]
    md += ["## Goals", ""] + md_table(["goal", "measured", "met"],
                                      [[g, v, "**yes**" if ok else "**NO**"] for g, v, ok in goals])
    md.append("")
    if notes:
        md += ["## Errors during the run", ""] + [f"- {x}" for x in notes] + [""]
    md.append(NOTES)
    write_md(args.md, md)


NOTES = """## Notes (fixed text, from agent_bench.py)

- **Setup**: three private sshds on 127.0.0.1 (one per program, so that killing one tunnel's
  sessions touches no other; `LogLevel VERBOSE`: the logins are counted), one echo service
  (line_service.py) behind all three tunnels, in a private network namespace when run.sh can
  make one. The programs are started one after the other (each until its first echo); the
  restart rounds then take the three in turn, the order rotated every round.
- **Prompting**: `SSH_ASKPASS` is a script that appends a line to the run's counter file and
  prints the passphrase; `SSH_ASKPASS_REQUIRE=force`, no `DISPLAY`, no `SSH_AUTH_SOCK`, each
  autossh the leader of a session of its own with no terminal. 1.4g leaves the key to ssh,
  which asks at every start; ours (`AUTOSSH_AGENT=auto`, the default) finds the key needs a
  passphrase, starts `ssh-agent -D -a <private dir>/agent.sock`, loads it with `ssh-add`
  (one prompt) and gives every ssh `-o IdentityAgent=<that socket>`.
- **Restarts**: the tunnel works and has been left alone 1.5 s; every descendant of its sshd's
  listener (the session's processes) gets SIGKILL; ssh sees its connection closed and exits;
  checks (connect, a line, the same line back within 1 s) start every 50 ms from the kill.
  Both programs restart ssh as soon as it exits (`-M 0`); the same ServerAlive options are
  given to both (ours adds them itself with `-M 0`), though a closed connection needs none.
  *Recovery* is what a user sees: from the kill to the first echo. It has two parts: *kill →
  new ssh seen* (autossh's children are looked at on every tick of the checker, every few ms)
  holds the wait autossh chooses before a new ssh: ours paces restarts after quick deaths (an
  ssh that lived less than max(POLL/10, 10 s) = 60 s here): the first at once, then about 0.5,
  1, 2, 4 s (jittered; "restarting ssh in N s" in its log), while 1.4g restarts at once for its
  first few fast deaths; kills every few seconds, as here, meet that pacing from the second
  restart on. *new ssh → first echo* is the handshake and the authentication alone, where an
  agent (or a prompt) costs what it costs: the second ratio goal is on it.
- **Leftovers**: every process below autossh is listed every 0.1 s while it runs (pid and
  start time, so a reused pid is not counted), and every process carries the run's mark in its
  environment; after the signal to autossh alone, any of them still alive 5 s later is left
  over (a zombie is not). Files: everything under the run's `TMPDIR` (ours puts its private
  directory `autossh-PID-NONCE` there) and any `/tmp/autossh-PID-*`. Everything left is
  SIGKILLed once counted.
- **SIGKILL**: nothing of autossh's own code runs after it. Its children get a parent-death
  signal (prctl PR_SET_PDEATHSIG), which the kernel clears when a set-user-ID or set-group-ID
  program is executed: Debian's `/usr/bin/ssh-agent` is set-group-ID `_ssh` (its mode is in the
  facts above), so the agent does not get it. Its janitor (a small `sh` waiting on a pipe only
  autossh writes to) stops the agent when autossh is gone (its pid in `agent.pid`, checked
  against its command line) and removes the private directory; the next autossh to start
  removes any such directory whose owner is gone (checked here by starting ours again with the
  killed one's TMPDIR). 1.4g's ssh has no parent-death signal at all: it keeps the tunnel.
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

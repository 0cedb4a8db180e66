#!/bin/bash
# fake_ssh.sh: a scripted stand-in for ssh, used by the autossh integration
# tests (see FakeSsh in test-support/src/fake_ssh.rs, which links this file into a test
# directory as "<state>/ssh" and writes "<state>/plan").
#
# State directory: the directory this script lives in (dirname "$0").
#   plan          one line per invocation: invocation N (1-based) follows
#                 line N; once the plan is exhausted the last line repeats.
#                 A missing or empty plan means "exit 0".
#   block         a FIFO (made by FakeSsh) used to wait without a child
#                 process; without it a process substitution is used.
#   runs/N.claim  claims invocation number N (created with noclobber).
#   runs/N.argv   the arguments, each one followed by a NUL byte.
#   runs/N.env    the exported environment, NAME=VALUE each followed by NUL.
#   runs/N.time   $EPOCHREALTIME when the invocation started.
#   runs/N.pid    the pid ($$) followed by a newline. Written last, before
#                 acting: a run is complete once this file ends in "\n".
#
# Plan line syntax: steps separated by " ; " (space, semicolon, space), run
# in order; after the last step the script exits 0.
#   exit CODE           exit with status CODE.
#   sleep SECS [STEP]   wait SECS (fractions allowed), then go on; anything
#                       after SECS is one more step, so "sleep 1.5 exit 0"
#                       works as well as "sleep 1.5 ; exit 0".
#   hang                block until killed. TERM, INT and HUP keep their
#                       default action, so the script dies by that signal.
#   hang-exit CODE      block; on TERM, INT or HUP exit with CODE (a real
#                       ssh prints "Killed by signal 15." and exits 255).
#   hang-ignore-term    ignore TERM, then block (only KILL ends it).
#   kill-self SIG       kill -SIG $$ (SIG: KILL, TERM, SEGV, ...).
#   stderr TEXT         print TEXT and a newline on stderr.
#   stdout TEXT         print TEXT and a newline on stdout.
#   real-ssh [PATH]     exec the real ssh (default /usr/bin/ssh) with the same
#                       arguments (same pid; the run is still recorded).
#   fork-hang           start a background copy of this script (a subshell,
#                       same command line) that blocks until killed, as a
#                       command run by ssh_config's "Match exec" would; its
#                       pid is appended to <state>/forked.
# Example: "stderr Permission denied (publickey). ; exit 255"
#
# `ssh -G ...` is answered with a proxied configuration and not recorded as a
# run; when <state>/g-plan exists, its first line is followed instead (a slow
# look-up: "sleep 30 ; stdout hostname 127.0.0.1"), and the pid is appended
# to <state>/g.pids first.
#
# Waiting never forks: "read -t" on a FIFO opened read-write is a builtin, so
# killing the script (TERM or KILL) leaves no orphaned sleep behind, and the
# waiting process keeps this script's path (the test's marker) in its
# command line. Every wait is bounded (hang gives up after 1000 s, exit 124).

state=${0%/*}
runs=$state/runs

# block SECS: wait without forking a child.
block() {
    if [[ -p $state/block ]]; then
        read -r -t "$1" -u 9 _ 9<> "$state/block"
    else
        read -r -t "$1" _ <> <(:)
    fi
}

hang() {
    local i
    for ((i = 0; i < 1000; i++)); do
        block 1
    done
    exit 124
}

run_step() {
    local step=$1 cmd arg secs more
    shift
    cmd=${step%% *}
    arg=${step#"$cmd"}
    arg=${arg# }
    case $cmd in
        "") ;;
        exit) exit "${arg:-0}" ;;
        sleep)
            secs=${arg%% *}
            more=${arg#"$secs"}
            more=${more# }
            block "${secs:-0}"
            [[ -z $more ]] || run_step "$more" "$@"
            ;;
        hang) hang ;;
        hang-exit)
            trap "exit ${arg:-255}" TERM INT HUP
            hang
            ;;
        hang-ignore-term)
            trap '' TERM
            hang
            ;;
        fork-hang)
            ( hang ) &
            printf '%s\n' "$!" >> "$state/forked"
            ;;
        kill-self)
            kill -s "${arg:-TERM}" "$$"
            block 5
            exit 99
            ;;
        stderr) printf '%s\n' "$arg" >&2 ;;
        stdout) printf '%s\n' "$arg" ;;
        real-ssh) exec "${arg:-/usr/bin/ssh}" "$@" ;;
        *)
            echo "fake_ssh: unknown plan step: $step" >&2
            exit 96
            ;;
    esac
}

# run_line LINE ARGS...: the steps of one plan line, in order.
run_line() {
    local rest=$1 step steps
    shift
    for ((steps = 0; steps < 1000 && ${#rest} > 0; steps++)); do
        if [[ $rest == *" ; "* ]]; then
            step=${rest%%" ; "*}
            rest=${rest#*" ; "}
        else
            step=$rest
            rest=
        fi
        run_step "$step" "$@"
    done
}

# `ssh -G ...` (autossh asks where the server is): answer like a ProxyCommand setup would,
# so autossh paces by backoff alone, and do not count it as a run; or follow g-plan.
if [[ ${1-} == -G ]]; then
    if [[ -f $state/g-plan ]]; then
        printf '%s\n' "$$" >> "$state/g.pids"
        IFS= read -r gline < "$state/g-plan"
        run_line "${gline%$'\r'}" "$@"
        exit 0
    fi
    printf 'hostname fake\nport 22\nproxycommand fake\n'
    exit 0
fi
[[ -d $runs ]] || { echo "fake_ssh: no state dir $runs" >&2; exit 97; }

# Claim a run number atomically (noclobber = O_EXCL); bounded loop.
set -C
n=0
claimed=
for ((try = 1; try <= 100000; try++)); do
    n=$try
    if { true > "$runs/$n.claim"; } 2>/dev/null; then
        claimed=1
        break
    fi
done
set +C
[[ -n $claimed ]] || { echo "fake_ssh: cannot claim a run number" >&2; exit 98; }

if (($# > 0)); then
    printf '%s\0' "$@" > "$runs/$n.argv"
else
    : > "$runs/$n.argv"
fi
{
    while IFS= read -r name; do
        printf '%s=%s\0' "$name" "${!name}"
    done < <(compgen -e)
} > "$runs/$n.env"
printf '%s\n' "$EPOCHREALTIME" > "$runs/$n.time"

# Pick plan line n, or the last line.
line="exit 0"
if [[ -f $state/plan ]]; then
    mapfile -t plan < "$state/plan"
    count=${#plan[@]}
    if ((count > 0)); then
        if ((n <= count)); then
            line=${plan[n - 1]}
        else
            line=${plan[count - 1]}
        fi
    fi
fi
line=${line%$'\r'}
# A run that ignores TERM does so from the moment it is visible as started.
[[ $line == hang-ignore-term* ]] && trap '' TERM
printf '%s\n' "$$" > "$runs/$n.pid"

run_line "$line" "$@"
exit 0

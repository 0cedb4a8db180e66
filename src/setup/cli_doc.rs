//! autossh's command line described with clap, for documentation only (man page, shell
//! completions, `xtask gen`).
//!
//! The real parser is [`crate::setup::cli`]: it follows ssh's own grammar, which clap cannot express
//! (options after the destination, clusters like `-fN`, a remote command with options). This
//! definition must describe the same command line; the environment table below is checked
//! against README.md by a test, so the two cannot drift.

use clap::{Arg, ArgAction, Command};

/// Every environment variable autossh reads: name, default, meaning.
pub const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("AUTOSSH_PATH", "/usr/bin/ssh", "the ssh to run"),
    (
        "AUTOSSH_POLL",
        "600",
        "seconds between probes once the tunnel is up",
    ),
    (
        "AUTOSSH_FIRST_POLL",
        "AUTOSSH_POLL",
        "a new ssh must prove its tunnel within this many seconds (plus the net timeout)",
    ),
    (
        "AUTOSSH_GATETIME",
        "30",
        "ssh must live this many seconds on its first run, else autossh exits 1; 0 disables \
         the gate (-f sets it to 0)",
    ),
    (
        "AUTOSSH_MAXSTART",
        "-1",
        "how many times ssh may be started; -1: no limit",
    ),
    (
        "AUTOSSH_MAXLIFETIME",
        "0",
        "seconds to run, then stop ssh and exit 0 (the polls are lowered to fit); 0: forever",
    ),
    (
        "AUTOSSH_MESSAGE",
        "\"\"",
        "text appended to every probe (at most 64 bytes, one line)",
    ),
    (
        "AUTOSSH_PORT",
        "unset",
        "monitor port when -M is absent (-M wins); with neither, a free pair is picked",
    ),
    (
        "AUTOSSH_PIDFILE",
        "unset",
        "pid file, locked while running, removed at exit",
    ),
    (
        "AUTOSSH_LOGFILE",
        "unset",
        "append log lines (YYYY/MM/DD HH:MM:SS autossh[pid]: msg) to this file",
    ),
    ("AUTOSSH_LOGLEVEL", "6", "syslog level 0-7"),
    (
        "AUTOSSH_DEBUG",
        "unset",
        "when set: log level 7, and log lines copied to stderr",
    ),
    (
        "AUTOSSH_SERVERALIVE_INTERVAL",
        "60",
        "with -M 0: the ServerAliveInterval added to ssh's options; 0 adds nothing",
    ),
    (
        "AUTOSSH_SERVERALIVE_COUNT_MAX",
        "3",
        "with -M 0: the ServerAliveCountMax added to ssh's options",
    ),
    (
        "AUTOSSH_SESSION_PROBE",
        "yes",
        "with -M 0: probe the tunnel through the SSH session (a channel to a path that cannot \
         exist, refused by the server: no port, no server-side service, one log line on the \
         server per probe); no turns it off",
    ),
    (
        "AUTOSSH_HOLD",
        "yes",
        "autossh listens for the command line's local forwards (-L, -o LocalForward) itself \
         and relays each connection to ssh: a connection made while ssh is being replaced \
         waits instead of being refused, and a planned restart (SIGUSR1) cuts no connection; \
         no gives ssh exactly 1.4g's arguments",
    ),
    (
        "AUTOSSH_HOLD_TIME",
        "60",
        "seconds a connection made while the tunnel is down waits for it; then it is reset",
    ),
    (
        "AUTOSSH_HOLD_MAX",
        "10000",
        "connections waiting for the tunnel at once at most; past it, new ones are reset",
    ),
    (
        "AUTOSSH_DRAIN_TIME",
        "300",
        "after a planned restart (SIGUSR1, autossh restart, a reload), seconds the connections \
         through the old ssh may go on before it stops",
    ),
    (
        "AUTOSSH_ON_DEMAND",
        "no",
        "yes: no ssh until the first connection to a held forward arrives; stopped again \
         after AUTOSSH_IDLE_TIME without connections",
    ),
    (
        "AUTOSSH_IDLE_TIME",
        "300",
        "with AUTOSSH_ON_DEMAND: seconds without connections before ssh is stopped",
    ),
    (
        "AUTOSSH_AGENT",
        "auto",
        "auto: when an identity ssh would offer needs a passphrase and no agent holds it, \
         autossh runs its own ssh-agent, loads the key once (OpenSSH's own prompt: the \
         terminal or SSH_ASKPASS, before -f detaches) and gives every ssh -o IdentityAgent; \
         yes: always for keys with a passphrase; no: ssh asks at every start, as in 1.4g",
    ),
    (
        "AUTOSSH_STATUSFILE",
        "unset",
        "JSON status file (state, since, ssh pid, restarts and reasons, RTTs, settings), \
         rewritten atomically",
    ),
    (
        "AUTOSSH_METRICSFILE",
        "unset",
        "Prometheus textfile metrics for node_exporter's textfile collector (autossh_up, \
         autossh_restarts_total, autossh_probe_rtt_seconds, autossh_probe_failures_total, \
         autossh_tunnel_up_seconds)",
    ),
    (
        "AUTOSSH_HTTP",
        "unset",
        "serve /metrics (the metrics file's series), /healthz (200 while every tunnel is up, \
         else 503 naming the others; ?tunnel=NAME for one) and /status (autossh status --json) \
         over HTTP at ADDR:PORT; PORT alone is 127.0.0.1:PORT; another address is logged as a \
         warning",
    ),
    (
        "AUTOSSH_HOOK",
        "unset",
        "program run on each tunnel state change (up, down, stopping, stopped, failed) with \
         AUTOSSH_TUNNEL, AUTOSSH_STATE, AUTOSSH_REASON, AUTOSSH_DOWN_FOR in its environment; \
         one at a time per tunnel, changes coalesced, killed after 10 s",
    ),
];

/// Signals autossh handles, and what they do.
pub const SIGNALS: &[(&str, &str)] = &[
    (
        "SIGTERM, SIGINT, SIGQUIT",
        "stop ssh (SIGTERM, SIGKILL after 3 s), remove the pid file, exit 0",
    ),
    ("SIGUSR1", "kill ssh and start a new one now"),
    (
        "SIGHUP",
        "skip a backoff wait and retry now; while the tunnel is up, probe now",
    ),
    ("SIGUSR2", "ignored"),
];

/// Exit statuses.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "stopped by SIGTERM/SIGINT/SIGQUIT; ssh exited 0; ssh was killed by SIGKILL; \
         AUTOSSH_MAXSTART or AUTOSSH_MAXLIFETIME reached",
    ),
    (
        "1",
        "bad command line or environment; ssh failed inside the gate time on its first run; \
         ssh exited with a status from 3 to 254",
    ),
];

/// The `ENVIRONMENT`, `SIGNALS` and `EXIT STATUS` sections, as plain text.
pub fn after_long_help() -> String {
    let mut s = String::from("ENVIRONMENT:\n");
    for (name, default, meaning) in ENVIRONMENT {
        s.push_str(&format!("  {name} (default: {default})\n      {meaning}\n"));
    }
    s.push_str("\nSIGNALS:\n");
    for (sig, what) in SIGNALS {
        s.push_str(&format!("  {sig}\n      {what}\n"));
    }
    s.push_str("\nEXIT STATUS:\n");
    for (code, what) in EXIT_STATUS {
        s.push_str(&format!("  {code}   {what}\n"));
    }
    s
}

/// autossh's command line, for documentation only: the real parser is [`crate::setup::cli::parse`].
pub fn command() -> Command {
    Command::new("autossh")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Keeps SSH tunnels alive: runs ssh, monitors the tunnel, restarts it")
        .long_about(
            "Keeps SSH tunnels alive: runs ssh, monitors the tunnel, restarts it.\n\n\
             autossh runs the system's OpenSSH client with the given SSH_OPTIONS, sends \
             timestamped probes through the tunnel, and starts a new ssh when ssh dies or \
             when the tunnel stops moving bytes. Every argument other than -M, -f and -V is \
             passed to ssh unchanged and in order, following ssh's own grammar.",
        )
        .override_usage("autossh [-V] [-M <port[:echo_port]>] [-f] [SSH_OPTIONS]...")
        .disable_version_flag(true)
        .disable_help_flag(true)
        .after_long_help(after_long_help())
        .arg(monitor_arg())
        .arg(
            Arg::new("background")
                .short('f')
                .help("Go to the background once ssh has started (sets the gate time to 0)")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .help("Print the version and exit")
                .action(ArgAction::Version),
        )
        .arg(
            Arg::new("help")
                .long("help")
                .help("Print the usage (every option and variable) and exit")
                .action(ArgAction::Help),
        )
        .arg(ssh_options_arg())
}

/// `-M port[:echo_port]`.
fn monitor_arg() -> Arg {
    Arg::new("monitor")
        .short('M')
        .value_name("port[:echo_port]")
        .help("Monitor port; 0 turns the monitor off")
        .long_help(
            "Monitor port. 0 turns the monitor off (ssh gets ServerAliveInterval, \
             ServerAliveCountMax and ExitOnForwardFailure=yes unless set). \
             N: loop mode, ssh gets -L N:127.0.0.1:N -R N:127.0.0.1:N+1 and probes \
             go out on N and come back on N+1. N:E: echo mode, ssh gets \
             -L N:127.0.0.1:E and the echo service on the server's port E \
             (e.g. autossh-echo) sends the probes back.",
        )
        .action(ArgAction::Set)
}

/// Everything else: ssh's.
fn ssh_options_arg() -> Arg {
    Arg::new("ssh_options")
        .value_name("SSH_OPTIONS")
        .help("Everything else is passed to ssh unchanged")
        .long_help(
            "Everything else is passed to ssh unchanged and in order: ssh options, \
             the destination and a remote command (e.g. -N -L 5432:127.0.0.1:5432 \
             user@host).",
        )
        .num_args(0..)
        .trailing_var_arg(true)
        .allow_hyphen_values(true)
        .action(ArgAction::Append)
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!("../../README.md");

    /// The variable names in the first column of README.md's "Environment" table.
    fn readme_variables() -> Vec<&'static str> {
        let section = README
            .split("\n## Environment")
            .nth(1)
            .expect("README.md has an Environment section");
        let section = section.split("\n## ").next().unwrap();
        section
            .lines()
            .filter_map(|l| l.strip_prefix('|'))
            .filter_map(|l| l.split('|').next())
            .map(str::trim)
            .filter(|name| name.starts_with("AUTOSSH_"))
            .collect()
    }

    fn long_help() -> String {
        command().render_long_help().to_string()
    }

    #[test]
    fn every_readme_variable_is_documented() {
        let vars = readme_variables();
        assert!(vars.len() >= 14, "README table not found: {vars:?}");
        let help = long_help();
        for v in vars {
            assert!(
                help.contains(v),
                "{v} is in README.md but not in autossh's long help"
            );
            assert!(
                ENVIRONMENT.iter().any(|(name, _, _)| *name == v),
                "{v} is missing from cli_doc::ENVIRONMENT"
            );
        }
    }

    #[test]
    fn documented_variables_are_in_the_readme() {
        let vars = readme_variables();
        for (name, _, _) in ENVIRONMENT {
            assert!(
                vars.contains(name),
                "{name} is documented but not in README.md"
            );
        }
    }

    #[test]
    fn long_help_has_flags_and_sections() {
        let help = long_help();
        for s in [
            "-M",
            "-f",
            "-V",
            "SSH_OPTIONS",
            "ENVIRONMENT",
            "SIGNALS",
            "EXIT STATUS",
            "SIGUSR1",
            "SIGHUP",
        ] {
            assert!(help.contains(s), "{s} missing from:\n{help}");
        }
    }

    #[test]
    fn definition_is_consistent_and_parses_like_the_real_cli() {
        command().debug_assert();
        let m = command()
            .try_get_matches_from([
                "autossh", "-M", "20000:7", "-f", "-N", "-L", "1:h:2", "host",
            ])
            .unwrap();
        assert_eq!(
            m.get_one::<String>("monitor").map(String::as_str),
            Some("20000:7")
        );
        assert!(m.get_flag("background"));
        let rest: Vec<&str> = m
            .get_many::<String>("ssh_options")
            .unwrap()
            .map(String::as_str)
            .collect();
        assert_eq!(rest, ["-N", "-L", "1:h:2", "host"]);
    }
}

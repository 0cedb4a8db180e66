//! autossh: parse, set up logging, run, and map errors to exit codes in one place.

use autossh::setup::{cli, config, logging, usage};
use autossh::shell::event_loop as run;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One line, whatever the offending value held.
            let msg = e.to_string().replace('\n', "\\n").replace('\r', "\\r");
            // Under systemd, journald files it as an error (`journalctl -p err`).
            let prio = if autossh::setup::journal::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            eprintln!("{prio}autossh: {msg}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn real_main() -> autossh::error::Result<i32> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        // As 1.4g: the whole usage on stderr, exit 1.
        let _ = std::io::stderr().write_all(usage::text().as_bytes());
        return Ok(1);
    }
    if let Some(command) = autossh::shell::control::client::command(&args) {
        let (request, socket) = command?;
        let socket = socket.unwrap_or_else(autossh::shell::control::client::find_socket);
        let answer = autossh::shell::control::client::send(&request, socket)?;
        let _ = std::io::stdout().write_all(answer.as_bytes());
        return Ok(0);
    }
    let cli = cli::parse(args)?;
    if cli.help {
        let _ = std::io::stdout().write_all(usage::text().as_bytes());
        return Ok(0);
    }
    if cli.version {
        let version = format!(
            "autossh {} (Rust reimplementation of autossh 1.4g)\n",
            env!("CARGO_PKG_VERSION")
        );
        let _ = std::io::stdout().write_all(version.as_bytes());
        return Ok(0);
    }
    let tunnels = cli.tunnels.clone();
    let control = cli.control_path.clone();
    if tunnels.is_some() && (!cli.ssh_args.is_empty() || cli.monitor.is_some()) {
        return Err(autossh::error::usage(
            "--tunnels FILE takes no ssh arguments and no -M: they go in the file",
        ));
    }
    if tunnels.is_none() && control.is_some() {
        return Err(autossh::error::usage(
            "--control-socket goes with --tunnels FILE",
        ));
    }
    let settings = config::from_env(cli, |k| std::env::var_os(k))?;
    logging::init(
        settings.loglevel,
        settings.debug,
        settings.logfile.as_deref(),
    )
    .map_err(|e| {
        autossh::error::usage(format!(
            "AUTOSSH_LOGFILE: cannot open {}: {e}",
            settings
                .logfile
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))
    })?;
    match tunnels {
        Some(file) => {
            let control = control
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| autossh::shell::control::default_path(&|k| std::env::var_os(k)));
            run::run_tunnels(settings, file.into(), control)
        }
        None => run::run(settings),
    }
}

//! autossh: parse, set up logging, run, and map errors to exit codes in one place.

use autossh::error::Result;
use autossh::setup::{cli, config, logging, usage};
use autossh::shell::control::client;
use autossh::shell::event_loop as run;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
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

fn real_main() -> Result<i32> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        // As 1.4g: the whole usage on stderr, exit 1.
        let _ = std::io::stderr().write_all(usage::text().as_bytes());
        return Ok(1);
    }
    if let Some(command) = client::command(&args) {
        let (request, socket) = command?;
        return client::run(&request, socket);
    }
    let cli = cli::parse(args)?;
    if cli.help || cli.version {
        let _ = std::io::stdout().write_all(help_or_version(cli.help).as_bytes());
        return Ok(0);
    }
    cli.check_mode()?;
    let tunnels = cli.tunnels.clone();
    let control = cli.control_path.clone();
    let settings = config::from_env(cli, |k| std::env::var_os(k))?;
    start_logging(&settings)?;
    match tunnels {
        Some(file) => {
            let control = control
                .map(PathBuf::from)
                .unwrap_or_else(|| autossh::shell::control::default_path(&|k| std::env::var_os(k)));
            run::run_tunnels(settings, file.into(), control)
        }
        None => run::run(settings),
    }
}

/// What `--help` (the whole usage) or `-V` prints.
fn help_or_version(help: bool) -> String {
    if help {
        usage::text()
    } else {
        format!(
            "autossh {} (Rust reimplementation of autossh 1.4g)\n",
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// Logging as the settings ask, to the log file if there is one.
fn start_logging(settings: &config::Settings) -> Result<()> {
    let logfile = settings.logfile.as_deref();
    logging::init(settings.loglevel, settings.debug, logfile).map_err(|error| {
        let path = logfile.map(Path::to_path_buf).unwrap_or_default();
        let problem = config::Problem::CannotOpen { path, error };
        config::ConfigError {
            setting: "AUTOSSH_LOGFILE",
            problem,
        }
        .into()
    })
}

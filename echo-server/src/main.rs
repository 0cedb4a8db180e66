//! autossh-echo: parse, set up logging, run, and map errors to exit codes in one place.

use autossh_echo::{cli, error, journal};
use log::LevelFilter;
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Under systemd, journald files it as an error (`journalctl -p err`).
            let prio = if journal::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            eprintln!("{prio}autossh-echo: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn real_main() -> error::Result<()> {
    let Some(cli) = cli::parse(std::env::args_os().skip(1))? else {
        return Ok(()); // --help or --version
    };
    let level = cli.log_level();
    let config = cli.into_config()?;
    init_logging(level);
    autossh_echo::run(config)
}

/// Logs to stderr: `<N>message` for journald under systemd, else timestamped (UTC) lines.
fn init_logging(level: LevelFilter) {
    if journal::stderr_is_journal() {
        journal::init(level);
        return;
    }
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_rfc3339()
        .build();
    // termcolor's "auto" looks at TERM only: no colours into journald, files or pipes.
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, color);
}

//! autossh: parse, set up logging, run, and map errors to exit codes in one place.

use autossh::{cli, config, logging, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One line, whatever the offending value held.
            let msg = e.to_string().replace('\n', "\\n").replace('\r', "\\r");
            eprintln!("autossh: {msg}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn real_main() -> autossh::error::Result<i32> {
    let cli = cli::parse(std::env::args_os().skip(1))?;
    if cli.version {
        println!(
            "autossh {} (Rust reimplementation of autossh 1.4g)",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(0);
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
    run::run(settings)
}

//! The one error type of the program and the exit code each kind maps to.

use crate::setup::cli::CliError;
use crate::setup::config::ConfigError;
use crate::setup::tunnels_file::FileError;
use crate::shell::http::BindError;
use std::fmt;

/// An error that ends autossh. `main` prints it as one line and exits with [`Error::exit_code`].
#[derive(Debug)]
pub enum Error {
    /// A bad command line: nothing was started.
    Cli(CliError),
    /// A bad `AUTOSSH_*` variable: nothing was started.
    Config(ConfigError),
    /// A bad tunnels file (`--tunnels FILE`), with the file and the line: nothing was started.
    TunnelsFile(FileError),
    /// Other bad input, said in words: nothing was started.
    Usage(String),
    /// `AUTOSSH_HTTP`'s address could not be bound (in use, not this host's): nothing was
    /// started.
    Http(BindError),
    /// Something failed while starting or running (bind, spawn, pidfile...).
    Runtime(String),
}

impl Error {
    /// The process exit status for this error.
    ///
    /// Bad input and runtime failures both exit 1, as in autossh 1.4g (its usage and its fatal
    /// errors, `xerrlog`, both exit 1): scripts and service units that wrap autossh test for
    /// that status, so the kinds differ in their message only.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Cli(_) | Error::Config(_) | Error::TunnelsFile(_) | Error::Usage(_) => 1,
            Error::Http(_) => 1,
            Error::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cli(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::TunnelsFile(e) => e.fmt(f),
            Error::Http(e) => e.fmt(f),
            Error::Usage(m) | Error::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<CliError> for Error {
    fn from(e: CliError) -> Error {
        Error::Cli(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<BindError> for Error {
    fn from(e: BindError) -> Error {
        Error::Http(e)
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Error {
        Error::TunnelsFile(e)
    }
}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Shorthand for a runtime error.
pub fn runtime(msg: impl Into<String>) -> Error {
    Error::Runtime(msg.into())
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::config::Problem;

    #[test]
    fn every_error_exits_1_with_its_own_line() {
        let errors = [
            (
                Error::Cli(CliError::NoValue('L')),
                "option -L needs a value",
            ),
            (
                Error::Config(ConfigError {
                    setting: "AUTOSSH_PATH",
                    problem: Problem::EmptyPath,
                }),
                "AUTOSSH_PATH: empty path",
            ),
            (
                Error::TunnelsFile(FileError::NoTunnels { file: "t".into() }),
                "t: no tunnels (add a [tunnel.NAME] table with ssh = \"...\")",
            ),
            (
                Error::Http(BindError {
                    addr: "127.0.0.1:9101".parse().unwrap(),
                    error: std::io::Error::from(std::io::ErrorKind::AddrInUse),
                }),
                "AUTOSSH_HTTP: cannot listen on 127.0.0.1:9101: address in use",
            ),
            (usage("bad"), "bad"),
            (runtime("failed"), "failed"),
        ];
        for (e, line) in errors {
            assert_eq!(e.exit_code(), 1, "{e}");
            assert_eq!(e.to_string(), line);
        }
    }
}

//! The one error type of the program and the exit code each kind maps to.

use crate::setup::cli::CliError;
use crate::setup::config::ConfigError;
use crate::setup::tunnels_file::FileError;
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
    /// Something failed while starting or running (bind, spawn, pidfile...).
    Runtime(String),
}

impl Error {
    /// The process exit status for this error.
    ///
    /// Bad input and runtime failures both exit 1, as in autossh 1.4g (its usage message and
    /// its fatal errors both `exit(1)`): scripts and service units that wrap autossh test for
    /// that status, so the kinds differ in the message only.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Cli(_) | Error::Config(_) | Error::TunnelsFile(_) | Error::Usage(_) => 1,
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

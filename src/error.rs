//! The one error type of the program and the exit code each kind maps to.

use std::fmt;

/// An error that ends autossh. `main` prints it as one line and exits with [`Error::exit_code`].
#[derive(Debug)]
pub enum Error {
    /// Bad command line or environment: nothing was started.
    Usage(String),
    /// Something failed while starting or running (bind, spawn, pidfile...).
    Runtime(String),
}

impl Error {
    /// The process exit status for this error (1 for both, like autossh 1.4g).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Shorthand for a runtime error.
pub fn runtime(msg: impl Into<String>) -> Error {
    Error::Runtime(msg.into())
}

pub type Result<T> = std::result::Result<T, Error>;

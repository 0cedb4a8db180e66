//! The error that ends autossh-echo, and the exit code each kind maps to.

use std::fmt;

/// Why autossh-echo stopped. `main` prints it as one line on stderr.
#[derive(Debug)]
pub enum Error {
    /// Bad command line: nothing was started. Exit 1.
    Usage(String),
    /// Starting or running failed (cannot listen, poll failed...). Exit 2.
    Runtime(String),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 1,
            Error::Runtime(_) => 2,
        }
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

/// A runtime error: what we were doing, and the I/O error.
pub fn runtime(what: impl fmt::Display, e: std::io::Error) -> Error {
    Error::Runtime(format!("{what}: {e}"))
}

pub type Result<T> = std::result::Result<T, Error>;

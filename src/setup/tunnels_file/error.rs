//! What can be wrong with a tunnels file, and the one line that says so.

use crate::setup::cli::{CliError, MonitorError};
use crate::setup::config::ConfigError;
use crate::setup::forwards::Bind;
use std::fmt;

/// A bad tunnels file: nothing is started.
#[derive(Debug)]
pub enum FileError {
    /// The file cannot be read.
    Unreadable { file: String, error: std::io::Error },
    /// The file has no `[tunnel.NAME]` table.
    NoTunnels { file: String },
    /// A fault at a line of the file, in a table.
    At {
        file: String,
        line: usize,
        table: Table,
        /// Boxed: the fault is the bulk of the error, which is passed up by value.
        fault: Box<Fault>,
    },
}

/// The table a fault is in, as the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// None named: the top level, or a TOML error outside the tables of tunnels.
    Unnamed,
    /// `[defaults]`.
    Defaults,
    /// `[tunnel.NAME]`.
    Tunnel(String),
}

/// What is wrong at that line.
#[derive(Debug)]
pub enum Fault {
    /// TOML's own message: a syntax error, a duplicate key or table, an unknown top table.
    Toml(String),
    /// A tunnel's name is not 1-64 letters, digits, `-`, `_` or `.`.
    BadName,
    /// A key (`logfile`...) the whole process takes from autossh's environment.
    ProcessWide(String),
    /// `ssh` in `[defaults]`.
    SshInDefaults,
    /// `ssh_options` in a tunnel.
    OptionsInTunnel,
    /// A key the file does not have.
    UnknownKey(String),
    /// The key's value is neither a string nor a whole number (nor true or false).
    NotScalar(String),
    /// The key's ssh arguments are neither a list of strings nor a string.
    NotArguments(String),
    /// An item of the key's list of ssh arguments is not a string.
    NotStringItem(String),
    /// The key's string of ssh arguments cannot be split as a shell would (a quote left open).
    Unsplittable {
        key: String,
        error: shell_words::ParseError,
    },
    /// A tunnel without `ssh`.
    NoSsh,
    /// `ssh` with no arguments.
    NoArguments,
    /// ssh's arguments as autossh's command line rejects them.
    Ssh(CliError),
    /// `-f`, `-V` or `--help` among ssh's arguments.
    AutosshOption,
    /// `--tunnels` or `--control-socket` among ssh's arguments.
    FleetOption,
    /// A bad `monitor`.
    Monitor(MonitorError),
    /// A bad setting, named by its key (or by its variable when it comes from the
    /// environment).
    Setting(ConfigError),
    /// Something the tunnel would bind that another tunnel binds too.
    Clash {
        what: &'static str,
        bind: Bind,
        other: String,
        other_what: &'static str,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Unreadable { file, error } => write!(f, "{file}: cannot read: {error}"),
            FileError::NoTunnels { file } => write!(
                f,
                "{file}: no tunnels (add a [tunnel.NAME] table with ssh = \"...\")"
            ),
            FileError::At {
                file,
                line,
                table,
                fault,
            } => {
                write!(f, "{file}:{line}: ")?;
                match table {
                    Table::Unnamed => {}
                    Table::Defaults => f.write_str("[defaults]: ")?,
                    Table::Tunnel(name) => write!(f, "tunnel {name:?}: ")?,
                }
                fault.fmt(f)
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Toml(message) => f.write_str(message),
            Fault::BadName => f.write_str("a name is 1-64 letters, digits, '-', '_' or '.'"),
            Fault::ProcessWide(key) => write!(
                f,
                "{key} is for the whole process: set AUTOSSH_{} in autossh's environment",
                key.to_ascii_uppercase()
            ),
            Fault::SshInDefaults => {
                f.write_str("ssh belongs in each tunnel; [defaults] has ssh_options")
            }
            Fault::OptionsInTunnel => {
                f.write_str("ssh_options belongs in [defaults]; a tunnel has ssh")
            }
            Fault::UnknownKey(key) => write!(f, "unknown key {key:?}"),
            Fault::NotScalar(key) => write!(f, "{key}: expected a string or a whole number"),
            Fault::NotArguments(key) => {
                write!(f, "{key}: expected a list of strings or a string")
            }
            Fault::NotStringItem(key) => write!(f, "{key}: every item must be a string"),
            Fault::Unsplittable { key, error } => write!(f, "{key}: {error}"),
            Fault::NoSsh => f.write_str("no ssh = \"...\" (ssh's arguments)"),
            Fault::NoArguments => f.write_str("ssh: no arguments"),
            Fault::Ssh(e) => write!(f, "ssh: {e}"),
            Fault::AutosshOption => {
                f.write_str("ssh: -f, -V and --help are autossh's own options, not a tunnel's")
            }
            Fault::FleetOption => f.write_str("ssh: --tunnels and --control-socket are not ssh's"),
            Fault::Monitor(e) => write!(f, "monitor: {e}"),
            Fault::Setting(e) => e.fmt(f),
            Fault::Clash {
                what,
                bind,
                other,
                other_what,
            } => write!(
                f,
                "its {what} would bind {bind}, as tunnel {other:?}'s {other_what} does"
            ),
        }
    }
}

impl std::error::Error for FileError {}

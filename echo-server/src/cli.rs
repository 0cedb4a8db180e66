//! The command line (clap derive) and its checked form, [`Config`].

use crate::error::{Error, Result};
use clap::Parser;
use log::LevelFilter;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// At most this many `--listen` addresses.
pub const MAX_LISTENERS: usize = 64;

/// Echo server for autossh monitor probes: echoes every byte back, and reports which autossh
/// clients probe it and which went silent.
#[derive(Debug, Parser)]
#[command(
    name = "autossh-echo",
    version,
    after_help = "Exit status: 0 after SIGTERM/SIGINT, 1 on bad arguments, 2 when it cannot run \
                  (e.g. cannot listen)."
)]
pub struct Cli {
    /// Address to listen on; repeatable. IPv6 as [::1]:7007. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7")]
    pub listen: Vec<SocketAddr>,

    /// Allow non-loopback listen addresses (the server is meant to be reached through ssh).
    #[arg(long)]
    pub allow_remote: bool,

    /// Stop reading from a client while this many echoed bytes wait to be sent to it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_buffer: u64,

    /// Connections beyond this many are accepted and closed at once [default: derived from the
    /// open-files limit].
    ///
    /// At start the soft open-files limit is raised to the hard limit; the default is that limit
    /// less 64 descriptors kept for other files and one per listener. A larger value is capped
    /// to it, with a warning.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,

    /// Close connections without traffic for this long (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub idle_timeout: u64,

    /// Remember at most this many clients; the least recently seen is forgotten first.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_clients: u64,

    /// Warn when a known client has not probed for this long.
    #[arg(long, value_name = "SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub silent_after: u64,

    /// Write a JSON status report here (atomically) every --status-interval.
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,

    /// Write Prometheus metrics here (for node_exporter's textfile collector).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Seconds between rewrites of the status and metrics files.
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub status_interval: u64,

    /// More logging: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Log warnings and errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub allow_remote: bool,
    pub max_buffer: usize,
    /// `None`: derived from the open-files limit at start ([`crate::fdlimit`]).
    pub max_connections: Option<usize>,
    /// `None`: connections never time out.
    pub idle_timeout: Option<Duration>,
    pub max_clients: usize,
    pub silent_after: Duration,
    pub status_file: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub status_interval: Duration,
}

/// The clap definition of the command line, for man pages and shell completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Parses the arguments (without the program name). `Ok(None)`: help or version was printed.
pub fn parse<I, T>(args: I) -> Result<Option<Cli>>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv =
        std::iter::once(OsString::from("autossh-echo")).chain(args.into_iter().map(Into::into));
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(Some(cli)),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Ok(None)
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            Err(Error::Usage(first.trim_start_matches("error: ").to_owned()))
        }
    }
}

impl Cli {
    /// The log level asked for.
    pub fn log_level(&self) -> LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::Warn,
            (false, 0) => LevelFilter::Info,
            (false, 1) => LevelFilter::Debug,
            (false, _) => LevelFilter::Trace,
        }
    }

    /// Checks the arguments together.
    pub fn into_config(self) -> Result<Config> {
        let mut listen: Vec<SocketAddr> = Vec::new();
        for a in self.listen {
            if !listen.contains(&a) {
                listen.push(a);
            }
        }
        if listen.len() > MAX_LISTENERS {
            return Err(Error::Usage(format!(
                "at most {MAX_LISTENERS} --listen addresses"
            )));
        }
        if !self.allow_remote {
            if let Some(a) = listen.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
                return Err(Error::Usage(format!(
                    "--listen {a}: not a loopback address; autossh-echo is meant to be reached \
                     through ssh (add --allow-remote to listen there anyway)"
                )));
            }
        }
        for (flag, path) in [
            ("--status-file", &self.status_file),
            ("--metrics-file", &self.metrics_file),
        ] {
            if let Some(p) = path {
                check_output_path(flag, p)?;
            }
        }
        if self.status_file.is_some() && self.status_file == self.metrics_file {
            return Err(Error::Usage(
                "--status-file and --metrics-file must differ".to_owned(),
            ));
        }
        Ok(Config {
            listen,
            allow_remote: self.allow_remote,
            max_buffer: self.max_buffer as usize,
            max_connections: self.max_connections.map(|n| n as usize),
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_clients: self.max_clients as usize,
            silent_after: Duration::from_secs(self.silent_after),
            status_file: self.status_file,
            metrics_file: self.metrics_file,
            status_interval: Duration::from_secs(self.status_interval),
        })
    }
}

/// A report file needs a name and an existing directory.
fn check_output_path(flag: &str, p: &Path) -> Result<()> {
    if p.file_name().is_none() {
        return Err(Error::Usage(format!(
            "{flag} {}: not a file name",
            p.display()
        )));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: directory {} does not exist",
            p.display(),
            dir.display()
        )));
    }
    if p.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: is a directory",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config> {
        parse(args.iter().copied())?.unwrap().into_config()
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:7".parse().unwrap()]);
        assert_eq!(c.max_buffer, 65536);
        assert_eq!(c.max_connections, None);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.silent_after, Duration::from_secs(900));
        assert_eq!(c.status_interval, Duration::from_secs(5));
        assert!(c.status_file.is_none() && c.metrics_file.is_none());
    }

    #[test]
    fn listen_is_repeatable_and_replaces_the_default() {
        let c = config(&[
            "--listen",
            "127.0.0.1:7007",
            "--listen",
            "[::1]:7007",
            "--listen",
            "127.0.0.1:7007",
        ])
        .unwrap();
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:7007".parse().unwrap(),
            "[::1]:7007".parse().unwrap(),
        ];
        assert_eq!(c.listen, want);
        assert_eq!(config(&["--idle-timeout", "0"]).unwrap().idle_timeout, None);
    }

    #[test]
    fn remote_needs_allow_remote() {
        for a in ["0.0.0.0:7", "192.0.2.1:7", "[::]:7"] {
            let e = config(&["--listen", a]).unwrap_err();
            assert!(
                matches!(e, Error::Usage(ref m) if m.contains("--allow-remote")),
                "{e}"
            );
            assert!(config(&["--listen", a, "--allow-remote"]).is_ok());
        }
        assert!(config(&["--listen", "[::ffff:127.0.0.1]:7"]).is_ok());
    }

    #[test]
    fn bad_input_is_one_line_usage_error() {
        for args in [
            &["--listen", "localhost"][..],
            &["--max-buffer", "0"],
            &["--max-connections", "-1"],
            &["--silent-after", "0"],
            &["--bogus"],
            &["--status-file", "/nonexistent-dir/x.json"],
            &["--status-file", "/tmp/s", "--metrics-file", "/tmp/s"],
        ] {
            let e = config(args).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            let m = e.to_string();
            assert!(!m.contains('\n') && !m.is_empty(), "{args:?}: {m:?}");
        }
    }

    #[test]
    fn verbosity() {
        let level = |a: &[&str]| parse(a.iter().copied()).unwrap().unwrap().log_level();
        assert_eq!(level(&[]), LevelFilter::Info);
        assert_eq!(level(&["-v"]), LevelFilter::Debug);
        assert_eq!(level(&["-vv"]), LevelFilter::Trace);
        assert_eq!(level(&["-q"]), LevelFilter::Warn);
    }
}

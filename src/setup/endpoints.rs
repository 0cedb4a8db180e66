//! The values of `AUTOSSH_HTTP` (where the HTTP endpoint listens) and `AUTOSSH_HOOK` (the
//! program run on each tunnel state change), read and checked before anything starts.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the HTTP endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpAddr {
    pub addr: SocketAddr,
}

impl HttpAddr {
    /// Whether only this host can reach it.
    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}

/// Reads `PORT`, `:PORT`, `localhost:PORT`, `IPV4:PORT` or `[IPV6]:PORT`. Without an
/// address (or with `localhost`) it is 127.0.0.1: any other address is one written out.
/// Names other than `localhost` are refused (no resolver runs before the start).
pub fn parse_http(value: &str) -> Option<HttpAddr> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
    let local = |p| Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    let addr = if let Some(p) = port(value) {
        local(p)?
    } else if let Some(p) = value.strip_prefix(':') {
        local(port(p)?)?
    } else if let Some(p) = value.strip_prefix("localhost:") {
        local(port(p)?)?
    } else {
        let a: SocketAddr = value.parse().ok()?;
        if a.port() == 0 {
            return None;
        }
        a
    };
    Some(HttpAddr { addr })
}

/// Why a hook program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookProblem {
    /// No such file (or, for a bare name, none on `PATH`).
    NotFound,
    /// A directory or another non-file.
    NotAFile,
    /// The file has no execute permission for autossh.
    NotExecutable,
}

impl fmt::Display for HookProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookProblem::NotFound => "not found",
            HookProblem::NotAFile => "not a file",
            HookProblem::NotExecutable => "not executable",
        })
    }
}

/// The hook program as it will be run: a bare name found on `PATH` now, a relative path
/// made absolute against `cwd` (before any `chdir("/")` of `-f`); it must be an executable
/// file. Returns the path tried with the problem.
pub fn check_hook(
    value: &OsStr,
    cwd: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, (PathBuf, HookProblem)> {
    let given = Path::new(value);
    if !value.as_encoded_bytes().contains(&b'/') {
        let dirs = path_var.map(std::env::split_paths).into_iter().flatten();
        for dir in dirs {
            let candidate = cwd.join(dir).join(given);
            if executable(&candidate).is_ok() {
                return Ok(candidate);
            }
        }
        return Err((given.to_path_buf(), HookProblem::NotFound));
    }
    let path = cwd.join(given);
    executable(&path)
        .map(|()| path.clone())
        .map_err(|p| (path, p))
}

fn executable(path: &Path) -> Result<(), HookProblem> {
    let meta = std::fs::metadata(path).map_err(|_| HookProblem::NotFound)?;
    if !meta.is_file() {
        return Err(HookProblem::NotAFile);
    }
    let any_x = meta.permissions().mode() & 0o111 != 0;
    let access = nix::unistd::access(path, nix::unistd::AccessFlags::X_OK);
    if !any_x || access.is_err() {
        return Err(HookProblem::NotExecutable);
    }
    Ok(())
}

/// `PATH` as autossh sees it (the hook is looked up once, at start).
pub fn path_var() -> Option<OsString> {
    std::env::var_os("PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_default_to_loopback_and_names_are_refused() {
        let at = |v: &str| parse_http(v).map(|h| h.addr.to_string());
        assert_eq!(at("9100").as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(at(":9100").as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(at("localhost:9100").as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(at("0.0.0.0:9100").as_deref(), Some("0.0.0.0:9100"));
        assert_eq!(at("[::1]:9100").as_deref(), Some("[::1]:9100"));
        assert!(parse_http("[::1]:9100").unwrap().is_loopback());
        assert!(!parse_http("10.1.2.3:80").unwrap().is_loopback());
        for bad in [
            "",
            "not-an-address",
            "example.org:80",
            "127.0.0.1",
            "127.0.0.1:0",
            "0",
            "127.0.0.1:70000",
            ":",
            "::1:80",
        ] {
            assert_eq!(parse_http(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_hook_must_be_an_executable_file() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("notify");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = d.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cwd = d.path();
        let check = |v: &str, path: Option<&OsStr>| check_hook(OsStr::new(v), cwd, path);
        assert_eq!(check("./notify", None), Ok(cwd.join("./notify")));
        assert_eq!(check(exe.to_str().unwrap(), None), Ok(exe.clone()));
        let path = d.path().as_os_str();
        assert_eq!(check("notify", Some(path)), Ok(exe.clone()));
        assert_eq!(
            check("notify", None),
            Err((PathBuf::from("notify"), HookProblem::NotFound))
        );
        assert_eq!(
            check("./plain", None).unwrap_err().1,
            HookProblem::NotExecutable
        );
        assert_eq!(check("./", None).unwrap_err().1, HookProblem::NotAFile);
        assert_eq!(
            check("./missing", None).unwrap_err().1,
            HookProblem::NotFound
        );
    }
}

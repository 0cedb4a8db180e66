//! The control socket of `--tunnels` mode: a unix stream socket (mode 0600, owner only)
//! that answers `status`, `restart NAME` and `reload`, one request line per connection.

use crate::error::{runtime, Result};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod client;

/// Token of the listening socket (in the event loop's own range).
pub const LISTENER: Token = Token(5);
/// Tokens of client connections: `CLIENT_FIRST + slot`.
const CLIENT_FIRST: usize = 16;
const CLIENTS: usize = 48;
/// Longest request line.
const MAX_REQUEST: usize = 512;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status {
        json: bool,
    },
    Restart(String),
    Reload,
    /// `health [NAME]`: every tunnel up (or the one named)?
    Health(Option<String>),
}

impl Request {
    /// The request's line on the wire.
    pub fn line(&self) -> String {
        match self {
            Request::Status { json: false } => "status".into(),
            Request::Status { json: true } => "status --json".into(),
            Request::Restart(name) => format!("restart {name}"),
            Request::Reload => "reload".into(),
            Request::Health(None) => "health".into(),
            Request::Health(Some(name)) => format!("health {name}"),
        }
    }

    /// Reads a request line.
    pub fn parse(line: &str) -> Option<Request> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["status"] => Some(Request::Status { json: false }),
            ["status", "--json"] => Some(Request::Status { json: true }),
            ["restart", name] => Some(Request::Restart(name.to_string())),
            ["reload"] => Some(Request::Reload),
            ["health"] => Some(Request::Health(None)),
            ["health", name] => Some(Request::Health(Some(name.to_string()))),
            _ => None,
        }
    }
}

/// Where the socket is when not given: `$RUNTIME_DIRECTORY` (systemd's), else
/// `$XDG_RUNTIME_DIR/autossh/`, else `/run/autossh/` (`/var/run/autossh/` on the BSDs and
/// macOS, which have no /run).
pub fn default_path(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(d) = env("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return Path::new(&first).join("autossh.sock");
    }
    if let Some(d) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("autossh").join("autossh.sock");
    }
    Path::new(crate::shell::platform::unix::RUN_DIR).join("autossh/autossh.sock")
}

enum ClientState {
    Reading,
    Writing,
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    written: usize,
    state: ClientState,
}

/// The listening socket and its clients.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Option<Client>>,
}

impl ControlServer {
    /// Binds `path` (its directory made 0700 if missing); a socket a live autossh answers
    /// on is an error, a stale one is replaced.
    pub fn bind(path: &Path) -> Result<ControlServer> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let what = |e: io::Error| runtime(format!("control socket {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(what)?;
            }
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(runtime(format!(
                    "control socket {}: another autossh answers there (give --control-socket PATH)",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(what)?;
        }
        // Made private before anyone can connect: bound under a umask that lets only us in.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(what)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(what)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            clients: (0..CLIENTS).map(|_| None).collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.listener, LISTENER, Interest::READABLE)
    }

    pub fn owns(token: Token) -> bool {
        token == LISTENER || (CLIENT_FIRST..CLIENT_FIRST + CLIENTS).contains(&token.0)
    }

    /// Accepts or reads; returns the requests complete now, by client.
    pub fn ready(&mut self, registry: &Registry, token: Token) -> Vec<(usize, Request)> {
        if token == LISTENER {
            self.accept(registry);
            return Vec::new();
        }
        let id = token.0 - CLIENT_FIRST;
        let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) else {
            return Vec::new();
        };
        match c.state {
            ClientState::Writing => {
                self.flush(registry, id);
                Vec::new()
            }
            ClientState::Reading => {
                let end = crate::shell::nonblocking::read_available(
                    &mut c.stream,
                    &mut c.buf,
                    MAX_REQUEST + 1,
                );
                let eof = end != crate::shell::nonblocking::ReadEnd::WouldBlock;
                let line_end = c.buf.iter().position(|&b| b == b'\n');
                if line_end.is_none() && !eof && c.buf.len() <= MAX_REQUEST {
                    return Vec::new();
                }
                let line =
                    String::from_utf8_lossy(&c.buf[..line_end.unwrap_or(c.buf.len())]).into_owned();
                match Request::parse(&line) {
                    Some(r) => vec![(id, r)],
                    None => {
                        self.reply(registry, id, "error: unknown request\n");
                        Vec::new()
                    }
                }
            }
        }
    }

    fn accept(&mut self, registry: &Registry) {
        for _ in 0..64 {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if crate::shell::nonblocking::would_block(&e) => return,
                Err(e) if crate::shell::nonblocking::interrupted(&e) => continue,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return;
                }
            };
            let me = nix::unistd::geteuid().as_raw();
            let peer = crate::shell::platform::unix::peer_uid(&stream);
            if !matches!(peer, Ok(uid) if uid == me || uid == 0) {
                log::warn!(
                    "control socket: refused a client of uid {}",
                    peer.map(|u| u.to_string()).unwrap_or_else(|_| "?".into())
                );
                let _ = stream.write(b"error: permission denied\n");
                continue;
            }
            let Some(id) = self.clients.iter().position(|c| c.is_none()) else {
                let _ = stream.write(b"error: busy\n");
                continue;
            };
            if registry
                .register(&mut stream, Token(CLIENT_FIRST + id), Interest::READABLE)
                .is_ok()
            {
                self.clients[id] = Some(Client {
                    stream,
                    buf: Vec::new(),
                    written: 0,
                    state: ClientState::Reading,
                });
            }
        }
    }

    /// Sends `text` to client `id`, then closes its connection.
    pub fn reply(&mut self, registry: &Registry, id: usize, text: &str) {
        let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) else {
            return;
        };
        c.buf = text.as_bytes().to_vec();
        c.written = 0;
        c.state = ClientState::Writing;
        let _ = registry.reregister(&mut c.stream, Token(CLIENT_FIRST + id), Interest::WRITABLE);
        self.flush(registry, id);
    }

    fn flush(&mut self, registry: &Registry, id: usize) {
        let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) else {
            return;
        };
        while c.written < c.buf.len() {
            match c.stream.write(&c.buf[c.written..]) {
                Ok(0) => break,
                Ok(n) => c.written += n,
                Err(e) if crate::shell::nonblocking::interrupted(&e) => continue,
                Err(e) if crate::shell::nonblocking::would_block(&e) => return,
                Err(_) => break,
            }
        }
        if let Some(mut c) = self.clients[id].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status { json: false },
            Request::Status { json: true },
            Request::Restart("db".into()),
            Request::Reload,
            Request::Health(None),
            Request::Health(Some("db".into())),
        ] {
            assert_eq!(Request::parse(&r.line()), Some(r));
        }
        assert_eq!(Request::parse("restart"), None);
        assert_eq!(Request::parse("shutdown"), None);
    }

    #[test]
    fn the_default_path_follows_systemd_then_xdg() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let rt = env(&[
            ("RUNTIME_DIRECTORY", "/run/autossh:/run/x"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
        ]);
        assert_eq!(
            default_path(&rt),
            PathBuf::from("/run/autossh/autossh.sock")
        );
        let xdg = env(&[("XDG_RUNTIME_DIR", "/run/user/1")]);
        assert_eq!(
            default_path(&xdg),
            PathBuf::from("/run/user/1/autossh/autossh.sock")
        );
        assert_eq!(
            default_path(&env(&[])),
            PathBuf::from("/run/autossh/autossh.sock")
        );
    }
}

//! Builds ssh's argument list: monitor forwards and keepalive options before the user's own.

use crate::setup::config::Settings;
use std::ffi::OsString;
use std::path::PathBuf;

/// The remote end of the session probe's forward: a path that can never exist (`/dev/null`
/// is not a directory), so the server refuses the channel at once, and its log says what
/// asked.
pub const SESSION_PROBE_PATH: &str = "/dev/null/autossh-session-probe";

/// The monitor forwards of the ssh being started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwards {
    /// `-M 0` without the session probe.
    Off,
    /// `-M 0` with the session probe: `-L socket:/dev/null/autossh-session-probe`, the socket
    /// in autossh's private directory ([`Sockets::monitor`]).
    Session,
    /// Loop mode: `-L local:127.0.0.1:remote -R remote:127.0.0.1:local+1`. `remote` starts
    /// equal to `local` (1.4g) and moves when the server holds it.
    Loop { local: u16, remote: u16 },
    /// Echo mode: `-L local:127.0.0.1:echo`.
    Echo { local: u16, echo: u16 },
}

impl Forwards {
    /// The remote port ssh's `-R` asks the server for, if any.
    pub fn remote_listen_port(&self) -> Option<u16> {
        match *self {
            Forwards::Loop { remote, .. } => Some(remote),
            _ => None,
        }
    }
}

/// The private unix sockets one ssh binds for autossh (see `shell::private_dir`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sockets {
    /// The session probe's; with held forwards also loop and echo mode's `-L` (so that an
    /// old ssh and its successor do not share a port); `None`: the monitor port itself.
    pub monitor: Option<PathBuf>,
    /// One per held forward, in order.
    pub held: Vec<PathBuf>,
    /// autossh's own ssh-agent's socket: `-o IdentityAgent=...`.
    pub agent: Option<PathBuf>,
}

/// The complete argv after the program name.
pub fn build(s: &Settings, fwd: &Forwards, socks: &Sockets) -> Vec<OsString> {
    let mut v: Vec<String> = Vec::with_capacity(16);
    monitor_forwards(&mut v, fwd, socks);
    for (f, sock) in s.held.forwards.iter().zip(&socks.held) {
        v.extend(["-L".into(), format!("{}:{}", sock.display(), f.connect)]);
    }
    options(&mut v, s, fwd, socks);
    for c in &s.credentials {
        v.extend(["-i".into(), c.display().to_string()]);
    }
    let mut out: Vec<OsString> = v.into_iter().map(OsString::from).collect();
    // Without the held forwards: the sockets above stand for them.
    out.extend(s.held.rest.iter().cloned());
    out
}

/// The monitor's forwards: the session probe's, the loop's pair, or echo mode's one.
fn monitor_forwards(v: &mut Vec<String>, fwd: &Forwards, socks: &Sockets) {
    let local = |port: u16| match &socks.monitor {
        Some(p) => p.display().to_string(),
        None => port.to_string(),
    };
    match *fwd {
        Forwards::Off => {}
        Forwards::Session => {
            v.extend(["-L".into(), format!("{}:{SESSION_PROBE_PATH}", local(0))]);
        }
        Forwards::Loop { local: l, remote } => v.extend([
            "-L".into(),
            format!("{}:127.0.0.1:{remote}", local(l)),
            "-R".into(),
            format!("{remote}:127.0.0.1:{}", l + 1),
        ]),
        Forwards::Echo { local: l, echo } => {
            v.extend(["-L".into(), format!("{}:127.0.0.1:{echo}", local(l))]);
        }
    }
}

/// The options autossh adds: keepalives for `-M 0`, ExitOnForwardFailure, its agent, no
/// connection sharing; each only where the user did not set it.
fn options(v: &mut Vec<String>, s: &Settings, fwd: &Forwards, socks: &Sockets) {
    let user_set = |key: &str| s.user_o_keys.iter().any(|k| k == key);
    let mut opt = |o: String| v.extend(["-o".into(), o]);
    let m0 = matches!(fwd, Forwards::Off | Forwards::Session);
    if m0
        && s.serveralive_interval > 0
        && !user_set("serveraliveinterval")
        && !user_set("serveralivecountmax")
    {
        opt(format!("ServerAliveInterval={}", s.serveralive_interval));
        opt(format!("ServerAliveCountMax={}", s.serveralive_count_max));
    }
    if !user_set("exitonforwardfailure") {
        opt("ExitOnForwardFailure=yes".into());
    }
    if let Some(a) = &socks.agent {
        opt(format!("IdentityAgent={}", a.display()));
    }
    if !s.sharing_asked {
        // The supervised ssh must hold the session itself: not hand it to a background
        // master (ControlPersist) nor ride on someone else's (ssh_config's ControlMaster).
        opt("ControlMaster=no".into());
        opt("ControlPath=none".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let cli = crate::setup::cli::parse(args.iter().copied()).unwrap();
        crate::setup::config::from_env(cli, |_| None).unwrap()
    }

    fn argv(args: &[&str], fwd: Forwards) -> Vec<String> {
        let socks = Sockets {
            monitor: matches!(fwd, Forwards::Session).then(|| "/tmp/autossh-1/probe.sock".into()),
            held: Vec::new(),
            agent: None,
        };
        build(&settings(args), &fwd, &socks)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_agent_and_credentials_come_before_the_users_arguments() {
        let mut s = settings(&["-M", "0", "-N", "host"]);
        s.credentials = vec!["/run/credentials/autossh.service/ssh-identity".into()];
        let socks = Sockets {
            agent: Some("/tmp/autossh-1/agent.sock".into()),
            ..Sockets::default()
        };
        let v: Vec<String> = build(&s, &Forwards::Off, &socks)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |x: &str| {
            v.iter()
                .position(|a| a == x)
                .unwrap_or_else(|| panic!("{x}: {v:?}"))
        };
        assert_eq!(v[at("IdentityAgent=/tmp/autossh-1/agent.sock") - 1], "-o");
        let i = at("/run/credentials/autossh.service/ssh-identity");
        assert_eq!(v[i - 1], "-i");
        assert!(i < at("host"), "{v:?}");
    }

    #[test]
    fn loop_mode_forwards_come_first() {
        let a = argv(
            &["-N", "h"],
            Forwards::Loop {
                local: 20000,
                remote: 20000,
            },
        );
        assert_eq!(
            a,
            [
                "-L",
                "20000:127.0.0.1:20000",
                "-R",
                "20000:127.0.0.1:20001",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-N",
                "h"
            ]
        );
        let a = argv(
            &["h"],
            Forwards::Loop {
                local: 20000,
                remote: 20002,
            },
        );
        assert_eq!(a[1], "20000:127.0.0.1:20002");
        assert_eq!(a[3], "20002:127.0.0.1:20001");
    }

    #[test]
    fn echo_mode_has_one_forward() {
        let a = argv(
            &["h"],
            Forwards::Echo {
                local: 20000,
                echo: 7,
            },
        );
        assert_eq!(a[..2], ["-L", "20000:127.0.0.1:7"]);
        assert!(!a.contains(&"-R".to_string()));
    }

    #[test]
    fn serveralive_only_with_m0_and_only_if_unset() {
        let a = argv(&["h"], Forwards::Off);
        assert!(a.contains(&"ServerAliveInterval=60".to_string()));
        assert!(a.contains(&"ServerAliveCountMax=3".to_string()));
        let a = argv(&["-o", "serveraliveinterval 10", "h"], Forwards::Off);
        assert!(!a.iter().any(|x| x.starts_with("ServerAlive")));
        let a = argv(&["h"], Forwards::Echo { local: 1, echo: 7 });
        assert!(!a.iter().any(|x| x.starts_with("ServerAlive")));
        let a = argv(&["-oExitOnForwardFailure=no", "h"], Forwards::Off);
        assert!(!a.contains(&"ExitOnForwardFailure=yes".to_string()));
    }

    #[test]
    fn connection_sharing_is_off_unless_asked_for_on_the_command_line() {
        let off = [
            "ControlMaster=no".to_string(),
            "ControlPath=none".to_string(),
        ];
        let a = argv(&["h"], Forwards::Off);
        assert!(off.iter().all(|o| a.contains(o)), "{a:?}");
        for asked in [
            &["-S", "/tmp/cm", "h"][..],
            &["-o", "ControlMaster=auto", "h"],
            &["-oControlPersist=yes", "h"],
        ] {
            let a = argv(asked, Forwards::Off);
            assert!(!off.iter().any(|o| a.contains(o)), "{a:?}");
        }
    }

    #[test]
    fn the_session_probe_forwards_a_unix_socket_to_a_path_that_cannot_exist() {
        let a = argv(&["-N", "h"], Forwards::Session);
        assert_eq!(
            a[..2],
            [
                "-L",
                "/tmp/autossh-1/probe.sock:/dev/null/autossh-session-probe"
            ]
        );
        assert!(a.contains(&"ServerAliveInterval=60".to_string()));
    }

    #[test]
    fn held_forwards_become_private_sockets_and_leave_the_rest_in_order() {
        let s = settings(&[
            "-N",
            "-L",
            "5432:db:5432",
            "-p",
            "2222",
            "-L",
            "8080:[::1]:80",
            "h",
        ]);
        let socks = Sockets {
            monitor: Some("/d/mon-3.sock".into()),
            held: vec!["/d/fwd-3-0.sock".into(), "/d/fwd-3-1.sock".into()],
            agent: None,
        };
        let fwd = Forwards::Loop {
            local: 20000,
            remote: 20002,
        };
        let a: Vec<String> = build(&s, &fwd, &socks)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            a[..8],
            [
                "-L",
                "/d/mon-3.sock:127.0.0.1:20002",
                "-R",
                "20002:127.0.0.1:20001",
                "-L",
                "/d/fwd-3-0.sock:db:5432",
                "-L",
                "/d/fwd-3-1.sock:[::1]:80"
            ]
        );
        assert_eq!(a[a.len() - 4..], ["-N", "-p", "2222", "h"]);
        assert!(!a.iter().any(|x| x.starts_with("5432:")), "{a:?}");
    }
}

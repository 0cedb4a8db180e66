//! Key hygiene, looked at once per run from `ssh -G`'s answer: an identity file ssh would use
//! that group or others can read, and host key checking turned off, are each logged once as a
//! warning saying what to do. It runs in the `ssh -G` helper thread ([`crate::shell::ssh_g`]) and only
//! logs: it never delays nor fails the start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What `ssh -G` says about keys and host keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeySettings {
    pub host: String,
    pub port: u16,
    /// `identityfile` lines, as ssh prints them (`~` and `%d` not expanded).
    pub identity_files: Vec<String>,
    /// `stricthostkeychecking`: `true`, `false`, `ask` or `accept-new`.
    pub strict_host_key_checking: String,
    /// `userknownhostsfile`: one or more paths.
    pub user_known_hosts: Vec<String>,
}

/// The settings from `ssh -G` output; lines it does not know are skipped.
pub fn parse(text: &str) -> KeySettings {
    let mut s = KeySettings {
        port: 22,
        ..KeySettings::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        match key {
            "hostname" => s.host = value.to_string(),
            "port" => s.port = value.parse().unwrap_or(22),
            "identityfile" if !value.is_empty() && value != "none" => {
                s.identity_files.push(value.to_string())
            }
            "stricthostkeychecking" => s.strict_host_key_checking = value.to_lowercase(),
            "userknownhostsfile" => {
                s.user_known_hosts = value.split_whitespace().map(String::from).collect()
            }
            _ => {}
        }
    }
    s
}

/// `~/`, `%d` (home), `%u` (user) and `%%` expanded as ssh does; `None` for other `%` tokens,
/// which need the connection's details.
pub fn expand(path: &str, home: &Path, user: &str) -> Option<PathBuf> {
    let home = home.to_string_lossy();
    let path = match path.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => path.to_string(),
    };
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'd' => out.push_str(&home),
            'u' => out.push_str(user),
            '%' => out.push('%'),
            _ => return None,
        }
    }
    Some(PathBuf::from(out))
}

/// One warning line per problem found.
pub fn findings(s: &KeySettings, home: &Path, user: &str) -> Vec<String> {
    let mut out = Vec::new();
    for file in &s.identity_files {
        let Some(path) = expand(file, home, user) else {
            continue;
        };
        // A file that is not there is not used by ssh either.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let how = if mode & 0o044 != 0 {
                "readable"
            } else {
                "writable"
            };
            out.push(format!(
                "identity file {p} is {how} by group or others (mode {mode:04o}): ssh refuses \
                 such a key and others on this host can take it; run chmod 600 {p}",
                p = path.display()
            ));
        }
    }
    let mut off = Vec::new();
    if matches!(s.strict_host_key_checking.as_str(), "false" | "no" | "off") {
        off.push("StrictHostKeyChecking no");
    }
    if !s.user_known_hosts.is_empty() && s.user_known_hosts.iter().all(|f| f == "/dev/null") {
        off.push("UserKnownHostsFile /dev/null");
    }
    if !off.is_empty() {
        let port = if s.port == 22 {
            String::new()
        } else {
            format!("-p {} ", s.port)
        };
        out.push(format!(
            "host key checking is off ({}): anyone on the path can pose as {host}; pin its key \
             instead: ssh-keyscan {port}-H {host} >> ~/.ssh/known_hosts after checking the \
             fingerprint, and drop those options (docs/operations.md)",
            off.join(", "),
            host = s.host
        ));
    }
    out
}

/// Logs each finding in `ssh -G`'s output once, as a warning.
pub fn warn(ssh_g_output: &str) {
    let s = parse(ssh_g_output);
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let (home, user) = match me {
        Some(u) => (u.dir, u.name),
        None => (PathBuf::from("/nonexistent"), String::new()),
    };
    let found = findings(&s, &home, &user);
    log::debug!(
        "key hygiene: {} identity file(s) looked at, host key checking {}, {} warning(s)",
        s.identity_files.len(),
        s.strict_host_key_checking,
        found.len()
    );
    // Many tunnels with the same options: each warning once.
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    for line in found {
        if !said.contains(&line) {
            log::warn!("{line}");
            said.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: &str = "hostname 10.0.0.7\nport 2222\nstricthostkeychecking false\n\
                       identityfile ~/.ssh/id_ed25519\nidentityfile %d/.ssh/other\n\
                       userknownhostsfile /dev/null\n";

    #[test]
    fn parses_what_ssh_g_prints() {
        let s = parse(OFF);
        assert_eq!(s.host, "10.0.0.7");
        assert_eq!(s.port, 2222);
        assert_eq!(s.identity_files, ["~/.ssh/id_ed25519", "%d/.ssh/other"]);
        assert_eq!(s.strict_host_key_checking, "false");
        assert_eq!(s.user_known_hosts, ["/dev/null"]);
        // Nonsense is skipped, never an error.
        assert_eq!(parse("identityfile\n\u{1}\nport x\n").port, 22);
    }

    #[test]
    fn expands_home_and_user_tokens_only() {
        let home = Path::new("/var/lib/autossh");
        let e = |p| expand(p, home, "autossh");
        assert_eq!(e("~/.ssh/k"), Some("/var/lib/autossh/.ssh/k".into()));
        assert_eq!(e("%d/k_%u%%"), Some("/var/lib/autossh/k_autossh%".into()));
        assert_eq!(e("/etc/k"), Some("/etc/k".into()));
        assert_eq!(e("/etc/k_%h"), None);
        assert_eq!(e("/etc/k_%"), None);
    }

    #[test]
    fn open_keys_and_unchecked_host_keys_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        let key = dir.path().join(".ssh/id_ed25519");
        std::fs::write(&key, "k").unwrap();
        let other = dir.path().join(".ssh/other");
        std::fs::write(&other, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let found = findings(&parse(OFF), dir.path(), "u");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains(&format!("{} is readable", key.display())));
        assert!(found[0].contains("(mode 0640)") && found[0].contains("chmod 600"));
        assert!(found[1].starts_with(
            "host key checking is off (StrictHostKeyChecking no, UserKnownHostsFile /dev/null)"
        ));
        assert!(
            found[1].contains("ssh-keyscan -p 2222 -H 10.0.0.7 >>"),
            "{}",
            found[1]
        );

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fine = "hostname h\nstricthostkeychecking ask\nidentityfile ~/.ssh/id_ed25519\n\
                    identityfile ~/.ssh/missing\nuserknownhostsfile ~/.ssh/known_hosts /dev/null\n";
        assert_eq!(
            findings(&parse(fine), dir.path(), "u"),
            Vec::<String>::new()
        );
        let accept_new = "hostname h\nstricthostkeychecking accept-new\n";
        assert!(findings(&parse(accept_new), dir.path(), "u").is_empty());
    }
}

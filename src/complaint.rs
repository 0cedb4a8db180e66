//! What ssh's stderr says about why it failed: configuration errors that retrying will not
//! fix, network trouble that will pass, and the monitor port being busy on the server.

/// A stderr line autossh acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Complaint {
    /// Authentication, host key, unknown host...: a person has to fix something.
    Config(String),
    /// Refused, timed out, unreachable...: the server or the network is away for now.
    Network(String),
    /// "remote port forwarding failed for listen port N".
    RemoteForwardFailed(u16),
}

const CONFIG: &[&str] = &[
    "Permission denied",
    "Host key verification failed",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Name or service not known",
    "No address associated with hostname",
    "Too many authentication failures",
    "Unable to negotiate",
    "Bad configuration option",
    "no such identity",
];

const NETWORK: &[&str] = &[
    "Connection refused",
    "Connection timed out",
    "Operation timed out",
    "No route to host",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Connection reset",
    "Connection closed by",
    "timed out during banner exchange",
    "not responding",
    "Broken pipe",
    "kex_exchange_identification",
];

/// Classifies one stderr line.
pub fn classify(line: &str) -> Option<Complaint> {
    const FWD: &str = "remote port forwarding failed for listen port ";
    if let Some(at) = line.find(FWD) {
        let digits: String = line[at + FWD.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        return digits.parse().ok().map(Complaint::RemoteForwardFailed);
    }
    // "Could not resolve hostname h: Temporary failure..." is network trouble (a booting
    // machine); "...: Name or service not known" is a typo. Network wins ties.
    if NETWORK.iter().any(|k| line.contains(k)) {
        return Some(Complaint::Network(line.to_string()));
    }
    if CONFIG.iter().any(|k| line.contains(k)) || line.contains("Could not resolve hostname") {
        return Some(Complaint::Config(line.to_string()));
    }
    None
}

/// ssh's message when the server refused a channel and said no more than "open failed":
/// what the session probe's channel (to a path that cannot exist) draws, whether the server
/// tried the path ("connect failed") or forbids such forwards ("administratively
/// prohibited"). A user's own TCP forward that fails says why ("Connection refused").
pub fn is_session_probe_refusal(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("channel ") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && matches!(
            &rest[digits..],
            ": open failed: connect failed: open failed"
                | ": open failed: administratively prohibited: open failed"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> &'static str {
        match classify(line) {
            Some(Complaint::Config(_)) => "config",
            Some(Complaint::Network(_)) => "network",
            Some(Complaint::RemoteForwardFailed(_)) => "forward",
            None => "-",
        }
    }

    #[test]
    fn openssh_messages() {
        assert_eq!(
            kind("root@10.0.0.1: Permission denied (publickey)."),
            "config"
        );
        assert_eq!(kind("Host key verification failed."), "config");
        assert_eq!(
            kind("ssh: Could not resolve hostname nosuch: Name or service not known"),
            "config"
        );
        assert_eq!(
            kind("ssh: Could not resolve hostname h: Temporary failure in name resolution"),
            "network"
        );
        assert_eq!(
            kind("ssh: connect to host 10.0.0.1 port 22: Connection refused"),
            "network"
        );
        assert_eq!(
            kind("ssh: connect to host h port 22: Connection timed out"),
            "network"
        );
        assert_eq!(
            kind("ssh: connect to host h port 22: No route to host"),
            "network"
        );
        assert_eq!(
            kind("ssh: connect to host h port 22: Network is unreachable"),
            "network"
        );
        assert_eq!(kind("Timeout, server 10.0.0.1 not responding."), "network");
        assert_eq!(
            kind("Warning: remote port forwarding failed for listen port 20000"),
            "forward"
        );
        assert_eq!(
            classify("Error: remote port forwarding failed for listen port 8080"),
            Some(Complaint::RemoteForwardFailed(8080))
        );
        assert_eq!(
            kind("Warning: Permanently added '[h]:22' (ED25519) to the list"),
            "-"
        );
    }

    #[test]
    fn the_session_probes_refusals_are_told_from_a_users_failed_forward() {
        assert!(is_session_probe_refusal(
            "channel 3: open failed: connect failed: open failed"
        ));
        assert!(is_session_probe_refusal(
            "channel 12: open failed: administratively prohibited: open failed"
        ));
        assert!(!is_session_probe_refusal(
            "channel 3: open failed: connect failed: Connection refused"
        ));
        assert!(!is_session_probe_refusal(
            "channel : open failed: connect failed: open failed"
        ));
        assert!(!is_session_probe_refusal("Permission denied (publickey)."));
    }
}

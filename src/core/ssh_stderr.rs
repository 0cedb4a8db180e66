//! What ssh's stderr says about why it failed: configuration errors that retrying will not
//! fix, network trouble that will pass, the monitor port being busy on the server, and,
//! through a jump host or a proxy command, a target that the proxy cannot reach.
//!
//! [`classify`] gives the class of one line; a [`Story`] gathers the lines of one ssh and
//! tells the [`Reason`] it failed: later lines are often consequences of earlier ones
//! (through a jump host "stdio forwarding failed" is followed by
//! "kex_exchange_identification: Connection closed by remote host"), so a line that says
//! why wins over one that only says the connection ended.

/// A stderr line autossh acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Complaint {
    /// Authentication, host key, unknown host...: a person has to fix something.
    Config(String),
    /// Refused, timed out, unreachable...: the server or the network is away for now.
    Network(String),
    /// The connection ended ("Connection closed by ...", "Connection reset by ...",
    /// "kex_exchange_identification: ..."): network trouble, but not why.
    Ended(String),
    /// "remote port forwarding failed for listen port N".
    RemoteForwardFailed(u16),
    /// "channel N: open failed: <why>": the server refused a channel (a forward's, or a
    /// jump host's `-W` channel to the target). The line is kept whole.
    ChannelRefused(String),
    /// "stdio forwarding failed": `ssh -W` (a jump host's) could not open its channel.
    StdioForwardFailed,
}

impl Complaint {
    /// Whether the line is one a failed handshake says while the server, or the target
    /// behind a proxy, is away (network trouble, a refused channel, the end of the
    /// connection), or while a remote forward's port is held: while an outage already logged
    /// is retried, such lines are not news. A
    /// configuration error, or any line not classified, is.
    pub fn repeats_an_outage(&self) -> bool {
        matches!(
            self,
            Complaint::Network(_)
                | Complaint::Ended(_)
                | Complaint::ChannelRefused(_)
                | Complaint::StdioForwardFailed
                | Complaint::RemoteForwardFailed(_)
        )
    }
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

/// Lines that say the connection ended, not why: what precedes them says more.
const ENDED: &[&str] = &["Connection closed by ", "Connection reset by "];

/// Lines that say no SSH server answered at all: the stream ended (or stayed silent)
/// before the server's identification banner.
const NO_BANNER: &[&str] = &["kex_exchange_identification:", "during banner exchange"];

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
    if line.trim_end() == "stdio forwarding failed" {
        return Some(Complaint::StdioForwardFailed);
    }
    if channel_refusal(line).is_some() {
        return Some(Complaint::ChannelRefused(line.to_string()));
    }
    if ENDED.iter().any(|k| line.starts_with(k)) || NO_BANNER.iter().any(|k| line.contains(k)) {
        return Some(Complaint::Ended(line.to_string()));
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

/// What follows "channel N: open failed: " in ssh's line about a channel the server
/// refused, e.g. "connect failed: Connection refused".
fn channel_refusal(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("channel ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].strip_prefix(": open failed: ")
}

/// ssh's message when the server refused a channel and said no more than "open failed":
/// what the session probe's channel (to a path that cannot exist) draws, whether the server
/// tried the path ("connect failed") or forbids such forwards ("administratively
/// prohibited"). A user's own TCP forward that fails says why ("Connection refused").
pub fn is_session_probe_refusal(line: &str) -> bool {
    matches!(
        channel_refusal(line),
        Some("connect failed: open failed" | "administratively prohibited: open failed")
    )
}

/// Why an ssh failed, from all it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A person has to fix something (also when said by a jump host).
    Config(String),
    /// The server, or the first hop to it (the jump host, the proxy's own connection), is
    /// away for now.
    Network(String),
    /// Through a proxy: the proxy answered (a jump host let us in), the server behind it
    /// did not. Only a handshake through the proxy can tell when it is back.
    TargetUnreachable {
        /// Said by a jump host (`ssh -W`: "stdio forwarding failed"); otherwise the proxy
        /// command ended before any SSH server spoke.
        jump: bool,
        /// The line that says why, e.g. "channel 0: open failed: connect failed:
        /// Connection refused".
        why: String,
    },
}

/// The lines of one ssh that matter for why it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Story {
    /// The first configuration error.
    config: Option<String>,
    /// The last line that says what went wrong with the network.
    network: Option<String>,
    /// The last line that only says the connection ended.
    ended: Option<String>,
    /// The stream ended before any SSH server's banner.
    no_banner: bool,
    /// The last channel the server refused.
    refused: Option<String>,
    /// "stdio forwarding failed", with the refusal just before it.
    stdio_failed: Option<String>,
}

impl Story {
    /// Takes one classified line in.
    pub fn hear(&mut self, c: &Complaint) {
        match c {
            Complaint::Config(l) => {
                self.config.get_or_insert_with(|| l.clone());
            }
            Complaint::Network(l) => self.network = Some(l.clone()),
            Complaint::Ended(l) => {
                self.no_banner |= NO_BANNER.iter().any(|k| l.contains(k));
                self.ended = Some(l.clone());
            }
            Complaint::ChannelRefused(l) => self.refused = Some(l.clone()),
            Complaint::StdioForwardFailed => {
                let why = self
                    .refused
                    .take()
                    .unwrap_or_else(|| "stdio forwarding failed".into());
                self.stdio_failed = Some(why);
            }
            Complaint::RemoteForwardFailed(_) => {}
        }
    }

    /// Whether the server closed or reset the connection before its banner, and nothing
    /// said more (a refused connection, a proxy's target away): what sshd does to a
    /// connection past its `MaxStartups`.
    pub fn cut_before_banner(&self, proxied: bool) -> bool {
        self.no_banner
            && self.network.is_none()
            && matches!(self.reason(proxied), Some(Reason::Network(_)))
    }

    /// Why the ssh failed; `proxied`: it went through a jump host or a proxy command.
    ///
    /// A configuration error wins. Then a jump host's failed `-W`: the target is
    /// unreachable from the jump host (or, when the jump host says why in configuration
    /// terms, a configuration error). Then, through a proxy, a stream that ended before any
    /// SSH banner while nothing said that the first hop failed (ssh's own "connect to host"
    /// or "Could not resolve hostname"): the proxy ran, what is behind it did not answer.
    /// Else the network line that says the most.
    pub fn reason(&self, proxied: bool) -> Option<Reason> {
        if let Some(l) = &self.config {
            return Some(Reason::Config(l.clone()));
        }
        if let Some(why) = &self.stdio_failed {
            let refusal = channel_refusal(why).unwrap_or(why);
            let config = refusal.starts_with("administratively prohibited")
                || CONFIG.iter().any(|k| refusal.contains(k));
            return Some(if config {
                Reason::Config(format!("the jump host cannot open the target: {why}"))
            } else {
                Reason::TargetUnreachable {
                    jump: true,
                    why: why.clone(),
                }
            });
        }
        let first_hop_down = self.network.as_deref().is_some_and(is_first_hop);
        if proxied && self.no_banner && !first_hop_down {
            let why = self.network.as_ref().or(self.ended.as_ref());
            return why.map(|w| Reason::TargetUnreachable {
                jump: false,
                why: w.clone(),
            });
        }
        self.network
            .as_ref()
            .or(self.ended.as_ref())
            .map(|l| Reason::Network(l.clone()))
    }
}

/// ssh's own line about failing to reach the host it connects to itself (through a jump
/// host, the jump host): "ssh: connect to host h port 22: ...", "ssh: Could not resolve
/// hostname h: ...". A proxy command's own lines look otherwise ("nc: connect to h port
/// 22 (tcp) failed: ...").
fn is_first_hop(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(_, rest)| {
        rest.starts_with("connect to host ") || rest.starts_with("Could not resolve hostname ")
    })
}

#[cfg(test)]
mod tests;

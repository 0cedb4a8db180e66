//! What the server records and tells: each client's probes, and the status and metrics files.

use super::Server;
use crate::clients::Seen;
use crate::probe::Probe;
use crate::report::{self, Printable, Snapshot};
use log::{debug, info, trace, warn};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A report file and whether its last write failed (to warn once per failure spell).
#[derive(Debug)]
pub(super) struct Output {
    pub(super) path: PathBuf,
    pub(super) render: fn(&Snapshot) -> String,
    pub(super) failing: bool,
}

impl Server {
    pub(super) fn record(&mut self, p: Probe, peer: SocketAddr, now: Instant, wall: u64) {
        let (host, pid, message, progname, format) = (
            p.host.clone(),
            p.pid,
            p.message.clone(),
            p.progname.clone(),
            p.format,
        );
        let (seen, evicted) = self.clients.record(p, peer, now, wall);
        let (host, message) = (Printable(&host), Printable(&message));
        match seen {
            Seen::New => info!(
                "new client {host} pid {pid} ({message}): {} {}, via {peer}",
                Printable(&progname),
                format.as_str()
            ),
            Seen::Again => trace!("probe from {host} pid {pid} via {peer}"),
            Seen::Back(d) => info!(
                "client {host} pid {pid} ({message}) is back after {} s",
                d.as_secs()
            ),
        }
        if let Some(c) = evicted {
            debug!(
                "forgot client {} pid {} (--max-clients {} reached)",
                Printable(&c.host),
                c.pid,
                self.config.max_clients
            );
        }
    }

    /// Rewrites the status and metrics files; a failure is warned about once until it heals.
    pub(super) fn write_reports(&mut self) {
        if self.outputs.is_empty() {
            return;
        }
        let snap = Snapshot {
            generated_at: wall_secs(),
            listen: &self.local_addrs,
            connections: self.conns.len(),
            refused_total: self.refused_total,
            clients: self.clients.sorted(),
        };
        for out in &mut self.outputs {
            match report::write_atomic(&out.path, &(out.render)(&snap)) {
                Ok(()) if out.failing => {
                    out.failing = false;
                    info!("wrote {} again", out.path.display());
                }
                Ok(()) => {}
                Err(e) if !out.failing => {
                    out.failing = true;
                    warn!("cannot write {}: {e}", out.path.display());
                }
                Err(e) => debug!("cannot write {}: {e}", out.path.display()),
            }
        }
    }
}

/// Seconds since the epoch.
pub(super) fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! What the loop tells those who ask over HTTP (`/metrics`, `/healthz`, `/status`) and
//! those who listen (`AUTOSSH_HOOK`): every tunnel's outward state, watched after each round.

use super::*;
use crate::shell::hooks::Outward;
use crate::shell::http::{HttpServer, Request, Response};
use crate::shell::report;
use log::warn;
use std::fmt::Write as _;

const JSON: &str = "application/json";
/// `/metrics` is rendered at most this often while no tunnel changes state (a hundred tunnels'
/// text takes about a millisecond; a scraper asking many times a second gets the same).
const METRICS_FRESH: Duration = Duration::from_secs(1);

/// A rendered `/metrics` body: when, after how many state changes.
pub(super) struct Rendered {
    at: Instant,
    changes: u64,
    body: String,
}
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A tunnel's state in the outside's words.
fn outward(slot: &Slot) -> Outward {
    let t = &slot.tunnel;
    let sup = t.sup();
    if t.ended().is_some() {
        return if t.failed() {
            Outward::Failed
        } else {
            Outward::Stopped
        };
    }
    if sup.exiting() || slot.retire.is_some() {
        return Outward::Stopping;
    }
    if sup.healthy() {
        return Outward::Up;
    }
    if sup.port_held().is_some() {
        return Outward::PortHeld;
    }
    match t.phase_name() {
        "starting" => Outward::Starting,
        "waiting" if sup.start_count() == 0 => Outward::Starting,
        _ => Outward::Down,
    }
}

/// Why a tunnel is in `state`: why it went down or ended, or who stops it.
fn reason(slot: &Slot, state: Outward) -> String {
    let last = || slot.tunnel.last_reason().unwrap_or("").to_string();
    match (state, &slot.retire) {
        (Outward::Stopping, Some(Retire::Remove)) => {
            "removed or changed in the tunnels file".into()
        }
        (Outward::Stopping, _) => "autossh is stopping it".into(),
        (Outward::PortHeld, _) => match slot.tunnel.sup().port_held() {
            Some(h) => format!(
                "remote port {} held on the server by another session",
                h.port
            ),
            None => last(),
        },
        (Outward::Down | Outward::Stopped | Outward::Failed, _) => last(),
        (Outward::Up | Outward::Starting, _) => String::new(),
    }
}

impl Runner {
    /// Serves HTTP from now on (bound before anything started); a non-loopback address
    /// is said once, as a warning.
    pub(super) fn serve(&mut self, mut http: HttpServer) -> Result<()> {
        http.register(self.poll.registry())
            .map_err(|e| runtime(format!("poll: {e}")))?;
        let addr = http.addr();
        if addr.ip().is_loopback() {
            info!("HTTP endpoint on http://{addr}/ (/metrics, /healthz, /status)");
        } else {
            warn!(
                "HTTP endpoint on http://{addr}/, not a loopback address: whoever reaches it \
                 reads every tunnel's status and metrics"
            );
        }
        self.http = Some(http);
        Ok(())
    }

    /// Notes every tunnel's outward state (hooks run on changes); cheap when nothing
    /// watches (no endpoint, no hook).
    pub(super) fn watch_states(&mut self) {
        if (self.http.is_none() && !self.watch.has_hook()) || !self.stepped {
            return;
        }
        self.stepped = false;
        let now = Time::now();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else {
                self.watch.forget(i);
                continue;
            };
            let name = slot.tunnel.name().map(|n| &**n).unwrap_or("");
            let state = outward(slot);
            self.watch
                .see(i, (name, state), || reason(slot, state), now);
        }
    }

    /// A readiness event of the endpoint's listener or of one of its connections.
    pub(super) fn on_http(&mut self, token: Token) {
        let registry = self.poll.registry();
        let asked = match self.http.as_mut() {
            Some(h) => h.ready(registry, token),
            None => return,
        };
        self.answer_all(asked);
    }

    /// Connections waiting past the last accept burst; deadlines of slow clients.
    pub(super) fn http_round(&mut self) {
        let registry = self.poll.registry();
        let Some(h) = self.http.as_mut() else { return };
        h.expire(registry, Instant::now());
        if h.backlogged() {
            let asked = h.accept(registry);
            self.answer_all(asked);
        }
    }

    fn answer_all(&mut self, asked: Vec<(usize, Request)>) {
        for (id, request) in asked {
            let response = self.answer(&request);
            let registry = self.poll.registry();
            if let Some(h) = self.http.as_mut() {
                h.reply(registry, id, &response);
            }
        }
    }

    fn answer(&mut self, request: &Request) -> Response {
        let now = Time::now();
        match request {
            Request::Metrics => Response::ok(PROMETHEUS, self.metrics(now)),
            Request::Status => Response::ok(JSON, self.status_text(true)),
            Request::Healthz { tunnel } => self.healthz(tunnel.as_deref(), now),
        }
    }

    /// The metrics text: the last one while it is under [`METRICS_FRESH`] old and no tunnel
    /// has changed state since.
    fn metrics(&mut self, now: Time) -> String {
        let changes = self.watch.changes();
        if let Some(r) = &self.metrics_cache {
            if r.changes == changes && r.at.elapsed() < METRICS_FRESH {
                return r.body.clone();
            }
        }
        let items: Vec<_> = self
            .slots
            .iter()
            .flatten()
            .map(|s| {
                let t = &s.tunnel;
                (t.name().map(|n| &**n), t.sup(), t.relay_stats())
            })
            .collect();
        let body = report::prometheus_fleet(&items, now);
        self.metrics_cache = Some(Rendered {
            at: Instant::now(),
            changes,
            body: body.clone(),
        });
        body
    }

    /// 200 while every tunnel (or the one named) is up, else 503, with the ones that are
    /// not; 404 for no tunnel of that name. Tunnels being removed by a reload do not count.
    fn healthz(&self, only: Option<&str>, now: Time) -> Response {
        let named = |s: &&Slot| {
            only.is_none_or(|n| s.tunnel.name().is_some_and(|t| &**t == n))
                && !matches!(s.retire, Some(Retire::Remove))
        };
        let counted: Vec<(usize, &Slot)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| named(s))
            .collect();
        if let (Some(n), true) = (only, counted.is_empty()) {
            let body = format!(
                "{{\"up\": false, \"error\": {}}}\n",
                json_str(&format!("no tunnel named {n}"))
            );
            return Response {
                status: (404, "Not Found"),
                content_type: JSON,
                body,
            };
        }
        let down: Vec<String> = counted
            .iter()
            .filter(|(_, s)| outward(s) != Outward::Up)
            .map(|&(i, s)| self.down_entry(i, s, now))
            .collect();
        let mut body = format!(
            "{{\"up\": {}, \"tunnels\": {}, \"down\": [",
            down.is_empty(),
            counted.len()
        );
        let _ = writeln!(body, "{}]}}", down.join(", "));
        Response {
            status: if down.is_empty() {
                (200, "OK")
            } else {
                (503, "Service Unavailable")
            },
            content_type: JSON,
            body,
        }
    }

    /// `autossh health [NAME]` on the control socket: `up` when every tunnel (or the one
    /// named) is, else an error naming the ones that are not.
    pub(super) fn health_answer(&self, only: Option<&str>) -> std::result::Result<String, String> {
        let r = self.healthz(only, Time::now());
        match r.status.0 {
            200 => Ok(r.body),
            _ => Err(r.body.trim_end().to_string()),
        }
    }

    /// `{"name": ..., "state": ..., "down_for_s": ..., "reason": ...}` of a tunnel not up.
    fn down_entry(&self, i: usize, s: &Slot, now: Time) -> String {
        let name = s
            .tunnel
            .name()
            .map(|n| json_str(n))
            .unwrap_or_else(|| "null".into());
        let down_for = self
            .watch
            .down_for(i, now)
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .unwrap_or_else(|| "null".into());
        let reason = s
            .tunnel
            .last_reason()
            .map(json_str)
            .unwrap_or_else(|| "null".into());
        format!(
            "{{\"name\": {name}, \"state\": {}, \"phase\": {}, \"down_for_s\": {down_for}, \"reason\": {reason}}}",
            json_str(self.watch.state(i).unwrap_or(outward(s)).name()),
            json_str(s.tunnel.phase_name())
        )
    }
}

fn json_str(s: &str) -> String {
    report::json_str(s)
}

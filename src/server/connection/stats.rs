//! `StatsRequest`: the server's figures for an admin, a tenant's own for
//! everyone else.
//!
//! A tenant must not learn about the others from `Stats` (how many
//! connections the server has, how busy it is, what its cache holds), so the
//! answer is scoped before it is built, not filtered after.

use super::Connection;
use voxterm_protocol::{Counter, Message, Stats, StatsRequest};

impl Connection {
    /// `StatsRequest`: answered with `Stats`, scoped to what the connection's
    /// grant may see.
    pub(super) async fn on_stats(&self, request: StatsRequest) {
        let stats = if self.ctx.security.sees_everything(self.grant.as_ref()) {
            self.engine
                .metrics
                .stats(request.nonce, self.engine.sampled())
        } else {
            self.tenant_stats(request.nonce)
        };
        self.send(Message::Stats(Box::new(stats))).await;
    }

    /// `Stats` for a tenant that is not an admin: its own figures only. The
    /// server-wide ones (other tenants' connections, sessions, requests, the
    /// load, the process's memory and CPU, the latency histogram, the cache's
    /// and refusals' counters) are zero or empty; the counter `scope_tenant`
    /// says so. `connections` and `sessions` are the tenant's; `requests`,
    /// `in_flight` and `errors` this connection's.
    fn tenant_stats(&self, nonce: u64) -> Stats {
        let (connections, sessions) = match &self.tenant {
            Some(t) => (
                u64::from(self.ctx.security.tenant_open.held(t)),
                self.engine.sessions.count_of(t) as u64,
            ),
            None => (0, 0),
        };
        let (requests, errors) = self.shared.counts();
        Stats {
            nonce,
            uptime_ms: self.engine.metrics.uptime().as_millis() as u64,
            connections,
            sessions,
            requests,
            in_flight: self.shared.in_flight().len() as u64,
            errors,
            queue_depth: 0,
            busy_workers: 0,
            rss_bytes: 0,
            cpu_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            backend_histogram: Vec::new(),
            counters: vec![Counter {
                name: "scope_tenant".into(),
                value: 1,
            }],
        }
    }
}

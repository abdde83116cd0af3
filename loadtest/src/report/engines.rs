//! Per-engine figures of a run against several engines: what each one's own
//! `Stats` said between its first and last answer, so that a report shows how
//! the load spread and which engine died.

use crate::hist;
use serde::{Deserialize, Serialize};

/// One engine's share of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineFigures {
    /// Its URL.
    pub url: String,
    /// Whether it still answered at the end.
    pub alive_at_end: bool,
    /// Requests it accepted.
    pub requests: u64,
    /// … that ended with `Error`.
    pub errors: u64,
    /// Its backend p95 over the run, ms (None: no request).
    pub backend_p95_ms: Option<f64>,
    /// CPU it spent (with the commands it ran), seconds.
    pub cpu_s: f64,
    /// Its resident memory at its last answer, MiB.
    pub rss_mib: f64,
    /// Connections at its last answer.
    pub connections: u64,
    /// Sessions at its last answer.
    pub sessions: u64,
}

impl EngineFigures {
    /// From an engine's first and last `Stats`.
    pub fn between(
        url: &str,
        alive: bool,
        first: &voxterm_protocol::Stats,
        last: &voxterm_protocol::Stats,
        cpu_us: impl Fn(&voxterm_protocol::Stats) -> u64,
    ) -> EngineFigures {
        let backend = hist::decode_bytes(&last.backend_histogram)
            .ok()
            .map(|mut h| {
                if let Ok(before) = hist::decode_bytes(&first.backend_histogram) {
                    let _ = h.subtract(&before);
                }
                h
            });
        EngineFigures {
            url: url.to_owned(),
            alive_at_end: alive,
            requests: last.requests.saturating_sub(first.requests),
            errors: last.errors.saturating_sub(first.errors),
            backend_p95_ms: backend
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(0.95) as f64 / 1000.0),
            cpu_s: cpu_us(last).saturating_sub(cpu_us(first)) as f64 / 1e6,
            rss_mib: last.rss_bytes as f64 / (1 << 20) as f64,
            connections: last.connections,
            sessions: last.sessions,
        }
    }
}

/// The per-engine table of the text report.
pub fn text(engines: &[EngineFigures]) -> String {
    if engines.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("\nEngines (each one's own figures, from its first to its last answer)\n");
    s.push_str("  engine                          state   requests   errors  backend p95   CPU s   RSS MiB  conns  sessions\n");
    for e in engines {
        let p95 = e
            .backend_p95_ms
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
        s.push_str(&format!(
            "  {:<31} {:<6} {:>9} {:>8} {:>12} {:>7.1} {:>9.1} {:>6} {:>9}\n",
            e.url,
            if e.alive_at_end { "up" } else { "dead" },
            e.requests,
            e.errors,
            p95,
            e.cpu_s,
            e.rss_mib,
            e.connections,
            e.sessions
        ));
    }
    s
}

//! The run's view of the server: a monitor connection of its own that polls
//! `Stats` (and builds the fixture), and the figures taken from those answers;
//! also the load tester's own cost, sampled alongside.

use crate::conn::Target;
use crate::report::ServerSample;
use anyhow::Context;
use std::time::Duration;
use tokio::time::Instant;
use voxterm::client::{Client, ClientOptions};
use voxterm_protocol::{Message, StatsRequest};

/// The monitor connection: `Stats` polling and the fixture.
pub(super) struct Monitor {
    pub(super) client: Client,
    nonce: u64,
}

impl Monitor {
    pub(super) async fn connect(t: &Target) -> anyhow::Result<Monitor> {
        let client = Client::connect(
            &t.url,
            ClientOptions {
                name: "voxterm-loadtest-monitor".into(),
                tenant: Some("lt-monitor".into()),
                ..ClientOptions::default()
            },
        )
        .await
        .with_context(|| format!("cannot connect to {}", t.url))?;
        Ok(Monitor { client, nonce: 0 })
    }

    pub(super) async fn stats(&mut self) -> anyhow::Result<voxterm_protocol::Stats> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.client
            .send(&Message::StatsRequest(StatsRequest { nonce }))
            .await?;
        loop {
            match self.client.recv().await? {
                Message::Stats(s) if s.nonce == nonce => return Ok(*s),
                _ => {}
            }
        }
    }
}

/// CPU the server spent, µs: its own plus that of the commands it ran (reported by
/// the server as the `cpu_children_us` counter), which is most of an exec-heavy load.
pub(super) fn server_cpu_us(s: &voxterm_protocol::Stats) -> u64 {
    s.cpu_us + counter(s, "cpu_children_us").unwrap_or(0)
}

/// The server's counter `name`, when it reports one.
fn counter(s: &voxterm_protocol::Stats, name: &str) -> Option<u64> {
    s.counters.iter().find(|c| c.name == name).map(|c| c.value)
}

/// Bytes held by the server's cache tiers (its `cache_bytes_*` gauges).
fn cache_bytes(s: &voxterm_protocol::Stats) -> u64 {
    s.counters
        .iter()
        .filter(|c| c.name.starts_with("cache_bytes_"))
        .map(|c| c.value)
        .sum()
}

pub(super) fn sample(s: &voxterm_protocol::Stats, t0: Instant) -> ServerSample {
    ServerSample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_bytes: s.rss_bytes,
        cpu_us: server_cpu_us(s),
        connections: s.connections,
        sessions: s.sessions,
        requests: s.requests,
        errors: s.errors,
        in_flight: s.in_flight,
        queue_depth: s.queue_depth,
        cache_bytes: s
            .counters
            .iter()
            .any(|c| c.name.starts_with("cache_bytes_"))
            .then(|| cache_bytes(s)),
        heap_allocated_bytes: counter(s, "heap_allocated_bytes"),
        rss_anon_bytes: counter(s, "rss_anon_bytes"),
    }
}

/// The server's counters at the end minus at the start (rates and gauges among
/// them, such as `cache_hit_rate_permille`, are left out: a difference of those
/// means nothing).
pub(super) fn counter_delta(
    before: &voxterm_protocol::Stats,
    end: Option<&voxterm_protocol::Stats>,
) -> std::collections::BTreeMap<String, u64> {
    let Some(end) = end else {
        return Default::default();
    };
    let mut m: std::collections::BTreeMap<String, u64> = end
        .counters
        .iter()
        .filter(|c| !c.name.ends_with("_permille") && !c.name.starts_with("cache_bytes"))
        .map(|c| {
            let start = before
                .counters
                .iter()
                .find(|b| b.name == c.name)
                .map_or(0, |b| b.value);
            (c.name.clone(), c.value.saturating_sub(start))
        })
        .collect();
    m.insert(
        "requests".into(),
        end.requests.saturating_sub(before.requests),
    );
    m
}

/// The load tester's own resident memory, bytes.
pub(super) fn own_rss() -> u64 {
    voxterm::metrics::resident_bytes()
}

/// The load tester's own CPU time.
pub(super) fn own_cpu() -> Duration {
    voxterm::metrics::cpu_time()
}

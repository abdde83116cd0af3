//! The run's view of the server: a monitor connection of its own that polls
//! `Stats` (and builds the fixture), and the figures taken from those answers;
//! also the load tester's own cost, sampled alongside.
//!
//! With several engines (several `--url`s, or the engines behind a balancer
//! named with `--engine`) each has a monitor connection of its own, and a
//! poll merges their answers into one `Stats`, as if they were one server:
//! counters, CPU, memory and connections summed, backend histograms added.
//! An engine that stops answering keeps its last answer in the sum (what it
//! did before it died still happened) and is reported dead from then on.

use crate::conn::Target;
use crate::report::ServerSample;
use anyhow::Context;
use std::time::Duration;
use tokio::time::Instant;
use voxterm::client::{Client, ClientOptions};
use voxterm_protocol::{Message, StatsRequest};

/// The monitor connection: `Stats` polling and the fixture.
pub(super) struct Monitor {
    /// To the users' first target: the fixture, the floor, and (one engine)
    /// the `Stats`.
    pub(super) client: Client,
    nonce: u64,
    /// Several engines: one watch each, their `Stats` merged.
    engines: Vec<EngineWatch>,
}

/// One engine of several, as its own monitor connection sees it.
pub(super) struct EngineWatch {
    /// Its URL.
    pub(super) url: String,
    client: Option<Client>,
    /// Its first answer.
    pub(super) first: Option<voxterm_protocol::Stats>,
    /// Its latest answer.
    pub(super) last: Option<voxterm_protocol::Stats>,
    /// When it first failed to answer (it is not asked again).
    pub(super) dead_since: Option<Instant>,
}

/// Opens a monitor client to `url`.
async fn monitor_client(url: &str) -> anyhow::Result<Client> {
    Client::connect(
        url,
        ClientOptions {
            name: "voxterm-loadtest-monitor".into(),
            tenant: Some("lt-monitor".into()),
            ..ClientOptions::default()
        },
    )
    .await
    .with_context(|| format!("no voxterm server answers at {url}"))
}

/// Asks `client` for `Stats` and waits for the answer to this `nonce`.
async fn ask(client: &mut Client, nonce: u64) -> anyhow::Result<voxterm_protocol::Stats> {
    client
        .send(&Message::StatsRequest(StatsRequest { nonce }))
        .await?;
    loop {
        match client.recv().await? {
            Message::Stats(s) if s.nonce == nonce => return Ok(*s),
            _ => {}
        }
    }
}

impl Monitor {
    /// Connects to the users' first target and, with more than one engine,
    /// to each engine.
    pub(super) async fn connect(t: &Target, engines: &[Target]) -> anyhow::Result<Monitor> {
        let client = monitor_client(&t.url).await?;
        let mut watches = Vec::new();
        if engines.len() > 1 || engines.first().is_some_and(|e| e.url != t.url) {
            for e in engines {
                watches.push(EngineWatch {
                    url: e.url.clone(),
                    client: Some(monitor_client(&e.url).await?),
                    first: None,
                    last: None,
                    dead_since: None,
                });
            }
        }
        Ok(Monitor {
            client,
            nonce: 0,
            engines: watches,
        })
    }

    /// The engines watched one by one (empty with one engine).
    pub(super) fn engines(&self) -> &[EngineWatch] {
        &self.engines
    }

    /// The server's figures now: the one engine's, or every engine's merged.
    pub(super) async fn stats(&mut self) -> anyhow::Result<voxterm_protocol::Stats> {
        self.nonce += 1;
        let nonce = self.nonce;
        if self.engines.is_empty() {
            return ask(&mut self.client, nonce).await;
        }
        let mut answered = 0;
        for e in &mut self.engines {
            if e.dead_since.is_some() {
                continue;
            }
            let got = match e.client.as_mut() {
                Some(c) => tokio::time::timeout(ENGINE_DEADLINE, ask(c, nonce)).await,
                None => continue,
            };
            match got {
                Ok(Ok(s)) => {
                    answered += 1;
                    e.first.get_or_insert_with(|| s.clone());
                    e.last = Some(s);
                }
                _ => {
                    e.client = None;
                    e.dead_since = Some(Instant::now());
                }
            }
        }
        anyhow::ensure!(answered > 0, "no engine answers StatsRequest");
        Ok(merge(
            nonce,
            self.engines.iter().filter_map(|e| e.last.as_ref()),
        ))
    }
}

/// How long one engine of several has to answer a poll before it counts as dead.
const ENGINE_DEADLINE: Duration = Duration::from_secs(2);

/// Several engines' figures as one server's: sums, the longest uptime, the
/// backend histograms added (a rate such as `cache_hit_rate_permille` is not
/// summed: it is left out).
fn merge<'a>(
    nonce: u64,
    all: impl Iterator<Item = &'a voxterm_protocol::Stats>,
) -> voxterm_protocol::Stats {
    let mut m = voxterm_protocol::Stats {
        nonce,
        uptime_ms: 0,
        connections: 0,
        sessions: 0,
        requests: 0,
        in_flight: 0,
        errors: 0,
        queue_depth: 0,
        busy_workers: 0,
        rss_bytes: 0,
        cpu_us: 0,
        bytes_in: 0,
        bytes_out: 0,
        backend_histogram: Vec::new(),
        counters: Vec::new(),
    };
    let mut backend = crate::hist::new_hist();
    let mut counters: std::collections::BTreeMap<String, u64> = Default::default();
    for s in all {
        m.uptime_ms = m.uptime_ms.max(s.uptime_ms);
        m.connections += s.connections;
        m.sessions += s.sessions;
        m.requests += s.requests;
        m.in_flight += s.in_flight;
        m.errors += s.errors;
        m.queue_depth += s.queue_depth;
        m.busy_workers += s.busy_workers;
        m.rss_bytes += s.rss_bytes;
        m.cpu_us += s.cpu_us;
        m.bytes_in += s.bytes_in;
        m.bytes_out += s.bytes_out;
        if let Ok(h) = crate::hist::decode_bytes(&s.backend_histogram) {
            let _ = backend.add(&h);
        }
        for c in s.counters.iter().filter(|c| !c.name.ends_with("_permille")) {
            *counters.entry(c.name.clone()).or_default() += c.value;
        }
    }
    m.backend_histogram = crate::hist::encode_bytes(&backend);
    m.counters = counters
        .into_iter()
        .map(|(name, value)| voxterm_protocol::Counter { name, value })
        .collect();
    m
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

//! What the server measures about itself: Prometheus text for `/metrics`, the JSON
//! of `/healthz`, and the `Stats` frame the load tester polls during a run.
//!
//! Counters that the hot path touches are plain atomics or prometheus-client
//! metrics (atomics too); the one lock is around the HDR histograms of backend
//! latency (since start, and the rolling window's open slot), held for two
//! `record` calls.

mod cache;
mod predict;
mod process;
mod spawns;
mod window;

pub use cache::{CacheMetrics, L3Failure, Tier};
pub use predict::{PredictMetrics, SKIP_REASONS};
pub use process::{
    children_cpu_time, cpu_time, heap, io_syscalls, purge_in_background, resident_bytes,
    resident_split, Heap, ResidentSplit,
};
pub use spawns::{Cause, SpawnMetrics};
pub use window::{WindowFigures, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW, SLOT as WINDOW_SLOT};

use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{Counter as StatCounter, ErrorCode, ServedFrom, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabel {
    served_from: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Why the security layer refused something (the `kind` label of `voxterm_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// HTTP 401 or `Error{Unauthorized}` after `Hello`.
    Unauthorized,
    /// HTTP 403: an `Origin` not in the allowlist.
    Origin,
    /// A command refused by the allow/deny lists.
    Policy,
    /// A command over the tenant's rate.
    RateLimited,
    /// A session over the tenant's quota.
    Quota,
    /// HTTP 401 or `Error{Unauthorized}`: a configured token past its expiry.
    TokenExpired,
    /// HTTP 429: the source address already has its maximum of connections.
    IpConnections,
    /// HTTP 429 or close 1013: the tenant already has its maximum of connections.
    TenantConnections,
    /// No complete request head (or TLS handshake, or `Hello`) within `handshake_timeout`.
    HandshakeTimeout,
    /// A connection closed after `idle_timeout` without traffic or requests.
    IdleTimeout,
    /// A peer that stopped answering keepalive pings, dropped.
    DeadPeer,
    /// An output chunk held back by the tenant's output bytes/s budget.
    OutputThrottled,
    /// An open connection closed (1008) because a tokens reload removed its
    /// token or gave it to another tenant.
    TokenRevoked,
    /// A connection closed at `accept`: its address already has
    /// `max_pending_per_ip` connections that have not sent their request head.
    PendingPerIp,
    /// Near the open-files limit: a WebSocket refused with 503, a half-open
    /// connection closed to make room, or a connection closed at `accept`.
    FdReserve,
    /// An authentication attempt refused unchecked (429, or `RateLimited` and
    /// close 1008 at `Hello`) while its address waits after failed ones.
    AuthThrottled,
    /// `/healthz` or `/metrics` asked for under a `Host` not allowed (421).
    Host,
    /// A command line longer than `limits.max_command_bytes`, refused unparsed.
    CommandTooLong,
    /// A command refused because its session's cwd no longer resolves inside
    /// the tenant's root (replaced by a symlink after the `cd`).
    CwdOutsideRoot,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Origin => "origin",
            Refusal::Policy => "policy_denied",
            Refusal::RateLimited => "rate_limited",
            Refusal::Quota => "quota_exceeded",
            Refusal::TokenExpired => "token_expired",
            Refusal::IpConnections => "connections_per_ip",
            Refusal::TenantConnections => "connections_per_tenant",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::DeadPeer => "keepalive_timeout",
            Refusal::OutputThrottled => "output_throttled",
            Refusal::TokenRevoked => "token_revoked",
            Refusal::PendingPerIp => "pending_per_ip",
            Refusal::FdReserve => "fd_reserve",
            Refusal::AuthThrottled => "auth_throttled",
            Refusal::Host => "host",
            Refusal::CommandTooLong => "command_too_long",
            Refusal::CwdOutsideRoot => "cwd_outside_root",
        }
    }

    /// Every kind, in the order the `Stats` counters list them.
    pub const ALL: [Refusal; 19] = [
        Refusal::Unauthorized,
        Refusal::Origin,
        Refusal::Policy,
        Refusal::RateLimited,
        Refusal::Quota,
        Refusal::TokenExpired,
        Refusal::IpConnections,
        Refusal::TenantConnections,
        Refusal::HandshakeTimeout,
        Refusal::IdleTimeout,
        Refusal::DeadPeer,
        Refusal::OutputThrottled,
        Refusal::TokenRevoked,
        Refusal::PendingPerIp,
        Refusal::FdReserve,
        Refusal::AuthThrottled,
        Refusal::Host,
        Refusal::CommandTooLong,
        Refusal::CwdOutsideRoot,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// Gauges sampled from other parts of the engine when a snapshot is taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampled {
    /// Live sessions.
    pub sessions: u64,
    /// Jobs waiting for a worker.
    pub queue_depth: u64,
    /// Workers running a command.
    pub busy_workers: u64,
}

/// The server's counters, gauges and histograms. One per process, shared by `Arc`.
pub struct Metrics {
    started: Instant,
    registry: Registry,
    served: Family<ServedLabel, Counter>,
    /// `served`'s counter of each `ServedFrom`, looked up once at start (a
    /// family lookup takes a lock and hashes the label, on every request).
    served_by: Vec<(ServedFrom, Counter)>,
    errors: Family<CodeLabel, Counter>,
    refusals: Family<KindLabel, Counter>,
    /// `Attach`es by outcome (`attached`, `lost`).
    reattaches: Family<KindLabel, Counter>,
    backend_seconds: Histogram,
    connections: Gauge,
    connections_total: Counter,
    in_flight: Gauge,
    sessions: Gauge,
    queue_depth: Gauge,
    busy_workers: Gauge,
    rss: Gauge,
    rss_anon: Gauge,
    heap_allocated: Gauge,
    heap_resident: Gauge,
    heap_active: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    bytes_in: Counter,
    bytes_out: Counter,
    auth_failures: Counter,
    requests: AtomicU64,
    error_count: AtomicU64,
    /// Every `Error` frame, request or not (the rolling window's error rate).
    errors_total: AtomicU64,
    /// RSS when the metrics were made, before any connection (the live
    /// scorecard shows it as the fixed cost).
    rss_at_start: u64,
    latency: Mutex<window::Recorder>,
    /// Cache tiers, policy and single-flight figures.
    pub cache: CacheMetrics,
    /// Prediction accuracy and prefetch figures.
    pub predict: PredictMetrics,
    /// Processes started, by cause and class.
    pub spawns: SpawnMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `voxterm_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("voxterm");
        let served = Family::<ServedLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        // 25 µs .. ~52 s in doubling buckets.
        let backend_seconds = Histogram::new(exponential_buckets(25e-6, 2.0, 22));
        let served_by = ServedFrom::ALL
            .iter()
            .map(|&f| {
                let label = ServedLabel {
                    served_from: f.as_str(),
                };
                (f, served.get_or_create(&label).clone())
            })
            .collect();
        let m = Metrics {
            started: Instant::now(),
            served,
            served_by,
            errors,
            refusals: Family::default(),
            reattaches: Family::default(),
            backend_seconds,
            connections: Gauge::default(),
            connections_total: Counter::default(),
            in_flight: Gauge::default(),
            sessions: Gauge::default(),
            queue_depth: Gauge::default(),
            busy_workers: Gauge::default(),
            rss: Gauge::default(),
            rss_anon: Gauge::default(),
            heap_allocated: Gauge::default(),
            heap_resident: Gauge::default(),
            heap_active: Gauge::default(),
            cpu_seconds: Gauge::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            auth_failures: Counter::default(),
            requests: AtomicU64::new(0),
            error_count: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            rss_at_start: resident_bytes(),
            latency: Mutex::new(window::Recorder::new(
                Instant::now(),
                window::Counts {
                    cpu: cpu_time(),
                    ..Default::default()
                },
            )),
            registry: Registry::default(),
            cache: CacheMetrics::new(),
            predict: PredictMetrics::new(),
            spawns: SpawnMetrics::default(),
        };
        registry.register(
            "requests",
            "Requests completed, by where they were served from",
            m.served.clone(),
        );
        registry.register(
            "errors",
            "Requests and frames answered with an Error, by code",
            m.errors.clone(),
        );
        registry.register(
            "refusals",
            "Connections and commands refused by authentication, origin, policy or limits, by kind",
            m.refusals.clone(),
        );
        registry.register(
            "reattaches",
            "Attach requests: a held request taken over (attached), one its connection never received (not_received: sent again) or not held here (lost)",
            m.reattaches.clone(),
        );
        registry.register(
            "backend_latency_seconds",
            "Frame in to terminal frame out",
            m.backend_seconds.clone(),
        );
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted since start",
            m.connections_total.clone(),
        );
        registry.register("in_flight", "Requests in flight", m.in_flight.clone());
        registry.register("sessions", "Live sessions", m.sessions.clone());
        registry.register(
            "pool_queue_depth",
            "Jobs waiting for a worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "pool_busy_workers",
            "Workers running a command",
            m.busy_workers.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size",
            m.rss.clone(),
        );
        registry.register(
            "process_resident_anon_bytes",
            "Anonymous part of the resident set (heap, stacks; not the binary's code pages)",
            m.rss_anon.clone(),
        );
        registry.register(
            "heap_allocated_bytes",
            "Bytes in live heap allocations (jemalloc; 0 when it is not the allocator)",
            m.heap_allocated.clone(),
        );
        registry.register(
            "heap_resident_bytes",
            "Bytes of heap pages resident, freed ones not yet returned included (jemalloc)",
            m.heap_resident.clone(),
        );
        registry.register(
            "heap_active_bytes",
            "Bytes of heap pages holding live allocations; above allocated is fragmentation (jemalloc)",
            m.heap_active.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User plus system CPU time",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "bytes_in",
            "WebSocket payload bytes received",
            m.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "WebSocket payload bytes sent",
            m.bytes_out.clone(),
        );
        registry.register(
            "auth_failures",
            "Authentication attempts with an unknown token (what a guesser produces), before any throttling",
            m.auth_failures.clone(),
        );
        m.cache.register(&mut registry);
        m.predict.register(&mut registry);
        m.spawns.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Time since the server started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A request was accepted.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.inc();
    }

    /// A request ended with an `Exit`.
    pub fn request_done(&self, served_from: ServedFrom, backend_us: u64) {
        self.in_flight.dec();
        match self.served_by.iter().find(|(f, _)| *f == served_from) {
            Some((_, counter)) => counter.inc(),
            None => self
                .served
                .get_or_create(&ServedLabel {
                    served_from: served_from.as_str(),
                })
                .inc(),
        };
        self.record_latency(backend_us);
    }

    /// A request ended with an `Error`.
    pub fn request_failed(&self, code: ErrorCode, backend_us: u64) {
        self.in_flight.dec();
        self.error_count.fetch_add(1, Ordering::Relaxed);
        self.error(code);
        self.record_latency(backend_us);
    }

    /// An `Error` frame not tied to a request (malformed frame, text message...).
    pub fn error(&self, code: ErrorCode) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        self.errors
            .get_or_create(&CodeLabel {
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// An unknown token was presented (counted whether or not it leads to a wait).
    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    /// Unknown tokens presented since start.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.get()
    }

    /// How an `Attach` was answered: `attached`, `not_received` (the client
    /// sends it again) or `lost`.
    pub fn reattach(&self, kind: &'static str) {
        self.reattaches.get_or_create(&KindLabel { kind }).inc();
    }

    /// The security layer refused a connection or a command.
    pub fn refused(&self, kind: Refusal) {
        self.refusals
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Refusals of one kind so far.
    pub fn refusals(&self, kind: Refusal) -> u64 {
        self.refusals
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .get()
    }

    fn record_latency(&self, backend_us: u64) {
        self.backend_seconds.observe(backend_us as f64 / 1e6);
        if let Ok(mut r) = self.latency.lock() {
            r.record(backend_us);
        }
    }

    /// The cumulative counters the rolling window takes deltas of.
    fn window_counts(&self) -> window::Counts {
        window::Counts {
            errors: self.errors_total.load(Ordering::Relaxed),
            request_errors: self.error_count.load(Ordering::Relaxed),
            cacheable: self.cache.cacheable_count(),
            hits: self.cache.hit_count(),
            cpu: cpu_time(),
            connections: self.connections(),
        }
    }

    /// Closes the rolling window's open slot at `now` (the ticker's job; public
    /// for tests that drive time themselves).
    pub fn rotate_window(&self, now: Instant) {
        let counts = self.window_counts();
        crate::sync::lock(&self.latency).rotate(now, counts);
    }

    /// Turns the rolling window's slots every [`WINDOW_SLOT`] until `stop`;
    /// the server starts it with its other background tasks.
    pub fn spawn_window_ticker(self: &Arc<Self>, stop: CancellationToken) {
        let metrics = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + window::SLOT, window::SLOT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => match metrics.upgrade() {
                        Some(m) => m.rotate_window(Instant::now()),
                        None => break,
                    },
                }
            }
        });
    }

    /// The figures of the last `window` (clamped by the ring to what it holds):
    /// latency merged from the covered slots, counter deltas, CPU used.
    pub fn window(&self, window: Duration) -> WindowFigures {
        let now = Instant::now();
        let snapshot = crate::sync::lock(&self.latency).snapshot(now, window);
        // Merged and read after the lock is released: the hot path never waits
        // on a scrape's merge or its getrusage.
        let counts = self.window_counts();
        snapshot.figures(now, counts)
    }

    /// RSS when the metrics were made, before any connection.
    pub fn rss_at_start(&self) -> u64 {
        self.rss_at_start
    }

    /// A WebSocket connection was established.
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
    }

    /// A WebSocket connection ended.
    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Open connections now.
    pub fn connections(&self) -> u64 {
        self.connections.get().max(0) as u64
    }

    /// Payload bytes received.
    pub fn add_bytes_in(&self, n: usize) {
        self.bytes_in.inc_by(n as u64);
    }

    /// Payload bytes sent.
    pub fn add_bytes_out(&self, n: usize) {
        self.bytes_out.inc_by(n as u64);
    }

    fn sample(&self, s: Sampled) {
        self.sessions.set(s.sessions as i64);
        self.queue_depth.set(s.queue_depth as i64);
        self.busy_workers.set(s.busy_workers as i64);
        self.rss.set(resident_bytes() as i64);
        if let Some(r) = resident_split() {
            self.rss_anon.set(r.anon as i64);
        }
        if let Some(h) = heap() {
            self.heap_allocated.set(h.allocated as i64);
            self.heap_resident.set(h.resident as i64);
            self.heap_active.set(h.active as i64);
        }
        self.cpu_seconds.set(cpu_time().as_secs_f64());
        self.cache.sample();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render_prometheus(&self, s: Sampled) -> String {
        self.sample(s);
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The `/healthz` figures; the server adds what only it knows (containment).
    pub fn health(&self, s: Sampled) -> serde_json::Map<String, serde_json::Value> {
        let mut v = serde_json::Map::new();
        v.insert("status".into(), "ok".into());
        v.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        v.insert("uptime_s".into(), self.uptime().as_secs_f64().into());
        v.insert("connections".into(), self.connections().into());
        v.insert("sessions".into(), s.sessions.into());
        v
    }

    /// The reply to a `StatsRequest`.
    pub fn stats(&self, nonce: u64, s: Sampled) -> Stats {
        let backend_histogram = self
            .latency
            .lock()
            .ok()
            .and_then(|r| {
                let mut buf = Vec::new();
                V2DeflateSerializer::new()
                    .serialize(&r.total, &mut buf)
                    .ok()?;
                Some(buf)
            })
            .unwrap_or_default();
        let mut counters: Vec<StatCounter> = ServedFrom::ALL
            .iter()
            .map(|&sf| StatCounter {
                name: format!("served_{}", sf.as_str()),
                value: self
                    .served
                    .get_or_create(&ServedLabel {
                        served_from: sf.as_str(),
                    })
                    .get(),
            })
            .collect();
        counters.extend(self.cache.counters());
        counters.extend(self.predict.counters());
        counters.extend(self.spawns.counters());
        for kind in Refusal::ALL {
            counters.push(StatCounter {
                name: format!("refused_{}", kind.as_str()),
                value: self.refusals(kind),
            });
        }
        counters.push(StatCounter {
            name: "auth_failures".into(),
            value: self.auth_failures(),
        });
        counters.push(StatCounter {
            name: "cpu_children_us".into(),
            value: children_cpu_time().as_micros() as u64,
        });
        if let Some(h) = heap() {
            counters.push(StatCounter {
                name: "heap_allocated_bytes".into(),
                value: h.allocated,
            });
            counters.push(StatCounter {
                name: "heap_resident_bytes".into(),
                value: h.resident,
            });
            counters.push(StatCounter {
                name: "heap_active_bytes".into(),
                value: h.active,
            });
            counters.push(StatCounter {
                name: "heap_metadata_bytes".into(),
                value: h.metadata,
            });
        }
        if let Some(r) = resident_split() {
            counters.push(StatCounter {
                name: "rss_anon_bytes".into(),
                value: r.anon,
            });
            counters.push(StatCounter {
                name: "rss_file_bytes".into(),
                value: r.file,
            });
        }
        let (syscr, syscw) = io_syscalls();
        counters.push(StatCounter {
            name: "syscalls_read".into(),
            value: syscr,
        });
        counters.push(StatCounter {
            name: "syscalls_write".into(),
            value: syscw,
        });
        Stats {
            nonce,
            uptime_ms: self.uptime().as_millis() as u64,
            connections: self.connections(),
            sessions: s.sessions,
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.get().max(0) as u64,
            errors: self.error_count.load(Ordering::Relaxed),
            queue_depth: s.queue_depth,
            busy_workers: s.busy_workers,
            rss_bytes: resident_bytes(),
            cpu_us: cpu_time().as_micros() as u64,
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            backend_histogram,
            counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_requests_by_served_from() {
        let m = Metrics::new();
        m.request_started();
        m.request_done(ServedFrom::Builtin, 40);
        m.request_started();
        m.request_failed(ErrorCode::SpawnFailed, 90);
        let text = m.render_prometheus(Sampled::default());
        assert!(
            text.contains("voxterm_requests_total{served_from=\"builtin\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxterm_errors_total{code=\"SpawnFailed\"} 1"),
            "{text}"
        );
        assert!(text.contains("voxterm_backend_latency_seconds_bucket"));
        let stats = m.stats(7, Sampled::default());
        assert_eq!((stats.requests, stats.errors, stats.in_flight), (2, 1, 0));
        assert!(!stats.backend_histogram.is_empty());
        assert!(stats.rss_bytes > 0);
    }

    #[test]
    fn cache_figures_reach_prometheus_and_stats() {
        let m = Metrics::new();
        m.cache.cacheable();
        m.cache.cacheable();
        m.cache.hit(Tier::L1);
        m.cache.miss(Tier::L1);
        m.cache.evicted(Tier::L2, 3);
        m.cache.l3_failed(L3Failure::Timeout);
        m.cache.joined();
        let text = m.render_prometheus(Sampled::default());
        for want in [
            "voxterm_cache_hits_total{tier=\"L1\"} 1",
            "voxterm_cache_misses_total{tier=\"L1\"} 1",
            "voxterm_cache_evictions_total{tier=\"L2\"} 3",
            "voxterm_cache_l3_errors_total{kind=\"timeout\"} 1",
            "voxterm_cache_single_flight_joins_total 1",
            "voxterm_cache_hit_ratio 0.5",
        ] {
            assert!(text.contains(want), "missing {want} in {text}");
        }
        let stats = m.stats(1, Sampled::default());
        let get = |n: &str| stats.counters.iter().find(|c| c.name == n).map(|c| c.value);
        assert_eq!(get("cache_hit_rate_permille"), Some(500));
        assert_eq!(get("cache_hits_l1"), Some(1));
        assert_eq!(get("cache_single_flight_joins"), Some(1));
    }
}

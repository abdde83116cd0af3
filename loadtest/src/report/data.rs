//! What a run hands to the report: raw counts, the timeline, the server's
//! samples, capacity steps and histograms. Every metric is computed from these,
//! so a merge of several machines' reports can recompute them all.

use crate::chaos::ChaosSummary;
use crate::hist::Hist;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Raw counts and figures, from which every metric is computed (and recomputed
/// after a merge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Raw {
    /// Users the scenario asked for.
    pub users: u64,
    /// Measured requests sent (the offered load).
    pub offered: u64,
    /// … answered with a terminal frame.
    pub completed: u64,
    /// … answered with `Error`.
    pub errors: u64,
    /// … that could not be sent (connection gone).
    pub send_failures: u64,
    /// … with no terminal frame by the end plus grace.
    pub lost: u64,
    /// `Exit` with a non-zero code (normal answers; informational).
    pub nonzero_exits: u64,
    /// Cacheable-class requests that went through the cache path.
    pub cacheable: u64,
    /// … served from a cache tier or prefetch.
    pub cache_hits: u64,
    /// Answered within the on-time deadline.
    pub on_time: u64,
    /// Users that connected and were ready.
    pub users_connected: u64,
    /// Users still connected at the end of the hold.
    pub users_held: u64,
    /// Users that could not connect or set up.
    pub users_failed: u64,
    /// User connections that dropped mid-run and were made again.
    #[serde(default)]
    pub reconnects: u64,
    /// Requests taken over on a new connection after a drop.
    #[serde(default)]
    pub reattached: u64,
    /// Requests written as their connection dropped that never reached the
    /// server (`NotReceived`) and were written again on the next.
    #[serde(default)]
    pub resent: u64,
    /// Length of the hold window (all users present), s.
    pub hold_s: f64,
    /// Client WebSocket payload bytes (both ways) during the hold.
    pub client_bytes_hold: u64,
    /// Client WebSocket payload bytes over the run.
    pub client_bytes_total: u64,
    /// Server RSS before users connected.
    pub server_rss_before: Option<u64>,
    /// Peak server RSS until the end of the hold.
    pub server_rss_peak: Option<u64>,
    /// Server CPU time during the hold, s.
    pub server_cpu_hold_s: Option<f64>,
    /// Highest offered rate served within the p95 target (capacity scenarios).
    pub capacity_cps: Option<f64>,
    /// Whether this run searched for capacity.
    pub capacity: bool,
    /// Whether the server answered until the end.
    pub server_alive: bool,
    /// Wall time of the run, s.
    pub wall_s: f64,
    /// Load tester RSS before users.
    pub client_rss_before: u64,
    /// Load tester peak RSS.
    pub client_rss_peak: u64,
    /// Load tester CPU time, s.
    pub client_cpu_s: f64,
    /// Cores of the load tester's machine.
    pub cores: u64,
    /// Think-time divisor of the run: CPU and network are normalized to users at
    /// real pace (users × time scale), since a 10× user does the work of ten.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// The server's memory per session: the least-squares slope of RSS over
    /// the sessions it held up to the end of the hold, bytes (None: too few
    /// sessions to tell it from noise; see `memory::per_session_slope`).
    #[serde(default)]
    pub memory_per_session_bytes: Option<f64>,
    /// … and the intercept: the server's fixed cost, bytes.
    #[serde(default)]
    pub memory_fixed_bytes: Option<f64>,
    /// The server's `Stats` counters over the run (end minus start; for the
    /// ratios among them, such as prediction accuracy, see [`Raw::server_ratio`]).
    #[serde(default)]
    pub server_counters: BTreeMap<String, u64>,
}

impl Raw {
    /// `a / b` of two server counters over the run (None when `b` is 0 or absent).
    pub fn server_ratio(&self, a: &str, b: &str) -> Option<f64> {
        let a = *self.server_counters.get(a)?;
        let b = *self.server_counters.get(b)?;
        (b > 0).then(|| a as f64 / b as f64)
    }
}

fn one() -> f64 {
    1.0
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Seconds since the first user.
    pub t_s: f64,
    /// Users connected.
    pub users: u64,
    /// Answers in this second.
    pub completed_per_s: f64,
    /// Interval p50, ms.
    pub p50_ms: f64,
    /// Interval p95, ms.
    pub p95_ms: f64,
    /// Interval p99, ms.
    pub p99_ms: f64,
    /// Cumulative errors.
    pub errors: u64,
    /// Last server RSS.
    pub server_rss_bytes: u64,
    /// Cache hit rate of the cacheable answers of this second, % (None: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_rate_pct: Option<f64>,
}

/// One `Stats` sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    /// Seconds since the first user.
    pub t_s: f64,
    /// RSS, bytes.
    pub rss_bytes: u64,
    /// CPU of the server and the commands it ran, µs.
    pub cpu_us: u64,
    /// Connections.
    pub connections: u64,
    /// Sessions.
    pub sessions: u64,
    /// Requests accepted since start.
    pub requests: u64,
    /// Error answers since start.
    pub errors: u64,
    /// In flight.
    pub in_flight: u64,
    /// Pool queue.
    pub queue_depth: u64,
    /// Bytes held by the cache tiers (L1 summed over threads, plus L2): the part
    /// of RSS that grows by design up to `l1_bytes`/`l2_bytes`, which a soak has
    /// to tell apart from a leak. None in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// Bytes in the server's live heap allocations (jemalloc's `allocated`):
    /// a leak grows it, pages the allocator keeps for reuse do not. None when
    /// the server does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_allocated_bytes: Option<u64>,
    /// The anonymous part of RSS (heap, stacks, the allocator's pages); the rest
    /// is mostly the binary's code, paged in as paths first run. None when the
    /// server does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_anon_bytes: Option<u64>,
}

/// One step of the capacity search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    /// Offered rate, commands/s.
    pub offered_per_s: f64,
    /// Answers by the end of the step.
    pub answered: u64,
    /// p95 from due time, ms.
    pub p95_ms: f64,
    /// Error answers.
    pub errors: u64,
    /// Answers that started a process (`served_from: exec`).
    #[serde(default)]
    pub spawned: u64,
    /// Whether the step met the p95 target with every answer in.
    pub within_target: bool,
}

/// What a run produced, before grading.
pub struct RunData {
    /// Start, ms since the epoch.
    pub started_unix_ms: u64,
    /// Counts.
    pub raw: Raw,
    /// End-to-end latency of the profile load.
    pub e2e: Hist,
    /// Server backend latency during the profile load (None: not reported).
    pub backend: Option<Hist>,
    /// By profile.
    pub per_profile: Vec<(String, Hist)>,
    /// By class.
    pub per_class: BTreeMap<String, Hist>,
    /// By served_from.
    pub per_served: BTreeMap<String, Hist>,
    /// Requests by served_from.
    pub served: BTreeMap<String, u64>,
    /// Errors by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Timeline.
    pub timeline: Vec<Tick>,
    /// Server samples.
    pub samples: Vec<ServerSample>,
    /// Capacity search.
    pub capacity: Vec<CapacityStep>,
    /// Chaos.
    pub chaos: Option<ChaosSummary>,
    /// Send lag, latency from the actual send, the floor.
    pub timing: super::TimingData,
    /// The cold start and the steady state (None: a merge).
    pub phases: Option<super::Phases>,
    /// Why `--abort-on-fail` stopped the run early.
    pub aborted: Option<String>,
    /// Each engine's own figures (several engines).
    pub engines: Vec<super::EngineFigures>,
    /// What the failover scenario did and saw.
    pub failover: Option<crate::failover::FailoverSummary>,
}

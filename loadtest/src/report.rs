//! The report: the scorecard plus everything behind it, in a stable JSON schema
//! (histograms included, so reports can be merged), and its text, HTML and CSV
//! renderings, baseline comparison and merge.

use crate::chaos::ChaosSummary;
use crate::hist::{self, Hist, Summary};
use crate::scenario::{Scenario, Shape};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use voxterm::scorecard::{
    ids, render_text, Category, Direction, Grade, Measurements, MetricScore, Scorecard, Targets,
};

/// Version of the JSON schema; bumped on incompatible changes.
pub const SCHEMA: &str = "voxterm-loadtest/1";

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
}

/// Serialized histograms (base64 of HdrHistogram V2 + deflate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// End-to-end, µs.
    pub e2e: String,
    /// Backend (server-side), µs; empty when not reported.
    pub backend: String,
    /// By profile.
    pub per_profile: BTreeMap<String, String>,
    /// By command class.
    pub per_class: BTreeMap<String, String>,
    /// By served_from.
    pub per_served_from: BTreeMap<String, String>,
}

/// A metric that got worse than the baseline by more than the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// Metric id.
    pub metric: String,
    /// Baseline value.
    pub baseline: f64,
    /// This run.
    pub current: f64,
    /// Change in the bad direction, %.
    pub worse_pct: f64,
}

/// The load tester's own cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCost {
    /// Peak RSS, bytes.
    pub rss_peak_bytes: u64,
    /// (peak − before) / users, bytes.
    pub rss_per_user_bytes: f64,
    /// CPU time / wall time, % of one core.
    pub cpu_pct_of_core: f64,
    /// CPU time / (wall time × cores), % of the machine.
    pub cpu_share_pct: f64,
}

/// The JSON report. Field names are the stable schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// The grade.
    pub grade: Grade,
    /// Overall 0–100.
    pub score: f64,
    /// Category scores (null: not measured).
    pub categories: BTreeMap<Category, Option<f64>>,
    /// Every target with measured value, deviation and score.
    pub metrics: Vec<MetricScore>,
    /// The targets used.
    pub targets: Targets,
    /// The scenario as run.
    pub scenario: Scenario,
    /// Measured requests offered.
    pub requests: u64,
    /// Error answers plus send failures.
    pub errors: u64,
    /// Requests without a terminal frame.
    pub lost_responses: u64,
    /// Critical failures (each forces F).
    pub critical_failures: Vec<String>,
    /// Advice for each miss.
    pub recommendations: Vec<String>,
    /// Start, ms since the epoch.
    pub started_unix_ms: u64,
    /// Server URL.
    pub url: String,
    /// Raw counts behind the metrics.
    pub raw: Raw,
    /// Requests by served_from.
    pub served_from: BTreeMap<String, u64>,
    /// Errors by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Latency summaries (ms): `e2e`, `backend`, `profile:<name>`, `class:<c>`, `served:<s>`.
    pub latency: BTreeMap<String, Summary>,
    /// The histograms, for merging.
    pub histograms: Histograms,
    /// One line per second.
    pub timeline: Vec<Tick>,
    /// Server samples.
    pub server_samples: Vec<ServerSample>,
    /// Server RSS growth over the run, bytes per minute (soak).
    pub server_rss_growth_bytes_per_min: Option<f64>,
    /// Server memory from a third into the hold to its end; a soak fails when it
    /// grows more than [`MAX_SOAK_GROWTH_PCT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_over_hold: Option<HoldMemory>,
    /// Capacity search steps.
    pub capacity_steps: Vec<CapacityStep>,
    /// Chaos summary.
    pub chaos: Option<ChaosSummary>,
    /// The load tester's own cost.
    pub client: ClientCost,
    /// Regressions against `--baseline` (empty without one).
    pub regressions: Vec<Regression>,
    /// Notes (what was not measured and why, merges, skipped flags).
    pub notes: Vec<String>,
}

/// Metric values from raw counts and histograms. Absent = not measured.
pub fn measure(raw: &Raw, e2e: &Hist, backend: Option<&Hist>) -> Measurements {
    let mut m = Measurements::new();
    if !e2e.is_empty() {
        m.insert(
            ids::E2E_P95_MS.into(),
            e2e.value_at_quantile(0.95) as f64 / 1000.0,
        );
    }
    if let Some(b) = backend.filter(|b| !b.is_empty()) {
        m.insert(
            ids::BACKEND_P95_MS.into(),
            b.value_at_quantile(0.95) as f64 / 1000.0,
        );
    }
    if raw.capacity {
        if let Some(c) = raw.capacity_cps {
            m.insert(ids::COMMANDS_PER_SECOND.into(), c);
        }
        m.insert(ids::CONCURRENT_USERS.into(), raw.users_held as f64);
    } else if raw.offered > 0 {
        m.insert(
            ids::SERVED_ON_TIME_PCT.into(),
            raw.on_time as f64 / raw.offered as f64 * 100.0,
        );
    }
    let users = raw.users_held.max(1) as f64;
    if let (Some(before), Some(peak)) = (raw.server_rss_before, raw.server_rss_peak) {
        if raw.users_held > 0 {
            m.insert(
                ids::MEMORY_PER_SESSION_KB.into(),
                peak.saturating_sub(before) as f64 / users / 1024.0,
            );
        }
    }
    if raw.hold_s > 0.0 && raw.users_held > 0 {
        let real_pace_users = users * raw.time_scale.max(1e-9);
        if let Some(cpu) = raw.server_cpu_hold_s {
            m.insert(
                ids::CPU_PER_1000_USERS_PCT.into(),
                cpu / raw.hold_s * 100.0 * 1000.0 / real_pace_users,
            );
        }
        m.insert(
            ids::NETWORK_PER_100_SESSIONS_MBPS.into(),
            raw.client_bytes_hold as f64 * 8.0 / raw.hold_s / 1e6 * 100.0 / real_pace_users,
        );
    }
    if raw.cacheable > 0 {
        m.insert(
            ids::CACHE_HIT_RATE_PCT.into(),
            raw.cache_hits as f64 / raw.cacheable as f64 * 100.0,
        );
    }
    if raw.offered > 0 {
        m.insert(
            ids::ERROR_RATE_PCT.into(),
            (raw.errors + raw.send_failures + raw.lost) as f64 / raw.offered as f64 * 100.0,
        );
    }
    m
}

fn critical(raw: &Raw, chaos: Option<&ChaosSummary>, soak: Option<&HoldMemory>) -> Vec<String> {
    let mut c = Vec::new();
    if let Some(why) = chaos.and_then(ChaosSummary::memory_failure) {
        c.push(why);
    }
    if let Some(why) = soak.and_then(HoldMemory::soak_failure) {
        c.push(why);
    }
    if raw.lost > 0 {
        c.push(format!(
            "{} lost responses (every accepted request must end with exactly one terminal frame)",
            raw.lost
        ));
    }
    if !raw.server_alive {
        c.push("the server stopped answering (crash or hang)".to_owned());
    }
    c
}

fn summaries(
    e2e: &Hist,
    backend: Option<&Hist>,
    groups: &[(&str, &BTreeMap<String, Hist>)],
) -> BTreeMap<String, Summary> {
    let mut out = BTreeMap::new();
    out.insert("e2e".to_owned(), hist::summary(e2e));
    if let Some(b) = backend {
        out.insert("backend".to_owned(), hist::summary(b));
    }
    for (prefix, map) in groups {
        for (k, h) in *map {
            out.insert(format!("{prefix}:{k}"), hist::summary(h));
        }
    }
    out
}

fn encode_map(m: &BTreeMap<String, Hist>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, h)| (k.clone(), hist::encode(h)))
        .collect()
}

fn decode_map(m: &BTreeMap<String, String>) -> anyhow::Result<BTreeMap<String, Hist>> {
    m.iter()
        .map(|(k, s)| Ok((k.clone(), hist::decode(s)?)))
        .collect()
}

fn client_cost(raw: &Raw) -> ClientCost {
    let wall = raw.wall_s.max(1e-3);
    ClientCost {
        rss_peak_bytes: raw.client_rss_peak,
        rss_per_user_bytes: raw.client_rss_peak.saturating_sub(raw.client_rss_before) as f64
            / raw.users_connected.max(1) as f64,
        cpu_pct_of_core: raw.client_cpu_s / wall * 100.0,
        cpu_share_pct: raw.client_cpu_s / (wall * raw.cores.max(1) as f64) * 100.0,
    }
}

/// Samples a memory level is the median of: the last seconds up to a point.
const LEVEL_WINDOW_S: f64 = 5.0;

/// The sample with the median RSS among those taken in the few seconds up to
/// `to_s` (one-second samples: one outlier does not move a level).
pub fn level_at(samples: &[ServerSample], to_s: f64) -> Option<&ServerSample> {
    let mut w: Vec<&ServerSample> = samples
        .iter()
        .filter(|x| x.t_s > to_s - LEVEL_WINDOW_S && x.t_s <= to_s)
        .collect();
    w.sort_by_key(|x| x.rss_bytes);
    w.get(w.len() / 2).copied()
}

/// Largest acceptable server RSS growth over a soak's judged span, %
/// (issue 6: "a 30-minute soak: RSS growth under 5 %").
pub const MAX_SOAK_GROWTH_PCT: f64 = 5.0;

/// Server memory over the hold: from a third into it (users connected, the
/// cache tiers at or near their bounds when sized for it, see `--scenario soak`)
/// to its end. The soak's judged figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldMemory {
    /// Start of the span, seconds from the start of the run.
    pub from_s: f64,
    /// Server RSS then (median of the last few samples), bytes.
    pub from_rss_bytes: u64,
    /// End of the span (the end of the hold).
    pub to_s: f64,
    /// Server RSS then, bytes.
    pub to_rss_bytes: u64,
    /// `to` above `from`, %.
    pub growth_pct: f64,
    /// Bytes the cache tiers held at `from` and at `to`: growth they explain is
    /// bounded by `l1_bytes` and `l2_bytes`, not a leak, but it still counts.
    pub cache_bytes: Option<(u64, u64)>,
    /// The server's live heap bytes at `from` and at `to`: RSS growth that this
    /// does not show is the allocator's, not the program's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_allocated_bytes: Option<(u64, u64)>,
    /// The anonymous part of RSS at `from` and at `to`: growth of RSS beyond
    /// it is file-backed (code paged in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_anon_bytes: Option<(u64, u64)>,
}

impl HoldMemory {
    /// The span for `sc`, or None when the hold is too short (under a minute)
    /// for a memory trend to mean anything.
    pub fn measure(sc: &Scenario, samples: &[ServerSample]) -> Option<HoldMemory> {
        if sc.duration < std::time::Duration::from_secs(60) {
            return None;
        }
        let from = level_at(samples, (sc.ramp_up + sc.duration / 3).as_secs_f64())?;
        let to = level_at(samples, (sc.ramp_up + sc.duration).as_secs_f64() + 0.5)?;
        if to.t_s <= from.t_s || from.rss_bytes == 0 {
            return None;
        }
        Some(HoldMemory {
            from_s: from.t_s,
            from_rss_bytes: from.rss_bytes,
            to_s: to.t_s,
            to_rss_bytes: to.rss_bytes,
            growth_pct: (to.rss_bytes as f64 - from.rss_bytes as f64) / from.rss_bytes as f64
                * 100.0,
            cache_bytes: from.cache_bytes.zip(to.cache_bytes),
            heap_allocated_bytes: from.heap_allocated_bytes.zip(to.heap_allocated_bytes),
            rss_anon_bytes: from.rss_anon_bytes.zip(to.rss_anon_bytes),
        })
    }

    /// Why the soak failed on memory, if it did.
    pub fn soak_failure(&self) -> Option<String> {
        (self.growth_pct > MAX_SOAK_GROWTH_PCT).then(|| {
            format!(
                "server RSS grew {:+.1}% over the soak's judged span ({} ; limit +{MAX_SOAK_GROWTH_PCT}%)",
                self.growth_pct,
                self.describe()
            )
        })
    }

    fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut cache = match self.cache_bytes {
            Some((a, b)) => format!(" · cache tiers {:.1} → {:.1} MiB", mib(a), mib(b)),
            None => String::new(),
        };
        if let Some((a, b)) = self.heap_allocated_bytes {
            cache.push_str(&format!(" · live heap {:.1} → {:.1} MiB", mib(a), mib(b)));
        }
        if let Some((a, b)) = self.rss_anon_bytes {
            cache.push_str(&format!(" · anonymous {:.1} → {:.1} MiB", mib(a), mib(b)));
        }
        format!(
            "{:.1} MiB at {:.0} s → {:.1} MiB at {:.0} s{cache}",
            mib(self.from_rss_bytes),
            self.from_s,
            mib(self.to_rss_bytes),
            self.to_s
        )
    }
}

fn rss_growth(samples: &[ServerSample]) -> Option<f64> {
    // Least-squares slope over the second half (after the ramp-up settled).
    let half = &samples[samples.len() / 2..];
    if half.len() < 3 {
        return None;
    }
    let n = half.len() as f64;
    let mx = half.iter().map(|s| s.t_s).sum::<f64>() / n;
    let my = half.iter().map(|s| s.rss_bytes as f64).sum::<f64>() / n;
    let num: f64 = half
        .iter()
        .map(|s| (s.t_s - mx) * (s.rss_bytes as f64 - my))
        .sum();
    let den: f64 = half.iter().map(|s| (s.t_s - mx).powi(2)).sum();
    (den > 0.0).then(|| num / den * 60.0)
}

impl Report {
    /// Grades a run.
    pub fn build(sc: &Scenario, url: &str, targets: &Targets, d: RunData) -> Report {
        let measured = measure(&d.raw, &d.e2e, d.backend.as_ref());
        let hold_memory = HoldMemory::measure(sc, &d.samples);
        let soak = hold_memory.as_ref().filter(|_| sc.shape == Shape::Soak);
        let card = Scorecard::grade(targets, &measured, critical(&d.raw, d.chaos.as_ref(), soak));
        let per_profile: BTreeMap<String, Hist> = d.per_profile.into_iter().collect();
        let latency = summaries(
            &d.e2e,
            d.backend.as_ref(),
            &[
                ("profile", &per_profile),
                ("class", &d.per_class),
                ("served", &d.per_served),
            ],
        );
        let mut notes = Vec::new();
        if d.backend.is_none() {
            notes.push("backend p95: the server reported no backend histogram".to_owned());
        }
        if !d.raw.capacity {
            notes.push("commands per second and concurrent users held: not measured (this scenario does not search for capacity; run `--scenario enterprise`); throughput is graded as the share of offered load served on time".to_owned());
        }
        if d.raw.time_scale != 1.0 {
            notes.push(format!(
                "time scale {}×: CPU and network are normalized to users at real pace (users × {})",
                d.raw.time_scale, d.raw.time_scale
            ));
        }
        if d.raw.cacheable > 0 && d.raw.cache_hits == 0 {
            notes.push(
                "no request was served from a cache tier: the server has no cache, or it is off"
                    .to_owned(),
            );
        }
        Report {
            schema: SCHEMA.to_owned(),
            grade: card.grade,
            score: card.score,
            categories: card.categories,
            metrics: card.metrics,
            targets: targets.clone(),
            scenario: sc.clone(),
            requests: d.raw.offered,
            errors: d.raw.errors + d.raw.send_failures,
            lost_responses: d.raw.lost,
            critical_failures: card.critical_failures,
            recommendations: card.recommendations,
            started_unix_ms: d.started_unix_ms,
            url: url.to_owned(),
            served_from: d.served,
            errors_by_code: d.errors_by_code,
            latency,
            histograms: Histograms {
                e2e: hist::encode(&d.e2e),
                backend: d.backend.as_ref().map(hist::encode).unwrap_or_default(),
                per_profile: encode_map(&per_profile),
                per_class: encode_map(&d.per_class),
                per_served_from: encode_map(&d.per_served),
            },
            server_rss_growth_bytes_per_min: rss_growth(&d.samples),
            server_rss_over_hold: hold_memory,
            timeline: d.timeline,
            server_samples: d.samples,
            capacity_steps: d.capacity,
            chaos: d.chaos,
            client: client_cost(&d.raw),
            raw: d.raw,
            regressions: Vec::new(),
            notes,
        }
    }

    /// Reads a JSON report.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let r: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadtest JSON report", path.display()))?;
        anyhow::ensure!(
            r.schema == SCHEMA,
            "{}: schema {} (expected {SCHEMA})",
            path.display(),
            r.schema
        );
        Ok(r)
    }

    /// Flags metrics worse than `base` by more than `threshold_pct`.
    pub fn compare_baseline(&mut self, base: &Report, threshold_pct: f64) {
        self.regressions.clear();
        for m in &self.metrics {
            let (Some(cur), Some(b)) = (
                m.measured,
                base.metrics
                    .iter()
                    .find(|x| x.id == m.id)
                    .and_then(|x| x.measured),
            ) else {
                continue;
            };
            let worse_pct = if b.abs() < 1e-12 {
                if (m.direction == Direction::LowerIsBetter && cur > 1e-9)
                    || (m.direction == Direction::HigherIsBetter && cur < -1e-9)
                {
                    f64::INFINITY
                } else {
                    0.0
                }
            } else {
                match m.direction {
                    Direction::LowerIsBetter => (cur - b) / b.abs() * 100.0,
                    Direction::HigherIsBetter => (b - cur) / b.abs() * 100.0,
                }
            };
            if worse_pct > threshold_pct {
                self.regressions.push(Regression {
                    metric: m.id.clone(),
                    baseline: b,
                    current: cur,
                    worse_pct,
                });
            }
        }
    }

    /// Merges reports of the same scenario taken on several machines: counts add
    /// up, histograms merge, and every metric is recomputed from the merged data.
    /// Server figures (RSS, CPU) are taken as the maximum, assuming the machines
    /// drove one server; users and capacity add up.
    pub fn merge(reports: &[Report]) -> anyhow::Result<Report> {
        let first = reports.first().context("nothing to merge")?;
        let mut e2e = hist::new_hist();
        let mut backend = hist::new_hist();
        let mut groups: [BTreeMap<String, Hist>; 3] = Default::default();
        let mut raw = Raw {
            time_scale: first.raw.time_scale,
            capacity: first.raw.capacity,
            server_alive: true,
            ..Raw::default()
        };
        let mut served: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors_by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut have_backend = false;
        for r in reports {
            e2e.add(hist::decode(&r.histograms.e2e)?)?;
            if !r.histograms.backend.is_empty() {
                backend.add(hist::decode(&r.histograms.backend)?)?;
                have_backend = true;
            }
            for (g, src) in groups.iter_mut().zip([
                &r.histograms.per_profile,
                &r.histograms.per_class,
                &r.histograms.per_served_from,
            ]) {
                for (k, h) in decode_map(src)? {
                    g.entry(k).or_insert_with(hist::new_hist).add(h)?;
                }
            }
            let x = &r.raw;
            raw.users += x.users;
            raw.offered += x.offered;
            raw.completed += x.completed;
            raw.errors += x.errors;
            raw.send_failures += x.send_failures;
            raw.lost += x.lost;
            raw.nonzero_exits += x.nonzero_exits;
            raw.cacheable += x.cacheable;
            raw.cache_hits += x.cache_hits;
            raw.on_time += x.on_time;
            raw.users_connected += x.users_connected;
            raw.users_held += x.users_held;
            raw.users_failed += x.users_failed;
            raw.hold_s = raw.hold_s.max(x.hold_s);
            raw.client_bytes_hold += x.client_bytes_hold;
            raw.client_bytes_total += x.client_bytes_total;
            raw.server_rss_before = min_opt(raw.server_rss_before, x.server_rss_before);
            raw.server_rss_peak = raw.server_rss_peak.max(x.server_rss_peak);
            raw.server_cpu_hold_s = max_f(raw.server_cpu_hold_s, x.server_cpu_hold_s);
            // One server driven from several machines: its counters are the largest.
            for (k, v) in &x.server_counters {
                let e = raw.server_counters.entry(k.clone()).or_default();
                *e = (*e).max(*v);
            }
            raw.capacity_cps = match (raw.capacity_cps, x.capacity_cps) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            raw.server_alive &= x.server_alive;
            raw.wall_s = raw.wall_s.max(x.wall_s);
            raw.client_rss_before += x.client_rss_before;
            raw.client_rss_peak += x.client_rss_peak;
            raw.client_cpu_s += x.client_cpu_s;
            raw.cores += x.cores;
            raw.time_scale = x.time_scale;
            for (k, v) in &r.served_from {
                *served.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.errors_by_code {
                *errors_by_code.entry(k.clone()).or_default() += v;
            }
        }
        let [per_profile, per_class, per_served] = groups;
        let backend = have_backend.then_some(backend);
        let mut scenario = first.scenario.clone();
        scenario.users = raw.users as usize;
        let d = RunData {
            started_unix_ms: reports.iter().map(|r| r.started_unix_ms).min().unwrap_or(0),
            raw,
            e2e,
            backend,
            per_profile: per_profile.into_iter().collect(),
            per_class,
            per_served,
            served,
            errors_by_code,
            timeline: Vec::new(),
            samples: Vec::new(),
            capacity: Vec::new(),
            chaos: None,
        };
        let mut merged = Report::build(&scenario, &first.url, &first.targets, d);
        merged.notes.push(format!(
            "merged from {} reports; server RSS and CPU are the maxima (one server assumed), users, requests and capacity are sums",
            reports.len()
        ));
        Ok(merged)
    }

    /// The text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            out,
            "voxterm loadtest: scenario {} · {} users · ramp-up {:.0}s · hold {:.0}s · time scale {}× · {}",
            s.name,
            s.users,
            s.ramp_up.as_secs_f64(),
            s.duration.as_secs_f64(),
            s.time_scale,
            self.url
        );
        let r = &self.raw;
        let _ = writeln!(
            out,
            "requests {} · answered {} · errors {} · lost {} · non-zero exits {} · users ready {} (failed {}) · held {}",
            self.requests, r.completed, self.errors, self.lost_responses, r.nonzero_exits,
            r.users_connected, r.users_failed, r.users_held
        );
        if let Some(e) = self.latency.get("e2e") {
            let _ = writeln!(
                out,
                "end-to-end ms: p50 {:.2} · p95 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2}",
                e.p50_ms, e.p95_ms, e.p99_ms, e.p999_ms, e.max_ms
            );
        }
        if let Some(b) = self.latency.get("backend") {
            let _ = writeln!(
                out,
                "backend ms:    p50 {:.2} · p95 {:.2} · p99 {:.2} · max {:.2}",
                b.p50_ms, b.p95_ms, b.p99_ms, b.max_ms
            );
        }
        let served: Vec<String> = self
            .served_from
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "served from: {}", served.join(" · "));
        let c = |k: &str| self.raw.server_counters.get(k).copied().unwrap_or(0);
        if c("predict_checked") > 0 || c("prefetch_started") > 0 {
            let pct = |a, b| self.raw.server_ratio(a, b).map_or(0.0, |r| r * 100.0);
            let _ = writeln!(
                out,
                "prediction: top-1 {:.1}% · top-3 {:.1}% of {} · prefetch: started {} · stored {} · used {} · wasted {} · worker time {:.1} s",
                pct("predict_top1", "predict_checked"),
                pct("predict_top3", "predict_checked"),
                c("predict_checked"),
                c("prefetch_started"),
                c("prefetch_stored"),
                c("prefetch_hits"),
                c("prefetch_wasted"),
                c("prefetch_worker_us") as f64 / 1e6,
            );
        }
        if let Some(w) = self.raw.server_ratio("syscalls_write", "requests") {
            let _ = writeln!(out, "server write syscalls per request: {w:.2}");
        }
        if !self.errors_by_code.is_empty() {
            let e: Vec<String> = self
                .errors_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "errors by code: {}", e.join(" · "));
        }
        for (k, v) in &self.latency {
            if k.starts_with("profile:") || k.starts_with("class:") {
                let _ = writeln!(
                    out,
                    "  {k:<18} n={:<8} p50 {:>8.2} ms  p95 {:>8.2} ms",
                    v.count, v.p50_ms, v.p95_ms
                );
            }
        }
        for st in &self.capacity_steps {
            let _ = writeln!(
                out,
                "  capacity step {:>7.0}/s: answered {:>7} · p95 {:>8.2} ms · errors {} · {}",
                st.offered_per_s,
                st.answered,
                st.p95_ms,
                st.errors,
                if st.within_target {
                    "within target"
                } else {
                    "MISSED"
                }
            );
        }
        if let Some(c) = &self.chaos {
            let _ = writeln!(
                out,
                "chaos: {} abrupt disconnects · {} malformed ({} answered) · {} slow readers · {} storms ({} conns, {} failed)",
                c.abrupt_disconnects, c.malformed_sent, c.malformed_answered, c.slow_readers,
                c.reconnect_storms, c.storm_connections, c.storm_failures
            );
            if c.redis_restarts > 0 {
                let _ = writeln!(
                    out,
                    "chaos: Redis killed and restarted {} time(s), down {} ms; server reconnected to it: {}",
                    c.redis_restarts,
                    c.redis_down_ms.unwrap_or(0),
                    match c.redis_reconnected {
                        Some(true) => "yes",
                        Some(false) => "NO (nothing stored in it afterwards)",
                        None => "not checked",
                    }
                );
            }
            let mib = |v: u64| v as f64 / 1048576.0;
            if let (Some((from, until)), Some(b), Some(p), Some(a)) = (
                c.storm_window_s,
                c.rss_pre_storm_bytes,
                c.rss_peak_bytes,
                c.rss_post_storm_bytes,
            ) {
                let _ = writeln!(
                    out,
                    "chaos: faults from {from:.0} s to {until:.0} s; server RSS with the users connected: before the storm {:.1} MiB · peak {:.1} MiB · end of the hold {:.1} MiB ({}, {} of the growth given back)",
                    mib(b),
                    mib(p),
                    mib(a),
                    c.rss_post_vs_pre_pct
                        .map_or("n/a".to_owned(), |x| format!("{x:+.1}% vs before")),
                    c.rss_recovered_pct
                        .map_or("n/a".to_owned(), |x| format!("{x:.0}%")),
                );
            }
            if let Some(r) = &c.retained {
                let heap = match (r.heap_allocated_before, r.heap_allocated_after) {
                    (Some(a), Some(b)) => format!(" · live heap {:.1} → {:.1} MiB", mib(a), mib(b)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "chaos: kept by design, before → after the storm: sessions {} → {} · cache tiers {:.1} → {:.1} MiB{heap}",
                    r.sessions_before,
                    r.sessions_after,
                    mib(r.cache_bytes_before),
                    mib(r.cache_bytes_after),
                );
            }
            if let (Some(b), Some(a)) = (c.rss_idle_before_bytes, c.rss_idle_after_bytes) {
                let _ = writeln!(
                    out,
                    "chaos: server RSS idle, before the users came {:.1} MiB · after they all left {:.1} MiB (not judged: their sessions and cache entries stay by design)",
                    mib(b),
                    mib(a),
                );
            }
            for sk in &c.skipped {
                let _ = writeln!(out, "chaos skipped: {sk}");
            }
        }
        if let Some(g) = self.server_rss_growth_bytes_per_min {
            let _ = writeln!(
                out,
                "server RSS growth (second half): {:.1} KiB/min",
                g / 1024.0
            );
        }
        if let Some(m) = &self.server_rss_over_hold {
            let judged = match self.scenario.shape {
                Shape::Soak => format!("judged, limit +{MAX_SOAK_GROWTH_PCT}%"),
                _ => "not judged in this scenario".to_owned(),
            };
            let _ = writeln!(
                out,
                "server RSS over the hold, from a third in to its end: {} ({:+.1}%, {judged})",
                m.describe(),
                m.growth_pct
            );
        }
        let _ = writeln!(
            out,
            "load tester: peak RSS {:.1} MiB · {:.1} KiB per user · CPU {:.1}% of a core ({:.1}% of the machine)",
            self.client.rss_peak_bytes as f64 / 1048576.0,
            self.client.rss_per_user_bytes / 1024.0,
            self.client.cpu_pct_of_core,
            self.client.cpu_share_pct
        );
        let _ = writeln!(out);
        let card = Scorecard {
            metrics: self.metrics.clone(),
            categories: self.categories.clone(),
            score: self.score,
            grade: self.grade,
            critical_failures: self.critical_failures.clone(),
            recommendations: self.recommendations.clone(),
        };
        out.push_str(&render_text(&card));
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if !self.regressions.is_empty() {
            let _ = writeln!(out, "\nregressions against the baseline:");
            for r in &self.regressions {
                let _ = writeln!(
                    out,
                    "  REGRESSION {}: {:.3} → {:.3} ({:.1}% worse)",
                    r.metric, r.baseline, r.current, r.worse_pct
                );
            }
        }
        out
    }

    /// CSV: one row per target.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "metric,category,unit,direction,target,measured,deviation_pct,score,met\n",
        );
        let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        for m in &self.metrics {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                m.id,
                m.category,
                m.unit,
                match m.direction {
                    Direction::LowerIsBetter => "lower",
                    Direction::HigherIsBetter => "higher",
                },
                m.target,
                f(m.measured),
                f(m.deviation_pct),
                f(m.score),
                m.met.map(|b| b.to_string()).unwrap_or_default()
            );
        }
        let _ = writeln!(out, "overall,,,,,,,{:.6},{}", self.score, self.grade);
        out
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_memory_spans_a_third_into_the_hold_to_its_end_and_judges_a_soak() {
        let mut sc = Scenario::named("soak").expect("soak exists");
        sc.ramp_up = std::time::Duration::from_secs(20);
        sc.duration = std::time::Duration::from_secs(300);
        let samples = |per_10s: u64| -> Vec<ServerSample> {
            (0..=330)
                .map(|t| ServerSample {
                    t_s: t as f64,
                    rss_bytes: (100 << 20) + (t / 10) * per_10s,
                    cache_bytes: Some((t / 10) << 20),
                    ..ServerSample::default()
                })
                .collect()
        };
        // Growing 1 MiB per 10 s: the median of the samples in (115, 120] is at
        // 118 s (111 MiB); of (315.5, 320.5]: 318 s (131 MiB).
        let m = HoldMemory::measure(&sc, &samples(1 << 20)).expect("a span");
        assert_eq!((m.from_s, m.to_s), (118.0, 318.0));
        assert_eq!((m.from_rss_bytes >> 20, m.to_rss_bytes >> 20), (111, 131));
        assert_eq!(m.cache_bytes, Some((11 << 20, 31 << 20)));
        let why = m.soak_failure().expect("+18% fails");
        assert!(
            why.contains("+18.0%") && why.contains("cache tiers 11.0 → 31.0 MiB"),
            "{why}"
        );
        // 100 KiB per 10 s: +1.8%, within the limit.
        let m = HoldMemory::measure(&sc, &samples(100 << 10)).expect("a span");
        assert!(
            m.growth_pct > 1.0 && m.growth_pct < 2.0 && m.soak_failure().is_none(),
            "{m:?}"
        );
        sc.duration = std::time::Duration::from_secs(30);
        assert!(HoldMemory::measure(&sc, &samples(0)).is_none());
    }

    fn data(seed: u64, n: u64) -> RunData {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut e2e = hist::new_hist();
        let mut backend = hist::new_hist();
        for _ in 0..n {
            hist::record(&mut e2e, rng.u64(500..80_000));
            hist::record(&mut backend, rng.u64(50..20_000));
        }
        RunData {
            started_unix_ms: 1_700_000_000_000 + seed,
            raw: Raw {
                users: 100,
                offered: n,
                completed: n,
                cacheable: n / 2,
                cache_hits: n / 3,
                on_time: n,
                users_connected: 100,
                users_held: 100,
                hold_s: 10.0,
                client_bytes_hold: 1_000_000,
                client_bytes_total: 2_000_000,
                server_rss_before: Some(10 << 20),
                server_rss_peak: Some(12 << 20),
                server_cpu_hold_s: Some(0.5),
                server_alive: true,
                wall_s: 12.0,
                cores: 2,
                time_scale: 1.0,
                ..Raw::default()
            },
            per_profile: vec![("light".into(), e2e.clone())],
            per_class: [("fs-read".to_owned(), e2e.clone())].into_iter().collect(),
            per_served: [("exec".to_owned(), e2e.clone())].into_iter().collect(),
            e2e,
            backend: Some(backend),
            served: [("exec".to_owned(), n)].into_iter().collect(),
            errors_by_code: BTreeMap::new(),
            timeline: vec![Tick {
                t_s: 1.0,
                users: 100,
                completed_per_s: 50.0,
                ..Tick::default()
            }],
            samples: Vec::new(),
            capacity: Vec::new(),
            chaos: None,
        }
    }

    fn report(seed: u64, n: u64) -> Report {
        let sc = Scenario::named("quick").unwrap();
        Report::build(&sc, "ws://x/ws", &Targets::default(), data(seed, n))
    }

    #[test]
    fn json_schema_round_trips() {
        let r = report(1, 2000);
        let text = serde_json::to_string_pretty(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "schema",
            "grade",
            "score",
            "categories",
            "metrics",
            "targets",
            "scenario",
            "requests",
            "errors",
            "lost_responses",
            "histograms",
        ] {
            assert!(v.get(key).is_some(), "missing top-level key {key}");
        }
        assert!(v["categories"]["latency"].as_f64().is_some());
        let back: Report = serde_json::from_str(&text).unwrap();
        // Equal up to JSON's float parsing (serde_json may be 1 ulp off without
        // `float_roundtrip`): the re-serialized document is the same document.
        assert!(
            serde_json::to_value(&back).unwrap() == v,
            "round trip changed the report"
        );
        assert_eq!(back.histograms, r.histograms);
        assert_eq!(
            (back.grade, back.requests, back.lost_responses),
            (r.grade, r.requests, r.lost_responses)
        );
    }

    #[test]
    fn merge_recomputes_from_merged_histograms() {
        let (a, b) = (report(1, 3000), report(2, 5000));
        let m = Report::merge(&[a.clone(), b.clone()]).unwrap();
        let mut union = hist::decode(&a.histograms.e2e).unwrap();
        union.add(hist::decode(&b.histograms.e2e).unwrap()).unwrap();
        assert_eq!(hist::decode(&m.histograms.e2e).unwrap(), union);
        let p95 = m.metrics.iter().find(|x| x.id == ids::E2E_P95_MS).unwrap();
        assert_eq!(
            p95.measured,
            Some(union.value_at_quantile(0.95) as f64 / 1000.0)
        );
        assert_eq!(m.requests, 8000);
        assert_eq!(m.raw.users_held, 200);
    }

    #[test]
    fn baseline_flags_regressions_beyond_threshold() {
        let base = report(1, 2000);
        let mut cur = base.clone();
        for m in &mut cur.metrics {
            if m.id == ids::E2E_P95_MS {
                m.measured = m.measured.map(|v| v * 1.25);
            }
            if m.id == ids::BACKEND_P95_MS {
                m.measured = m.measured.map(|v| v * 1.05);
            }
        }
        cur.compare_baseline(&base, 10.0);
        assert_eq!(cur.regressions.len(), 1, "{:?}", cur.regressions);
        assert_eq!(cur.regressions[0].metric, ids::E2E_P95_MS);
        assert!((cur.regressions[0].worse_pct - 25.0).abs() < 1e-6);
    }

    #[test]
    fn lost_responses_force_f() {
        let sc = Scenario::named("quick").unwrap();
        let mut d = data(3, 1000);
        d.raw.lost = 2;
        let r = Report::build(&sc, "ws://x/ws", &Targets::default(), d);
        assert_eq!(r.grade, Grade::F);
        assert_eq!(r.lost_responses, 2);
        assert!(r.text().contains("CRITICAL FAILURE"));
        assert!(crate::html::render(&r).contains("CRITICAL"));
        assert!(r.csv().lines().count() > 10);
    }
}

//! The report: the scorecard plus everything behind it, in a stable JSON schema
//! (histograms included, so reports can be merged), and its text, HTML and CSV
//! renderings, baseline comparison and merge. This file holds the report itself
//! and how a run becomes one; each other part has its file:
//!
//! - `data`: what a run hands over (raw counts, samples, timeline, histograms);
//! - `score`: the metrics measured from it and the critical failures;
//! - `memory`: server memory levels and the soak's growth judgement;
//! - `baseline`: regressions against a previous report;
//! - `merge`: reports of several machines made one;
//! - `text`, `csv`: the renderings (HTML is `crate::html`).

mod baseline;
mod csv;
mod data;
mod engines;
mod memory;
mod merge;
mod phases;
mod score;
#[cfg(test)]
mod tests;
mod text;
mod timing;

pub use baseline::Regression;
pub use data::{CapacityStep, Raw, RunData, ServerSample, Tick};
pub use engines::EngineFigures;
pub use memory::{level_at, per_session_slope, HoldMemory, MAX_SOAK_GROWTH_PCT};
pub use phases::{LineMisses, PhaseData, PhaseReport, Phases, SteadyBegan};
pub use timing::{Timing, TimingData};

use crate::chaos::ChaosSummary;
use crate::hist::{self, Hist, Summary};
use crate::scenario::{Scenario, Shape};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use voxterm::scorecard::{Category, Grade, MetricScore, Scorecard, Targets};

/// Version of the JSON schema; bumped on incompatible changes.
pub const SCHEMA: &str = "voxterm-loadtest/1";

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
    /// Whether the tester kept its schedule (send lag), latency from the
    /// actual send, and the one-connection floor.
    #[serde(default)]
    pub timing: Timing,
    /// The cold start and the steady state apart; the grade is the steady
    /// state's (None: a merged report, or an older one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseReport>,
    /// Why `--abort-on-fail` stopped the run (the report is partial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// The load tester's version.
    #[serde(default)]
    pub tool_version: String,
    /// The commit of the tree the load tester ran from (`git rev-parse`), when
    /// it ran inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Each engine's own figures, when the run had several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineFigures>,
    /// The failover scenario: the engine killed, and how its users fared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<crate::failover::FailoverSummary>,
}

pub(super) fn summaries(
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

pub(super) fn decode_map(m: &BTreeMap<String, String>) -> anyhow::Result<BTreeMap<String, Hist>> {
    m.iter()
        .map(|(k, s)| Ok((k.clone(), hist::decode(s)?)))
        .collect()
}

/// The commit of the working tree, if the load tester runs inside one.
fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let c = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !c.is_empty()).then_some(c)
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

impl Report {
    /// Grades a run.
    pub fn build(sc: &Scenario, url: &str, targets: &Targets, d: RunData) -> Report {
        // Graded at steady state when the run has one long enough.
        let graded = d.phases.as_ref().and_then(Phases::graded);
        let measured = match graded {
            Some(p) => score::measure(&p.raw(&d.raw), &p.e2e, p.backend.as_ref()),
            None => score::measure(&d.raw, &d.e2e, d.backend.as_ref()),
        };
        let phases = d
            .phases
            .as_ref()
            .map(|p| PhaseReport::build(p, &d.timeline));
        let hold_memory = HoldMemory::measure(sc, &d.samples);
        let soak = hold_memory.as_ref().filter(|_| sc.shape == Shape::Soak);
        let mut critical = score::critical(&d.raw, d.chaos.as_ref(), soak);
        critical.extend(d.aborted.clone());
        if let Some(f) = &d.failover {
            critical.extend(f.failures());
        }
        let card = Scorecard::grade(targets, &measured, critical);
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
        let timing = Timing::build(&d.timing, d.per_served.get("L1"));
        let mut notes = Vec::new();
        if let Some(note) = timing.bottleneck_note() {
            notes.push(note);
        }
        match (&d.phases, graded) {
            (Some(p), Some(_)) => notes.push(format!(
                "graded at steady state ({:.0}–{:.0} s: {}); the cold start (ramp-up and the hold until then, when every user's first commands miss) is shown beside it",
                p.steady.from_s,
                p.steady.until_s,
                p.began.describe()
            )),
            (Some(p), None) => notes.push(format!(
                "the steady state had {} answers (under {}): too short to judge apart, so the whole run is graded; run longer (--duration) for a steady-state grade",
                p.steady.completed,
                phases::MIN_STEADY_ANSWERS
            )),
            (None, _) => {}
        }
        if let Some(slope) = phases
            .as_ref()
            .and_then(|p| p.steady_hit_rate_slope_pp_per_min)
        {
            notes.push(if slope.abs() < phases::SETTLED_PP_PER_MIN {
                format!(
                    "steady state reached: the hit rate moved {slope:+.2} points a minute over it (least squares of the per-second hit rates; under {} is settled)",
                    phases::SETTLED_PP_PER_MIN
                )
            } else {
                let why = if slope > 0.0 {
                    "the caches were still filling, so run longer (--duration)"
                } else {
                    "entries were expiring faster than they were stored again (entries stored together in the cold start expire together one TTL later), so hold well past one TTL, or look at renewals (voxterm_cache_renewals_total)"
                };
                format!(
                    "steady state not reached: the hit rate still moved {slope:+.2} points a minute over it (least squares of the per-second hit rates; {} or more is not settled): {why}",
                    phases::SETTLED_PP_PER_MIN
                )
            });
        }
        if d.backend.is_none() {
            notes.push("backend p95: the server reported no backend histogram".to_owned());
        }
        if !d.raw.capacity {
            notes.push("commands per second and concurrent users held: not measured (this scenario does not search for capacity; run `--scenario enterprise`); throughput is graded as the share of offered load served on time".to_owned());
        }
        match (d.raw.memory_per_session_bytes, d.raw.memory_fixed_bytes) {
            (Some(per), Some(fixed)) => notes.push(format!(
                "memory per session: {:.1} KB, the slope of the server's RSS over the sessions it held (least squares over the ramp-up and hold); its fixed cost apart: {:.1} MiB",
                per / 1024.0,
                fixed / (1024.0 * 1024.0)
            )),
            _ => notes.push(format!(
                "memory per session: not measured (fewer than {} sessions, or too few distinct session counts, to tell a per-session cost from the server's noise)",
                memory::MIN_SESSIONS_FOR_SLOPE
            )),
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
            server_rss_growth_bytes_per_min: memory::rss_growth(&d.samples),
            server_rss_over_hold: hold_memory,
            timeline: d.timeline,
            server_samples: d.samples,
            capacity_steps: d.capacity,
            chaos: d.chaos,
            client: client_cost(&d.raw),
            raw: d.raw,
            regressions: Vec::new(),
            notes,
            timing,
            phases,
            aborted: d.aborted,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: commit(),
            engines: d.engines,
            failover: d.failover,
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
}

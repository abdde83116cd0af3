//! The enterprise scorecard (DESIGN §5): targets, the 0–100 score of each metric,
//! category scores, the overall score, the A–F grade and the report.
//!
//! It lives in the library rather than in `loadtest` so that the server (a live
//! scorecard on its metrics) and the load tester grade with one formula. Nothing
//! here measures anything: callers hand in [`Measurements`], where a metric that a
//! run did not measure is absent, and absent metrics are left out of every mean
//! instead of being guessed.

pub mod live;
mod render;
#[cfg(test)]
mod tests;

pub use render::render_text;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The four categories of the scorecard, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// How fast one command comes back.
    Latency,
    /// How much work the system takes.
    Throughput,
    /// What the work costs (memory, CPU, network).
    Efficiency,
    /// Whether answers are right and cheap (errors, cache hits).
    Quality,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 4] = [
        Category::Latency,
        Category::Throughput,
        Category::Efficiency,
        Category::Quality,
    ];

    /// Stable lowercase name, used in JSON and TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Latency => "latency",
            Category::Throughput => "throughput",
            Category::Efficiency => "efficiency",
            Category::Quality => "quality",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way is better for a metric; the score formula is mirrored on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Latency, memory, CPU, errors: smaller is better.
    LowerIsBetter,
    /// Throughput, users, hit rate: larger is better.
    HigherIsBetter,
}

/// How a measured value turns into 0–100. The default is DESIGN §5's formula; a
/// targets file may pick another per metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Formula {
    /// Meeting the target scores `at_target`; beating it rises linearly to 100 at
    /// `best_at` (fraction) better; missing it loses `penalty_per_10pct` per 10%.
    Linear {
        /// Score for meeting the target exactly (90: the edge of an A).
        at_target: f64,
        /// How much better than the target scores 100 (0.5 = 50% better).
        best_at: f64,
        /// Points lost per 10% missed.
        penalty_per_10pct: f64,
    },
    /// 100 when the target is met, 0 otherwise: for metrics that are contracts.
    PassFail,
}

impl Default for Formula {
    fn default() -> Self {
        Formula::Linear {
            at_target: 90.0,
            best_at: 0.5,
            penalty_per_10pct: 10.0,
        }
    }
}

impl Formula {
    /// The score of `measured` against `target`. Both must be finite; a target of 0
    /// is treated as "0 is perfect" for lower-is-better metrics.
    pub fn score(self, direction: Direction, target: f64, measured: f64) -> f64 {
        let met = meets(direction, target, measured);
        match self {
            Formula::PassFail => {
                if met {
                    100.0
                } else {
                    0.0
                }
            }
            Formula::Linear {
                at_target,
                best_at,
                penalty_per_10pct,
            } => {
                // `better` > 0 when the target is beaten, as a fraction of the target.
                let better = match direction {
                    Direction::LowerIsBetter if target <= 0.0 => {
                        if measured <= 0.0 {
                            best_at
                        } else {
                            -f64::INFINITY
                        }
                    }
                    Direction::LowerIsBetter => 1.0 - measured / target,
                    Direction::HigherIsBetter if target <= 0.0 => best_at,
                    Direction::HigherIsBetter => measured / target - 1.0,
                };
                let s = if better >= 0.0 {
                    let slope = if best_at > 0.0 {
                        (100.0 - at_target) / best_at
                    } else {
                        0.0
                    };
                    (at_target + slope * better).min(100.0)
                } else {
                    (at_target + penalty_per_10pct * 10.0 * better).max(0.0)
                };
                s.clamp(0.0, 100.0)
            }
        }
    }
}

fn meets(direction: Direction, target: f64, measured: f64) -> bool {
    match direction {
        Direction::LowerIsBetter => measured <= target,
        Direction::HigherIsBetter => measured >= target,
    }
}

/// Stable ids of the standard metrics (JSON keys, TOML tables, CSV rows).
pub mod ids {
    /// End-to-end p95, due time → terminal frame, ms.
    pub const E2E_P95_MS: &str = "e2e_p95_ms";
    /// Backend p95, frame in → terminal frame out, ms.
    pub const BACKEND_P95_MS: &str = "backend_p95_ms";
    /// Highest open-model rate served within the p95 target, commands/s.
    pub const COMMANDS_PER_SECOND: &str = "commands_per_second";
    /// Users connected and served at once.
    pub const CONCURRENT_USERS: &str = "concurrent_users";
    /// Share of the offered load answered within the on-time deadline, %.
    pub const SERVED_ON_TIME_PCT: &str = "served_on_time_pct";
    /// (peak RSS − RSS before users) / users, KB.
    pub const MEMORY_PER_SESSION_KB: &str = "memory_per_session_kb";
    /// Server CPU (% of one core) normalized to 1,000 users.
    pub const CPU_PER_1000_USERS_PCT: &str = "cpu_per_1000_users_pct";
    /// Client-counted WebSocket bytes, normalized to 100 sessions, Mbit/s.
    pub const NETWORK_PER_100_SESSIONS_MBPS: &str = "network_per_100_sessions_mbps";
    /// Cache hits among cacheable requests, %.
    pub const CACHE_HIT_RATE_PCT: &str = "cache_hit_rate_pct";
    /// Requests that failed (Error frame, lost, transport), %.
    pub const ERROR_RATE_PCT: &str = "error_rate_pct";
    /// In a real browser: Enter → output painted, less the server's own
    /// (backend) time, p95, ms: what the page, the browser and the network add.
    pub const BROWSER_P95_MS: &str = "browser_p95_ms";
    /// In a real browser: Enter → output painted (browser + backend), p95, ms.
    pub const BROWSER_E2E_P95_MS: &str = "browser_e2e_p95_ms";
    /// Page load → first contentful paint, the slowest page, ms.
    pub const FIRST_PAINT_MS: &str = "first_paint_ms";
    /// Page load → interactive (the page's script ready and its WebSocket
    /// open), the slowest page, ms.
    pub const INTERACTIVE_MS: &str = "interactive_ms";
    /// The page's JS heap after its commands (after a GC), the largest page, MB.
    pub const BROWSER_MEMORY_MB: &str = "browser_memory_mb";
    /// The metrics only a real browser measures (`loadtest browser`); the
    /// server and `loadtest run` show them as not measured.
    pub const BROWSER: [&str; 5] = [
        BROWSER_P95_MS,
        BROWSER_E2E_P95_MS,
        FIRST_PAINT_MS,
        INTERACTIVE_MS,
        BROWSER_MEMORY_MB,
    ];
}

/// One target: what is measured, which way is better, the threshold and formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Stable id, see [`ids`].
    pub id: String,
    /// Human label for reports.
    pub label: String,
    /// Category it counts in.
    pub category: Category,
    /// Unit of `target` and of the measured value.
    pub unit: String,
    /// Which way is better.
    pub direction: Direction,
    /// The threshold.
    pub target: f64,
    /// How a value scores.
    #[serde(default)]
    pub formula: Formula,
    /// What to do when this target is missed.
    pub advice: String,
}

impl Target {
    fn new(
        id: &str,
        label: &str,
        category: Category,
        unit: &str,
        direction: Direction,
        target: f64,
        advice: &str,
    ) -> Target {
        Target {
            id: id.to_owned(),
            label: label.to_owned(),
            category,
            unit: unit.to_owned(),
            direction,
            target,
            formula: Formula::default(),
            advice: advice.to_owned(),
        }
    }

    /// The comparison sign shown in reports ("<" or "≥").
    pub fn sign(&self) -> &'static str {
        match self.direction {
            Direction::LowerIsBetter => "<",
            Direction::HigherIsBetter => "≥",
        }
    }
}

/// Why a targets file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// The file could not be read.
    #[error("cannot read targets file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or names an unknown metric or key.
    #[error("invalid targets file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The full set of targets and category weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Every target, in report order.
    pub metrics: Vec<Target>,
    /// Weight of each category in the overall score (DESIGN: all equal).
    pub weights: BTreeMap<Category, f64>,
    /// A command answered later than this after its due time is not "on time"
    /// for [`ids::SERVED_ON_TIME_PCT`], ms.
    pub on_time_ms: f64,
}

impl Default for Targets {
    fn default() -> Self {
        use Category::*;
        use Direction::*;
        let metrics = vec![
            Target::new(ids::E2E_P95_MS, "end-to-end p95 (due → Exit)", Latency, "ms", LowerIsBetter, 65.0,
                "end-to-end p95 is over target: look at backend p95 first; if the backend is fast, the time is in queues and the network (raise exec.workers, check write coalescing and client CPU)"),
            Target::new(ids::BACKEND_P95_MS, "backend p95 (frame in → Exit out)", Latency, "ms", LowerIsBetter, 15.0,
                "backend p95 is over target: most time is process spawn; raise the cache hit rate (more commands cacheable, prefetch) and keep exec.workers near the core count × 8"),
            Target::new(ids::BROWSER_P95_MS, "browser p95 (Enter → painted − backend)", Latency, "ms", LowerIsBetter, 50.0,
                "the page's share of a command is over target: profile the page (loadtest browser prints where the time goes: Classify, the network, xterm.js's parse, the frame); keep the page's work per command to one terminal write and no forced layout"),
            Target::new(ids::BROWSER_E2E_P95_MS, "end to end in a browser p95", Latency, "ms", LowerIsBetter, 65.0,
                "Enter → painted is over target: compare the browser p95 with the backend p95 to see which side to work on"),
            Target::new(ids::FIRST_PAINT_MS, "page load → first contentful paint", Latency, "ms", LowerIsBetter, 2000.0,
                "the page paints late: check the size of what it loads before its first paint (index.html, style.css) and that the server answers assets from memory"),
            Target::new(ids::INTERACTIVE_MS, "page load → interactive", Latency, "ms", LowerIsBetter, 3000.0,
                "the page becomes usable late: check the module scripts' size and the WebSocket handshake (token, TLS) time"),
            Target::new(ids::COMMANDS_PER_SECOND, "commands per second (within p95 target)", Throughput, "cmd/s", HigherIsBetter, 10_000.0,
                "capacity is below target: serve more from cache (spawning a process costs ~1 ms of CPU), add cores or instances behind a balancer sharing L3"),
            Target::new(ids::CONCURRENT_USERS, "concurrent users held", Throughput, "users", HigherIsBetter, 10_000.0,
                "not all users could be held: check the open-files limit, the accept backlog (server.backlog) and per-connection memory"),
            Target::new(ids::SERVED_ON_TIME_PCT, "offered load served on time", Throughput, "%", HigherIsBetter, 99.0,
                "part of the offered load was not served on time: the server is saturated at this load; see the latency advice"),
            Target::new(ids::MEMORY_PER_SESSION_KB, "memory per session", Efficiency, "KB", LowerIsBetter, 50.0,
                "memory per session is over target: shrink per-connection buffers (server.ws_read_buffer, ws_write_buffer, write_queue) and session history"),
            Target::new(ids::CPU_PER_1000_USERS_PCT, "CPU for 1,000 concurrent users", Efficiency, "% core", LowerIsBetter, 20.0,
                "CPU per 1,000 users is over target: profile the server; spawn and encode dominate, so cache more and coalesce frames"),
            Target::new(ids::NETWORK_PER_100_SESSIONS_MBPS, "network per 100 sessions", Efficiency, "Mbit/s", LowerIsBetter, 1.0,
                "network use is over target: negotiate compression (deflate/brotli) and keep the binary encoding"),
            Target::new(ids::BROWSER_MEMORY_MB, "page JS heap after its commands", Efficiency, "MB", LowerIsBetter, 100.0,
                "the page's heap is over target: look for what grows per command (blocks kept, copies of output, Performance entries) with a DevTools heap snapshot"),
            Target::new(ids::CACHE_HIT_RATE_PCT, "cache hit rate (cacheable requests)", Quality, "%", HigherIsBetter, 85.0,
                "cache hit rate is below target: check that the cache is enabled, the TTLs of fs-read commands, and that prefetch runs on idle capacity"),
            Target::new(ids::ERROR_RATE_PCT, "error rate", Quality, "%", LowerIsBetter, 0.1,
                "error rate is over target: see the errors by code in the report and the server log; RateLimited/TooManyRequests mean limits below the offered load"),
        ];
        Targets {
            metrics,
            weights: Category::ALL.iter().map(|&c| (c, 1.0)).collect(),
            on_time_ms: 1000.0,
        }
    }
}

/// The TOML shape of a targets file: every key optional, merged over the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    metrics: BTreeMap<String, TargetOverride>,
    #[serde(default)]
    weights: BTreeMap<Category, f64>,
    on_time_ms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetOverride {
    target: Option<f64>,
    formula: Option<Formula>,
    label: Option<String>,
    advice: Option<String>,
}

impl Targets {
    /// The DESIGN §5 defaults with the TOML text merged over them. Example:
    ///
    /// ```toml
    /// on_time_ms = 500
    /// [metrics.e2e_p95_ms]
    /// target = 50
    /// [metrics.error_rate_pct]
    /// formula = { kind = "pass-fail" }
    /// [weights]
    /// latency = 2.0
    /// ```
    pub fn from_toml(text: &str, origin: &str) -> Result<Targets, TargetsError> {
        let invalid = |message: String| TargetsError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let file: TargetsFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut t = Targets::default();
        for (id, o) in file.metrics {
            let target = t
                .metrics
                .iter_mut()
                .find(|m| m.id == id)
                .ok_or_else(|| invalid(format!("unknown metric `{id}`")))?;
            if let Some(v) = o.target {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(format!("{id}.target must be a finite number ≥ 0")));
                }
                target.target = v;
            }
            if let Some(f) = o.formula {
                target.formula = f;
            }
            if let Some(l) = o.label {
                target.label = l;
            }
            if let Some(a) = o.advice {
                target.advice = a;
            }
        }
        for (c, w) in file.weights {
            if !w.is_finite() || w < 0.0 {
                return Err(invalid(format!("weight of {c} must be ≥ 0")));
            }
            t.weights.insert(c, w);
        }
        if let Some(ms) = file.on_time_ms {
            t.on_time_ms = ms;
        }
        Ok(t)
    }

    /// Reads a targets file (see [`Targets::from_toml`]).
    pub fn load(path: &Path) -> Result<Targets, TargetsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TargetsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Targets::from_toml(&text, &path.display().to_string())
    }

    /// The target with this id.
    pub fn get(&self, id: &str) -> Option<&Target> {
        self.metrics.iter().find(|m| m.id == id)
    }
}

/// Measured values by metric id. A metric that is absent was not measured.
pub type Measurements = BTreeMap<String, f64>;

/// A letter grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grade {
    /// Below 60, or a critical failure.
    F,
    /// 60 to 70.
    D,
    /// 70 to 80.
    C,
    /// 80 to 90.
    B,
    /// 90 and above.
    A,
}

/// The scoring in one paragraph, for the reports and `--help` (DESIGN §5,
/// with the default formula; a targets file may change a metric's formula
/// or the category weights, and the report then lists them).
pub const SCORING: &str = "Each target scores 90 when met exactly, rises linearly to 100 at 50% better than the target, and loses 10 points per 10% missed (never below 0); a category scores the mean of its measured targets, the overall score is the weighted mean of the measured categories; A is 90 and above, B 80, C 70, D 60, F below 60 or on any critical failure (a lost response, a dead server, a soak that grows, an abort).";

impl Grade {
    /// The grade of an overall score.
    pub fn from_score(score: f64) -> Grade {
        match score {
            s if s >= 90.0 => Grade::A,
            s if s >= 80.0 => Grade::B,
            s if s >= 70.0 => Grade::C,
            s if s >= 60.0 => Grade::D,
            _ => Grade::F,
        }
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        })
    }
}

impl std::str::FromStr for Grade {
    type Err = String;
    fn from_str(s: &str) -> Result<Grade, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Ok(Grade::A),
            "B" => Ok(Grade::B),
            "C" => Ok(Grade::C),
            "D" => Ok(Grade::D),
            "F" => Ok(Grade::F),
            other => Err(format!("unknown grade `{other}` (A, B, C, D or F)")),
        }
    }
}

/// One target's line in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricScore {
    /// Metric id.
    pub id: String,
    /// Human label.
    pub label: String,
    /// Category.
    pub category: Category,
    /// Unit.
    pub unit: String,
    /// Which way is better.
    pub direction: Direction,
    /// The threshold.
    pub target: f64,
    /// The measured value; `None` when not measured.
    pub measured: Option<f64>,
    /// (measured − target) / target in %; positive is "more than the target".
    pub deviation_pct: Option<f64>,
    /// 0–100; `None` when not measured.
    pub score: Option<f64>,
    /// Whether the target was met; `None` when not measured.
    pub met: Option<bool>,
}

/// A graded scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Every target, measured or not, in report order.
    pub metrics: Vec<MetricScore>,
    /// Mean score of each category's measured metrics; `None` when none was measured.
    pub categories: BTreeMap<Category, Option<f64>>,
    /// Weighted mean of the measured categories (0 when nothing was measured).
    pub score: f64,
    /// The grade; F whenever `critical_failures` is not empty.
    pub grade: Grade,
    /// Lost responses, server crashes: each one forces F.
    pub critical_failures: Vec<String>,
    /// One piece of advice per missed target, and one per critical failure.
    pub recommendations: Vec<String>,
}

impl Scorecard {
    /// Grades `measured` against `targets`. `critical_failures` describe events that
    /// fail the run whatever the numbers say (DESIGN §5: lost responses, crashes).
    pub fn grade(
        targets: &Targets,
        measured: &Measurements,
        critical_failures: Vec<String>,
    ) -> Scorecard {
        let mut metrics = Vec::with_capacity(targets.metrics.len());
        let mut recommendations = Vec::new();
        for t in &targets.metrics {
            let value = measured.get(&t.id).copied().filter(|v| v.is_finite());
            let (deviation_pct, score, met) = match value {
                Some(v) => {
                    let dev = if t.target != 0.0 {
                        Some((v - t.target) / t.target * 100.0)
                    } else {
                        None
                    };
                    let met = meets(t.direction, t.target, v);
                    (
                        dev,
                        Some(t.formula.score(t.direction, t.target, v)),
                        Some(met),
                    )
                }
                None => (None, None, None),
            };
            if met == Some(false) {
                recommendations.push(format!("{}: {}", t.label, t.advice));
            }
            metrics.push(MetricScore {
                id: t.id.clone(),
                label: t.label.clone(),
                category: t.category,
                unit: t.unit.clone(),
                direction: t.direction,
                target: t.target,
                measured: value,
                deviation_pct,
                score,
                met,
            });
        }
        let categories: BTreeMap<Category, Option<f64>> = Category::ALL
            .iter()
            .map(|&c| {
                let scores: Vec<f64> = metrics
                    .iter()
                    .filter(|m| m.category == c)
                    .filter_map(|m| m.score)
                    .collect();
                (c, mean(&scores))
            })
            .collect();
        let score = overall_score(&categories, &targets.weights);
        let grade = if critical_failures.is_empty() {
            Grade::from_score(score)
        } else {
            Grade::F
        };
        for c in &critical_failures {
            recommendations.push(format!(
                "critical: {c}: a critical failure grades F whatever the scores; read the server log around it"
            ));
        }
        Scorecard {
            metrics,
            categories,
            score,
            grade,
            critical_failures,
            recommendations,
        }
    }

    /// The line of one metric.
    pub fn metric(&self, id: &str) -> Option<&MetricScore> {
        self.metrics.iter().find(|m| m.id == id)
    }
}

/// The weighted mean of the measured categories; categories without a score are
/// left out (not counted as 0), and a missing weight counts as 1.
pub fn overall_score(
    categories: &BTreeMap<Category, Option<f64>>,
    weights: &BTreeMap<Category, f64>,
) -> f64 {
    let (mut sum, mut weight) = (0.0, 0.0);
    for (c, s) in categories {
        if let Some(s) = s {
            let w = weights.get(c).copied().unwrap_or(1.0);
            sum += w * s;
            weight += w;
        }
    }
    if weight > 0.0 {
        sum / weight
    } else {
        0.0
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

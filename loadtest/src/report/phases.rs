//! The cold start and the steady state of a run, judged apart.
//!
//! While users arrive, every first command of every user misses every cache,
//! so latency and hit rate over the whole run mix a start-up transient with
//! the service a deployment gives once warm (issue 17: p95 728 ms over a
//! 10,000-user run that settled at 28–66 ms). The grade is the steady
//! state's; the cold start is printed beside it, never hidden. The steady
//! state begins a third into the hold (as the soak's memory judgement).

use super::Raw;
use crate::hist::{self, Hist, Summary};
use serde::{Deserialize, Serialize};

/// Fewer answers than this in the steady state: it is too short to judge,
/// and the whole run is graded (with a note).
pub const MIN_STEADY_ANSWERS: u64 = 100;

/// What one phase of the run produced.
#[derive(Debug, Clone)]
pub struct PhaseData {
    /// Seconds from the first user.
    pub from_s: f64,
    /// Seconds from the first user.
    pub until_s: f64,
    /// End to end, from the due time.
    pub e2e: Hist,
    /// The server's backend latency in the phase (None: not reported).
    pub backend: Option<Hist>,
    /// Measured requests sent.
    pub offered: u64,
    /// Answers.
    pub completed: u64,
    /// … with `Error`.
    pub errors: u64,
    /// Cacheable requests that took the cache path.
    pub cacheable: u64,
    /// … served from a cache tier or prefetch.
    pub hits: u64,
    /// Answered on time.
    pub on_time: u64,
    /// Cacheable answers and misses by line, most misses first.
    pub lines: Vec<LineMisses>,
}

/// One line's cacheable answers in a phase and how many missed every cache:
/// where the hit rate goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineMisses {
    /// The profile's name.
    pub profile: String,
    /// The line as the profile writes it (`{scratch}` for the user's own
    /// directory).
    pub line: String,
    /// Cacheable answers that took the cache path.
    pub answers: u64,
    /// … that no cache tier or prefetch answered.
    pub misses: u64,
}

/// How many lines a phase's figures name (the rest are in the totals).
pub const LINES_SHOWN: usize = 8;

impl PhaseData {
    /// The run's raw counts with this phase's requests in place of the whole
    /// run's (lost answers and send failures stay: they count against the
    /// phase that is judged).
    pub fn raw(&self, whole: &Raw) -> Raw {
        Raw {
            offered: self.offered,
            completed: self.completed,
            errors: self.errors,
            cacheable: self.cacheable,
            cache_hits: self.hits,
            on_time: self.on_time,
            ..whole.clone()
        }
    }

    fn figures(&self) -> PhaseFigures {
        let pct = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64 * 100.0);
        PhaseFigures {
            from_s: self.from_s,
            until_s: self.until_s,
            requests: self.completed,
            e2e: hist::summary(&self.e2e),
            backend_p95_ms: self
                .backend
                .as_ref()
                .filter(|b| !b.is_empty())
                .map(|b| b.value_at_quantile(0.95) as f64 / 1000.0),
            hit_rate_pct: pct(self.hits, self.cacheable),
            error_rate_pct: pct(self.errors, self.completed),
            misses_by_line: self
                .lines
                .iter()
                .filter(|l| l.misses > 0)
                .take(LINES_SHOWN)
                .cloned()
                .collect(),
        }
    }
}

/// Why the steady state began where it did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum SteadyBegan {
    /// A third into the hold, where the scenario's event (a burst's spike,
    /// chaos's storm, failover's kill) is scheduled.
    #[default]
    AtThird,
    /// At the first second from a third in with the server's worker queue
    /// drained (no more jobs waiting than running), `after_s` past the third.
    Drained {
        /// Seconds past the third.
        after_s: f64,
    },
    /// Two thirds in, the latest it may begin, with the cold start's backlog
    /// still queued: the steady figures carry its tail.
    Undrained {
        /// Jobs still waiting for a worker then.
        queued: u64,
    },
}

impl SteadyBegan {
    /// The rule in words, for the report's note.
    pub fn describe(&self) -> String {
        match self {
            SteadyBegan::AtThird => "from a third into the hold to its end".into(),
            SteadyBegan::Drained { after_s } if *after_s < 1.0 => {
                "from a third into the hold, where the server's worker queue had drained, to its end".into()
            }
            SteadyBegan::Drained { after_s } => format!(
                "from when the cold start's backlog had drained, {after_s:.0} s past a third into the hold, to its end"
            ),
            SteadyBegan::Undrained { queued } => format!(
                "from two thirds into the hold to its end: the cold start's backlog had not drained by then ({queued} jobs still waiting for a worker), so these figures carry its tail; a longer --duration judges the service once warm"
            ),
        }
    }
}

/// Both phases of a run.
#[derive(Debug, Clone)]
pub struct Phases {
    /// Ramp-up and the hold until the steady state began.
    pub cold: PhaseData,
    /// The rest of the hold.
    pub steady: PhaseData,
    /// Why the steady state began where it did.
    pub began: SteadyBegan,
}

impl Phases {
    /// The phase the grade is taken from: the steady state when it has
    /// enough answers.
    pub fn graded(&self) -> Option<&PhaseData> {
        (self.steady.completed >= MIN_STEADY_ANSWERS).then_some(&self.steady)
    }
}

/// One phase's figures in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// Seconds from the first user.
    pub from_s: f64,
    /// Seconds from the first user.
    pub until_s: f64,
    /// Answers.
    pub requests: u64,
    /// End to end.
    pub e2e: Summary,
    /// Backend p95, ms.
    pub backend_p95_ms: Option<f64>,
    /// Cache hit rate, %.
    pub hit_rate_pct: Option<f64>,
    /// Error answers, % of answers.
    pub error_rate_pct: Option<f64>,
    /// The lines with the most misses, most first (at most [`LINES_SHOWN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misses_by_line: Vec<LineMisses>,
}

/// The report's section: both phases, and which one was graded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Ramp-up and the hold until the steady state began.
    pub cold_start: PhaseFigures,
    /// The rest of the hold.
    pub steady_state: PhaseFigures,
    /// Why the steady state began where it did (absent in reports from
    /// before it could begin later than a third in).
    #[serde(default)]
    pub steady_began: SteadyBegan,
    /// True when the grade is the steady state's.
    pub graded_steady: bool,
    /// How the hit rate still moved over the steady state: the least-squares
    /// slope of the per-second hit rates, percentage points per minute
    /// (None: fewer than ten seconds with cacheable answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_hit_rate_slope_pp_per_min: Option<f64>,
}

/// Below this many points per minute (either way) the hit rate counts as
/// settled: the steady state is one.
pub const SETTLED_PP_PER_MIN: f64 = 1.0;

/// The least-squares slope of `(t_s, hit %)` over `[from, until]`, in
/// percentage points per minute; None with fewer than ten points.
pub fn hit_rate_slope(timeline: &[super::Tick], from_s: f64, until_s: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = timeline
        .iter()
        .filter(|t| t.t_s >= from_s && t.t_s <= until_s)
        .filter_map(|t| Some((t.t_s, t.hit_rate_pct?)))
        .collect();
    if pts.len() < 10 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

impl PhaseReport {
    /// The section for `p`.
    pub fn build(p: &Phases, timeline: &[super::Tick]) -> PhaseReport {
        let steady_state = p.steady.figures();
        PhaseReport {
            cold_start: p.cold.figures(),
            steady_hit_rate_slope_pp_per_min: hit_rate_slope(
                timeline,
                steady_state.from_s,
                steady_state.until_s,
            ),
            steady_state,
            steady_began: p.began,
            graded_steady: p.graded().is_some(),
        }
    }
}

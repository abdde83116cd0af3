//! Server memory in the report: a level (the median of the last samples, so
//! one outlier does not move it), the growth over the hold that a soak is
//! judged on, and the RSS trend.

use super::ServerSample;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};

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

    pub(super) fn describe(&self) -> String {
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

pub(super) fn rss_growth(samples: &[ServerSample]) -> Option<f64> {
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
}

/// Fewer sessions than this at the end of the hold: the per-session slope is
/// lost in the server's noise and reported as not measured.
pub const MIN_SESSIONS_FOR_SLOPE: u64 = 100;

/// The server's memory per session as the least-squares slope of RSS over
/// the sessions it held, sample by sample up to the end of the hold, and the
/// fixed cost (the intercept) apart: (peak − before) / users divides the
/// server's fixed growth (code paged in, caches filling) by however few users
/// a run has (a 20-user run "used" ~150 KB a session). None when too few
/// sessions (or fewer than three distinct session counts) make the slope
/// meaningless.
pub fn per_session_slope(samples: &[ServerSample], until_s: f64) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s <= until_s && s.rss_bytes > 0)
        .map(|s| (s.sessions as f64, s.rss_bytes as f64))
        .collect();
    let most = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let mut distinct: Vec<u64> = points.iter().map(|p| p.0 as u64).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if most < MIN_SESSIONS_FOR_SLOPE as f64 || distinct.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let var: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if var <= 0.0 {
        return None;
    }
    let cov: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = cov / var;
    Some((slope.max(0.0), my - slope * mx))
}

#[cfg(test)]
mod slope_tests {
    use super::*;

    fn sample(t_s: f64, sessions: u64, rss: u64) -> ServerSample {
        ServerSample {
            t_s,
            sessions,
            rss_bytes: rss,
            ..ServerSample::default()
        }
    }

    #[test]
    fn the_slope_is_the_cost_per_session_and_the_fixed_cost_is_apart() {
        // 40 MB fixed, 30 KB per session, as users arrive; noise of ±200 KB.
        let samples: Vec<ServerSample> = (0..20)
            .map(|i| {
                let sessions = i * 50;
                let noise = if i % 2 == 0 { 200_000 } else { 0 };
                sample(i as f64, sessions, 40_000_000 + sessions * 30_000 + noise)
            })
            .collect();
        let (slope, fixed) = per_session_slope(&samples, 100.0).expect("measured");
        assert!((slope - 30_000.0).abs() < 1_000.0, "{slope}");
        assert!((fixed - 40_100_000.0).abs() < 500_000.0, "{fixed}");
        // Twenty users: not measured, whatever the RSS did.
        let few: Vec<ServerSample> = (0..20)
            .map(|i| sample(i as f64, i, 40_000_000 + i * 150_000))
            .collect();
        assert_eq!(per_session_slope(&few, 100.0), None);
    }
}

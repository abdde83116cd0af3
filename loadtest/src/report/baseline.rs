//! Regressions: this run's metrics against a previous report's (`--baseline`).

use super::Report;
use serde::{Deserialize, Serialize};
use voxterm::scorecard::Direction;

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

impl Report {
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
}

//! The CSV rendering: one row per scorecard target, for spreadsheets and CI.

use super::Report;
use std::fmt::Write as _;
use voxterm::scorecard::Direction;

impl Report {
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

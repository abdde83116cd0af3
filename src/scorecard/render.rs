//! The plain-text report: what a terminal, a CI log and a deploy hook show.

use super::{Category, MetricScore, Scorecard};
use std::fmt::Write as _;

/// Formats a value with a precision that suits its size.
pub(super) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

pub(super) fn line(m: &MetricScore) -> String {
    let target = format!("{} {} {}", sign(m), num(m.target), m.unit);
    match (m.measured, m.score) {
        (Some(v), Some(s)) => {
            let dev = m
                .deviation_pct
                .map(|d| format!("{d:+.1}%"))
                .unwrap_or_else(|| "n/a".to_owned());
            let mark = if m.met == Some(true) { "ok  " } else { "MISS" };
            format!(
                "  {mark} {:<42} {:>14} {:>12} {:>9} {:>6.1}",
                m.label,
                format!("{} {}", num(v), m.unit),
                target,
                dev,
                s
            )
        }
        _ => format!(
            "  --   {:<42} {:>14} {:>12} {:>9} {:>6}",
            m.label, "not measured", target, "", ""
        ),
    }
}

fn sign(m: &MetricScore) -> &'static str {
    match m.direction {
        super::Direction::LowerIsBetter => "<",
        super::Direction::HigherIsBetter => "≥",
    }
}

/// The report: every target with measured value, deviation and score, the
/// category scores, the overall score and grade, critical failures and advice.
pub fn render_text(card: &Scorecard) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", table_header());
    for c in Category::ALL {
        let _ = writeln!(out, "{}", c.as_str().to_uppercase());
        for m in card.metrics.iter().filter(|m| m.category == c) {
            let _ = writeln!(out, "{}", line(m));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", categories_line(&card.categories));
    let _ = writeln!(out, "overall: {:.1}   grade: {}", card.score, card.grade);
    let _ = writeln!(out, "scoring: {}", super::SCORING);
    for c in &card.critical_failures {
        let _ = writeln!(out, "CRITICAL FAILURE: {c} (grade forced to F)");
    }
    if !card.recommendations.is_empty() {
        let _ = writeln!(out, "\nrecommendations:");
        for r in &card.recommendations {
            let _ = writeln!(out, "  - {r}");
        }
    }
    out
}

/// The header of the metric table, aligned with [`line`] (the load tester's
/// report and the server's live card).
pub(crate) fn table_header() -> String {
    format!(
        "  {:<47} {:>14} {:>12} {:>9} {:>6}",
        "metric", "measured", "target", "deviation", "score"
    )
}

/// `categories: latency 45.0 · throughput not measured · …`, the same line in
/// the load tester's report and the server's live card.
pub(crate) fn categories_line(
    categories: &std::collections::BTreeMap<Category, Option<f64>>,
) -> String {
    let cats: Vec<String> = Category::ALL
        .iter()
        .map(|c| match categories.get(c).copied().flatten() {
            Some(s) => format!("{c} {s:.1}"),
            None => format!("{c} not measured"),
        })
        .collect();
    format!("categories: {}", cats.join(" · "))
}

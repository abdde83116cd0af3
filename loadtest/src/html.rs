//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no
//! network), so it can be attached to a CI run and opened offline.

use crate::hist;
use crate::report::Report;
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of several series over shared x values.
fn line_chart(title: &str, unit: &str, xs: &[f64], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, pad) = (640.0, 220.0, 40.0);
    let xmax = xs.iter().cloned().fold(0.0f64, f64::max).max(1e-9);
    let ymax = series
        .iter()
        .flat_map(|(_, _, ys)| ys.iter().cloned())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#,
        esc(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/><line x1="{pad}" y1="10" x2="{pad}" y2="{y0}" stroke="#888"/><text x="2" y="14" font-size="10">{ymax:.1} {u}</text><text x="2" y="{y0}" font-size="10">0</text><text x="{x1}" y="{yl}" font-size="10" text-anchor="end">{xmax:.0} s</text>"##,
        y0 = h - pad,
        x1 = w - 10.0,
        yl = h - pad + 14.0,
        u = esc(unit)
    );
    for (i, (name, color, ys)) in series.iter().enumerate() {
        let pts: Vec<String> = xs
            .iter()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    pad + x / xmax * (w - pad - 10.0),
                    (h - pad) - y / ymax * (h - pad - 10.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" font-size="11" fill="{color}">{}</text>"#,
            pts.join(" "),
            pad + 10.0 + i as f64 * 90.0,
            h - 6.0,
            esc(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn bar_chart(title: &str, bars: &[(String, Option<f64>)]) -> String {
    let (w, h) = (640.0, 30.0 * bars.len() as f64 + 30.0);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}">"#,
        esc(title)
    );
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 10.0 + i as f64 * 30.0;
        let (len, label, color) = match v {
            Some(v) => (
                v / 100.0 * 440.0,
                format!("{v:.1}"),
                if *v >= 90.0 {
                    "#2a7"
                } else if *v >= 70.0 {
                    "#c90"
                } else {
                    "#c33"
                },
            ),
            None => (0.0, "not measured".to_owned(), "#999"),
        };
        let _ = write!(
            svg,
            r#"<text x="0" y="{ty}" font-size="12">{}</text><rect x="110" y="{y}" width="{len:.1}" height="20" fill="{color}"/><text x="{lx:.1}" y="{ty}" font-size="12">{label}</text>"#,
            esc(name),
            ty = y + 15.0,
            lx = 115.0 + len,
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>voxterm loadtest — {name}</title><style>
body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.grade{{font-size:3em;font-weight:bold}}.miss{{color:#c33}}.ok{{color:#2a7}}figure{{margin:1em 0}}figcaption{{font-weight:bold}}
</style></head><body><h1>voxterm loadtest — {name}</h1><p class="grade">{grade} <small>{score:.1}</small></p>"#,
        name = esc(&r.scenario.name),
        grade = r.grade,
        score = r.score
    );
    for c in &r.critical_failures {
        let _ = write!(out, r#"<p class="miss"><b>CRITICAL:</b> {}</p>"#, esc(c));
    }
    let _ = write!(
        out,
        "<p>{} users · {} requests · {} errors · {} lost · {}</p>",
        r.scenario.users,
        r.requests,
        r.errors,
        r.lost_responses,
        esc(&r.url)
    );
    out.push_str("<table><tr><th>metric</th><th>measured</th><th>target</th><th>deviation</th><th>score</th></tr>");
    for m in &r.metrics {
        let sign = match m.direction {
            voxterm::scorecard::Direction::LowerIsBetter => "&lt;",
            voxterm::scorecard::Direction::HigherIsBetter => "≥",
        };
        let (measured, dev, score, class) = match (m.measured, m.score) {
            (Some(v), Some(s)) => (
                format!("{v:.3} {}", esc(&m.unit)),
                m.deviation_pct
                    .map(|d| format!("{d:+.1}%"))
                    .unwrap_or_default(),
                format!("{s:.1}"),
                if m.met == Some(true) { "ok" } else { "miss" },
            ),
            _ => ("not measured".into(), String::new(), String::new(), ""),
        };
        let _ = write!(
            out,
            r#"<tr class="{class}"><td>{}</td><td>{measured}</td><td>{sign} {} {}</td><td>{dev}</td><td>{score}</td></tr>"#,
            esc(&m.label),
            m.target,
            esc(&m.unit)
        );
    }
    out.push_str("</table>");
    let cats: Vec<(String, Option<f64>)> = r
        .categories
        .iter()
        .map(|(c, v)| (c.to_string(), *v))
        .collect();
    out.push_str(&bar_chart("category scores", &cats));
    let xs: Vec<f64> = r.timeline.iter().map(|t| t.t_s).collect();
    out.push_str(&line_chart(
        "latency percentiles over time (from due time)",
        "ms",
        &xs,
        &[
            ("p50", "#27a", r.timeline.iter().map(|t| t.p50_ms).collect()),
            ("p95", "#c90", r.timeline.iter().map(|t| t.p95_ms).collect()),
            ("p99", "#c33", r.timeline.iter().map(|t| t.p99_ms).collect()),
        ],
    ));
    out.push_str(&line_chart(
        "throughput over time",
        "cmd/s",
        &xs,
        &[(
            "answered/s",
            "#2a7",
            r.timeline.iter().map(|t| t.completed_per_s).collect(),
        )],
    ));
    if let Ok(h) = hist::decode(&r.histograms.e2e) {
        // Latency distribution as a percentile curve (x: percentile, y: ms).
        let qs: Vec<f64> = (0..=100)
            .map(|i| 100.0 - 100.0 / 10f64.powf(i as f64 / 25.0))
            .collect();
        let ys: Vec<f64> = qs
            .iter()
            .map(|q| h.value_at_quantile(q / 100.0) as f64 / 1000.0)
            .collect();
        let xs: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        out.push_str(&line_chart(
            "latency distribution (x: 0 → p99.99, log-spaced percentiles)",
            "ms",
            &xs,
            &[("end-to-end", "#27a", ys)],
        ));
    }
    if !r.recommendations.is_empty() {
        out.push_str("<h2>recommendations</h2><ul>");
        for rec in &r.recommendations {
            let _ = write!(out, "<li>{}</li>", esc(rec));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>details</h2><pre>");
    out.push_str(&esc(&r.text()));
    out.push_str("</pre></body></html>\n");
    out
}

//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no
//! network), so it can be attached to a CI run and opened offline.
//!
//! Charts have labelled axes with ticks at round values; the latency
//! distribution is drawn on a log-odds percentile axis (as HdrHistogram plots
//! it: p50, p90, p99, p99.9 equally spaced), with the latency from the due
//! time, from the actual send and the send lag on one chart; timelines mark
//! where the steady state begins. Values carry the precision they have.

use crate::hist::{self, Hist};
use crate::report::Report;
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `v` with three significant digits and no trailing zeros (154 KB, 0.0412 %,
/// 12.3 ms), never "154.000".
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Round tick values covering `[lo, hi]` (steps of 1, 2 or 5 × 10^k).
fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// A named, coloured series of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// One axis: its range and its ticks with labels.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
    title: String,
}

impl Axis {
    /// A linear axis from `lo` to a round value at or above `hi`.
    fn linear(lo: f64, hi: f64, title: &str) -> Axis {
        let t = ticks(lo, hi.max(lo + 1e-9), 5);
        let hi = t.last().copied().unwrap_or(hi).max(hi);
        Axis {
            lo,
            hi,
            ticks: t.into_iter().map(|v| (v, sig3(v))).collect(),
            title: title.to_owned(),
        }
    }

    fn frac(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo).max(1e-12)).clamp(0.0, 1.0)
    }
}

/// Legend entries in a row of a chart (160 px each across its 700).
const LEGEND_COLUMNS: usize = 4;
/// Height of a further row of the legend.
const LEGEND_ROW: f64 = 16.0;

/// A chart of several series of (x, y) points; `marks` are vertical lines
/// with a label (the steady state's start).
fn chart(title: &str, x: &Axis, y: &Axis, series: &[Series<'_>], marks: &[(f64, &str)]) -> String {
    let (w, h) = (700.0, 260.0);
    let (left, right, top, bottom) = (58.0, 34.0, 12.0, 52.0);
    // The legend: LEGEND_COLUMNS entries a row, a row more below per extra.
    let rows = series.len().div_ceil(LEGEND_COLUMNS).max(1);
    let full_h = h + (rows - 1) as f64 * LEGEND_ROW;
    let px = |v: f64| left + x.frac(v) * (w - left - right);
    let py = |v: f64| (h - bottom) - y.frac(v) * (h - top - bottom);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {full_h}" width="{w}" height="{full_h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    for (v, label) in &y.ticks {
        let yy = py(*v);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end">{}</text>"##,
            esc(label),
            x2 = w - right,
            tx = left - 4.0,
            ty = yy + 3.0
        );
    }
    for (v, label) in &x.ticks {
        let xx = px(*v);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{y1}" stroke="#888"/><text x="{xx:.1}" y="{ty}" font-size="10" text-anchor="middle">{}</text>"##,
            esc(label),
            y0 = h - bottom,
            y1 = h - bottom + 4.0,
            ty = h - bottom + 15.0
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{y0}" x2="{x2}" y2="{y0}" stroke="#666"/><line x1="{left}" y1="{top}" x2="{left}" y2="{y0}" stroke="#666"/><text x="{cx}" y="{xt}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{cy}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {cy})">{}</text>"##,
        esc(&x.title),
        esc(&y.title),
        y0 = h - bottom,
        x2 = w - right,
        cx = (left + w - right) / 2.0,
        xt = h - bottom + 30.0,
        cy = (top + h - bottom) / 2.0
    );
    // A mark outside the axis (a timeline cut short) is not drawn: clamped
    // to the edge it would mark the wrong second.
    for (v, label) in marks.iter().filter(|(v, _)| (x.lo..=x.hi).contains(v)) {
        let xx = px(*v);
        // A mark in the plot's right quarter is labelled on its left, so
        // that the label stays inside the chart.
        let (tx, anchor) = if x.frac(*v) > 0.75 {
            (xx - 3.0, "end")
        } else {
            (xx + 3.0, "start")
        };
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{y0}" stroke="#555" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" font-size="10" text-anchor="{anchor}">{}</text>"##,
            esc(label),
            y0 = h - bottom,
            ty = top + 10.0
        );
    }
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let pts: Vec<String> = pts
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/><rect x="{lx}" y="{ly}" width="10" height="3" fill="{color}"/><text x="{tx}" y="{ty}" font-size="11">{}</text>"#,
            pts.join(" "),
            esc(name),
            lx = left + (i % LEGEND_COLUMNS) as f64 * 160.0,
            ly = h - 10.0 + (i / LEGEND_COLUMNS) as f64 * LEGEND_ROW,
            tx = left + 14.0 + (i % LEGEND_COLUMNS) as f64 * 160.0,
            ty = h - 6.0 + (i / LEGEND_COLUMNS) as f64 * LEGEND_ROW
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The percentile curve of `h` on the log-odds axis: x = −log10(1 − q).
fn percentile_curve(h: &Hist) -> Vec<(f64, f64)> {
    (0..=160)
        .map(|i| {
            let x = i as f64 / 40.0; // 0 ..= 4 (p99.99)
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

fn bar_chart(title: &str, bars: &[(String, Option<f64>)]) -> String {
    let (w, h) = (700.0, 30.0 * bars.len() as f64 + 30.0);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}">"#,
        esc(title)
    );
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 10.0 + i as f64 * 30.0;
        let (len, label, color) = match v {
            Some(v) => (
                v / 100.0 * 440.0,
                format!("{v:.1} / 100"),
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
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_unix_ms);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>voxterm loadtest — {name}</title><style>
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.grade{{font-size:3em;font-weight:bold;margin:0}}.miss{{color:#c33}}.ok{{color:#2a7}}figure{{margin:1.2em 0}}figcaption{{font-weight:bold}}
.meta{{color:#555}}.formula{{color:#555;font-size:.9em;max-width:760px}}
</style></head><body><h1>voxterm loadtest — {name}</h1>
<p class="meta">{date} · loadtest {version}{commit} · {url}<br>{users} users · ramp-up {ramp} s · hold {hold} s · time scale {scale}× · shape {shape:?}</p>
<p class="grade">{grade} <small>{score:.1}</small></p><p class="formula">{formula}</p>"#,
        name = esc(&r.scenario.name),
        date = humantime::format_rfc3339_seconds(started),
        version = esc(&r.tool_version),
        commit = r
            .commit
            .as_deref()
            .map(|c| format!(" · commit {}", esc(c)))
            .unwrap_or_default(),
        url = esc(&r.url),
        users = r.scenario.users,
        ramp = sig3(r.scenario.ramp_up.as_secs_f64()),
        hold = sig3(r.scenario.duration.as_secs_f64()),
        scale = r.scenario.time_scale,
        shape = r.scenario.shape,
        grade = r.grade,
        score = r.score,
        formula = esc(voxterm::scorecard::SCORING),
    );
    for c in &r.critical_failures {
        let _ = write!(out, r#"<p class="miss"><b>CRITICAL:</b> {}</p>"#, esc(c));
    }
    if let Some(note) = r.timing.bottleneck_note() {
        let _ = write!(out, r#"<p class="miss"><b>NOTE:</b> {}</p>"#, esc(&note));
    }
    let _ = write!(
        out,
        "<p>{} requests · {} errors · {} lost</p>",
        r.requests, r.errors, r.lost_responses,
    );
    out.push_str("<table><tr><th>metric</th><th>measured</th><th>target</th><th>deviation</th><th>score</th></tr>");
    for m in &r.metrics {
        let sign = match m.direction {
            voxterm::scorecard::Direction::LowerIsBetter => "&lt;",
            voxterm::scorecard::Direction::HigherIsBetter => "≥",
        };
        let (measured, dev, score, class) = match (m.measured, m.score) {
            (Some(v), Some(s)) => (
                format!("{} {}", sig3(v), esc(&m.unit)),
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
            sig3(m.target),
            esc(&m.unit)
        );
    }
    out.push_str("</table>");
    if let Some(p) = &r.phases {
        out.push_str("<h2>cold start and steady state</h2><table><tr><th>phase</th><th>s</th><th>answers</th><th>e2e p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>backend p95 ms</th><th>hit rate %</th><th>errors %</th></tr>");
        for (name, f, graded) in [
            ("cold start", &p.cold_start, !p.graded_steady),
            ("steady state", &p.steady_state, p.graded_steady),
        ] {
            let opt = |v: Option<f64>| v.map_or("n/a".to_owned(), sig3);
            let _ = write!(
                out,
                "<tr><td>{name}{}</td><td>{}–{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if graded { " (graded)" } else { "" },
                sig3(f.from_s),
                sig3(f.until_s),
                f.requests,
                sig3(f.e2e.p50_ms),
                sig3(f.e2e.p95_ms),
                sig3(f.e2e.p99_ms),
                opt(f.backend_p95_ms),
                opt(f.hit_rate_pct),
                opt(f.error_rate_pct),
            );
        }
        out.push_str("</table>");
    }
    let cats: Vec<(String, Option<f64>)> = r
        .categories
        .iter()
        .map(|(c, v)| (c.to_string(), *v))
        .collect();
    out.push_str(&bar_chart("category scores", &cats));

    if r.timeline.is_empty() {
        out.push_str("<p>No per-second timeline in this report (a merged report keeps none).</p>");
    } else {
        // Timelines, in seconds from the first user, with the steady state
        // marked, and the capacity search where one follows the hold (it
        // overloads the server on purpose: the spike at the end is its top step).
        let mut marks: Vec<(f64, &str)> = r
            .phases
            .as_ref()
            .map(|p| vec![(p.steady_state.from_s, "steady state")])
            .unwrap_or_default();
        if r.scenario.capacity {
            let hold_end = (r.scenario.ramp_up + r.scenario.duration).as_secs_f64();
            marks.push((hold_end, "capacity search"));
        }
        let t_lo = r.timeline.first().map_or(0.0, |t| t.t_s);
        let t_hi = r.timeline.last().map_or(1.0, |t| t.t_s);
        let x = Axis::linear(t_lo.floor(), t_hi, "seconds from the first user");
        let series = |f: fn(&crate::report::Tick) -> f64| -> Vec<(f64, f64)> {
            r.timeline.iter().map(|t| (t.t_s, f(t))).collect()
        };
        let lat_max = r.timeline.iter().map(|t| t.p99_ms).fold(0.0, f64::max);
        out.push_str(&chart(
            "latency percentiles per second (from the due time)",
            &x,
            &Axis::linear(0.0, lat_max, "ms"),
            &[
                ("p50", "#27a", series(|t| t.p50_ms)),
                ("p95", "#c90", series(|t| t.p95_ms)),
                ("p99", "#c33", series(|t| t.p99_ms)),
            ],
            &marks,
        ));
        let cps_max = r
            .timeline
            .iter()
            .map(|t| t.completed_per_s)
            .fold(0.0, f64::max);
        out.push_str(&chart(
            "answers per second",
            &x,
            &Axis::linear(0.0, cps_max, "answers/s"),
            &[("answered/s", "#2a7", series(|t| t.completed_per_s))],
            &marks,
        ));
    }

    // The distribution on a log-odds percentile axis.
    let decode = |s: &str| hist::decode(s).ok().filter(|h| !h.is_empty());
    let curves: Vec<Series<'_>> = [
        ("from the due time", "#27a", decode(&r.histograms.e2e)),
        (
            "from the actual send",
            "#2a7",
            decode(&r.timing.histograms.from_send),
        ),
        ("send lag", "#c33", decode(&r.timing.histograms.send_lag)),
        (
            "floor (one connection)",
            "#888",
            decode(&r.timing.histograms.floor),
        ),
        (
            "floor at the users' pace",
            "#b80",
            decode(&r.timing.histograms.paced_floor),
        ),
        (
            "plain client beside the load",
            "#73c",
            decode(&r.timing.histograms.probe),
        ),
    ]
    .into_iter()
    .filter_map(|(n, c, h)| h.map(|h| (n, c, percentile_curve(&h))))
    .collect();
    if !curves.is_empty() {
        let y_max = curves
            .iter()
            .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
            .fold(0.0, f64::max);
        let x = Axis {
            lo: 0.0,
            hi: 4.0,
            ticks: [
                (0.0, "p0"),
                (0.301, "p50"),
                (1.0, "p90"),
                (2.0, "p99"),
                (3.0, "p99.9"),
                (4.0, "p99.99"),
            ]
            .into_iter()
            .map(|(v, l)| (v, l.to_owned()))
            .collect(),
            title: "percentile (log-odds scale)".to_owned(),
        };
        out.push_str(&chart(
            "latency distribution",
            &x,
            &Axis::linear(0.0, y_max, "ms"),
            &curves,
            &[],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_the_precision_they_have() {
        assert_eq!(sig3(154.0), "154");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(0.04123), "0.0412");
        assert_eq!(sig3(1500.0), "1500");
        assert_eq!(sig3(100.0), "100");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(ticks(0.0, 7.0, 5), vec![0.0, 2.0, 4.0, 6.0]);
        let a = Axis::linear(0.0, 7.0, "ms");
        assert!(a.hi >= 7.0);
        assert_eq!(a.ticks.first().map(|t| t.1.as_str()), Some("0"));
    }

    #[test]
    fn a_mark_near_the_right_edge_is_labelled_on_its_left() {
        let (x, y) = (Axis::linear(0.0, 100.0, "s"), Axis::linear(0.0, 1.0, "ms"));
        let series: Vec<Series<'_>> = vec![("p50", "#000", vec![(0.0, 0.0)])];
        let svg = chart(
            "t",
            &x,
            &y,
            &series,
            &[(30.0, "steady state"), (90.0, "capacity search")],
        );
        assert!(
            svg.contains(r#"text-anchor="start">steady state<"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"text-anchor="end">capacity search<"#),
            "{svg}"
        );
        let cut = chart("t", &x, &y, &series, &[(130.0, "capacity search")]);
        assert!(!cut.contains("capacity search<"), "{cut}");
    }

    #[test]
    fn every_legend_entry_is_inside_its_chart() {
        let (x, y) = (Axis::linear(0.0, 4.0, "x"), Axis::linear(0.0, 1.0, "ms"));
        let names = ["one", "two", "three", "four", "five", "six"];
        let series: Vec<Series<'_>> = names
            .iter()
            .map(|n| (*n, "#000", vec![(0.0, 0.0), (1.0, 1.0)]))
            .collect();
        let svg = chart("t", &x, &y, &series, &[]);
        // Six entries: two rows, the chart 16 px taller.
        assert!(svg.contains(r#"viewBox="0 0 700 276""#), "{svg}");
        for n in names {
            let at = svg.find(&format!(">{n}</text>")).expect("labelled");
            let tag = &svg[svg[..at].rfind("<text").expect("a text")..at];
            let num = |attr: &str| -> f64 {
                let v = tag.split(attr).nth(1).expect("attribute");
                v[..v.find('"').expect("quoted")].parse().expect("a number")
            };
            assert!(
                num(" x=\"") + 100.0 <= 700.0,
                "{n} starts past the edge: {tag}"
            );
            assert!(num(" y=\"") <= 276.0, "{n} is below the chart: {tag}");
        }
    }
}

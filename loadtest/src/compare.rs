//! `compare`: one scenario twice, the server's optimizations off then on, and
//! the difference in every metric.

use crate::args::{Comp, CompareArgs, Enc, Only, RunArgs};
use crate::execute::execute;
use crate::{report, serve};
use std::process::ExitCode;
use std::time::Duration;
use voxterm::scorecard::Grade;

pub(crate) async fn compare(c: CompareArgs) -> anyhow::Result<ExitCode> {
    let base = RunArgs {
        scenario: c.scenario,
        url: Vec::new(),
        engine: Vec::new(),
        no_reattach: false,
        no_realtime: false,
        server_args: Vec::new(),
        users: c.users,
        duration: c.duration,
        ramp_up: None,
        time_scale: c.time_scale,
        users_per_connection: 1,
        profiles: None,
        targets: None,
        json: None,
        html: None,
        csv: None,
        baseline: None,
        regression_threshold: 10.0,
        fail_on_regression: false,
        min_grade: Grade::F,
        encoding: Enc::Bincode,
        compression: Comp::Deflate,
        grace: Duration::from_secs(15),
        quiet: false,
        with_redis: false,
        abort_on_fail: None,
    };
    let mut base = base;
    base.server_args = c.server_args.clone();
    let mut off = base.clone();
    let flags: &[&str] = match c.only {
        None => {
            off.encoding = Enc::Json;
            off.compression = Comp::None;
            &["--no-cache", "--no-predict", "--no-batch"]
        }
        Some(Only::Predict) => &["--no-predict"],
        Some(Only::Batch) => &["--no-batch"],
        Some(Only::Cache) => &["--no-cache"],
    };
    let mut skipped = Vec::new();
    for &flag in flags {
        if serve::supports(flag) {
            off.server_args.push(flag.to_owned());
        } else {
            skipped.push(flag);
        }
    }
    println!(
        "compare: OFF = server {:?}, {:?} encoding, {:?} compression; ON = server {:?}, {:?}, {:?}",
        off.server_args,
        off.encoding,
        off.compression,
        base.server_args,
        base.encoding,
        base.compression
    );
    for s in &skipped {
        println!("compare: skipped {s}: this server build has no such switch");
    }
    eprintln!("compare: run 1/2 (optimizations off)");
    let r_off = execute(&off).await?;
    eprintln!("compare: run 2/2 (optimizations on)");
    let r_on = execute(&base).await?;
    println!(
        "\n{:<34} {:>14} {:>14} {:>12}",
        "metric", "off", "on", "improvement"
    );
    for m in &r_on.metrics {
        let Some(o) = r_off.metrics.iter().find(|x| x.id == m.id) else {
            continue;
        };
        let (Some(a), Some(b)) = (o.measured, m.measured) else {
            println!("{:<34} {:>14} {:>14} {:>12}", m.id, "n/m", "n/m", "");
            continue;
        };
        let imp = if a.abs() < 1e-12 {
            "n/a".to_owned()
        } else {
            let pct = match m.direction {
                voxterm::scorecard::Direction::LowerIsBetter => (a - b) / a * 100.0,
                voxterm::scorecard::Direction::HigherIsBetter => (b - a) / a * 100.0,
            };
            format!("{pct:+.1}%")
        };
        println!("{:<34} {:>14.4} {:>14.4} {:>12}", m.id, a, b, imp);
    }
    let bytes = |r: &report::Report| r.raw.client_bytes_total as f64 / r.raw.offered.max(1) as f64;
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>12}",
        "client bytes per request",
        bytes(&r_off),
        bytes(&r_on),
        format!(
            "{:+.1}%",
            (bytes(&r_off) - bytes(&r_on)) / bytes(&r_off).max(1e-9) * 100.0
        )
    );
    for (name, f) in extra_rows() {
        let (a, b) = (f(&r_off), f(&r_on));
        let fmt = |v: Option<f64>| v.map_or("n/m".to_owned(), |v| format!("{v:.3}"));
        println!("{:<34} {:>14} {:>14}", name, fmt(a), fmt(b));
    }
    println!(
        "{:<34} {:>14} {:>14}",
        "grade (score)",
        format!("{} ({:.1})", r_off.grade, r_off.score),
        format!("{} ({:.1})", r_on.grade, r_on.score)
    );
    Ok(ExitCode::SUCCESS)
}

/// A figure of a report that is not a scorecard metric.
type Extra = fn(&report::Report) -> Option<f64>;

/// Rows `compare` prints besides the scorecard metrics: what prediction and
/// coalescing change.
fn extra_rows() -> Vec<(&'static str, Extra)> {
    vec![
        ("cache hit rate (client-side)", |r| {
            (r.raw.cacheable > 0).then(|| r.raw.cache_hits as f64 / r.raw.cacheable as f64)
        }),
        ("p95 fs-read requests, ms", |r| {
            r.latency.get("class:fs-read").map(|l| l.p95_ms)
        }),
        ("prediction top-1 accuracy", |r| {
            r.raw.server_ratio("predict_top1", "predict_checked")
        }),
        ("prediction top-3 accuracy", |r| {
            r.raw.server_ratio("predict_top3", "predict_checked")
        }),
        ("requests served by prefetch", |r| {
            r.served_from.get("prefetch").map(|&n| n as f64)
        }),
        ("prefetches run", |r| {
            r.raw
                .server_counters
                .get("prefetch_started")
                .map(|&n| n as f64)
        }),
        ("completed requests per second", |r| {
            (r.raw.wall_s > 0.0).then(|| r.raw.completed as f64 / r.raw.wall_s)
        }),
        ("server write syscalls per request", |r| {
            r.raw.server_ratio("syscalls_write", "requests")
        }),
    ]
}

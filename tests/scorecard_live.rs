//! `GET /scorecard` (the live scorecard over a rolling window) and the
//! Prometheus rules in `deploy/prometheus/`, against a real server.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use voxterm_protocol::ServedFrom;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/voxterm-rules.yml"
);

/// The `expr:` strings of a rules file (one-line and `|` / `>` blocks).
fn exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let rest = rest.trim();
            if matches!(rest, "|" | "|-" | ">" | ">-") {
                let mut block = String::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push_str(next.trim());
                    block.push('\n');
                    i += 1;
                }
                out.push(block);
            } else {
                out.push(rest.to_owned());
            }
        }
        i += 1;
    }
    out
}

/// Metric names in a PromQL expression: identifiers starting with
/// `voxterm_`, not recording-rule names (those contain a colon).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("voxterm_") && !w.contains(':'))
        .map(str::to_owned)
        .collect()
}

/// The sample names of a Prometheus text exposition (histograms' `_bucket`,
/// `_count` and `_sum` as printed).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_expression_parser_sees_what_the_rules_use() {
    let yaml = "- record: a:b\n  expr: sum(rate(voxterm_x_total[5m])) / instance:voxterm_y:rate5m\n- alert: A\n  expr: |\n    histogram_quantile(0.95, voxterm_h_bucket)\n      > 1\n  for: 5m\n";
    let e = exprs(yaml);
    assert_eq!(e.len(), 2, "{e:?}");
    let names: BTreeSet<String> = e.iter().flat_map(|x| metric_names(x)).collect();
    let want: BTreeSet<String> = ["voxterm_x_total", "voxterm_h_bucket"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_use_is_in_metrics() {
    let server = TestServer::start("score-rules").await;
    let mut c = server.client("t1").await;
    // A miss, then a hit (the cache-hit family gets its first sample), and a
    // refused request (the errors family gets its first sample).
    for _ in 0..2 {
        exit_of(&run(&mut c, 0, "echo hello").await);
    }
    let refused = run_t(&mut c, 0, "echo hello", u32::MAX).await;
    assert!(
        refused.error.is_some(),
        "a timeout above the cap is refused"
    );

    let yaml = std::fs::read_to_string(RULES).expect("rules file");
    let used: BTreeSet<String> = exprs(&yaml).iter().flat_map(|e| metric_names(e)).collect();
    // Guard against a parser that finds nothing (the test would pass vacuously).
    for must in [
        "voxterm_backend_latency_seconds_bucket",
        "voxterm_errors_total",
        "voxterm_cache_hits_total",
        "voxterm_process_cpu_seconds",
    ] {
        assert!(
            used.contains(must),
            "{must} not found in the rules' exprs: {used:?}"
        );
    }
    let (status, _, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    let exported = sample_names(&body);
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the rules use {missing:?}, which /metrics does not export; it has {exported:?}"
    );
}

async fn card(addr: std::net::SocketAddr, query: &str) -> serde_json::Value {
    let (status, head, body) = http_get(addr, &format!("/scorecard{query}")).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn line<'a>(card: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    card["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|l| l["id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {card}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scorecard_moves_with_traffic() {
    let server = TestServer::start("score-moves").await;

    // Nothing has run: no traffic, no grade, nothing passed.
    let idle = card(server.addr, "").await;
    assert_eq!(idle["schema"], "voxterm-scorecard-live/1");
    assert_eq!(idle["window"]["requested_s"], 60.0, "{idle}");
    assert_eq!(idle["traffic"]["requests"], 0, "{idle}");
    assert_eq!(idle["graded"], false, "{idle}");
    assert!(idle["grade"].is_null() && idle["score"].is_null(), "{idle}");
    assert!(idle["backend_latency_ms"].is_null(), "{idle}");
    for l in idle["metrics"].as_array().expect("metrics") {
        assert_eq!(l["status"], "not_measured", "{l}");
    }
    assert_eq!(
        line(&idle, "e2e_p95_ms")["note"]
            .as_str()
            .map(|n| n.starts_with("not measured by the server")),
        Some(true),
        "{idle}"
    );

    // 20 cached commands: one miss, then hits.
    let mut c = server.client("t1").await;
    let mut hits = 0;
    for _ in 0..20 {
        let done = run(&mut c, 0, "echo hello").await;
        if exit_of(&done).served_from != ServedFrom::Exec {
            hits += 1;
        }
    }
    assert!(hits >= 18, "{hits} of 20 from cache");
    let warm = card(server.addr, "?window=30s").await;
    assert_eq!(warm["window"]["requested_s"], 30.0);
    assert_eq!(warm["traffic"]["requests"], 20, "{warm}");
    assert_eq!(warm["traffic"]["cacheable"], 20, "{warm}");
    assert_eq!(warm["traffic"]["cache_hits"], hits, "{warm}");
    assert_eq!(warm["graded"], true, "{warm}");
    assert!(warm["grade"].is_string(), "{warm}");
    let hit = line(&warm, "cache_hit_rate_pct");
    let rate = hit["measured"].as_f64().expect("hit rate measured");
    assert!((rate - f64::from(hits) * 5.0).abs() < 1e-9, "{hit}");
    assert_eq!(hit["status"], "pass", "{hit}");
    assert_eq!(line(&warm, "error_rate_pct")["measured"], 0.0);
    let p95_warm = line(&warm, "backend_p95_ms")["measured"]
        .as_f64()
        .unwrap_or_else(|| panic!("p95 measured: {warm}"));
    assert!(p95_warm < 50.0, "{warm}");
    // Too few sessions and users to judge the fixed costs: said, not graded.
    for id in ["memory_per_session_kb", "cpu_per_1000_users_pct"] {
        let l = line(&warm, id);
        assert_eq!(l["status"], "not_measured", "{l}");
        assert!(
            l["note"].as_str().is_some_and(|n| n.contains("fewer than")),
            "{l}"
        );
    }

    // 20 slow uncached commands: the window's p95 follows them.
    for i in 0..20 {
        let done = run(&mut c, 0, &format!("sleep 0.{:03}", 60 + i)).await;
        assert_eq!(exit_of(&done).code, Some(0));
    }
    let slow = card(server.addr, "?window=30s").await;
    assert_eq!(slow["traffic"]["requests"], 40, "{slow}");
    let p95_slow = line(&slow, "backend_p95_ms")["measured"]
        .as_f64()
        .expect("p95");
    assert!(p95_slow >= 60.0, "p95 {p95_warm} → {p95_slow}: {slow}");
    assert!(
        slow["backend_latency_ms"]["p50"].as_f64().is_some(),
        "{slow}"
    );
    assert!(
        slow["traffic"]["requests_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{slow}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_traffic_leaves_the_window() {
    let server = TestServer::start("score-slides").await;
    let mut c = server.client("t1").await;
    for _ in 0..5 {
        exit_of(&run(&mut c, 0, "echo hello").await);
    }
    assert_eq!(
        card(server.addr, "?window=10s").await["traffic"]["requests"],
        5
    );
    // Two slots and more later, the 10 s window has turned over; the 60 s one has not.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let short = card(server.addr, "?window=10s").await;
    assert_eq!(short["traffic"]["requests"], 0, "{short}");
    assert_eq!(short["graded"], false, "{short}");
    assert!(short["grade"].is_null(), "{short}");
    assert!(
        short["window"]["span_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s <= 10.0),
        "{short}"
    );
    let long = card(server.addr, "?window=60s").await;
    assert_eq!(long["traffic"]["requests"], 5, "{long}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_bad_windows_and_hosts() {
    let server = TestServer::start("score-text").await;
    let mut c = server.client("t1").await;
    exit_of(&run(&mut c, 0, "echo hello").await);

    let (status, head, body) = http_get(server.addr, "/scorecard?format=text").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    for want in [
        "voxterm live scorecard",
        "backend p95",
        "not measured by the server",
        "grade:",
        "LATENCY",
    ] {
        assert!(body.contains(want), "missing {want:?} in\n{body}");
    }
    let addr = server.addr;
    let (status, head, body) = http_raw(
        addr,
        &format!(
            "GET /scorecard HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert!(body.starts_with("voxterm live scorecard"), "{body}");

    for bad in ["5s", "1h", "soon", "", "99999999999999999999999999"] {
        let (status, _, body) = http_get(addr, &format!("/scorecard?window={bad}")).await;
        assert_eq!(status, 400, "window={bad}: {body}");
        assert!(
            body.contains("allowed: 10s to 300s"),
            "window={bad}: {body}"
        );
    }
    let (status, _, body) = http_get(addr, "/scorecard?format=xml").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("json or text"), "{body}");

    // The same Host rule as /metrics.
    let (status, _, body) = http_raw(
        addr,
        "GET /scorecard HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("/scorecard"), "{body}");
}

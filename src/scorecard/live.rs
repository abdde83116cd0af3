//! The live scorecard of `GET /scorecard`: the server grades itself over a
//! rolling window of its own figures (`metrics::WindowFigures`), with the
//! same targets and scoring as the load tester ([`Scorecard::grade`]).
//!
//! The server sees only part of the card. What it cannot see (end-to-end
//! latency, served-on-time, client-counted network) and what its figures would
//! misstate (its offered load is not its capacity; a few users cannot carry its
//! fixed memory and CPU) is reported as not measured, with the reason, and
//! left out of the grade rather than guessed. A window without requests is
//! not graded at all: an idle server has not passed anything.

use super::render::{line, num};
use super::{ids, Category, Grade, Measurements, MetricScore, Scorecard, Targets};
use crate::metrics::{
    Metrics, Sampled, WindowFigures, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW, WINDOW_SLOT,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Below this many sessions RSS / sessions is mostly the server's fixed cost
/// (tens of MB against a 50 KB target), so memory per session is not graded.
pub const MIN_SESSIONS_FOR_MEMORY: u64 = 1000;
/// Below this many connections (mean over the window) CPU × 1000 / users
/// multiplies the server's idle CPU into a fake miss, so it is not graded.
pub const MIN_USERS_FOR_CPU: f64 = 100.0;
/// The JSON's schema name.
pub const SCHEMA: &str = "voxterm-scorecard-live/1";

/// A `/scorecard` query the server cannot answer (HTTP 400; the message
/// names the allowed values).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// `window` is not a duration, or outside the allowed range.
    #[error("bad window {given:?}: {reason}; allowed: {} to {} (a duration such as 30s, 2m or 90, in seconds), default {}", secs(MIN_WINDOW), secs(MAX_WINDOW), secs(DEFAULT_WINDOW))]
    Window {
        /// The value as given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `format` is neither `json` nor `text`.
    #[error("bad format {0:?}: json or text")]
    Format(String),
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (the default).
    Json,
    /// A plain-text table (`Accept: text/plain` or `?format=text`).
    Text,
}

/// A parsed `/scorecard` query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The window asked for (default [`DEFAULT_WINDOW`]).
    pub window: Duration,
    /// The format asked for in the query, which wins over `Accept`.
    pub format: Option<Format>,
}

/// Parses `window=…&format=…` (unknown keys are ignored, as `/healthz` ignores
/// its query).
pub fn parse_query(query: &str) -> Result<Query, QueryError> {
    let mut q = Query {
        window: DEFAULT_WINDOW,
        format: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "window" => q.window = parse_window(value)?,
            "format" => {
                q.format = Some(match value {
                    "json" => Format::Json,
                    "text" => Format::Text,
                    other => return Err(QueryError::Format(other.to_owned())),
                })
            }
            _ => {}
        }
    }
    Ok(q)
}

/// A window: a humantime duration (`30s`, `2m`, `1m30s`) or whole seconds,
/// within [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub fn parse_window(value: &str) -> Result<Duration, QueryError> {
    let bad = |reason: String| QueryError::Window {
        given: value.to_owned(),
        reason,
    };
    let d = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let s: u64 = value
            .parse()
            .map_err(|_| bad("too many seconds".to_owned()))?;
        Duration::from_secs(s)
    } else {
        humantime::parse_duration(value).map_err(|e| bad(e.to_string()))?
    };
    if d < MIN_WINDOW || d > MAX_WINDOW {
        return Err(bad("out of range".to_owned()));
    }
    Ok(d)
}

/// Whether a target was met over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured and met.
    Pass,
    /// Measured and missed.
    Fail,
    /// Not measured by the server, or not meaningful now (see the note).
    NotMeasured,
}

/// One target's line: the scorecard's own line, its status and how the value
/// was obtained (or why there is none).
#[derive(Debug, Clone, Serialize)]
pub struct LiveMetric {
    /// The line as the load tester's scorecard has it.
    #[serde(flatten)]
    pub line: MetricScore,
    /// Pass, fail or not measured.
    pub status: Status,
    /// "<" or "≥".
    pub sign: &'static str,
    /// How the value was computed, or why it is not measured.
    pub note: String,
}

/// The window the figures cover.
#[derive(Debug, Clone, Serialize)]
pub struct WindowInfo {
    /// Asked for.
    pub requested_s: f64,
    /// Really covered (whole slots, so up to one slot shorter; less after start).
    pub span_s: f64,
    /// Length of one slot of the ring.
    pub slot_s: f64,
    /// Shortest window accepted.
    pub min_s: f64,
    /// Longest window accepted.
    pub max_s: f64,
}

/// What the server saw over the window, graded or not.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    /// Requests that ended (`Exit`, or `Error` after acceptance).
    pub requests: u64,
    /// `requests` / span.
    pub requests_per_second: f64,
    /// Every `Error` frame (refusals before acceptance included).
    pub errors: u64,
    /// Requests the cache could answer.
    pub cacheable: u64,
    /// Cache hits, any tier.
    pub cache_hits: u64,
    /// Open connections now.
    pub connections: u64,
    /// Open connections averaged over the window's slots.
    pub connections_mean: f64,
    /// Live sessions now.
    pub sessions: u64,
    /// Process CPU time used in the span (user + system, children not included).
    pub cpu_seconds: f64,
    /// Resident set now.
    pub rss_bytes: u64,
    /// Resident set when the server started, before any connection.
    pub rss_at_start_bytes: u64,
}

/// Backend latency percentiles over the window, ms.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile (the graded one).
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// The live scorecard.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCard {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The window.
    pub window: WindowInfo,
    /// Raw figures of the window.
    pub traffic: Traffic,
    /// Backend latency; `None` without requests.
    pub backend_latency_ms: Option<Percentiles>,
    /// Every target, in the scorecard's order.
    pub metrics: Vec<LiveMetric>,
    /// Mean score of each category's measured targets.
    pub categories: BTreeMap<Category, Option<f64>>,
    /// False when the window had no requests: nothing to grade.
    pub graded: bool,
    /// Overall score of the measured targets; `None` when not graded.
    pub score: Option<f64>,
    /// Grade; `None` when not graded.
    pub grade: Option<Grade>,
    /// What the grade covers, or why there is none.
    pub note: String,
    /// Advice for each missed target.
    pub recommendations: Vec<String>,
}

/// The live card of the server's last `window`.
pub fn live_card(metrics: &Metrics, sampled: Sampled, window: Duration) -> LiveCard {
    let figures = metrics.window(window);
    card_from(
        &figures,
        sampled.sessions,
        crate::metrics::resident_bytes(),
        metrics.rss_at_start(),
        &Targets::default(),
    )
}

const MB: f64 = 1024.0 * 1024.0;

/// The card of given figures (no I/O: what the tests drive).
pub fn card_from(
    f: &WindowFigures,
    sessions: u64,
    rss: u64,
    rss_at_start: u64,
    targets: &Targets,
) -> LiveCard {
    let span = f.span.as_secs_f64();
    let requests = f.requests();
    let h = &f.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let latency = (requests > 0).then(|| Percentiles {
        p50: ms(0.50),
        p95: ms(0.95),
        p99: ms(0.99),
        max: h.max() as f64 / 1000.0,
    });
    let rps = if span > 0.0 {
        requests as f64 / span
    } else {
        0.0
    };
    let cpu_s = f.delta.cpu.as_secs_f64();

    let mut m = Measurements::new();
    let mut notes: BTreeMap<&str, String> = BTreeMap::new();
    let mut note = |id: &'static str, text: String| {
        notes.insert(id, text);
    };
    note(ids::E2E_P95_MS, "not measured by the server: end-to-end latency includes the clients and the network; the load tester measures it".into());
    for id in ids::BROWSER {
        note(
            id,
            "not measured by the server: a real browser measures it (`loadtest browser`)".into(),
        );
    }
    note(
        ids::SERVED_ON_TIME_PCT,
        "not measured by the server: it needs the clients' due times; the load tester measures it"
            .into(),
    );
    note(ids::NETWORK_PER_100_SESSIONS_MBPS, "not measured by the server: judged on bytes counted by the clients (see voxterm_bytes_in_total and voxterm_bytes_out_total for payload bytes)".into());
    note(ids::COMMANDS_PER_SECOND, format!(
        "not graded: the server sees its offered load ({} requests/s over the window), not its capacity; the load tester's capacity search measures that",
        num(rps)
    ));
    note(ids::CONCURRENT_USERS, format!(
        "not graded: {} connections now; the target is how many users the server can hold, which the load tester measures",
        f.connections_now
    ));
    match &latency {
        Some(p) => {
            m.insert(ids::BACKEND_P95_MS.into(), p.p95);
            note(
                ids::BACKEND_P95_MS,
                format!(
                    "p95 of {requests} requests over {} s (frame in to terminal frame out)",
                    num(span)
                ),
            );
        }
        None => note(ids::BACKEND_P95_MS, "no requests in the window".into()),
    }
    if f.delta.cacheable > 0 {
        m.insert(
            ids::CACHE_HIT_RATE_PCT.into(),
            f.delta.hits as f64 / f.delta.cacheable as f64 * 100.0,
        );
        note(
            ids::CACHE_HIT_RATE_PCT,
            format!(
                "{} hits / {} cacheable requests",
                f.delta.hits, f.delta.cacheable
            ),
        );
    } else {
        note(
            ids::CACHE_HIT_RATE_PCT,
            "no cacheable requests in the window".into(),
        );
    }
    // Every Error frame over every answer: requests that ended (Exit or Error)
    // plus Error frames that refused a frame before it became a request.
    let refused_early = f.delta.errors.saturating_sub(f.delta.request_errors);
    let answers = requests + refused_early;
    if answers > 0 {
        m.insert(
            ids::ERROR_RATE_PCT.into(),
            f.delta.errors as f64 / answers as f64 * 100.0,
        );
        note(
            ids::ERROR_RATE_PCT,
            format!(
                "{} Error frames / {answers} answers (Exit or Error)",
                f.delta.errors
            ),
        );
    } else {
        note(ids::ERROR_RATE_PCT, "no requests in the window".into());
    }
    if sessions >= MIN_SESSIONS_FOR_MEMORY {
        m.insert(
            ids::MEMORY_PER_SESSION_KB.into(),
            rss as f64 / sessions as f64 / 1024.0,
        );
        note(ids::MEMORY_PER_SESSION_KB, format!(
            "RSS / sessions = {} MB / {sessions}, the server's fixed cost included (RSS at start {} MB): an upper bound",
            num(rss as f64 / MB), num(rss_at_start as f64 / MB)
        ));
    } else {
        note(ids::MEMORY_PER_SESSION_KB, format!(
            "not measured: {sessions} sessions, fewer than {MIN_SESSIONS_FOR_MEMORY}; RSS / sessions would be mostly the server's fixed cost (RSS {} MB, {} MB at start)",
            num(rss as f64 / MB), num(rss_at_start as f64 / MB)
        ));
    }
    let users = f.connections_mean;
    let cpu_pct = if span > 0.0 {
        cpu_s / span * 100.0
    } else {
        0.0
    };
    if users >= MIN_USERS_FOR_CPU && span >= 1.0 {
        m.insert(ids::CPU_PER_1000_USERS_PCT.into(), cpu_pct / users * 1000.0);
        note(
            ids::CPU_PER_1000_USERS_PCT,
            format!(
                "process CPU {} % of a core over {} s / {} connections (mean) × 1000",
                num(cpu_pct),
                num(span),
                num(users)
            ),
        );
    } else {
        note(ids::CPU_PER_1000_USERS_PCT, format!(
            "not measured: {} connections on average, fewer than {MIN_USERS_FOR_CPU}; × 1000 / users would multiply the server's fixed CPU ({} % of a core now)",
            num(users), num(cpu_pct)
        ));
    }

    let card = Scorecard::grade(targets, &m, Vec::new());
    let graded = requests > 0;
    let metrics = card
        .metrics
        .iter()
        .map(|line| LiveMetric {
            status: match line.met {
                Some(true) => Status::Pass,
                Some(false) => Status::Fail,
                None => Status::NotMeasured,
            },
            sign: match line.direction {
                super::Direction::LowerIsBetter => "<",
                super::Direction::HigherIsBetter => "≥",
            },
            note: notes.get(line.id.as_str()).cloned().unwrap_or_default(),
            line: line.clone(),
        })
        .collect();
    let note = if graded {
        "graded on the targets the server measured over the window; the others are left out of the means".to_owned()
    } else {
        "not graded: no requests in the window".to_owned()
    };
    LiveCard {
        schema: SCHEMA,
        window: WindowInfo {
            requested_s: f.requested.as_secs_f64(),
            span_s: span,
            slot_s: WINDOW_SLOT.as_secs_f64(),
            min_s: MIN_WINDOW.as_secs_f64(),
            max_s: MAX_WINDOW.as_secs_f64(),
        },
        traffic: Traffic {
            requests,
            requests_per_second: rps,
            errors: f.delta.errors,
            cacheable: f.delta.cacheable,
            cache_hits: f.delta.hits,
            connections: f.connections_now,
            connections_mean: users,
            sessions,
            cpu_seconds: cpu_s,
            rss_bytes: rss,
            rss_at_start_bytes: rss_at_start,
        },
        backend_latency_ms: latency,
        metrics,
        categories: card.categories,
        graded,
        score: graded.then_some(card.score),
        grade: graded.then_some(card.grade),
        note,
        recommendations: card.recommendations,
    }
}

/// The plain-text table of a live card.
pub fn render_live_text(card: &LiveCard) -> String {
    let mut out = String::new();
    let w = &card.window;
    let t = &card.traffic;
    let _ = writeln!(
        out,
        "voxterm live scorecard: the last {} s (window {} s, slots of {} s)",
        num(w.span_s),
        num(w.requested_s),
        num(w.slot_s)
    );
    let _ = writeln!(
        out,
        "traffic: {} requests ({}/s), {} errors, {} cacheable, {} hits; {} connections, {} sessions; CPU {} s; RSS {} MB",
        t.requests,
        num(t.requests_per_second),
        t.errors,
        t.cacheable,
        t.cache_hits,
        t.connections,
        t.sessions,
        num(t.cpu_seconds),
        num(t.rss_bytes as f64 / MB)
    );
    match &card.backend_latency_ms {
        Some(p) => {
            let _ = writeln!(
                out,
                "backend latency: p50 {} ms · p95 {} ms · p99 {} ms · max {} ms",
                num(p.p50),
                num(p.p95),
                num(p.p99),
                num(p.max)
            );
        }
        None => {
            let _ = writeln!(out, "backend latency: no requests in the window");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", super::render::table_header());
    for c in Category::ALL {
        let _ = writeln!(out, "{}", c.as_str().to_uppercase());
        for m in card.metrics.iter().filter(|m| m.line.category == c) {
            let _ = writeln!(out, "{}", line(&m.line));
            let _ = writeln!(out, "         {}", m.note);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", super::render::categories_line(&card.categories));
    match (card.score, card.grade) {
        (Some(s), Some(g)) => {
            let _ = writeln!(out, "overall: {s:.1}   grade: {g}   ({})", card.note);
        }
        _ => {
            let _ = writeln!(out, "{}", card.note);
        }
    }
    if !card.recommendations.is_empty() {
        let _ = writeln!(out, "\nrecommendations:");
        for r in &card.recommendations {
            let _ = writeln!(out, "  - {r}");
        }
    }
    out
}

/// An HTTP answer: status, content type, body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Code and reason.
    pub status: (u16, &'static str),
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// The whole `GET /scorecard`: the query (after `?`, may be empty), the
/// `Accept` header, and the server's metrics.
pub fn respond(
    query: &str,
    accept: Option<&[u8]>,
    metrics: &Metrics,
    sampled: Sampled,
) -> Response {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(error = %e, "/scorecard: bad query");
            return Response {
                status: (400, "Bad Request"),
                content_type: "text/plain; charset=utf-8",
                body: format!("{e}\n"),
            };
        }
    };
    let format = q.format.unwrap_or_else(|| format_from_accept(accept));
    let card = live_card(metrics, sampled, q.window);
    match format {
        Format::Text => Response {
            status: (200, "OK"),
            content_type: "text/plain; charset=utf-8",
            body: render_live_text(&card),
        },
        Format::Json => Response {
            status: (200, "OK"),
            content_type: "application/json",
            // Serializing plain numbers and strings cannot fail.
            body: serde_json::to_string(&card).unwrap_or_default(),
        },
    }
}

/// Text when `Accept` names `text/plain` and not `application/json`; JSON otherwise.
fn format_from_accept(accept: Option<&[u8]>) -> Format {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return Format::Json;
    };
    let names = |mime: &str| {
        accept.split(',').any(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(mime)
        })
    };
    if names("text/plain") && !names("application/json") {
        Format::Text
    } else {
        Format::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::Instant;
    use voxterm_protocol::{ErrorCode, ServedFrom};

    #[test]
    fn windows_parse_within_bounds_and_say_the_range_otherwise() {
        assert_eq!(parse_window("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_window("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_window("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_query("").unwrap().window, DEFAULT_WINDOW);
        let q = parse_query("format=text&window=1m30s&x=y").unwrap();
        assert_eq!(
            (q.window, q.format),
            (Duration::from_secs(90), Some(Format::Text))
        );
        for bad in [
            "5s",
            "1h",
            "abc",
            "",
            "-3s",
            "99999999999999999999999",
            "30%20s",
        ] {
            let e = parse_query(&format!("window={bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("allowed: 10s to 300s"), "{bad}: {e}");
        }
        assert!(parse_query("format=xml").is_err());
    }

    #[test]
    fn accept_chooses_text_only_when_asked() {
        assert_eq!(format_from_accept(None), Format::Json);
        assert_eq!(format_from_accept(Some(b"text/plain")), Format::Text);
        assert_eq!(
            format_from_accept(Some(b"text/plain;q=0.9, */*")),
            Format::Text
        );
        assert_eq!(
            format_from_accept(Some(b"application/json, text/plain")),
            Format::Json
        );
        assert_eq!(format_from_accept(Some(b"*/*")), Format::Json);
    }

    #[test]
    fn an_idle_server_is_not_graded() {
        let m = Metrics::new();
        let card = live_card(&m, Sampled::default(), DEFAULT_WINDOW);
        assert!(!card.graded);
        assert_eq!((card.score, card.grade), (None, None));
        assert_eq!(card.traffic.requests, 0);
        assert!(card.backend_latency_ms.is_none());
        assert!(
            card.metrics.iter().all(|l| l.status == Status::NotMeasured),
            "{:?}",
            card.metrics
        );
        assert!(render_live_text(&card).contains("not graded: no requests in the window"));
    }

    #[test]
    fn traffic_is_graded_and_fixed_costs_are_not() {
        let m = Metrics::new();
        for i in 0..200u64 {
            m.request_started();
            m.cache.cacheable();
            if i % 10 != 0 {
                m.cache.hit(crate::metrics::Tier::L1);
            }
            m.request_done(ServedFrom::L1, 50);
        }
        m.request_started();
        m.request_failed(ErrorCode::SpawnFailed, 20_000);
        m.error(ErrorCode::Malformed);
        let card = live_card(
            &m,
            Sampled {
                sessions: 3,
                ..Default::default()
            },
            DEFAULT_WINDOW,
        );
        assert!(card.graded);
        let get = |id: &str| card.metrics.iter().find(|l| l.line.id == id).unwrap();
        assert_eq!(card.traffic.requests, 201);
        assert_eq!(card.traffic.cacheable, 200);
        assert_eq!(card.traffic.cache_hits, 180);
        let hit = get(ids::CACHE_HIT_RATE_PCT);
        assert_eq!(hit.line.measured, Some(90.0));
        assert_eq!(hit.status, Status::Pass);
        // 2 Error frames over 201 requests + 1 refused frame.
        let err = get(ids::ERROR_RATE_PCT);
        assert!((err.line.measured.unwrap() - 2.0 / 202.0 * 100.0).abs() < 1e-9);
        assert_eq!(err.status, Status::Fail);
        let p95 = get(ids::BACKEND_P95_MS);
        assert_eq!(p95.status, Status::Pass);
        assert!(p95.line.measured.unwrap() < 0.06, "{:?}", p95.line);
        for id in [
            ids::E2E_P95_MS,
            ids::MEMORY_PER_SESSION_KB,
            ids::CPU_PER_1000_USERS_PCT,
            ids::COMMANDS_PER_SECOND,
        ]
        .into_iter()
        .chain(ids::BROWSER)
        {
            let l = get(id);
            assert_eq!(l.status, Status::NotMeasured, "{id}");
            assert!(l.note.starts_with("not "), "{id}: {}", l.note);
        }
        assert!(card.grade.is_some());
        let json: serde_json::Value = serde_json::to_value(&card).unwrap();
        assert_eq!(json["metrics"][1]["id"], ids::BACKEND_P95_MS);
        assert_eq!(json["metrics"][1]["status"], "pass");
    }

    #[test]
    fn memory_and_cpu_are_graded_with_enough_users() {
        let m = Metrics::new();
        for _ in 0..150 {
            m.connection_opened();
        }
        m.request_started();
        m.request_done(ServedFrom::Exec, 1000);
        let t0 = Instant::now();
        m.rotate_window(t0);
        std::thread::sleep(Duration::from_millis(1100));
        let f = m.window(DEFAULT_WINDOW);
        let card = card_from(&f, 2000, 60 << 20, 20 << 20, &Targets::default());
        let mem = card
            .metrics
            .iter()
            .find(|l| l.line.id == ids::MEMORY_PER_SESSION_KB)
            .unwrap();
        assert!((mem.line.measured.unwrap() - 30.72).abs() < 1e-9); // 60 MiB / 2000 / 1024
        assert_eq!(mem.status, Status::Pass);
        let cpu = card
            .metrics
            .iter()
            .find(|l| l.line.id == ids::CPU_PER_1000_USERS_PCT)
            .unwrap();
        assert!(cpu.line.measured.is_some(), "{}", cpu.note);
        // Connections averaged over the snapshots: 0 when the metrics were
        // made, 150 when the slot turned, 150 now.
        assert!(
            cpu.note.contains("/ 100.0 connections (mean)"),
            "{}",
            cpu.note
        );
    }
}

//! `loadtest --scenario smoke` against a server it starts itself: the CI check that
//! every request ends with a terminal frame.

use std::path::Path;
use std::process::{Command, ExitStatus};

/// What one `loadtest` run left: its exit status, its output, and its JSON
/// report (None when it wrote none).
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    report: Option<serde_json::Value>,
}

/// Runs `loadtest ARGS --json DIR/report.json` to its end.
fn loadtest(dir: &Path, args: &[&str]) -> Run {
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run loadtest");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: std::fs::read(&json)
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("valid json")),
    }
}

#[test]
fn smoke_scenario_loses_no_responses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("smoke.html");
    let html_arg = html.to_str().expect("a UTF-8 path");
    let Run {
        status,
        stdout,
        stderr,
        report,
    } = loadtest(
        dir.path(),
        &[
            "--scenario",
            "smoke",
            "--quiet",
            "--min-grade",
            "F",
            "--html",
            html_arg,
        ],
    );
    assert!(status.success(), "loadtest failed\n{stdout}\n{stderr}");
    let report = report.expect("json written");
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    assert!(report["requests"].as_u64().unwrap_or(0) > 50, "{stdout}");
    assert!(
        report["critical_failures"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{stdout}"
    );
    assert!(["A", "B", "C", "D", "F"].contains(&report["grade"].as_str().unwrap_or("")));
    assert!(!report["histograms"]["e2e"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    // The server reports its live heap (jemalloc, the library's allocator).
    let samples = report["server_samples"].as_array().expect("samples");
    assert!(
        samples
            .iter()
            .all(|x| x["heap_allocated_bytes"].as_u64().is_some_and(|b| b > 0)),
        "{samples:?}"
    );
    // The timing section: every answer had its send stamped, a floor was
    // measured, and both phases were reported.
    assert!(
        report["timing"]["send_lag"]["count"].as_u64().unwrap_or(0) > 50,
        "{stdout}"
    );
    assert!(
        report["timing"]["floor"]["count"].as_u64().unwrap_or(0) >= 200,
        "{stdout}"
    );
    // The plain client beside the load answered from L1 all along, and the
    // users' pure lines were compared with it.
    assert!(
        report["timing"]["probe"]["count"].as_u64().unwrap_or(0) >= 20,
        "{stdout}"
    );
    assert!(
        report["timing"]["probe_spacing_us"]
            .as_u64()
            .is_some_and(|us| (20_000..=100_000).contains(&us)),
        "{stdout}"
    );
    assert!(stdout.contains("plain client beside the load"), "{stdout}");
    // With the server's own span of its answers: what of a gap is the server's.
    assert_eq!(
        report["timing"]["probe_backend"]["count"].as_u64(),
        report["timing"]["probe"]["count"].as_u64(),
        "{stdout}"
    );
    assert!(
        report["phases"]["steady_state"]["requests"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stdout}"
    );
    assert!(
        stdout.contains("steady state") && stdout.contains("floor"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<svg") && !page.contains("http://") && !page.contains("https://"));
    assert!(stdout.contains("grade:"), "{stdout}");
}

/// `chaos --with-redis`: the load tester starts a real `redis-server` for the
/// server it starts, kills and restarts it mid-run; the users lose nothing, the
/// server reconnects by itself, the memory figures are reported, and no Redis
/// is left running afterwards.
#[test]
fn chaos_with_redis_restarts_it_and_loses_no_responses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Run {
        status,
        stdout,
        stderr,
        report,
    } = loadtest(
        dir.path(),
        &[
            "--scenario",
            "chaos",
            "--with-redis",
            "--users",
            "40",
            "--ramp-up",
            "2s",
            "--duration",
            "14s",
            "--quiet",
            "--min-grade",
            "F",
        ],
    );
    // The exit status may be 1: the memory criterion is judged, not assumed.
    let report = report
        .unwrap_or_else(|| panic!("no report: is redis-server installed?\n{stdout}\n{stderr}"));
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    let chaos = &report["chaos"];
    assert_eq!(chaos["redis_restarts"], 1, "{stdout}\n{stderr}");
    assert_eq!(chaos["redis_reconnected"], true, "{stdout}\n{stderr}");
    assert!(
        chaos["redis_down_ms"].as_u64().is_some_and(|ms| ms >= 3000),
        "{chaos}"
    );
    let before = chaos["rss_pre_storm_bytes"].as_u64().unwrap_or(0);
    let peak = chaos["rss_peak_bytes"].as_u64().unwrap_or(0);
    let after = chaos["rss_post_storm_bytes"].as_u64().unwrap_or(0);
    assert!(
        before > 0 && peak >= before && peak >= after && after > 0,
        "{chaos}"
    );
    // The faults take the middle third of the 14 s hold, after the 2 s ramp-up.
    let window = chaos["storm_window_s"].as_array().expect("storm window");
    let (from, until) = (
        window[0].as_f64().unwrap_or(0.0),
        window[1].as_f64().unwrap_or(0.0),
    );
    assert!(
        (from - 6.7).abs() < 0.5 && (until - 11.3).abs() < 0.5,
        "{chaos}"
    );
    assert!(
        chaos["rss_idle_before_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{chaos}"
    );
    assert!(
        chaos["rss_idle_after_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{chaos}"
    );
    assert_eq!(
        chaos["connections_after"], 1,
        "only the monitor is left: {chaos}"
    );
    assert!(
        stdout.contains("Redis killed and restarted 1 time"),
        "{stdout}"
    );
    assert!(
        stdout.contains("server RSS with the users connected: before the storm"),
        "{stdout}"
    );
    let steady = report["notes"].as_array().is_some_and(|n| {
        n.iter().any(|n| {
            n.as_str()
                .is_some_and(|n| n.contains("judged at steady state"))
        })
    });
    assert!(
        steady,
        "the started server's caches are bounded for a memory-judged run"
    );
    let memory_failed = report["critical_failures"].as_array().is_some_and(|a| {
        a.iter()
            .any(|f| f.as_str().is_some_and(|f| f.contains("memory")))
    });
    let over = chaos["rss_post_vs_pre_pct"].as_f64().unwrap_or(0.0) > 10.0;
    assert_eq!(memory_failed, over, "{chaos}");
    assert_eq!(
        status.success(),
        report["critical_failures"] == serde_json::json!([])
    );

    // The Redis it started is gone.
    let note = report["notes"]
        .as_array()
        .and_then(|n| n.iter().find_map(|n| n.as_str()?.split("redis://").nth(1)))
        .expect("the report names the Redis it started");
    let addr = note
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches(',');
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "redis-server at {addr} still running after the load tester exited"
    );
}

/// `--abort-on-fail`: a target no server can meet (p95 under 1 µs) over a
/// 1 s window stops the run in its steady state, with exit status 4 and a
/// partial report that says why, before the run's planned end.
#[test]
fn abort_on_fail_stops_at_the_first_window_that_misses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = dir.path().join("targets.toml");
    std::fs::write(&targets, "[metrics.e2e_p95_ms]\ntarget = 0.001\n").expect("targets");
    let started = std::time::Instant::now();
    let targets_arg = targets.to_str().expect("a UTF-8 path");
    let Run {
        status,
        stdout,
        stderr,
        report,
    } = loadtest(
        dir.path(),
        &[
            "--scenario",
            "smoke",
            "--quiet",
            "--duration",
            "30s",
            "--abort-on-fail=1s",
            "--targets",
            targets_arg,
        ],
    );
    assert_eq!(status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains("aborting at t="), "{stderr}");
    let report = report.expect("json written");
    let why = report["aborted"].as_str().unwrap_or("");
    assert!(why.contains("p95"), "{why}");
    assert_eq!(report["grade"], "F");
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    // A 30 s hold: stopped at its first steady window (10 s in), long before
    // its end: the timeline (one tick a second) stops early.
    let ticks = report["timeline"].as_array().map_or(0, Vec::len);
    assert!(ticks < 25, "{ticks} ticks: {stdout}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{stdout}"
    );
}

/// The failover scenario, CI-sized: three engines behind HAProxy (the shipped
/// configuration) on one Redis, the second killed with SIGKILL a third into
/// the hold. Every request ends (at worst with `RequestLost`), no other error,
/// the dead engine's users reconnect and find their sessions as they were,
/// and the report has a line per engine with exactly one dead.
#[test]
fn failover_kills_an_engine_and_its_users_carry_on_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Run {
        status,
        stdout,
        stderr,
        report,
    } = loadtest(
        dir.path(),
        &[
            "--scenario",
            "failover",
            "--users",
            "45",
            "--ramp-up",
            "2s",
            "--duration",
            "12s",
            "--quiet",
            "--min-grade",
            "F",
        ],
    );
    let report = report.unwrap_or_else(|| {
        panic!("no report: are redis-server and haproxy installed?\n{stdout}\n{stderr}")
    });
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    let f = &report["failover"];
    assert!(
        f["killed_at_s"]
            .as_f64()
            .is_some_and(|t| (t - 6.0).abs() < 1.0),
        "killed a third into the hold: {f}"
    );
    assert!(f["reconnects"].as_u64().is_some_and(|n| n > 0), "{f}");
    assert_eq!(f["other_errors"], 0, "{stdout}");
    assert_eq!(f["lost"], 0, "{f}");
    assert_eq!(f["sessions_changed"], 0, "{f}");
    assert!(f["sessions_intact"].as_u64().is_some_and(|n| n > 0), "{f}");
    let engines = report["engines"].as_array().expect("a line per engine");
    assert_eq!(engines.len(), 3, "{stdout}");
    let dead: Vec<_> = engines
        .iter()
        .filter(|e| e["alive_at_end"] == false)
        .collect();
    assert_eq!(dead.len(), 1, "{stdout}");
    assert_eq!(dead[0]["url"], f["killed"], "{stdout}");
    assert!(
        engines
            .iter()
            .all(|e| e["requests"].as_u64().is_some_and(|n| n > 0)),
        "the load spread over every engine: {stdout}"
    );
    assert!(stdout.contains("failover: "), "{stdout}");
}

//! The report's tests across its parts: a report built from synthetic run
//! data, its JSON round trip, merge, baseline comparison and renderings.

use super::*;
use voxterm::scorecard::ids;

fn data(seed: u64, n: u64) -> RunData {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut e2e = hist::new_hist();
    let mut backend = hist::new_hist();
    for _ in 0..n {
        hist::record(&mut e2e, rng.u64(500..80_000));
        hist::record(&mut backend, rng.u64(50..20_000));
    }
    RunData {
        started_unix_ms: 1_700_000_000_000 + seed,
        raw: Raw {
            users: 100,
            offered: n,
            completed: n,
            cacheable: n / 2,
            cache_hits: n / 3,
            on_time: n,
            users_connected: 100,
            users_held: 100,
            hold_s: 10.0,
            client_bytes_hold: 1_000_000,
            client_bytes_total: 2_000_000,
            server_rss_before: Some(10 << 20),
            server_rss_peak: Some(12 << 20),
            server_cpu_hold_s: Some(0.5),
            server_alive: true,
            wall_s: 12.0,
            cores: 2,
            time_scale: 1.0,
            ..Raw::default()
        },
        per_profile: vec![("light".into(), e2e.clone())],
        per_class: [("fs-read".to_owned(), e2e.clone())].into_iter().collect(),
        per_served: [("exec".to_owned(), e2e.clone())].into_iter().collect(),
        timing: TimingData::default(),
        phases: None,
        aborted: None,
        e2e,
        backend: Some(backend),
        served: [("exec".to_owned(), n)].into_iter().collect(),
        errors_by_code: BTreeMap::new(),
        timeline: vec![Tick {
            t_s: 1.0,
            users: 100,
            completed_per_s: 50.0,
            ..Tick::default()
        }],
        samples: Vec::new(),
        capacity: Vec::new(),
        chaos: None,
        engines: Vec::new(),
        failover: None,
    }
}

fn report(seed: u64, n: u64) -> Report {
    let sc = Scenario::named("quick").unwrap();
    Report::build(&sc, "ws://x/ws", &Targets::default(), data(seed, n))
}

#[test]
fn json_schema_round_trips() {
    let r = report(1, 2000);
    let text = serde_json::to_string_pretty(&r).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "schema",
        "grade",
        "score",
        "categories",
        "metrics",
        "targets",
        "scenario",
        "requests",
        "errors",
        "lost_responses",
        "histograms",
    ] {
        assert!(v.get(key).is_some(), "missing top-level key {key}");
    }
    assert!(v["categories"]["latency"].as_f64().is_some());
    let back: Report = serde_json::from_str(&text).unwrap();
    // Equal up to JSON's float parsing (serde_json may be 1 ulp off without
    // `float_roundtrip`): the re-serialized document is the same document.
    assert!(
        serde_json::to_value(&back).unwrap() == v,
        "round trip changed the report"
    );
    assert_eq!(back.histograms, r.histograms);
    assert_eq!(
        (back.grade, back.requests, back.lost_responses),
        (r.grade, r.requests, r.lost_responses)
    );
}

#[test]
fn merge_recomputes_from_merged_histograms() {
    let (a, b) = (report(1, 3000), report(2, 5000));
    let m = Report::merge(&[a.clone(), b.clone()]).unwrap();
    let mut union = hist::decode(&a.histograms.e2e).unwrap();
    union.add(hist::decode(&b.histograms.e2e).unwrap()).unwrap();
    assert_eq!(hist::decode(&m.histograms.e2e).unwrap(), union);
    let p95 = m.metrics.iter().find(|x| x.id == ids::E2E_P95_MS).unwrap();
    assert_eq!(
        p95.measured,
        Some(union.value_at_quantile(0.95) as f64 / 1000.0)
    );
    assert_eq!(m.requests, 8000);
    assert_eq!(m.raw.users_held, 200);
}

#[test]
fn baseline_flags_regressions_beyond_threshold() {
    let base = report(1, 2000);
    let mut cur = base.clone();
    for m in &mut cur.metrics {
        if m.id == ids::E2E_P95_MS {
            m.measured = m.measured.map(|v| v * 1.25);
        }
        if m.id == ids::BACKEND_P95_MS {
            m.measured = m.measured.map(|v| v * 1.05);
        }
    }
    cur.compare_baseline(&base, 10.0);
    assert_eq!(cur.regressions.len(), 1, "{:?}", cur.regressions);
    assert_eq!(cur.regressions[0].metric, ids::E2E_P95_MS);
    assert!((cur.regressions[0].worse_pct - 25.0).abs() < 1e-6);
}

#[test]
fn lost_responses_force_f() {
    let sc = Scenario::named("quick").unwrap();
    let mut d = data(3, 1000);
    d.raw.lost = 2;
    let r = Report::build(&sc, "ws://x/ws", &Targets::default(), d);
    assert_eq!(r.grade, Grade::F);
    assert_eq!(r.lost_responses, 2);
    assert!(r.text().contains("CRITICAL FAILURE"));
    assert!(crate::html::render(&r).contains("CRITICAL"));
    assert!(r.csv().lines().count() > 10);
}

#[test]
fn the_steady_state_hit_rate_slope_says_whether_caches_settled() {
    let tick = |t: f64, hit: Option<f64>| Tick {
        t_s: t,
        hit_rate_pct: hit,
        ..Tick::default()
    };
    // Rising half a point a second: 30 points a minute.
    let rising: Vec<Tick> = (0..60)
        .map(|i| tick(i as f64, Some(50.0 + 0.5 * i as f64)))
        .collect();
    let s = super::phases::hit_rate_slope(&rising, 10.0, 50.0).expect("enough points");
    assert!((s - 30.0).abs() < 1e-6, "{s}");
    // Flat (noisy around 80 %): settled.
    let flat: Vec<Tick> = (0..60)
        .map(|i| tick(i as f64, Some(80.0 + if i % 2 == 0 { 0.3 } else { -0.3 })))
        .collect();
    let s = super::phases::hit_rate_slope(&flat, 0.0, 59.0).expect("enough points");
    assert!(s.abs() < super::phases::SETTLED_PP_PER_MIN, "{s}");
    // Seconds without cacheable answers are left out; too few points: None.
    let sparse: Vec<Tick> = (0..60)
        .map(|i| tick(i as f64, (i % 10 == 0).then_some(70.0)))
        .collect();
    assert_eq!(super::phases::hit_rate_slope(&sparse, 0.0, 59.0), None);
}

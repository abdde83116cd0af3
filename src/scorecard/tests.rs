use super::*;

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn lower_is_better_follows_design_formula() {
    let f = Formula::default();
    let d = Direction::LowerIsBetter;
    assert!(approx(f.score(d, 100.0, 100.0), 90.0)); // exactly on target
    assert!(approx(f.score(d, 100.0, 50.0), 100.0)); // 50% better
    assert!(approx(f.score(d, 100.0, 10.0), 100.0)); // capped at 100
    assert!(approx(f.score(d, 100.0, 75.0), 95.0)); // 25% better
    assert!(approx(f.score(d, 100.0, 110.0), 80.0)); // 10% missed
    assert!(approx(f.score(d, 100.0, 150.0), 40.0)); // 50% missed
    assert!(approx(f.score(d, 100.0, 300.0), 0.0)); // floored at 0
    assert!(approx(f.score(d, 65.0, 71.5), 80.0));
}

#[test]
fn higher_is_better_is_mirrored() {
    let f = Formula::default();
    let d = Direction::HigherIsBetter;
    assert!(approx(f.score(d, 10_000.0, 10_000.0), 90.0));
    assert!(approx(f.score(d, 10_000.0, 15_000.0), 100.0));
    assert!(approx(f.score(d, 10_000.0, 12_500.0), 95.0));
    assert!(approx(f.score(d, 10_000.0, 9_000.0), 80.0));
    assert!(approx(f.score(d, 10_000.0, 5_000.0), 40.0));
    assert!(approx(f.score(d, 10_000.0, 0.0), 0.0));
}

#[test]
fn pass_fail_formula() {
    let f = Formula::PassFail;
    assert!(approx(f.score(Direction::LowerIsBetter, 0.1, 0.1), 100.0));
    assert!(approx(f.score(Direction::LowerIsBetter, 0.1, 0.11), 0.0));
}

#[test]
fn grades_at_the_edges() {
    assert_eq!(Grade::from_score(90.0), Grade::A);
    assert_eq!(Grade::from_score(89.99), Grade::B);
    assert_eq!(Grade::from_score(80.0), Grade::B);
    assert_eq!(Grade::from_score(70.0), Grade::C);
    assert_eq!(Grade::from_score(60.0), Grade::D);
    assert_eq!(Grade::from_score(59.9), Grade::F);
    assert_eq!("b".parse::<Grade>(), Ok(Grade::B));
    assert!(Grade::A > Grade::B && Grade::D > Grade::F);
}

#[test]
fn design_sample_overall_is_91_3() {
    let cats: BTreeMap<Category, Option<f64>> = [
        (Category::Latency, Some(94.2)),
        (Category::Throughput, Some(95.8)),
        (Category::Efficiency, Some(88.7)),
        (Category::Quality, Some(86.5)),
    ]
    .into_iter()
    .collect();
    let s = overall_score(&cats, &Targets::default().weights);
    assert!((s - 91.3).abs() < 0.005, "{s}");
    assert_eq!(Grade::from_score(s), Grade::A);
}

fn all_on_target() -> Measurements {
    Targets::default()
        .metrics
        .iter()
        .map(|t| (t.id.clone(), t.target))
        .collect()
}

#[test]
fn known_measurements_give_known_scores() {
    let t = Targets::default();
    let mut m = all_on_target();
    m.insert(ids::E2E_P95_MS.into(), 32.5); // 50% better → 100
    m.insert(ids::BACKEND_P95_MS.into(), 16.5); // 10% over → 80
    m.insert(ids::ERROR_RATE_PCT.into(), 0.0); // perfect → 100
    let card = Scorecard::grade(&t, &m, vec![]);
    let cat = |c| card.categories[&c].unwrap();
    assert!(approx(cat(Category::Latency), 90.0));
    assert!(approx(cat(Category::Throughput), 90.0));
    assert!(approx(cat(Category::Efficiency), 90.0));
    assert!(approx(cat(Category::Quality), 95.0));
    assert!(approx(card.score, 91.25));
    assert_eq!(card.grade, Grade::A);
    let b = card.metric(ids::BACKEND_P95_MS).unwrap();
    assert_eq!(b.met, Some(false));
    assert!(approx(b.deviation_pct.unwrap(), 10.0));
    assert_eq!(card.recommendations.len(), 1, "{:?}", card.recommendations);
    assert!(card.recommendations[0].contains("backend p95"));
}

#[test]
fn not_measured_metrics_are_left_out_of_the_means() {
    let t = Targets::default();
    let mut m = Measurements::new();
    m.insert(ids::E2E_P95_MS.into(), 65.0); // 90
    m.insert(ids::ERROR_RATE_PCT.into(), 0.0); // 100
    let card = Scorecard::grade(&t, &m, vec![]);
    assert!(approx(card.categories[&Category::Latency].unwrap(), 90.0));
    assert_eq!(card.categories[&Category::Throughput], None);
    assert_eq!(card.categories[&Category::Efficiency], None);
    assert!(approx(card.categories[&Category::Quality].unwrap(), 100.0));
    assert!(approx(card.score, 95.0));
    let text = render_text(&card);
    assert!(text.contains("not measured"), "{text}");
    assert_eq!(card.metric(ids::CACHE_HIT_RATE_PCT).unwrap().score, None);
}

#[test]
fn critical_failure_forces_f() {
    let t = Targets::default();
    let mut m = all_on_target();
    m.insert(ids::E2E_P95_MS.into(), 1.0);
    let card = Scorecard::grade(&t, &m, vec!["3 lost responses".into()]);
    assert!(card.score > 90.0);
    assert_eq!(card.grade, Grade::F);
    assert!(render_text(&card).contains("CRITICAL FAILURE: 3 lost responses"));
}

#[test]
fn targets_toml_overrides_defaults() {
    let t = Targets::from_toml(
        "on_time_ms = 250\n[metrics.e2e_p95_ms]\ntarget = 50\n[metrics.error_rate_pct]\nformula = { kind = \"pass-fail\" }\n[weights]\nlatency = 3.0\n",
        "test",
    )
    .unwrap();
    assert!(approx(t.get(ids::E2E_P95_MS).unwrap().target, 50.0));
    assert_eq!(
        t.get(ids::ERROR_RATE_PCT).unwrap().formula,
        Formula::PassFail
    );
    assert!(approx(t.weights[&Category::Latency], 3.0));
    assert!(approx(t.on_time_ms, 250.0));
    assert!(approx(t.get(ids::BACKEND_P95_MS).unwrap().target, 15.0));
    let err = Targets::from_toml("[metrics.nope]\ntarget = 1\n", "x").unwrap_err();
    assert!(err.to_string().contains("nope"));
    assert!(Targets::from_toml("[metrics.e2e_p95_ms]\ntargt = 1\n", "x").is_err());
}

#[test]
fn weights_change_the_overall() {
    let mut t = Targets::default();
    t.weights.insert(Category::Latency, 3.0);
    let mut m = Measurements::new();
    m.insert(ids::E2E_P95_MS.into(), 32.5); // latency 100
    m.insert(ids::ERROR_RATE_PCT.into(), 0.2); // 100% over → 0
    let card = Scorecard::grade(&t, &m, vec![]);
    assert!(approx(card.score, 75.0), "{}", card.score);
    assert_eq!(card.grade, Grade::C);
}

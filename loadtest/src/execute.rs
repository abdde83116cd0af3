//! `run` and `validate`: one scenario against a server (started here when no
//! `--url` is given, with its Redis when asked), graded, written out, and the
//! exit status it earns; `merge` writes its merged report the same way.

use crate::args::{Comp, Enc, MergeArgs, RunArgs, ValidateArgs};
use crate::{conn, failover, html, profile, redis, report, run, scenario, serve};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use voxterm::scorecard::{ids, Grade, Targets};
use voxterm_protocol::{Compression, Encoding};

fn build_scenario(a: &RunArgs) -> anyhow::Result<scenario::Scenario> {
    let mut sc = scenario::Scenario::named(&a.scenario)?;
    if let Some(u) = a.users {
        anyhow::ensure!(u > 0, "--users must be at least 1");
        sc.users = u;
    }
    if let Some(d) = a.duration {
        sc.duration = d;
    }
    if let Some(r) = a.ramp_up {
        sc.ramp_up = r;
    }
    if let Some(t) = a.time_scale {
        anyhow::ensure!(t > 0.0, "--time-scale must be > 0");
        sc.time_scale = t;
    }
    Ok(sc)
}

/// Whether the `__serve` flags already choose the cache bounds (or turn the cache off).
fn sets_cache_bounds(args: &[String]) -> bool {
    args.iter().any(|a| {
        ["--l1-bytes", "--l2-bytes", "--config", "--no-cache"]
            .iter()
            .any(|f| a.starts_with(f))
    })
}

/// L1 bytes per worker thread and L2 bytes of a started server.
type CacheBounds = (usize, u64);

/// The started server's flags: `--server-arg`s, then its Redis (`--with-redis`)
/// and, for a scenario judged on memory, cache bounds small enough to fill
/// early (unless the flags choose them); also those bounds, for the report.
fn server_args(
    a: &RunArgs,
    sc: &scenario::Scenario,
    redis: Option<&redis::RedisServer>,
) -> anyhow::Result<(Vec<String>, Option<CacheBounds>)> {
    let mut server_args = a.server_args.clone();
    if let Some(r) = redis {
        anyhow::ensure!(
            !server_args.iter().any(|x| x.starts_with("--redis-url")),
            "--with-redis and --server-arg=--redis-url both name the server's Redis"
        );
        server_args.push(format!("--redis-url={}", r.url()));
    }
    let steady = a.url.is_empty() && !sets_cache_bounds(&server_args);
    let steady = steady.then(|| sc.steady_cache()).flatten();
    if let Some((l1, l2)) = steady {
        server_args.push(format!("--l1-bytes={l1}"));
        server_args.push(format!("--l2-bytes={l2}"));
    }
    Ok((server_args, steady))
}

/// The body encoding and compression the users ask for.
fn wire_format(a: &RunArgs) -> (Encoding, Compression) {
    let encoding = match a.encoding {
        Enc::Bincode => Encoding::Bincode,
        Enc::Json => Encoding::Json,
    };
    let compression = match a.compression {
        Comp::None => Compression::None,
        Comp::Deflate => Compression::Deflate,
        Comp::Brotli => Compression::Brotli,
    };
    (encoding, compression)
}

/// Runs one scenario and returns the report (starting and stopping a server when
/// no URL is given).
pub(crate) async fn execute(a: &RunArgs) -> anyhow::Result<report::Report> {
    let sc = build_scenario(a)?;
    let targets = match &a.targets {
        Some(p) => Targets::load(p)?,
        None => Targets::default(),
    };
    let profiles = match &a.profiles {
        Some(p) => profile::Profiles::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )?,
        None => profile::Profiles::builtin(),
    };
    // Dropped (and killed) on every way out of this function, errors included.
    let redis = match a.with_redis {
        true => Some(redis::RedisServer::start().await?),
        false => None,
    };
    let (server_args, steady) = server_args(a, &sc, redis.as_ref())?;
    let redis = redis.map(|r| std::sync::Arc::new(tokio::sync::Mutex::new(r)));
    let is_failover = sc.shape == scenario::Shape::Failover;
    anyhow::ensure!(
        !is_failover || (a.url.is_empty() && redis.is_none()),
        "the failover scenario starts its own engines, Redis and HAProxy: it takes no --url or --with-redis"
    );
    let cluster = match is_failover {
        true => Some(failover::Cluster::start(&server_args).await?),
        false => None,
    };
    let mut child = match (a.url.is_empty(), &cluster) {
        (true, None) => Some(serve::ServerChild::start(&server_args).await?),
        _ => None,
    };
    if !a.url.is_empty() && !a.server_args.is_empty() {
        eprintln!("loadtest: --server-arg ignored with --url (the server is not ours to start)");
    }
    let (urls, engine_urls) = match (&cluster, &child) {
        (Some(c), _) => (c.user_urls(), c.engine_urls()),
        (None, Some(c)) => (vec![c.url.clone()], Vec::new()),
        (None, None) => (a.url.clone(), a.engine.clone()),
    };
    let (encoding, compression) = wire_format(a);
    let parse = |u: &String| conn::Target::parse(u, encoding, compression);
    let user_targets = urls.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?;
    let engines = match engine_urls.is_empty() {
        true => user_targets.clone(),
        false => engine_urls
            .iter()
            .map(parse)
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let url = urls.join(" ");
    let failover_plan = cluster.as_ref().and_then(|c| {
        let (url, pid) = c.victim()?;
        Some(run::FailoverPlan {
            balancer: c.balancer(),
            url,
            pid,
        })
    });
    let opts = run::RunOptions {
        target: user_targets.first().context("no server to test")?.clone(),
        targets: user_targets.into(),
        engines,
        reattach: !a.no_reattach,
        realtime: !a.no_realtime,
        failover: failover_plan,
        profiles,
        users_per_connection: a.users_per_connection,
        on_time_us: (targets.on_time_ms * 1000.0) as u64,
        p95_target_ms: targets.get(ids::E2E_P95_MS).map_or(65.0, |t| t.target),
        progress: !a.quiet,
        grace: a.grace,
        redis: redis.clone(),
        abort_window: a.abort_on_fail,
        error_rate_target_pct: targets.get(ids::ERROR_RATE_PCT).map_or(0.1, |t| t.target),
    };
    let data = run::run(&sc, &opts).await;
    let mut crash = None;
    if let Some(c) = child.as_mut() {
        if !c.running() {
            crash = Some("the server process exited during the run".to_owned());
        }
    }
    if let Some(c) = child.take() {
        if let Some(e) = c.stop().await {
            crash.get_or_insert(e);
        }
    }
    if let Some(c) = cluster {
        if let Some(e) = c.stop().await.into_iter().next() {
            crash.get_or_insert(e);
        }
    }
    let redis_url = match redis {
        Some(r) => {
            let mut r = r.lock().await;
            let _ = r.kill().await;
            Some(r.url())
        }
        None => None,
    };
    let data = data?;
    let mut rep = report::Report::build(&sc, &url, &targets, data);
    if let Some((l1, l2)) = steady {
        rep.notes.push(format!(
            "memory is judged at steady state: the started server's caches were bounded to L1 {} KiB per thread and L2 {} MiB so they fill early in the hold (the presets' bounds would take the whole run to fill, by design); pass --server-arg=--l2-bytes=N (or --config) to choose",
            l1 >> 10,
            l2 >> 20
        ));
    }
    if let Some(u) = redis_url {
        rep.notes.push(format!(
            "L3: redis-server at {u}, started by the load tester for this run and stopped at its end"
        ));
    }
    if let Some(c) = crash {
        rep.critical_failures.push(c);
        rep.grade = Grade::F;
    }
    if let Some(b) = &a.baseline {
        let base = report::Report::load(b)?;
        rep.compare_baseline(&base, a.regression_threshold);
    }
    Ok(rep)
}

fn write_outputs(
    rep: &report::Report,
    json: Option<&PathBuf>,
    html_out: Option<&PathBuf>,
    csv: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(rep)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = html_out {
        std::fs::write(p, html::render(rep))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = csv {
        std::fs::write(p, rep.csv()).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

fn verdict(rep: &report::Report, min: Grade, fail_on_regression: bool) -> ExitCode {
    if let Some(why) = &rep.aborted {
        eprintln!("loadtest: FAIL: {why}");
        return ExitCode::from(4);
    }
    if !rep.critical_failures.is_empty() {
        eprintln!("loadtest: FAIL: critical failure");
        return ExitCode::from(1);
    }
    if rep.grade < min {
        eprintln!("loadtest: FAIL: grade {} is below {}", rep.grade, min);
        return ExitCode::from(1);
    }
    if fail_on_regression && !rep.regressions.is_empty() {
        eprintln!("loadtest: FAIL: {} regression(s)", rep.regressions.len());
        return ExitCode::from(3);
    }
    eprintln!("loadtest: PASS: grade {} (minimum {})", rep.grade, min);
    ExitCode::SUCCESS
}

pub(crate) async fn run_cmd(a: RunArgs) -> anyhow::Result<ExitCode> {
    let rep = execute(&a).await?;
    print!("{}", rep.text());
    write_outputs(&rep, a.json.as_ref(), a.html.as_ref(), a.csv.as_ref())?;
    Ok(verdict(&rep, a.min_grade, a.fail_on_regression))
}

pub(crate) async fn validate(v: ValidateArgs) -> anyhow::Result<ExitCode> {
    let a = RunArgs {
        scenario: "validate".into(),
        url: vec![v.url],
        engine: Vec::new(),
        no_reattach: false,
        no_realtime: false,
        server_args: Vec::new(),
        users: v.users,
        duration: v.duration,
        ramp_up: None,
        time_scale: None,
        users_per_connection: 1,
        profiles: None,
        targets: v.targets,
        json: v.json,
        html: v.html,
        csv: None,
        baseline: v.baseline,
        regression_threshold: v.regression_threshold,
        fail_on_regression: true,
        min_grade: v.min_grade,
        encoding: Enc::Bincode,
        compression: Comp::Deflate,
        grace: Duration::from_secs(15),
        quiet: false,
        with_redis: false,
        abort_on_fail: None,
    };
    run_cmd(a).await
}

pub(crate) fn merge(m: MergeArgs) -> anyhow::Result<ExitCode> {
    let reports = m
        .reports
        .iter()
        .map(|p| report::Report::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = report::Report::merge(&reports)?;
    print!("{}", merged.text());
    write_outputs(&merged, m.json.as_ref(), m.html.as_ref(), m.csv.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

//! `loadtest`: drives simulated voice-terminal users against a voxterm server,
//! grades the result A–F against the enterprise scorecard, and gates deploys.
//!
//! `cargo run --release --bin loadtest` starts a server as a child process, runs
//! the `quick` scenario and exits 0 on a passing grade. See the README's "Load
//! testing" section for every command.

mod chaos;
mod conn;
mod hist;
mod html;
mod profile;
mod record;
mod redis;
mod report;
mod run;
mod scenario;
mod serve;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use voxterm::scorecard::{ids, Grade, Targets};
use voxterm_protocol::{Compression, Encoding};

/// voxterm load tester, scorecard and pre-deploy gate.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario (the default when no subcommand is given).
    Run(RunArgs),
    /// The pre-deploy gate: the validation scenario against a deployed server;
    /// non-zero below --min-grade, on a critical failure or on a regression.
    Validate(ValidateArgs),
    /// Fast check: /healthz and one exec round trip.
    Health(HealthArgs),
    /// One scenario twice, optimizations off then on; prints the improvement.
    Compare(CompareArgs),
    /// Merge JSON reports taken on several machines into one.
    Merge(MergeArgs),
    /// List the scenarios.
    Scenarios,
    #[command(name = "__serve", hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Enc {
    Bincode,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Comp {
    None,
    Deflate,
    Brotli,
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Scenario: smoke, quick, sustained, burst, ramp, soak, chaos, enterprise.
    #[arg(long, default_value = "quick")]
    scenario: String,
    /// Server to test (ws://HOST:PORT/ws); without it a server is started.
    #[arg(long, env = "VOXTERM_URL")]
    url: Option<String>,
    /// Flag for the started server (repeatable), e.g. `--server-arg=--workers=64`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Simulated users.
    #[arg(long)]
    users: Option<usize>,
    /// Time all users stay connected after the ramp-up (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Time over which users connect.
    #[arg(long, value_parser = humantime::parse_duration)]
    ramp_up: Option<Duration>,
    /// Divide think times by this (10 = ten times the pace of real users).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Users sharing one WebSocket connection (each with its own session).
    #[arg(long, default_value_t = 1)]
    users_per_connection: usize,
    /// Profiles TOML (default: built-in Light/Medium/Heavy/Power).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Targets TOML merged over the DESIGN §5 defaults.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the CSV report here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Compare with a previous JSON report.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// A metric this much worse than the baseline (%) is a regression.
    #[arg(long, default_value_t = 10.0)]
    regression_threshold: f64,
    /// Exit non-zero on a regression.
    #[arg(long)]
    fail_on_regression: bool,
    /// Lowest passing grade.
    #[arg(long, default_value = "D")]
    min_grade: Grade,
    /// Body encoding the users ask for.
    #[arg(long, value_enum, default_value = "bincode")]
    encoding: Enc,
    /// Compression the users ask for.
    #[arg(long, value_enum, default_value = "deflate")]
    compression: Comp,
    /// How long to wait for outstanding answers after the end before counting them lost.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// No live progress.
    #[arg(long)]
    quiet: bool,
    /// Start a `redis-server` of our own on a free loopback port and give it to
    /// the started server as its L3 (`--redis-url`); the chaos scenario kills
    /// and restarts it mid-run. Not with `--url`.
    #[arg(long, conflicts_with = "url")]
    with_redis: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The deployed server.
    #[arg(long, env = "VOXTERM_URL")]
    url: String,
    /// Lowest passing grade.
    #[arg(long, default_value = "B")]
    min_grade: Grade,
    /// Previous JSON report; a regression fails the gate.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Regression threshold, %.
    #[arg(long, default_value_t = 10.0)]
    regression_threshold: f64,
    /// Targets TOML.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Users (default: the validation scenario's 200).
    #[arg(long)]
    users: Option<usize>,
    /// Hold time.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// HTML report.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// The server.
    #[arg(long, env = "VOXTERM_URL", default_value = "ws://127.0.0.1:7878/ws")]
    url: String,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Scenario to run twice.
    #[arg(long, default_value = "quick")]
    scenario: String,
    /// Users.
    #[arg(long)]
    users: Option<usize>,
    /// Hold time.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Time scale.
    #[arg(long)]
    time_scale: Option<f64>,
    /// Turn off only this optimization in the OFF run (same encoding both
    /// times), to measure it alone: `predict` (prediction and prefetch),
    /// `batch` (frame coalescing), `cache`. Default: everything at once.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Pass this flag to both servers (repeatable), e.g. `--server-arg=--workers=8`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// One optimization to compare alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// `--no-predict`.
    Predict,
    /// `--no-batch`.
    Batch,
    /// `--no-cache`.
    Cache,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// JSON reports.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Merged JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Merged HTML.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Merged CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(last = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Logs to stderr, `warn` unless `RUST_LOG` says otherwise (the report owns stdout).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raises the soft open-files limit to the hard limit: every user is a socket.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Serve(a)) = &cli.command {
        return match serve::run_child(a.listen, &a.args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest __serve: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    raise_nofile();
    crate::init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            None => run_cmd(cli.run).await,
            Some(Command::Run(a)) => run_cmd(a).await,
            Some(Command::Validate(a)) => validate(a).await,
            Some(Command::Health(a)) => health(a).await,
            Some(Command::Compare(a)) => compare(a).await,
            Some(Command::Merge(a)) => merge(a),
            Some(Command::Scenarios) => {
                for (n, d) in scenario::NAMES {
                    println!("{n:<12} {d}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Serve(_)) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

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

/// Runs one scenario and returns the report (starting and stopping a server when
/// no URL is given).
async fn execute(a: &RunArgs) -> anyhow::Result<report::Report> {
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
    let mut server_args = a.server_args.clone();
    if let Some(r) = &redis {
        anyhow::ensure!(
            !server_args.iter().any(|x| x.starts_with("--redis-url")),
            "--with-redis and --server-arg=--redis-url both name the server's Redis"
        );
        server_args.push(format!("--redis-url={}", r.url()));
    }
    let steady = a.url.is_none() && !sets_cache_bounds(&server_args);
    let steady = steady.then(|| sc.steady_cache()).flatten();
    if let Some((l1, l2)) = steady {
        server_args.push(format!("--l1-bytes={l1}"));
        server_args.push(format!("--l2-bytes={l2}"));
    }
    let redis = redis.map(|r| std::sync::Arc::new(tokio::sync::Mutex::new(r)));
    let mut child = match &a.url {
        Some(_) => None,
        None => Some(serve::ServerChild::start(&server_args).await?),
    };
    if a.url.is_some() && !a.server_args.is_empty() {
        eprintln!("loadtest: --server-arg ignored with --url (the server is not ours to start)");
    }
    let url = match (&a.url, &child) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url.clone(),
        (None, None) => unreachable!("a server was started"),
    };
    let encoding = match a.encoding {
        Enc::Bincode => Encoding::Bincode,
        Enc::Json => Encoding::Json,
    };
    let compression = match a.compression {
        Comp::None => Compression::None,
        Comp::Deflate => Compression::Deflate,
        Comp::Brotli => Compression::Brotli,
    };
    let opts = run::RunOptions {
        target: conn::Target::parse(&url, encoding, compression)?,
        profiles,
        users_per_connection: a.users_per_connection,
        on_time_us: (targets.on_time_ms * 1000.0) as u64,
        p95_target_ms: targets.get(ids::E2E_P95_MS).map_or(65.0, |t| t.target),
        progress: !a.quiet,
        grace: a.grace,
        redis: redis.clone(),
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

async fn run_cmd(a: RunArgs) -> anyhow::Result<ExitCode> {
    let rep = execute(&a).await?;
    print!("{}", rep.text());
    write_outputs(&rep, a.json.as_ref(), a.html.as_ref(), a.csv.as_ref())?;
    Ok(verdict(&rep, a.min_grade, a.fail_on_regression))
}

async fn validate(v: ValidateArgs) -> anyhow::Result<ExitCode> {
    let a = RunArgs {
        scenario: "validate".into(),
        url: Some(v.url),
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
    };
    run_cmd(a).await
}

async fn health(h: HealthArgs) -> anyhow::Result<ExitCode> {
    let check = async {
        let t = conn::Target::parse(&h.url, Encoding::Bincode, Compression::None)?;
        let started = std::time::Instant::now();
        let body = http_get(&t.authority(), "/healthz").await?;
        let v: serde_json::Value = serde_json::from_str(&body).context("healthz is not JSON")?;
        anyhow::ensure!(v["status"] == "ok", "healthz status is {}", v["status"]);
        let healthz_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = std::time::Instant::now();
        let mut c = voxterm::client::Client::connect(&h.url, Default::default()).await?;
        let done = c.run(0, "echo voxterm-health", 5000).await?;
        let rt_ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            done.exit.as_ref().and_then(|e| e.code) == Some(0)
                && done.stdout == b"voxterm-health\n",
            "exec round trip failed: {:?} {:?}",
            done.exit,
            done.error
        );
        let _ = c.close().await;
        println!("healthy: healthz {healthz_ms:.1} ms · exec round trip {rt_ms:.1} ms · {body}");
        anyhow::Ok(())
    };
    match tokio::time::timeout(h.timeout, check).await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => {
            eprintln!("loadtest: unhealthy: {e:#}");
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            eprintln!("loadtest: unhealthy: no answer within {:?}", h.timeout);
            Ok(ExitCode::from(1))
        }
    }
}

async fn http_get(authority: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_owned())
}

async fn compare(c: CompareArgs) -> anyhow::Result<ExitCode> {
    let base = RunArgs {
        scenario: c.scenario,
        url: None,
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

fn merge(m: MergeArgs) -> anyhow::Result<ExitCode> {
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

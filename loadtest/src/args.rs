//! The load tester's options, subcommand by subcommand (the `Cli` that
//! dispatches them is in `main.rs`).

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use voxterm::scorecard::Grade;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Enc {
    Bincode,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Comp {
    None,
    Deflate,
    Brotli,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = voxterm::scorecard::SCORING)]
pub struct RunArgs {
    /// Scenario: smoke, quick, sustained, burst, ramp, soak, chaos, failover,
    /// enterprise (`loadtest scenarios` describes each).
    #[arg(long, default_value = "quick")]
    pub scenario: String,
    /// Server to test (ws://HOST:PORT/ws); without it a server is started.
    /// Repeat it for several engines: users are spread evenly over them, a
    /// user whose engine drops reconnects to the next, and the report has a
    /// line per engine.
    #[arg(long, env = "VOXTERM_URL")]
    pub url: Vec<String>,
    /// An engine behind the balancer `--url` names, whose figures to read
    /// (repeatable): the report then merges their figures and has a line per
    /// engine. Default: every `--url`.
    #[arg(long, requires = "url")]
    pub engine: Vec<String>,
    /// Users do not ask the server to hold their commands over a dropped
    /// connection: a command running at a drop is killed with it (and
    /// counted as `Dropped`). By default users re-attach, as the page and
    /// `voxterm exec` do.
    #[arg(long)]
    pub no_reattach: bool,
    /// The thread that sends every command at its due time stays in the
    /// normal scheduling class. By default it asks for the lowest real-time
    /// class (`SCHED_FIFO` 1; granted to root or `CAP_SYS_NICE`) so that
    /// it runs the moment a command is due, spinning within 5 % of a core.
    #[arg(long)]
    pub no_realtime: bool,
    /// Flag for the started server (repeatable), e.g. `--server-arg=--workers=64`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Simulated users.
    #[arg(long)]
    pub users: Option<usize>,
    /// Time all users stay connected after the ramp-up (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Time over which users connect.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ramp_up: Option<Duration>,
    /// Divide think times by this (10 = ten times the pace of real users).
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Users sharing one WebSocket connection (each with its own session).
    #[arg(long, default_value_t = 1)]
    pub users_per_connection: usize,
    /// Profiles TOML (default: built-in Light/Medium/Heavy/Power).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Targets TOML merged over the DESIGN §5 defaults.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write the CSV report here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Compare with a previous JSON report.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// A metric this much worse than the baseline (%) is a regression.
    #[arg(long, default_value_t = 10.0)]
    pub regression_threshold: f64,
    /// Exit non-zero on a regression.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Lowest passing grade.
    #[arg(long, default_value = "D")]
    pub min_grade: Grade,
    /// Body encoding the users ask for.
    #[arg(long, value_enum, default_value = "bincode")]
    pub encoding: Enc,
    /// Compression the users ask for.
    #[arg(long, value_enum, default_value = "deflate")]
    pub compression: Comp,
    /// How long to wait for outstanding answers after the end before counting them lost.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// No live progress.
    #[arg(long)]
    pub quiet: bool,
    /// Start a `redis-server` of our own on a free loopback port and give it to
    /// the started server as its L3 (`--redis-url`); the chaos scenario kills
    /// and restarts it mid-run. Not with `--url`.
    #[arg(long, conflicts_with = "url")]
    pub with_redis: bool,
    /// Abort as soon as a critical target misses over a sliding window
    /// (default 30s): the error rate from the start, the end-to-end p95 from
    /// the steady state on. Exits 4 with the partial report.
    #[arg(long, value_name = "WINDOW", num_args = 0..=1, default_missing_value = "30s", value_parser = humantime::parse_duration)]
    pub abort_on_fail: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The deployed server.
    #[arg(long, env = "VOXTERM_URL")]
    pub url: String,
    /// Lowest passing grade.
    #[arg(long, default_value = "B")]
    pub min_grade: Grade,
    /// Previous JSON report; a regression fails the gate.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Regression threshold, %.
    #[arg(long, default_value_t = 10.0)]
    pub regression_threshold: f64,
    /// Targets TOML.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Users (default: the validation scenario's 200).
    #[arg(long)]
    pub users: Option<usize>,
    /// Hold time.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// JSON report.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// HTML report.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server.
    #[arg(long, env = "VOXTERM_URL", default_value = "ws://127.0.0.1:7878/ws")]
    pub url: String,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `loadtest rtt`: one connection's cached round trip at several spacings.
#[derive(Debug, Args)]
pub struct RttArgs {
    /// The server.
    #[arg(long, env = "VOXTERM_URL", default_value = "ws://127.0.0.1:7878/ws")]
    pub url: String,
    /// Spacings between two requests' send times, comma-separated (0 = back
    /// to back), e.g. `0,200us,1ms,5ms,20ms`.
    #[arg(long, value_delimiter = ',', default_value = "0,1ms,5ms,20ms", value_parser = humantime::parse_duration)]
    pub gaps: Vec<Duration>,
    /// Round trips per spacing.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub samples: u32,
    /// Also measure a bare blocking TCP echo started in this process on
    /// 127.0.0.1 (std threads, no tokio, no WebSocket) at the same spacings:
    /// the machine's own baseline.
    #[arg(long)]
    pub tcp_echo: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Scenario to run twice.
    #[arg(long, default_value = "quick")]
    pub scenario: String,
    /// Users.
    #[arg(long)]
    pub users: Option<usize>,
    /// Hold time.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Time scale.
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Turn off only this optimization in the OFF run (same encoding both
    /// times), to measure it alone: `predict` (prediction and prefetch),
    /// `batch` (frame coalescing), `cache`. Default: everything at once.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Pass this flag to both servers (repeatable), e.g. `--server-arg=--workers=8`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

/// One optimization to compare alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// `--no-predict`.
    Predict,
    /// `--no-batch`.
    Batch,
    /// `--no-cache`.
    Cache,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Merged JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Merged HTML.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Merged CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeChildArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    #[arg(last = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `loadtest browser`: real headless Chromium pages against a server.
#[derive(Debug, Args)]
#[command(after_help = voxterm::scorecard::SCORING)]
pub struct BrowserArgs {
    /// Server to test (ws://HOST:PORT/ws; the page is its http://HOST:PORT/);
    /// without it a server is started.
    #[arg(long, env = "VOXTERM_URL")]
    pub url: Option<String>,
    /// Flag for the started server (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Pages (each its own headless Chromium) run at once.
    #[arg(long, default_value_t = 2)]
    pub pages: usize,
    /// How long each page runs commands (after loading and a warm-up).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// A page's think time between commands is drawn from
    /// [--think-min-ms, --think-max-ms], so Enter falls anywhere in a frame.
    #[arg(long, default_value_t = 20)]
    pub think_min_ms: u64,
    /// See --think-min-ms.
    #[arg(long, default_value_t = 80)]
    pub think_max_ms: u64,
    /// Share of the commands that are cached lines (`echo`); the rest are
    /// uncached (`date +%N`, a process each time).
    #[arg(long, default_value_t = 0.5)]
    pub cached_share: f64,
    /// Token for a server with tokens (given to the pages as `#token=`).
    #[arg(long, env = "VOXTERM_TOKEN")]
    pub token: Option<String>,
    /// Targets TOML merged over the defaults.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Lowest passing grade (of the browser targets).
    #[arg(long, default_value = "F")]
    pub min_grade: Grade,
}

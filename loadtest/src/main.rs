//! `loadtest`: drives simulated voice-terminal users against a voxterm server,
//! grades the result A–F against the enterprise scorecard, and gates deploys.
//!
//! `cargo run --release --bin loadtest` starts a server as a child process, runs
//! the `quick` scenario and exits 0 on a passing grade. See the README's "Load
//! testing" section for every command.
//!
//! This file is the command line and its dispatch; each subcommand lives in
//! its own file (`execute` for `run`, `validate` and `merge`, `health`, `rtt`,
//! `compare`, `browser`; `serve` for the hidden `__serve` server child,
//! `failover` for the failover scenario's engines and HAProxy), their options in
//! `args`.

mod args;
mod browser;
mod chaos;
mod compare;
mod conn;
mod execute;
mod failover;
mod health;
mod hist;
mod html;
mod profile;
mod record;
mod redis;
mod report;
mod rtt;
mod run;
mod scenario;
mod serve;

use args::{
    BrowserArgs, CompareArgs, HealthArgs, MergeArgs, RttArgs, RunArgs, ServeChildArgs, ValidateArgs,
};
use clap::{Parser, Subcommand};
use compare::compare;
use execute::{merge, run_cmd, validate};
use health::health;
use std::process::ExitCode;

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
    /// Real headless Chromium pages (the voice terminal) against a server:
    /// Enter → painted for cached and uncached commands, page load → first
    /// paint and → interactive, the page's heap; graded on the browser targets.
    Browser(BrowserArgs),
    /// Fast check: /healthz and one exec round trip.
    Health(HealthArgs),
    /// One connection's cached round trip at several spacings: how much an
    /// idle machine adds.
    Rtt(RttArgs),
    /// One scenario twice, optimizations off then on; prints the improvement.
    Compare(CompareArgs),
    /// Merge JSON reports taken on several machines into one.
    Merge(MergeArgs),
    /// List the scenarios.
    Scenarios,
    #[command(name = "__serve", hide = true)]
    Serve(ServeChildArgs),
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
            Some(Command::Rtt(a)) => rtt::rtt(a).await,
            Some(Command::Browser(a)) => browser::browser(a).await,
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

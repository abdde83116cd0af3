//! Command-line interface of the `voxterm` binary. Each subcommand lives in its
//! own file. It is part of the library, not of the binary, so that the load
//! tester's server child parses the very same `serve` options ([`ServeArgs`]).

mod exec;
mod health;
mod serve;

pub use serve::ServeArgs;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Default WebSocket URL of a local server.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:7878/ws";

/// voxterm: low-latency terminal-command execution for voice-terminal clients.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `voxterm` with no subcommand serves, with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Run one command on a server and stream its output.
    Exec(exec::ExecArgs),
    /// Exit 0 when the server answers /healthz with status ok.
    Health(health::HealthArgs),
    /// Print a completion script for a shell (e.g. `voxterm completions bash
    /// > /etc/bash_completion.d/voxterm`, or `source <(voxterm completions bash)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Dispatches to the subcommand.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Exec(args)) => exec::run(args),
        Some(Command::Health(args)) => health::run(args),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "voxterm",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

/// A current-thread runtime for the client subcommands (one connection, no need for more).
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

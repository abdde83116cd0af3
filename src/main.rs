//! The `voxterm` binary: `serve` (the default), `exec` and `health`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::main(args)
}

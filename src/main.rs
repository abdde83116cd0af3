//! The `voxterm` binary: `serve` (the default), `exec` and `health`.

mod cli;

use clap::Parser;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: voxterm::Allocator = voxterm::Allocator;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::main(args)
}

//! The `voxterm` binary: `serve` (the default), `exec` and `health`. The
//! command line itself is the library's [`voxterm::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = voxterm::cli::Cli::parse();
    voxterm::cli::main(args)
}

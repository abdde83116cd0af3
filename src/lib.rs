//! voxterm: a low-latency terminal-command execution engine.
//!
//! Layout (DESIGN §1), dependencies pointing one way:
//! `server` → `session` → (`cache`, `exec`) → protocol; `security` (tokens, origin,
//! tenant roots, command policy, rate limits) is consulted by `server` and
//! `session`; `metrics`, `config` and `scorecard` are leaves. `client` is the protocol's client side, used by the CLI,
//! the tests and the load tester. `cli` is the `voxterm` binary's command line,
//! here so that the load tester's server parses the same `serve` options.
#![warn(missing_docs)]

pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod env;
pub mod exec;
pub mod metrics;
pub mod output;
pub mod predict;
pub mod scorecard;
pub mod security;
pub mod server;
pub mod session;
pub mod shell;
mod sync;

pub use sync::Cancel;

/// jemalloc is the global allocator of every program built with this library
/// (feature `jemalloc`, on by default): it returns freed pages to the OS after
/// a short decay, so the server's RSS comes back down after a burst of
/// connections instead of staying at its high-water mark as with glibc's malloc
/// (see the chaos figures in the README), and its statistics separate live
/// bytes from retained ones ([`metrics::heap`]).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

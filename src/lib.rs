//! voxterm: a low-latency terminal-command execution engine.
//!
//! Layout (DESIGN §1), dependencies pointing one way:
//! `server` → `session` → (`cache`, `exec`) → protocol; `security` (tokens, origin,
//! tenant roots, command policy, rate limits) is consulted by `server` and
//! `session`; `metrics`, `config` and `scorecard` are leaves. `client` is the protocol's client side, used by the CLI,
//! the tests and the load tester.
#![warn(missing_docs)]

pub mod cache;
pub mod client;
pub mod config;
pub mod exec;
pub mod metrics;
pub mod predict;
pub mod scorecard;
pub mod security;
pub mod server;
pub mod session;

/// The allocator the binaries that serve (`voxterm`, the load tester's
/// `__serve`) install as `#[global_allocator]`: jemalloc returns freed pages to
/// the OS after a short decay, so a server's RSS comes back down after a burst
/// of connections instead of staying at its high-water mark as with glibc's
/// malloc (see the chaos scenario's memory figures in the README).
#[cfg(not(target_env = "msvc"))]
pub use tikv_jemallocator::Jemalloc as Allocator;

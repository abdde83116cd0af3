//! voxterm: a low-latency terminal-command execution engine.
//!
//! Layout (DESIGN §1), dependencies pointing one way:
//! `server` → `session` → (`cache`, `exec`) → protocol; `metrics` and `config` are leaves.
//! `client` is the protocol's client side, used by the CLI, tests and loadtest.
#![warn(missing_docs)]

pub mod exec;

#[cfg(not(voxterm_exec_only))]
pub mod cache;
#[cfg(not(voxterm_exec_only))]
pub mod client;
#[cfg(not(voxterm_exec_only))]
pub mod config;
#[cfg(not(voxterm_exec_only))]
pub mod metrics;
#[cfg(not(voxterm_exec_only))]
pub mod scorecard;
#[cfg(not(voxterm_exec_only))]
pub mod server;
#[cfg(not(voxterm_exec_only))]
pub mod session;

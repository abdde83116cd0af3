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

//! voxterm: a low-latency terminal-command execution engine.
#![warn(missing_docs)]

pub mod exec;

//! The network face of voxterm: one TCP port that serves WebSocket clients on
//! `/ws` and plain HTTP on `/healthz` and `/metrics`.
//!
//! Shape (after tokio's mini-redis): [`Server`] owns the listener and the accept
//! loop (`listener`); each TCP connection gets a task that does the HTTP part
//! (`http`), then a `connection` reader task that decodes frames and a `writer`
//! task that owns the socket's write half. Every `Exec` runs in its own task
//! (`request`), so one slow command never holds up the others on the same
//! connection.
//!
//! `context` holds what every task shares (`ServerContext`, `Transport`), so
//! the modules below the listener need not reach back into this one.
//!
//! Shutdown: on the signal the listener closes, connections stop accepting new
//! commands and drain; after `drain_timeout` the remaining children are killed, their
//! requests end with `Exit { killed: Shutdown }`, and connections close with 1001.

mod connection;
mod context;
mod gate;
mod http;
mod listener;
mod lock;
mod process;
mod request;
mod writer;

pub use listener::Server;
pub use process::shutdown_signal;

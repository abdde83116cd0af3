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
//! The modules depend on each other one way only, from the port down to one
//! request; nothing below points back up:
//!
//! ```text
//! listener   → http, process              the port, the accept loop, shutdown
//! http       → connection                 one TCP connection until the upgrade
//! connection → request, shared, writer    one WebSocket: the reader task
//! request    → shared, writer             one command's task
//! shared     → replay, writer             what the reader and requests share
//! replay     → writer                     a request's frames kept for re-attach
//! writer                                  the socket's write half
//! ```
//!
//! (`replay` names `Shared` as the home of a route: the two are one layer, the
//! connection's shared state, split so that re-attach reads on its own.)
//! `detached` holds the requests of dropped connections for `Attach`; the
//! connection puts them there and takes them back.
//!
//! `check` is the whole configuration checked before start (each part asked
//! about its own section). Leaves any of them may use: `context` (`ServerContext` and
//! `Transport`), `gate` (the open-files budget), `auth` (failed
//! authentications, shared by the upgrade and `Hello`) (and `crate::sync` for
//! taking a mutex whatever a panic did to it).
//!
//! Shutdown: on the signal the listener closes, connections stop accepting new
//! commands and drain; after `drain_timeout` the remaining children are killed, their
//! requests end with `Exit { killed: Shutdown }`, and connections close with 1001.

mod assets;
mod auth;
mod check;
mod connection;
mod context;
mod detached;
mod gate;
mod http;
mod listener;
mod process;
mod replay;
mod request;
mod runtime;
mod shared;
mod writer;

pub use check::check;
pub use listener::Server;
pub use process::shutdown_signal;
pub use runtime::runtime;

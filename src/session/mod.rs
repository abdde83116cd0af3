//! Terminal sessions: the state a user's commands share (cwd, env, history), the
//! engine builtins that change it without spawning, and the runner that takes one
//! `Exec` from its session to the worker pool.
//!
//! A session belongs to a tenant and has a name; it outlives the connection that
//! opened it for an idle TTL so that a reconnecting client resumes where it was.

mod builtins;
mod env;
mod prefetch;
mod runner;
mod state;
mod store;

pub use builtins::Builtin;
pub use env::BaseEnv;
pub use runner::{Engine, Finish};
pub use state::Session;
pub use store::{SessionHandle, SessionStore};

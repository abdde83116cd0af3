//! Terminal sessions: the state a user's commands share (cwd, env, history),
//! their store, and the builtins that change it without spawning. The engine
//! (`crate::engine`) runs commands in them.
//!
//! A session belongs to a tenant and has a name; it outlives the connection that
//! opened it for an idle TTL so that a reconnecting client resumes where it was,
//! and outlives the process in `durable` (Redis or files), so a restart or
//! another engine behind the same balancer resumes it too.

mod builtins;
mod durable;
mod env;
mod state;
mod store;

pub use builtins::Builtin;
pub use durable::{Durable, Saved};
pub use env::{on_terminal, BaseEnv, ChildEnv};
pub use state::Session;
pub use store::{SessionHandle, SessionStore};

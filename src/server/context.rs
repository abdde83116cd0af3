//! What every task of the server shares: the engine, the security settings,
//! the shutdown signal and the open-files budget.
//!
//! It has a file of its own so that the modules of `server/` can all depend on
//! it without depending on each other: the listener creates one
//! [`ServerContext`], and every connection task holds an `Arc` of it.

use super::gate::Gate;
use crate::engine::Engine;
use crate::security::Security;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The byte stream under every connection: plain TCP, or TLS when configured.
pub(crate) type Transport = crate::security::tls::MaybeTls;

/// What every connection task shares.
pub(crate) struct ServerContext {
    pub engine: Arc<Engine>,
    /// Tokens, origins, command policy and rate limits.
    pub security: Arc<Security>,
    /// Fires when shutdown begins: stop taking new work, drain.
    pub drain: CancellationToken,
    /// Tracks connection and request tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Open connections against the open-files budget.
    pub gate: Arc<Gate>,
    next_connection: AtomicU64,
}

impl ServerContext {
    /// A context with no connection yet and shutdown not begun.
    pub(super) fn new(engine: Arc<Engine>, security: Arc<Security>, gate: Arc<Gate>) -> Self {
        ServerContext {
            engine,
            security,
            drain: CancellationToken::new(),
            tracker: TaskTracker::new(),
            gate,
            next_connection: AtomicU64::new(0),
        }
    }

    /// A fresh connection number (1, 2, ...): it names the connection in the
    /// logs and in `Welcome.connection`.
    pub(super) fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

//! What every task of the server shares: the engine, the security settings,
//! the shutdown signal and the open-files budget.
//!
//! It has a file of its own so that the modules of `server/` can all depend on
//! it without depending on each other: the listener creates one
//! [`ServerContext`], and every connection task holds an `Arc` of it.

use super::detached::Detached;
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
    /// Requests of dropped connections, held for `Attach`.
    pub detached: Arc<Detached>,
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
            detached: Arc::new(Detached::default()),
            // The high half is this process's own, at random: an `Attach` that
            // reaches another engine (or this one after a restart) never names
            // one of its connections by chance, and gets `RequestLost`.
            next_connection: AtomicU64::new(u64::from(random_u32()) << 32),
        }
    }

    /// A fresh connection number: it names the connection in the logs, in
    /// `Welcome.connection`, and in `Attach` (unique across engines and
    /// restarts: a random half per process, a counter).
    pub(super) fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// 32 random bits: std seeds every `RandomState` from the operating system's
/// randomness, so hashing nothing with a fresh one is a random number without
/// a dependency for it.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

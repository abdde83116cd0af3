//! The one way `server/` takes a `std::sync::Mutex`.
//!
//! A mutex is *poisoned* when a thread panicked while holding it. The standard
//! library then makes every later `lock()` return an error, on the theory that
//! the data may be half-updated. The maps guarded in this module tree (a
//! connection's requests in flight, the half-open connections of the
//! open-files budget) change by one `insert` or `remove` at a time, so a panic
//! cannot leave them half-updated. Refusing them after a panic would only turn
//! one failed task into a server that can no longer track connections, so we
//! take the data back and carry on.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the data if a panicking holder poisoned it (see
/// the module doc for why that is sound here).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

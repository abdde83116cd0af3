//! The one way the engine takes a `std::sync::Mutex` or `RwLock`.
//!
//! A lock is *poisoned* when a thread panicked while holding it; the standard
//! library then makes every later `lock()` return an error, on the theory that
//! the data may be half-updated. Everything the engine guards this way (maps
//! of sessions, flights, buckets, cells, counters) changes by one insert,
//! remove or assignment at a time, so a panic cannot leave it half-updated.
//! Refusing it after a panic would turn one failed task into a server that can
//! no longer track sessions or connections, so the data is taken back and the
//! server carries on. (Panics are bugs; they are caught per task and logged.)

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering the data if a panicking holder poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `rw`, recovering the data if a panicking writer poisoned it.
pub(crate) fn read<T>(rw: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `rw`, recovering the data if a panicking holder poisoned it.
pub(crate) fn write<T>(rw: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rw.write().unwrap_or_else(PoisonError::into_inner)
}

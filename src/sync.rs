//! The engine's synchronization helpers: the one way it takes a
//! `std::sync::Mutex` or `RwLock`, the hasher of its numeric maps, and a
//! request's cancellation ([`Cancel`]).
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

/// A `BuildHasher` for the maps of the request path keyed by numbers
/// (request ids, the predictor's line ids): SipHash, std's default, was a
/// measurable share of a cache hit's CPU (issue 17, part 6). Keys are folded
/// to 64 bits, mixed with a per-process random seed and multiplied, so a
/// client that picks its keys still cannot aim them at one bucket without
/// the seed; and these maps are bounded anyway (in flight per connection,
/// contexts per model).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumHash(u64);

impl Default for NumHash {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        NumHash(*SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
        }))
    }
}

impl std::hash::BuildHasher for NumHash {
    type Hasher = NumHasher;
    fn build_hasher(&self) -> NumHasher {
        NumHasher(self.0)
    }
}

/// The hasher of [`NumHash`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumHasher(u64);

impl std::hash::Hasher for NumHasher {
    fn finish(&self) -> u64 {
        // A final avalanche (murmur3's fmix64), so that low and high bits
        // both depend on every bit of the key.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// One request's cancellation: fired by `Cancel`, by the connection's end,
/// by a superseding `Attach`; watched by the run, the sink and a miss's wait.
///
/// Not tokio-util's `CancellationToken`: that one is a node of a tree under a
/// mutex, and its clone and drop each take the mutex (to count handles for
/// child tokens). A request makes one, clones it once, drops both: ~600
/// instructions of a cached request's ~14,000 (callgrind, `benches/hot_path`),
/// for children a request never has. Here: a flag and a `Notify` in an `Arc`;
/// clone and drop are a reference count.
#[derive(Clone, Default)]
pub struct Cancel(std::sync::Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    fired: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cancel").field(&self.is_cancelled()).finish()
    }
}

impl Cancel {
    /// A token not fired yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Fires the token: every `cancelled()` now or later completes. Firing
    /// twice is the same as once.
    pub fn cancel(&self) {
        use std::sync::atomic::Ordering;
        if !self.0.fired.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_waiters();
        }
    }

    /// Whether the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.fired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Completes once the token has fired.
    pub async fn cancelled(&self) {
        loop {
            // A `Notified` sees every `notify_waiters` from its creation on,
            // polled or not: made before the flag is read, no firing between
            // the two is missed.
            let fired = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            fired.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[tokio::test]
    async fn a_cancel_wakes_every_waiter_and_every_later_one() {
        let token = Cancel::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let t = token.clone();
                tokio::spawn(async move { t.cancelled().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!token.is_cancelled());
        assert!(waiters.iter().all(|w| !w.is_finished()));
        token.cancel();
        token.cancel();
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("woken")
                .expect("no panic");
        }
        // Fired before anyone waits: completes at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), token.clone().cancelled())
            .await
            .expect("already fired");
        assert!(format!("{token:?}").contains("true"));
    }

    #[test]
    fn num_hash_tells_keys_apart_and_spreads_them() {
        let h = NumHash::default();
        let a: Vec<u64> = (0u32..1000).map(|k| h.hash_one(k)).collect();
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 1000);
        // Consecutive keys land in many of 64 buckets (low bits), not a few.
        let buckets: std::collections::HashSet<_> = a.iter().map(|v| v & 63).collect();
        assert!(buckets.len() > 48, "{} buckets", buckets.len());
        assert_ne!(h.hash_one((1u128, 2u128)), h.hash_one((2u128, 1u128)));
    }
}

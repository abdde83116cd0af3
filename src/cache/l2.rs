//! L2: one byte-bounded concurrent cache for the process, with TTL checked on read.
//!
//! `quick_cache` was chosen by measurement (benches/cache.rs, figures in the
//! README): with 2 threads it serves several times the gets per second of `moka`
//! and of a sharded `Mutex<lru>`, and its CLOCK-Pro-style admission (frequency
//! aware, like S3-FIFO) keeps a better hit rate than LRU on the Zipf-shaped stream
//! that an L2 sees behind L1.

use super::entry::Entry;
use super::key::Key;
use super::l1::KeyHash;
use crate::metrics::{Metrics, Tier};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};
use std::sync::Arc;
use std::time::Instant;

/// Weight of an entry: its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteWeight;

impl Weighter<Key, Arc<Entry>> for ByteWeight {
    fn weight(&self, _key: &Key, val: &Arc<Entry>) -> u64 {
        val.weight() as u64
    }
}

/// Counts evictions into the metrics.
#[derive(Clone)]
struct Evictions(Arc<Metrics>);

impl Lifecycle<Key, Arc<Entry>> for Evictions {
    type RequestState = u64;
    fn begin_request(&self) -> u64 {
        0
    }
    fn on_evict(&self, state: &mut u64, _key: Key, _val: Arc<Entry>) {
        *state += 1;
    }
    fn end_request(&self, state: u64) {
        if state > 0 {
            self.0.cache.evicted(Tier::L2, state);
        }
    }
}

/// The process-wide tier.
pub struct L2 {
    cache: Option<Cache<Key, Arc<Entry>, ByteWeight, KeyHash, Evictions>>,
    metrics: Arc<Metrics>,
}

impl L2 {
    /// An L2 of at most `capacity` bytes (0 disables it).
    pub fn new(capacity: u64, metrics: Arc<Metrics>) -> L2 {
        let cache = (capacity > 0).then(|| {
            // Estimated items: assume ~1 KiB answers; it only sizes the tables.
            let items = (capacity / 1024).clamp(64, 1 << 20) as usize;
            Cache::with(
                items,
                capacity,
                ByteWeight,
                KeyHash,
                Evictions(metrics.clone()),
            )
        });
        L2 { cache, metrics }
    }

    /// The entry under `key`, if present and fresh.
    pub fn get(&self, key: Key, now: Instant) -> Option<Arc<Entry>> {
        let cache = self.cache.as_ref()?;
        let e = cache.get(&key)?;
        if e.expired(now) {
            cache.remove(&key);
            return None;
        }
        Some(e)
    }

    /// Stores `entry`.
    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, entry);
            self.metrics.cache.set_bytes(Tier::L2, cache.weight());
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }
}

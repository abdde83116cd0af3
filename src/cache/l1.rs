//! L1: a small byte-bounded LRU per worker thread.
//!
//! Per thread (not per connection) so that its memory is fixed (threads × bound)
//! instead of growing with sessions, whose budget is 50 KB each; and per thread
//! (not shared) so that a hit takes no lock: the hit path is a thread-local
//! borrow, one hash probe and an `Arc` clone.
//!
//! Several engines may live in one process (tests, benches): each thread keeps one
//! LRU per live engine, found by id; those of dropped engines are freed the next
//! time the thread touches its L1.

use super::entry::Entry;
use super::key::Key;
use crate::metrics::{Metrics, Tier};
use lru::LruCache;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Keys are already uniform hashes: hashing them again (SipHash) would be the
/// most expensive step of a hit.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

/// Builds [`KeyHasher`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct Slot {
    entry: Arc<Entry>,
    /// The engine's invalidation epoch when stored.
    epoch: u64,
}

struct Local {
    id: u64,
    owner: Weak<Shared>,
    lru: LruCache<Key, Slot, KeyHash>,
    bytes: usize,
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Shared {
    /// Bumped by a refresh: every thread's older slots become misses, since a
    /// refresh can only reach the L1 of the thread it ran on.
    epoch: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Handle to one engine's L1 (all threads).
pub struct L1 {
    id: u64,
    capacity: usize,
    shared: Arc<Shared>,
}

impl L1 {
    /// An L1 of at most `capacity` bytes per thread (0 disables it).
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> L1 {
        L1 {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            capacity,
            shared: Arc::new(Shared {
                epoch: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|cell| {
            let mut locals = cell.borrow_mut();
            let i = match locals.iter().position(|l| l.id == self.id) {
                Some(i) => i,
                None => {
                    // Free the LRUs of engines that are gone before adding ours.
                    locals.retain(|l| l.owner.strong_count() > 0);
                    locals.push(Local {
                        id: self.id,
                        owner: Arc::downgrade(&self.shared),
                        lru: LruCache::unbounded_with_hasher(KeyHash),
                        bytes: 0,
                    });
                    locals.len() - 1
                }
            };
            f(&mut locals[i])
        })
    }

    /// The entry under `key` on this thread, if present and fresh.
    pub fn get(&self, key: Key, now: Instant) -> Option<Arc<Entry>> {
        if self.capacity == 0 {
            return None;
        }
        let epoch = self.shared.epoch.load(Ordering::Relaxed);
        self.with(|l| {
            let slot = l.lru.get(&key)?;
            if slot.epoch == epoch && !slot.entry.expired(now) {
                return Some(slot.entry.clone());
            }
            if let Some(old) = l.lru.pop(&key) {
                l.bytes -= old.entry.weight();
                self.shared
                    .metrics
                    .cache
                    .add_bytes(Tier::L1, -(old.entry.weight() as i64));
            }
            None
        })
    }

    /// Stores `entry` on this thread, evicting least recently used entries beyond
    /// the byte bound.
    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        let w = entry.weight();
        if w > self.capacity {
            return;
        }
        let epoch = self.shared.epoch.load(Ordering::Relaxed);
        let m = &self.shared.metrics.cache;
        self.with(|l| {
            let mut delta = w as i64;
            if let Some(old) = l.lru.put(key, Slot { entry, epoch }) {
                delta -= old.entry.weight() as i64;
            }
            l.bytes = (l.bytes as i64 + delta) as usize;
            let mut evicted = 0;
            while l.bytes > self.capacity {
                match l.lru.pop_lru() {
                    Some((_, old)) => {
                        l.bytes -= old.entry.weight();
                        delta -= old.entry.weight() as i64;
                        evicted += 1;
                    }
                    None => break,
                }
            }
            m.add_bytes(Tier::L1, delta);
            if evicted > 0 {
                m.evicted(Tier::L1, evicted);
            }
        });
    }

    /// Makes every thread's current entries misses (they are dropped lazily).
    pub fn invalidate_all(&self) {
        self.shared.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes held by this thread's L1 (for tests and benches).
    pub fn local_bytes(&self) -> usize {
        self.with(|l| l.bytes)
    }
}

//! Output bytes shared by identical answers.
//!
//! Tenants never share entries (session and fs-read keys carry the tenant), but
//! they often share output: every user of a project who runs `cat logs/app.log`
//! gets the same bytes, and a 10,000-user instance would otherwise hold one copy
//! per user. Outputs of at least [`MIN_SHARED`] bytes are kept once per distinct
//! content: found by a hash of the bytes, confirmed byte for byte (so no collision,
//! crafted or not, can ever hand one answer's bytes to another), and freed when the
//! last entry holding them goes. This is the interning a content-addressed store
//! (the Bazel CAS, git's objects) gets from its keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Outputs shorter than this are not worth a hash and a lock.
pub const MIN_SHARED: usize = 4096;

/// Bytes of one answer's output, possibly shared with identical answers.
pub type Bytes = Arc<Box<[u8]>>;

/// The table of shared outputs of one cache.
#[derive(Debug, Default)]
pub struct Blobs {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// By content hash. Weak: an output lives as long as an entry holds it (its
    /// bytes are freed then; only the small `Arc` header waits for the sweep).
    map: HashMap<u128, Weak<Box<[u8]>>>,
    /// Table size below which no sweep is due.
    sweep_at: usize,
}

impl Blobs {
    /// `data`, or the identical bytes another entry already holds.
    pub fn share(&self, data: Bytes) -> Bytes {
        if data.len() < MIN_SHARED {
            return data;
        }
        let digest = blake3::hash(&data);
        let mut h = [0u8; 16];
        h.copy_from_slice(&digest.as_bytes()[..16]);
        let hash = u128::from_le_bytes(h);
        // A poisoned lock only means another thread panicked mid-insert: the map
        // holds weak pointers and is still consistent.
        let mut t = crate::sync::lock(&self.inner);
        if let Some(held) = t.map.get(&hash).and_then(Weak::upgrade) {
            if held[..] == data[..] {
                return held;
            }
            // Same hash, other bytes: keep the newcomer unshared.
            return data;
        }
        t.map.insert(hash, Arc::downgrade(&data));
        if t.map.len() >= t.sweep_at {
            t.map.retain(|_, w| w.strong_count() > 0);
            t.sweep_at = (t.map.len() * 2).max(1024);
        }
        data
    }

    /// Distinct outputs held (for tests and metrics).
    pub fn len(&self) -> usize {
        let t = crate::sync::lock(&self.inner);
        t.map.values().filter(|w| w.strong_count() > 0).count()
    }

    /// True when no output is shared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(fill: u8, n: usize) -> Bytes {
        Arc::new(vec![fill; n].into_boxed_slice())
    }

    #[test]
    fn identical_outputs_share_one_allocation() {
        let b = Blobs::default();
        let one = b.share(bytes(b'x', 10_000));
        let two = b.share(bytes(b'x', 10_000));
        assert!(Arc::ptr_eq(&one, &two));
        let other = b.share(bytes(b'y', 10_000));
        assert!(!Arc::ptr_eq(&one, &other));
        assert_eq!(b.len(), 2);
        // Small outputs are left alone.
        let s1 = b.share(bytes(b'x', 10));
        let s2 = b.share(bytes(b'x', 10));
        assert!(!Arc::ptr_eq(&s1, &s2));
    }

    #[test]
    fn outputs_go_with_their_last_entry() {
        let b = Blobs::default();
        let one = b.share(bytes(b'x', 10_000));
        drop(one);
        assert!(b.is_empty());
        let again = b.share(bytes(b'x', 10_000));
        assert_eq!(again.len(), 10_000);
        // Many short-lived outputs: the sweep keeps the table bounded.
        for i in 0..5000u32 {
            let mut v = vec![0u8; MIN_SHARED];
            v[..4].copy_from_slice(&i.to_le_bytes());
            drop(b.share(Arc::new(v.into_boxed_slice())));
        }
        let t = b.inner.lock().unwrap();
        assert!(t.map.len() <= 2048, "{}", t.map.len());
    }
}

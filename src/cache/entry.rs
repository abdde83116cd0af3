//! A stored result: the command's output as it streamed (stdout and stderr
//! segments in order) and when it expires. Shared by `Arc` between tiers.

use super::blobs::{Blobs, Bytes};
use super::error::CacheError;
use crate::output::{OutputSink, SinkClosed};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use voxterm_protocol::StreamKind;

/// Memory an entry costs besides its output (see [`Entry::weight`]).
pub const ENTRY_OVERHEAD: usize = 320;

/// Largest `Output` frame a replay sends (the exec path's largest chunk too).
pub const REPLAY_CHUNK: usize = 64 * 1024;

/// Value layout version in L3 (first byte).
const VALUE_VERSION: u8 = 2;
const FLAG_LZ4: u8 = 1;
/// A 16-byte input stamp follows the header.
const FLAG_STAMP: u8 = 2;
/// An 8-byte tenant generation follows the header.
const FLAG_GENERATION: u8 = 4;
/// version, flags, expiry (u64 ms since the Unix epoch).
const HEADER: usize = 10;

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Shared with identical answers of other keys (see `blobs`).
    data: Bytes,
    /// (stream, length) of each consecutive run of one stream in `data`.
    segments: Box<[(StreamKind, u32)]>,
    expires: Instant,
    /// What must still hold for the entry to be served, beyond its TTL.
    validity: Validity,
    /// Set on entries the prefetcher stored: tells `served_from = prefetch`
    /// apart and counts each entry's first use once (hits vs wasted prefetches).
    prefetch: PrefetchMark,
    /// Claimed by the first hit that asks for a renewal (one try per entry).
    renewal: Scratch<AtomicBool>,
    /// The tenant generation plus one under which a restamp last found it
    /// valid (0: none yet).
    checked: Scratch<AtomicU64>,
}

/// What an entry's answer depends on besides its key and TTL.
///
/// Keys of validated fs-read lines (see `cache::inputs`) leave the tenant's
/// generation out, so that a write elsewhere (`touch notes.txt`) does not throw
/// away a `cat README.md` that its stamp shows to be unchanged. Their entries carry
/// the stamp instead, or, when the inputs were too recently changed to be stamped,
/// the generation they were taken under, as every other fs-read key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validity {
    /// Valid until it expires (the key holds everything it depends on).
    #[default]
    Always,
    /// Valid while the stamp of the line's input files is this.
    Stamp(u128),
    /// Valid while the tenant's generation is this.
    Generation(u64),
}

/// Whether an entry came from a prefetch, and whether a request used it yet.
/// Not part of the entry's value: two entries with the same output are equal.
#[derive(Debug, Clone, Default)]
struct PrefetchMark(Option<Arc<AtomicBool>>);

impl PartialEq for PrefetchMark {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PrefetchMark {}

/// Per-copy bookkeeping beside an entry's value (its renewal claim, the
/// generation a restamp last accepted it under): not part of the value, so
/// two entries with the same output are equal, and a copy starts afresh.
#[derive(Debug, Default)]
struct Scratch<T>(T);

impl<T: Default> Clone for Scratch<T> {
    fn clone(&self) -> Self {
        Scratch::default()
    }
}

impl<T> PartialEq for Scratch<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Scratch<T> {}

impl Entry {
    /// Builds an entry from output chunks in arrival order, merging runs of one stream.
    pub fn from_chunks<'a>(
        chunks: impl IntoIterator<Item = (StreamKind, &'a [u8])>,
        ttl: Duration,
    ) -> Entry {
        let mut data = Vec::new();
        let mut segments: Vec<(StreamKind, u32)> = Vec::new();
        for (stream, bytes) in chunks {
            if bytes.is_empty() {
                continue;
            }
            data.extend_from_slice(bytes);
            let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            match segments.last_mut() {
                Some((s, len)) if *s == stream && len.checked_add(n).is_some() => *len += n,
                _ => segments.push((stream, n)),
            }
        }
        Entry {
            data: Arc::new(data.into_boxed_slice()),
            segments: segments.into_boxed_slice(),
            expires: Instant::now() + ttl,
            validity: Validity::Always,
            prefetch: PrefetchMark::default(),
            renewal: Scratch::default(),
            checked: Scratch::default(),
        }
    }

    /// The same entry, its output shared with identical answers already held.
    pub fn shared(mut self, blobs: &Blobs) -> Entry {
        self.data = blobs.share(self.data);
        self
    }

    /// Whether two entries hold their output in one allocation.
    pub fn shares_output_with(&self, other: &Entry) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// Sets what must still hold for the entry to be served.
    pub fn valid_while(mut self, validity: Validity) -> Entry {
        self.validity = validity;
        self
    }

    /// What must still hold for the entry to be served.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// Notes that a restamp taken while the tenant's generation was `g`
    /// found the entry valid.
    pub fn checked_under(&self, g: u64) {
        self.checked.0.store(g.wrapping_add(1), Ordering::Relaxed);
    }

    /// Whether a restamp found the entry valid under generation `g`: nothing
    /// the tenant ran since then wrote. Anything else may have (another
    /// tenant, an editor): a hint for what to prefetch, never a reason to
    /// serve.
    pub fn checked_at(&self, g: u64) -> bool {
        self.checked.0.load(Ordering::Relaxed) == g.wrapping_add(1)
    }

    /// Marks an entry the prefetcher is about to store.
    pub fn prefetched(mut self) -> Entry {
        self.prefetch = PrefetchMark(Some(Arc::new(AtomicBool::new(false))));
        self
    }

    /// For an entry the prefetcher stored: `Some(true)` on its first use by a
    /// request, `Some(false)` after. `None` for other entries.
    pub fn use_prefetched(&self) -> Option<bool> {
        let used = self.prefetch.0.as_ref()?;
        Some(!used.swap(true, Ordering::Relaxed))
    }

    /// What byte bounds count: the output, its segment table, and the fixed cost
    /// of an entry in a tier. That cost was measured, not guessed: 500,000
    /// three-byte entries in L2 took 310 B each (the `Entry` and its `Arc`, the
    /// output and segment allocations, the tier's slot). A smaller figure let a
    /// tier of many small answers hold several times its bound (soak: RSS grew
    /// past the cache bytes by hundreds of MiB).
    pub fn weight(&self) -> usize {
        self.data.len() + self.segments.len() * 8 + ENTRY_OVERHEAD
    }

    /// Output bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the command printed nothing.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// True once the TTL has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Time left to live.
    pub fn remaining(&self) -> Duration {
        self.expires.saturating_duration_since(Instant::now())
    }

    /// True for the first caller only, when less than `window` of its life
    /// is left: that caller renews it.
    pub fn claim_renewal(&self, window: Duration) -> bool {
        self.remaining() < window && !self.renewal.0.swap(true, Ordering::Relaxed)
    }

    /// The output as (stream, bytes) runs, in order.
    pub fn segments(&self) -> impl Iterator<Item = (StreamKind, &[u8])> {
        let mut at = 0usize;
        self.segments.iter().map(move |&(s, n)| {
            let end = at + n as usize;
            let piece = &self.data[at..end];
            at = end;
            (s, piece)
        })
    }

    /// Sends the output to `sink` as it streamed, in chunks of at most 64 KiB.
    pub async fn replay<S: OutputSink>(&self, sink: &mut S) -> Result<(), SinkClosed> {
        for (stream, bytes) in self.segments() {
            for chunk in bytes.chunks(REPLAY_CHUNK) {
                sink.chunk(stream, chunk).await?;
            }
        }
        Ok(())
    }

    /// The L3 value: a small header (version, flags, expiry as wall-clock ms), the
    /// input stamp when there is one, then the segments, LZ4-compressed when the body is at least `compress_at`.
    pub fn encode(&self, compress_at: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.data.len() + self.segments.len() * 5 + 4);
        body.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for (s, n) in self.segments.iter() {
            body.push(stream_byte(*s));
            body.extend_from_slice(&n.to_le_bytes());
        }
        body.extend_from_slice(&self.data);
        let expires_ms = unix_ms().saturating_add(self.remaining().as_millis() as u64);
        let (mut flags, body) = if body.len() >= compress_at {
            (FLAG_LZ4, lz4_flex::compress_prepend_size(&body))
        } else {
            (0, body)
        };
        flags |= match self.validity {
            Validity::Always => 0,
            Validity::Stamp(_) => FLAG_STAMP,
            Validity::Generation(_) => FLAG_GENERATION,
        };
        let mut out = Vec::with_capacity(HEADER + 16 + body.len());
        out.push(VALUE_VERSION);
        out.push(flags);
        out.extend_from_slice(&expires_ms.to_le_bytes());
        match self.validity {
            Validity::Always => {}
            Validity::Stamp(s) => out.extend_from_slice(&s.to_le_bytes()),
            Validity::Generation(g) => out.extend_from_slice(&g.to_le_bytes()),
        }
        out.extend_from_slice(&body);
        out
    }

    /// Reads an L3 value; anything malformed, from another version, expired or
    /// larger than `max_bytes` is an error (the caller treats it as a miss).
    pub fn decode(value: &[u8], max_bytes: usize) -> Result<Entry, CacheError> {
        if value.len() < HEADER {
            return Err(CacheError::BadEntry("short value"));
        }
        if value[0] != VALUE_VERSION {
            return Err(CacheError::BadEntry("unknown value version"));
        }
        let flags = value[1];
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&value[2..10]);
        let expires_ms = u64::from_le_bytes(exp);
        let now_ms = unix_ms();
        if expires_ms <= now_ms {
            return Err(CacheError::BadEntry("expired"));
        }
        let mut raw = &value[HEADER..];
        let mut field = |n: usize| -> Result<u128, CacheError> {
            let bytes = raw.get(..n).ok_or(CacheError::BadEntry("short validity"))?;
            let mut b = [0u8; 16];
            b[..n].copy_from_slice(bytes);
            raw = &raw[n..];
            Ok(u128::from_le_bytes(b))
        };
        let validity = match flags & (FLAG_STAMP | FLAG_GENERATION) {
            0 => Validity::Always,
            FLAG_STAMP => Validity::Stamp(field(16)?),
            FLAG_GENERATION => Validity::Generation(field(8)? as u64),
            _ => return Err(CacheError::BadEntry("two validities")),
        };
        let decompressed;
        let body: &[u8] = if flags & FLAG_LZ4 != 0 {
            // The size prefix is data from outside: bound it before allocating.
            let declared = raw
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or(CacheError::BadEntry("short compressed value"))?;
            if declared > max_bytes.saturating_mul(2) + 4096 {
                return Err(CacheError::BadEntry("entry too large"));
            }
            decompressed = lz4_flex::decompress_size_prepended(raw)
                .map_err(|_| CacheError::BadEntry("bad compression"))?;
            &decompressed
        } else {
            raw
        };
        let count = body
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(CacheError::BadEntry("missing segment count"))?;
        let table_end = count
            .checked_mul(5)
            .and_then(|n| n.checked_add(4))
            .filter(|&end| end <= body.len())
            .ok_or(CacheError::BadEntry("bad segment table"))?;
        let mut segments = Vec::with_capacity(count);
        let mut total = 0usize;
        for rec in body[4..table_end].chunks_exact(5) {
            let stream = match rec[0] {
                0 => StreamKind::Stdout,
                1 => StreamKind::Stderr,
                _ => return Err(CacheError::BadEntry("bad stream")),
            };
            let n = u32::from_le_bytes([rec[1], rec[2], rec[3], rec[4]]);
            total = total.saturating_add(n as usize);
            segments.push((stream, n));
        }
        let data = &body[table_end..];
        if total != data.len() {
            return Err(CacheError::BadEntry("segment lengths do not match"));
        }
        if data.len() > max_bytes {
            return Err(CacheError::BadEntry("entry too large"));
        }
        Ok(Entry {
            data: Arc::new(data.into()),
            segments: segments.into_boxed_slice(),
            expires: Instant::now() + Duration::from_millis(expires_ms - now_ms),
            validity,
            prefetch: PrefetchMark::default(),
            renewal: Scratch::default(),
            checked: Scratch::default(),
        })
    }
}

fn stream_byte(s: StreamKind) -> u8 {
    match s {
        StreamKind::Stdout => 0,
        StreamKind::Stderr => 1,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_merge_and_roundtrip() {
        let big = vec![b'x'; 5000];
        let e = Entry::from_chunks(
            [
                (StreamKind::Stdout, &b"a"[..]),
                (StreamKind::Stdout, &b"b"[..]),
                (StreamKind::Stderr, &b"err"[..]),
                (StreamKind::Stdout, &big[..]),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(e.segments.len(), 3);
        for validity in [
            Validity::Always,
            Validity::Stamp(u128::MAX - 7),
            Validity::Generation(u64::MAX - 3),
        ] {
            let e = e.clone().valid_while(validity);
            for threshold in [0, 1024, usize::MAX] {
                let v = e.encode(threshold);
                let d = Entry::decode(&v, 1 << 20).unwrap();
                assert_eq!(d.data, e.data);
                assert_eq!(d.segments, e.segments);
                assert_eq!(d.validity, validity);
            }
        }
        assert!(e.encode(1024).len() < 1000, "compressed");
        assert!(Entry::decode(&e.encode(0), 100).is_err(), "size bound");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for v in [
            &b""[..],
            b"\x01",
            b"\x03\0\0\0\0\0\0\0\0\0",
            b"\x02\x01\xff\xff\xff\xff\xff\xff\xff\x7f\xff\xff\xff\xff",
            b"\x02\x02\xff\xff\xff\xff\xff\xff\xff\x7f\xff\xff",
            b"\x02\x06\xff\xff\xff\xff\xff\xff\xff\x7f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(Entry::decode(v, 1 << 20).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(v in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Entry::decode(&v, 1 << 20);
        }
    }
}

//! The rolling window behind the live scorecard (`GET /scorecard`).
//!
//! Backend latencies go into one small HdrHistogram per slot of [`SLOT`]
//! (5 s), kept in a ring long enough for [`MAX_WINDOW`]; a window's
//! percentiles are the merge of the slots it covers, so they describe the last
//! minute rather than everything since start. Counters are not kept per slot:
//! the ring stores a snapshot of the cumulative counters taken when each slot
//! opened, and a window's count is "now minus the snapshot at its first slot",
//! so the hot path pays nothing for them beyond the atomics it already bumps.
//!
//! The hot path records into the open slot's histogram under the lock it
//! already took for the since-start histogram (one lock, two records). Slots are
//! turned by a ticker task ([`super::Metrics::spawn_window_ticker`]), never by a
//! request; without a ticker (a `Metrics` outside a server) the open slot simply
//! grows, and the window reports the span it really covers.

use hdrhistogram::Histogram as Hdr;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one slot of the ring covers.
pub const SLOT: Duration = Duration::from_secs(5);
/// The shortest window `/scorecard` accepts: two slots.
pub const MIN_WINDOW: Duration = Duration::from_secs(10);
/// The longest window `/scorecard` accepts; it sets the ring's length.
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// The window when none is asked for.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Closed slots kept: enough that every slot opened within [`MAX_WINDOW`] is there.
const RING: usize = (MAX_WINDOW.as_secs() / SLOT.as_secs()) as usize + 2;
/// Latencies in µs, 1 µs to an hour. Two significant digits (1 %) keep a
/// slot's histogram at ~13 KB; percentiles against ms targets need no more.
const HIGHEST_US: u64 = 3_600_000_000;
const SLOT_SIGFIG: u8 = 2;

/// Cumulative counters at one instant: a slot's snapshot, or "now".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every `Error` frame sent (request or not).
    pub errors: u64,
    /// `Error` frames that ended an accepted request (also in the histogram).
    pub request_errors: u64,
    /// Requests the cache could answer.
    pub cacheable: u64,
    /// Cache hits, any tier.
    pub hits: u64,
    /// Process CPU time (user + system).
    pub cpu: Duration,
    /// Open WebSocket connections.
    pub connections: u64,
}

/// What one window saw, as plain numbers for the live scorecard.
#[derive(Debug, Clone)]
pub struct WindowFigures {
    /// The window asked for.
    pub requested: Duration,
    /// The span the figures really cover (from the first covered slot's start
    /// to now): at most `requested`, shorter early after start.
    pub span: Duration,
    /// Backend latency (µs) of every request that ended in the span, merged
    /// from the slots; its `len()` is the number of requests that ended.
    pub latency_us: Hdr<u64>,
    /// Counter deltas over the span (`cpu` is CPU time used in the span,
    /// `connections` is unused here: see `connections_mean`).
    pub delta: Counts,
    /// Open connections, averaged over the slot snapshots in the span and now.
    pub connections_mean: f64,
    /// Open connections now.
    pub connections_now: u64,
}

impl WindowFigures {
    /// Requests that ended (an `Exit`, or an `Error` after acceptance) in the span.
    pub fn requests(&self) -> u64 {
        self.latency_us.len()
    }
}

struct Closed {
    start: Instant,
    at_start: Counts,
    /// `None` when nothing ended in the slot: an idle server keeps no histograms.
    latency: Option<Arc<Hdr<u32>>>,
}

/// The since-start histogram and the ring, behind the one lock of
/// `Metrics::record_latency`.
pub(super) struct Recorder {
    /// Since start (3 significant digits): what the `Stats` frame carries.
    pub total: Hdr<u64>,
    current: Hdr<u32>,
    current_start: Instant,
    current_counts: Counts,
    closed: VecDeque<Closed>,
    spare: Vec<Hdr<u32>>,
}

fn slot_histogram() -> Hdr<u32> {
    Hdr::new_with_bounds(1, HIGHEST_US, SLOT_SIGFIG).expect("static histogram bounds")
}

fn merged_histogram() -> Hdr<u64> {
    Hdr::new_with_bounds(1, HIGHEST_US, SLOT_SIGFIG).expect("static histogram bounds")
}

impl Recorder {
    pub(super) fn new(now: Instant, counts: Counts) -> Recorder {
        Recorder {
            total: Hdr::new_with_bounds(1, HIGHEST_US, 3).expect("static histogram bounds"),
            current: slot_histogram(),
            current_start: now,
            current_counts: counts,
            closed: VecDeque::with_capacity(RING),
            spare: Vec::new(),
        }
    }

    /// The hot path: one request's backend latency.
    #[inline]
    pub(super) fn record(&mut self, us: u64) {
        let us = us.max(1);
        self.total.saturating_record(us);
        self.current.saturating_record(us);
    }

    /// Closes the open slot and opens one at `now` with the counters `counts`
    /// (read by the caller before taking the lock: one `getrusage` per slot).
    pub(super) fn rotate(&mut self, now: Instant, counts: Counts) {
        let latency = if self.current.is_empty() {
            None
        } else {
            let fresh = self.spare.pop().unwrap_or_else(slot_histogram);
            Some(Arc::new(std::mem::replace(&mut self.current, fresh)))
        };
        self.closed.push_back(Closed {
            start: self.current_start,
            at_start: self.current_counts,
            latency,
        });
        self.current_start = now;
        self.current_counts = counts;
        while self.closed.len() > RING {
            let Some(old) = self.closed.pop_front() else {
                break;
            };
            // Reused unless a reader still holds it (then it is simply dropped).
            if let Some(mut h) = old.latency.and_then(|a| Arc::try_unwrap(a).ok()) {
                h.reset();
                if self.spare.is_empty() {
                    self.spare.push(h);
                }
            }
        }
    }

    /// What the reader needs, taken under the lock: shared handles on the
    /// covered closed slots and a copy of the open one. The merge happens
    /// after the lock is released ([`Snapshot::figures`]).
    pub(super) fn snapshot(&self, now: Instant, window: Duration) -> Snapshot {
        let from = now.checked_sub(window);
        let covered = |start: Instant| from.map_or(true, |f| start >= f);
        let mut slots = Vec::new();
        let mut first = (self.current_start, self.current_counts);
        let mut connections = vec![self.current_counts.connections];
        if covered(self.current_start) {
            for c in self.closed.iter().rev() {
                if !covered(c.start) {
                    break;
                }
                if let Some(h) = &c.latency {
                    slots.push(h.clone());
                }
                first = (c.start, c.at_start);
                connections.push(c.at_start.connections);
            }
        }
        Snapshot {
            requested: window,
            first,
            slots,
            current: (!self.current.is_empty()).then(|| self.current.clone()),
            connections,
        }
    }
}

/// A window's slots, detached from the lock.
pub(super) struct Snapshot {
    requested: Duration,
    first: (Instant, Counts),
    slots: Vec<Arc<Hdr<u32>>>,
    current: Option<Hdr<u32>>,
    connections: Vec<u64>,
}

impl Snapshot {
    /// Merges the slots and takes the counter deltas against `now`.
    pub(super) fn figures(self, now: Instant, counts_now: Counts) -> WindowFigures {
        let mut latency_us = merged_histogram();
        for h in self
            .slots
            .iter()
            .map(|a| a.as_ref())
            .chain(self.current.iter())
        {
            for v in h.iter_recorded() {
                latency_us
                    .saturating_record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
            }
        }
        let (start, at) = self.first;
        let delta = Counts {
            errors: counts_now.errors.saturating_sub(at.errors),
            request_errors: counts_now.request_errors.saturating_sub(at.request_errors),
            cacheable: counts_now.cacheable.saturating_sub(at.cacheable),
            hits: counts_now.hits.saturating_sub(at.hits),
            cpu: counts_now.cpu.saturating_sub(at.cpu),
            connections: 0,
        };
        let samples = self.connections.len() as f64 + 1.0;
        let connections_mean =
            (self.connections.iter().sum::<u64>() as f64 + counts_now.connections as f64) / samples;
        WindowFigures {
            requested: self.requested,
            span: now.saturating_duration_since(start),
            latency_us,
            delta,
            connections_mean,
            connections_now: counts_now.connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests_errors: u64, hits: u64, cacheable: u64) -> Counts {
        Counts {
            errors: requests_errors,
            request_errors: requests_errors,
            cacheable,
            hits,
            cpu: Duration::from_millis(hits),
            connections: 2,
        }
    }

    #[test]
    fn a_window_covers_only_its_slots() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Counts::default());
        // Slot 0: 100 slow requests (10 ms), 100 cacheable, no hits.
        for _ in 0..100 {
            r.record(10_000);
        }
        // Slots 1..=12 (one minute): 50 fast requests (100 µs) each, all hits.
        for i in 1..=12u64 {
            r.rotate(
                t0 + SLOT * i as u32,
                counts(0, (i - 1) * 50, 100 + (i - 1) * 50),
            );
            for _ in 0..50 {
                r.record(100);
            }
        }
        let now = t0 + SLOT * 12 + Duration::from_secs(2);
        let now_counts = counts(0, 600, 700);

        // 30 s back from 62 s: slots opened at 35 s and later (6 of them, 300 requests).
        let f = r
            .snapshot(now, Duration::from_secs(30))
            .figures(now, now_counts);
        assert_eq!(f.requests(), 300);
        assert_eq!(f.span, Duration::from_secs(27));
        assert_eq!(f.delta.cacheable, 300);
        assert_eq!(f.delta.hits, 300);
        assert!(
            f.latency_us.value_at_quantile(0.95) <= 101,
            "only fast ones"
        );

        // The whole history: the slow first slot is in, p95 moves to 10 ms.
        let f = r
            .snapshot(now, Duration::from_secs(300))
            .figures(now, now_counts);
        assert_eq!(f.requests(), 700);
        assert_eq!(f.span, Duration::from_secs(62));
        assert_eq!(f.delta.cacheable, 700);
        let p95 = f.latency_us.value_at_quantile(0.95);
        assert!((9_900..=10_100).contains(&p95), "{p95}");
        // The since-start histogram keeps everything, at 3 digits.
        assert_eq!(r.total.len(), 700);
    }

    #[test]
    fn an_idle_window_is_empty_and_old_slots_leave_the_ring() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Counts::default());
        for _ in 0..10 {
            r.record(500);
        }
        // Ten idle minutes of ticks.
        for i in 1..=120u32 {
            r.rotate(t0 + SLOT * i, counts(0, 0, 0));
        }
        assert!(r.closed.len() <= RING);
        let now = t0 + SLOT * 120 + Duration::from_secs(1);
        let f = r
            .snapshot(now, DEFAULT_WINDOW)
            .figures(now, counts(0, 0, 0));
        assert_eq!(f.requests(), 0);
        assert!(f.span <= DEFAULT_WINDOW && f.span >= DEFAULT_WINDOW - SLOT);
        assert_eq!(r.total.len(), 10);
    }

    #[test]
    fn without_a_ticker_the_open_slot_is_the_whole_span() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Counts::default());
        r.record(7);
        let now = t0 + Duration::from_secs(600);
        let f = r
            .snapshot(now, DEFAULT_WINDOW)
            .figures(now, Counts::default());
        // Reported as what it is: 600 s, not passed off as the 60 s asked for.
        assert_eq!(f.span, Duration::from_secs(600));
        assert_eq!(f.requests(), 1);
    }
}

/// What the window adds to the hot path, in release builds:
/// `cargo test --release --lib -- --ignored --nocapture window_record_cost`.
#[cfg(test)]
mod cost {
    use super::*;
    use std::hint::black_box;
    use std::sync::Mutex;

    #[test]
    #[ignore = "a timing, not a check: run in release with --nocapture"]
    fn window_record_cost() {
        const N: u64 = 20_000_000;
        let values: Vec<u64> = (0..1024u64).map(|i| 20 + (i * 7919) % 5000).collect();
        let before = Mutex::new(Hdr::<u64>::new_with_bounds(1, HIGHEST_US, 3).expect("bounds"));
        let after = Mutex::new(Recorder::new(Instant::now(), Counts::default()));
        for round in 0..3 {
            let t = Instant::now();
            for i in 0..N {
                let v = black_box(values[(i & 1023) as usize]);
                if let Ok(mut h) = before.lock() {
                    h.saturating_record(v.max(1));
                }
            }
            let old = t.elapsed().as_nanos() as f64 / N as f64;
            let t = Instant::now();
            for i in 0..N {
                let v = black_box(values[(i & 1023) as usize]);
                if let Ok(mut r) = after.lock() {
                    r.record(v);
                }
            }
            let new = t.elapsed().as_nanos() as f64 / N as f64;
            println!("round {round}: lock + since-start record {old:.1} ns; lock + since-start + window slot {new:.1} ns; +{:.1} ns", new - old);
        }
    }
}

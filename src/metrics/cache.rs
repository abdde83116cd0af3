//! Cache figures: hits and misses per tier, hit rate over cacheable requests,
//! evictions, bytes held, L3 errors and latency, single-flight joins, and the
//! generation pub/sub (messages applied, subscriptions made, whether live).
//!
//! They live here (not in `cache`) because metrics is a leaf every module may use;
//! the cache only calls the recording methods, all plain atomic updates.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use voxterm_protocol::Counter as StatCounter;

/// A cache tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Per worker thread.
    L1,
    /// Process-wide.
    L2,
    /// Redis.
    L3,
}

impl Tier {
    fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "L1",
            Tier::L2 => "L2",
            Tier::L3 => "L3",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Why an L3 call did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Failure {
    /// Past the deadline.
    Timeout,
    /// Redis answered with an error or the connection failed.
    Error,
    /// A stored value could not be decoded.
    BadValue,
}

/// The cache's counters and gauges.
pub struct CacheMetrics {
    hits: Family<TierLabel, Counter>,
    misses: Family<TierLabel, Counter>,
    /// `hits` and `misses` of L1, L2 and L3, looked up once at start (a
    /// family lookup takes a lock and hashes the label, on every request).
    hit_by: [Counter; 3],
    miss_by: [Counter; 3],
    evictions: Family<TierLabel, Counter>,
    bytes: Family<TierLabel, Gauge>,
    l3_errors: Family<KindLabel, Counter>,
    l3_skipped: Counter,
    l3_latency: Histogram,
    joins: Counter,
    renewals: Family<KindLabel, Counter>,
    cacheable: Counter,
    stores: Counter,
    invalidations: Counter,
    runs: Counter,
    stale: Counter,
    generation_messages: Counter,
    generation_subscriptions: Counter,
    generation_subscribed: Gauge,
    hit_ratio: Gauge<f64, AtomicU64>,
    hit_total: AtomicU64,
}

impl CacheMetrics {
    pub(super) fn new() -> Self {
        let hits = Family::<TierLabel, Counter>::default();
        let misses = Family::<TierLabel, Counter>::default();
        let by = |f: &Family<TierLabel, Counter>| {
            [Tier::L1, Tier::L2, Tier::L3].map(|t| f.get_or_create(&Self::tier(t)).clone())
        };
        CacheMetrics {
            hit_by: by(&hits),
            miss_by: by(&misses),
            hits,
            misses,
            evictions: Family::default(),
            bytes: Family::default(),
            l3_errors: Family::default(),
            l3_skipped: Counter::default(),
            // 20 µs .. ~80 ms in doubling buckets.
            l3_latency: Histogram::new(exponential_buckets(20e-6, 2.0, 13)),
            joins: Counter::default(),
            renewals: Family::default(),
            cacheable: Counter::default(),
            stores: Counter::default(),
            invalidations: Counter::default(),
            runs: Counter::default(),
            stale: Counter::default(),
            generation_messages: Counter::default(),
            generation_subscriptions: Counter::default(),
            generation_subscribed: Gauge::default(),
            hit_ratio: Gauge::default(),
            hit_total: AtomicU64::new(0),
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register("cache_hits", "Cache hits by tier", self.hits.clone());
        r.register(
            "cache_misses",
            "Cache misses by tier (a lookup that went on to the next tier or to exec)",
            self.misses.clone(),
        );
        r.register(
            "cache_evictions",
            "Entries evicted for space, by tier",
            self.evictions.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by tier (L1 summed over worker threads)",
            self.bytes.clone(),
        );
        r.register(
            "cache_l3_errors",
            "Redis calls that failed, by kind (timeout, error, bad_value)",
            self.l3_errors.clone(),
        );
        r.register(
            "cache_l3_skipped",
            "Redis calls skipped while the circuit breaker was open",
            self.l3_skipped.clone(),
        );
        r.register(
            "cache_l3_latency_seconds",
            "Redis call latency",
            self.l3_latency.clone(),
        );
        r.register(
            "cache_single_flight_joins",
            "Requests that joined an identical in-flight miss instead of running it",
            self.joins.clone(),
        );
        r.register(
            "cache_renewals",
            "Entries in use run again before they expire, by outcome: started, stored, or why not (busy, in_flight, budget, cpu_share)",
            self.renewals.clone(),
        );
        r.register(
            "cache_cacheable_requests",
            "Requests the policy allowed to be served from cache",
            self.cacheable.clone(),
        );
        r.register("cache_stores", "Results stored", self.stores.clone());
        r.register(
            "cache_invalidations",
            "Tenant generation bumps (mutating or unknown commands)",
            self.invalidations.clone(),
        );
        r.register(
            "cache_miss_runs",
            "Processes started for cacheable misses (one per single-flight group)",
            self.runs.clone(),
        );
        r.register(
            "cache_stale",
            "Validated entries refused because their input files changed (once per tier that held one)",
            self.stale.clone(),
        );
        r.register(
            "cache_generation_messages",
            "Generation bumps received through Redis pub/sub and applied (this instance's own included)",
            self.generation_messages.clone(),
        );
        r.register(
            "cache_generation_subscriptions",
            "Subscriptions to the generation pub/sub channel made: the first, then one per reconnect",
            self.generation_subscriptions.clone(),
        );
        r.register(
            "cache_generation_subscribed",
            "1 while generation bumps are pushed through Redis pub/sub; 0: polling alone",
            self.generation_subscribed.clone(),
        );
        r.register(
            "cache_hit_ratio",
            "Hits (any tier) over cacheable requests",
            self.hit_ratio.clone(),
        );
    }

    fn tier(t: Tier) -> TierLabel {
        TierLabel { tier: t.as_str() }
    }

    /// A hit in `tier`.
    pub fn hit(&self, tier: Tier) {
        self.hit_by[tier as usize].inc();
        self.hit_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A miss in `tier`.
    pub fn miss(&self, tier: Tier) {
        self.miss_by[tier as usize].inc();
    }

    /// `n` entries evicted from `tier`.
    pub fn evicted(&self, tier: Tier, n: u64) {
        self.evictions.get_or_create(&Self::tier(tier)).inc_by(n);
    }

    /// Bytes held by `tier` changed by `delta`.
    pub fn add_bytes(&self, tier: Tier, delta: i64) {
        self.bytes.get_or_create(&Self::tier(tier)).inc_by(delta);
    }

    /// Bytes held by `tier` are now `n`.
    pub fn set_bytes(&self, tier: Tier, n: u64) {
        self.bytes.get_or_create(&Self::tier(tier)).set(n as i64);
    }

    /// An L3 call failed.
    pub fn l3_failed(&self, f: L3Failure) {
        let kind = match f {
            L3Failure::Timeout => "timeout",
            L3Failure::Error => "error",
            L3Failure::BadValue => "bad_value",
        };
        self.l3_errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// An L3 call was not made: the breaker is open.
    pub fn l3_skipped(&self) {
        self.l3_skipped.inc();
    }

    /// An L3 call took this long.
    pub fn l3_latency(&self, seconds: f64) {
        self.l3_latency.observe(seconds);
    }

    /// A request joined an in-flight miss.
    pub fn joined(&self) {
        self.joins.inc();
    }

    /// A renewal of an entry in use: `started`, `stored`, or why it was not
    /// started.
    pub fn renewal(&self, kind: &'static str) {
        self.renewals.get_or_create(&KindLabel { kind }).inc();
    }

    /// A request the policy allows to be cached.
    pub fn cacheable(&self) {
        self.cacheable.inc();
    }

    /// A result was stored.
    pub fn stored(&self) {
        self.stores.inc();
    }

    /// A tenant generation was bumped.
    pub fn invalidated(&self) {
        self.invalidations.inc();
    }

    /// A process was started for a cacheable miss.
    pub fn miss_run(&self) {
        self.runs.inc();
    }

    /// A validated entry was refused: its input files changed.
    pub fn stale(&self) {
        self.stale.inc();
    }

    /// A generation bump arrived through pub/sub and was applied.
    pub fn generation_message(&self) {
        self.generation_messages.inc();
    }

    /// The generation subscription was made (`true`, counted) or lost.
    pub fn generation_subscribed(&self, live: bool) {
        if live {
            self.generation_subscriptions.inc();
        }
        self.generation_subscribed.set(i64::from(live));
    }

    /// Generation bumps applied from pub/sub since start.
    pub fn generation_messages(&self) -> u64 {
        self.generation_messages.get()
    }

    /// Generation subscriptions made since start (reconnects included).
    pub fn generation_subscriptions(&self) -> u64 {
        self.generation_subscriptions.get()
    }

    /// Cacheable requests since start.
    pub fn cacheable_count(&self) -> u64 {
        self.cacheable.get()
    }

    /// Hits (any tier) since start.
    pub fn hit_count(&self) -> u64 {
        self.hit_total.load(Ordering::Relaxed)
    }

    /// Hits over cacheable requests (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let c = self.cacheable.get();
        if c == 0 {
            0.0
        } else {
            self.hit_total.load(Ordering::Relaxed) as f64 / c as f64
        }
    }

    pub(super) fn sample(&self) {
        self.hit_ratio.set(self.hit_rate());
    }

    /// The figures as named counters for the `Stats` frame.
    pub(super) fn counters(&self) -> Vec<StatCounter> {
        let c = |name: &str, value: u64| StatCounter {
            name: name.to_owned(),
            value,
        };
        let t = |f: &Family<TierLabel, Counter>, tier| f.get_or_create(&Self::tier(tier)).get();
        let b = |tier| self.bytes.get_or_create(&Self::tier(tier)).get().max(0) as u64;
        let l3_errors: u64 = ["timeout", "error", "bad_value"]
            .into_iter()
            .map(|kind| self.l3_errors.get_or_create(&KindLabel { kind }).get())
            .sum();
        vec![
            c("cache_cacheable", self.cacheable.get()),
            c("cache_hits_l1", t(&self.hits, Tier::L1)),
            c("cache_hits_l2", t(&self.hits, Tier::L2)),
            c("cache_hits_l3", t(&self.hits, Tier::L3)),
            c("cache_misses_l1", t(&self.misses, Tier::L1)),
            c("cache_misses_l2", t(&self.misses, Tier::L2)),
            c("cache_misses_l3", t(&self.misses, Tier::L3)),
            c(
                "cache_hit_rate_permille",
                (self.hit_rate() * 1000.0).round() as u64,
            ),
            c("cache_evictions_l1", t(&self.evictions, Tier::L1)),
            c("cache_evictions_l2", t(&self.evictions, Tier::L2)),
            c("cache_bytes_l1", b(Tier::L1)),
            c("cache_bytes_l2", b(Tier::L2)),
            c("cache_l3_errors", l3_errors),
            c("cache_l3_skipped", self.l3_skipped.get()),
            c("cache_single_flight_joins", self.joins.get()),
            c("cache_stores", self.stores.get()),
            c("cache_invalidations", self.invalidations.get()),
            c("cache_miss_runs", self.runs.get()),
            c("cache_stale", self.stale.get()),
            c("cache_generation_messages", self.generation_messages.get()),
            c(
                "cache_generation_subscriptions",
                self.generation_subscriptions.get(),
            ),
        ]
    }
}

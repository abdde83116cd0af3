//! Per-tenant token buckets for `Exec`s and for output bytes, and counted
//! connection slots per tenant and per source address.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buckets kept before full (idle) ones are dropped: bounds the map when tenant
/// names are client-chosen (no tokens).
const PRUNE_AT: usize = 4096;

/// A token bucket per tenant: `rate` commands per second, at most `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `None` when `rate` is 0 (unlimited). A `burst` of 0 means `rate` (at least 1).
    pub fn new(rate: f64, burst: u32) -> Option<RateLimiter> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        let burst = if burst == 0 {
            rate.ceil().max(1.0)
        } else {
            f64::from(burst)
        };
        Some(RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The configured rate, for messages.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one token from the tenant's bucket, or says how long until one is there.
    pub fn take(&self, tenant: &Arc<str>, now: Instant) -> Result<(), Duration> {
        let mut map = crate::sync::lock(&self.buckets);
        if map.len() >= PRUNE_AT && !map.contains_key(tenant) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refill(b, now, rate, burst) < burst);
        }
        let burst = self.burst;
        let b = map.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let tokens = refill(b, now, self.rate, self.burst);
        if tokens >= 1.0 {
            b.tokens = tokens - 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// A per-tenant output budget in bytes per second, kept as a token bucket that
/// may go into debt: a chunk is always taken whole, and the tenant's next chunks
/// wait until the debt is paid back. Waiting (rather than dropping or refusing)
/// holds the chunk's producer, so the child's pipe fills and the child itself
/// slows down: output arrives late but complete.
#[derive(Debug)]
pub struct OutputBudget {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

impl OutputBudget {
    /// `None` when `bytes_per_second` is 0 (unlimited). A `burst` of 0 means one
    /// second's worth.
    pub fn new(bytes_per_second: u64, burst: u64) -> Option<OutputBudget> {
        if bytes_per_second == 0 {
            return None;
        }
        let rate = bytes_per_second as f64;
        let burst = if burst == 0 { rate } else { burst as f64 };
        Some(OutputBudget {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Charges `bytes` to the tenant and says how long the caller must wait
    /// before sending them (zero while the tenant is within its budget).
    pub fn take(&self, tenant: &Arc<str>, bytes: usize, now: Instant) -> Duration {
        let mut map = crate::sync::lock(&self.buckets);
        if map.len() >= PRUNE_AT && !map.contains_key(tenant) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refill(b, now, rate, burst) < burst);
        }
        let burst = self.burst;
        let b = map.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let tokens = refill(b, now, self.rate, self.burst) - bytes as f64;
        b.tokens = tokens;
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }
}

/// Counted slots per key (tenant, source address): at most `max` held at once.
/// A slot is given back when its [`Slot`] is dropped, however the connection ends.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash + Clone> {
    inner: Arc<SlotsInner<K>>,
}

#[derive(Debug)]
struct SlotsInner<K> {
    max: u32,
    held: Mutex<HashMap<K, u32>>,
}

/// One held slot; dropping it frees it.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    inner: Arc<SlotsInner<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    /// `None` when `max` is 0 (unlimited).
    pub fn new(max: u32) -> Option<Slots<K>> {
        (max > 0).then(|| Slots {
            inner: Arc::new(SlotsInner {
                max,
                held: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Slots without a maximum: a count of what is held per key.
    pub fn unbounded() -> Slots<K> {
        Slots {
            inner: Arc::new(SlotsInner {
                max: u32::MAX,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configured maximum, for messages.
    pub fn max(&self) -> u32 {
        self.inner.max
    }

    /// A slot for `key`, or `None` when `key` already holds the maximum.
    pub fn acquire(&self, key: &K) -> Option<Slot<K>> {
        let mut held = crate::sync::lock(&self.inner.held);
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= self.inner.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            inner: self.inner.clone(),
            key: key.clone(),
        })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &K) -> u32 {
        let held = crate::sync::lock(&self.inner.held);
        held.get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = crate::sync::lock(&self.inner.held);
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Failed authentications per source address, with exponential back-off:
/// after `free` failures each further one makes the address wait, 1 s and then
/// twice as long per failure (at most [`MAX_BACKOFF`]). While it waits, every
/// attempt from it is refused unchecked, right tokens included (they cannot be
/// told from a lucky guess). A quiet address is forgotten after [`FORGET_AFTER`].
/// Guessing a token through the server is then a few per 10 minutes.
#[derive(Debug)]
pub struct AuthThrottle {
    free: u32,
    failures: Mutex<HashMap<std::net::IpAddr, Failures>>,
}

/// Longest wait imposed on an address.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// An address without failures for this long starts again from zero.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    until: Option<Instant>,
}

impl AuthThrottle {
    /// `None` when `free` is 0 (no throttling).
    pub fn new(free: u32) -> Option<AuthThrottle> {
        (free > 0).then(|| AuthThrottle {
            free,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// How long `ip` must still wait before it may try again, if it must.
    pub fn check(&self, ip: std::net::IpAddr, now: Instant) -> Result<(), Duration> {
        let map = crate::sync::lock(&self.failures);
        match map.get(&ip).and_then(|f| f.until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`; returns the wait it now has
    /// to serve, if the failure took it past its free ones.
    pub fn failed(&self, ip: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let mut map = crate::sync::lock(&self.failures);
        if map.len() >= PRUNE_AT && !map.contains_key(&ip) {
            map.retain(|_, f| {
                f.until.is_some_and(|u| u > now)
                    || now.saturating_duration_since(f.last) < FORGET_AFTER
            });
            if map.len() >= PRUNE_AT {
                // A spread-out flood: keep only the addresses that are waiting.
                map.retain(|_, f| f.until.is_some_and(|u| u > now));
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            until: None,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
            f.until = None;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let over = f.count.checked_sub(self.free).filter(|&n| n > 0)?;
        let wait = Duration::from_secs(1u64 << (over - 1).min(10)).min(MAX_BACKOFF);
        f.until = Some(now + wait);
        Some(wait)
    }
}

/// Brings a bucket up to `now` and returns its tokens.
fn refill(b: &mut Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    b.tokens = (b.tokens + elapsed * rate).min(burst);
    b.last = now;
    b.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_per_tenant() {
        assert!(RateLimiter::new(0.0, 10).is_none());
        let l = RateLimiter::new(10.0, 3).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(&a, t0).is_ok());
        }
        let wait = l.take(&a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(l.take(&b, t0).is_ok(), "tenants have their own buckets");
        assert!(l.take(&a, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take(&a, t0 + Duration::from_millis(100)).is_err());
        // Idle refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.take(&a, later).is_ok());
        }
        assert!(l.take(&a, later).is_err());
    }

    #[test]
    fn output_budget_goes_into_debt_and_makes_the_next_chunk_wait() {
        assert!(OutputBudget::new(0, 10).is_none());
        let b = OutputBudget::new(1000, 500).unwrap();
        let a: Arc<str> = "a".into();
        let t0 = Instant::now();
        assert_eq!(b.take(&a, 500, t0), Duration::ZERO, "the burst is free");
        // 250 bytes over: a quarter of a second of debt.
        let wait = b.take(&a, 250, t0);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-6, "{wait:?}");
        assert!(b.take(&"other".into(), 500, t0).is_zero());
        // After the debt is paid, within budget again.
        assert!(b.take(&a, 100, t0 + Duration::from_millis(350)).is_zero());
    }

    #[test]
    fn failed_authentications_back_off_exponentially_per_address() {
        assert!(AuthThrottle::new(0).is_none());
        let t = AuthThrottle::new(3).unwrap();
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.failed(a, t0), None, "the first three are free");
            assert!(t.check(a, t0).is_ok());
        }
        assert_eq!(t.failed(a, t0), Some(Duration::from_secs(1)));
        assert!(t.check(a, t0).is_err());
        assert!(t.check(b, t0).is_ok(), "addresses are separate");
        let t1 = t0 + Duration::from_secs(1);
        assert!(t.check(a, t1).is_ok(), "the wait is served");
        assert_eq!(t.failed(a, t1), Some(Duration::from_secs(2)));
        assert_eq!(t.failed(a, t1), Some(Duration::from_secs(4)));
        let wait = t.check(a, t1).unwrap_err();
        assert_eq!(wait, Duration::from_secs(4));
        for _ in 0..20 {
            t.failed(a, t1);
        }
        assert_eq!(t.check(a, t1).unwrap_err(), MAX_BACKOFF, "capped");
        // Quiet long enough: forgotten.
        let later = t1 + MAX_BACKOFF + FORGET_AFTER;
        assert!(t.check(a, later).is_ok());
        assert_eq!(t.failed(a, later), None);
    }

    #[test]
    fn slots_are_counted_per_key_and_freed_on_drop() {
        assert!(Slots::<u8>::new(0).is_none());
        let s = Slots::new(2).unwrap();
        let x = s.acquire(&1u8).unwrap();
        let _y = s.acquire(&1u8).unwrap();
        assert!(s.acquire(&1u8).is_none());
        assert!(s.acquire(&2u8).is_some(), "keys are separate");
        drop(x);
        assert_eq!(s.held(&1), 1);
        assert!(s.acquire(&1u8).is_some());
        assert_eq!(s.held(&2), 0, "dropped slots leave no entry");
    }
}

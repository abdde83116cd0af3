//! Per-tenant token buckets for `Exec`s.

use std::collections::HashMap;
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
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
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
}

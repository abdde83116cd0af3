//! When a prefetch may run: only on idle capacity, within the tenant's budget and
//! the global share of CPU. Every refusal has a reason, counted in metrics, so a
//! prefetcher that never runs says why.

use crate::config::PredictConfig;
use crate::security::RateLimiter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why a prefetch was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Workers are busy or requests are queued: prefetch only uses idle capacity.
    Busy,
    /// The tenant spent its prefetch budget.
    Budget,
    /// As many prefetches as the CPU share allows are already running.
    Share,
}

impl Refused {
    /// Label value in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Busy => "busy",
            Refused::Budget => "budget",
            Refused::Share => "cpu_share",
        }
    }
}

/// The admission rules, shared by every prefetch.
pub struct Gate {
    idle_share: f64,
    max_running: usize,
    running: AtomicUsize,
    budget: Option<RateLimiter>,
}

/// A running prefetch's place in the CPU share; released on drop.
pub struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// Rules from the configuration; `cores` sizes the CPU share (at least one
    /// prefetch may run, or the feature would be off).
    pub fn new(cfg: &PredictConfig, cores: usize) -> Arc<Gate> {
        let share = if cfg.cpu_share.is_nan() {
            0.0
        } else {
            cfg.cpu_share.clamp(0.0, 1.0)
        };
        Arc::new(Gate {
            idle_share: if cfg.idle_share.is_nan() {
                0.0
            } else {
                cfg.idle_share.clamp(0.0, 1.0)
            },
            max_running: ((cores as f64 * share).ceil() as usize).max(1),
            running: AtomicUsize::new(0),
            budget: RateLimiter::new(cfg.tenant_rate, cfg.tenant_burst),
        })
    }

    /// The same idle and CPU shares without a tenant budget: for renewals
    /// (`engine::renew`), which a hit starts at most once per entry and TTL.
    pub fn idle_only(cfg: &PredictConfig, cores: usize) -> Arc<Gate> {
        let gate = Gate::new(cfg, cores);
        Arc::new(Gate {
            idle_share: gate.idle_share,
            max_running: gate.max_running,
            running: AtomicUsize::new(0),
            budget: None,
        })
    }

    /// Prefetches allowed at once.
    pub fn max_running(&self) -> usize {
        self.max_running
    }

    /// Whether a prefetch could be admitted now, taking nothing: the pool is
    /// idle enough and the CPU share has room. Asked before the work that
    /// decides whether a prefetch is needed at all (restamping a cached
    /// entry's inputs costs file system calls), so a loaded server spends
    /// nothing on guesses it would refuse anyway.
    pub fn open(&self, busy: usize, queued: usize, workers: usize) -> Result<(), Refused> {
        if queued > 0 || busy as f64 >= workers as f64 * self.idle_share {
            return Err(Refused::Busy);
        }
        if self.running.load(Ordering::Acquire) >= self.max_running {
            return Err(Refused::Share);
        }
        Ok(())
    }

    /// Admits one prefetch for `tenant` given the pool's state now: nothing
    /// queued and fewer than `idle_share` of the workers busy.
    pub fn admit(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        busy: usize,
        queued: usize,
        workers: usize,
    ) -> Result<Permit, Refused> {
        if queued > 0 || busy as f64 >= workers as f64 * self.idle_share {
            return Err(Refused::Busy);
        }
        let mut now = self.running.load(Ordering::Acquire);
        loop {
            if now >= self.max_running {
                return Err(Refused::Share);
            }
            match self.running.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(v) => now = v,
            }
        }
        let permit = Permit { gate: self.clone() };
        if let Some(b) = &self.budget {
            if b.take(tenant, Instant::now()).is_err() {
                return Err(Refused::Budget);
            }
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    fn gate(rate: f64, burst: u32) -> Arc<Gate> {
        let mut cfg = Preset::Development.config().predict;
        cfg.tenant_rate = rate;
        cfg.tenant_burst = burst;
        cfg.cpu_share = 0.5;
        cfg.idle_share = 0.5;
        Gate::new(&cfg, 2)
    }

    #[test]
    fn a_busy_pool_gets_no_prefetch() {
        let g = gate(100.0, 100);
        let t: Arc<str> = "t".into();
        assert_eq!(g.admit(&t, 8, 0, 16).err(), Some(Refused::Busy));
        assert_eq!(g.admit(&t, 0, 1, 16).err(), Some(Refused::Busy));
        assert!(g.admit(&t, 7, 0, 16).is_ok());
    }

    #[test]
    fn the_cpu_share_caps_running_prefetches() {
        let g = gate(100.0, 100);
        let t: Arc<str> = "t".into();
        let first = g.admit(&t, 0, 0, 16).expect("one may run on 2 cores × 0.5");
        assert_eq!(g.admit(&t, 0, 0, 16).err(), Some(Refused::Share));
        drop(first);
        assert!(g.admit(&t, 0, 0, 16).is_ok());
    }

    #[test]
    fn open_says_what_admit_would_and_takes_nothing() {
        let g = gate(0.001, 1);
        let t: Arc<str> = "t".into();
        assert_eq!(g.open(8, 0, 16), Err(Refused::Busy));
        assert_eq!(g.open(0, 1, 16), Err(Refused::Busy));
        for _ in 0..3 {
            assert_eq!(g.open(0, 0, 16), Ok(()), "asking takes no share");
        }
        let running = g
            .admit(&t, 0, 0, 16)
            .expect("the share and budget had room");
        assert_eq!(g.open(0, 0, 16), Err(Refused::Share));
        drop(running);
        assert_eq!(g.open(0, 0, 16), Ok(()), "nor any budget: that is admit's");
    }

    #[test]
    fn each_tenant_has_its_own_budget() {
        let g = gate(0.001, 2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        drop(g.admit(&a, 0, 0, 16).unwrap());
        drop(g.admit(&a, 0, 0, 16).unwrap());
        assert_eq!(g.admit(&a, 0, 0, 16).err(), Some(Refused::Budget));
        assert!(g.admit(&b, 0, 0, 16).is_ok());
    }
}

//! Renewal: a cached answer still in use is run again shortly before it
//! expires, off every request's path, so that a line people keep running does
//! not expire into a miss.
//!
//! A 10,000-user run held ten minutes showed why: every entry stored while
//! the users arrived expired within one TTL of each other, and the hit rate
//! fell from 80 to 65 % as they did, each expiry a spawn on some request's
//! way. Now the first hit on an entry with less than a fifth of its TTL left
//! ([`Cache::renewal_due`], once per entry) starts a run of the same line,
//! admitted as a prefetch is, by a gate of its own with the same shares
//! (idle workers, the CPU share; no tenant budget: a hit starts at most one
//! per entry and TTL) and whether or not prediction is on (`[cache] renew`,
//! `--no-renew`), an idle worker right now or nothing (never queued),
//! single flight with any run of the same key. It goes straight to a worker
//! (L3 may hold the very entry that is ending), its inputs stamped before it
//! runs, and a clean result is stored in every tier with a TTL of its own.
//!
//! Nothing is served longer than its TTL allows: a renewal replaces an entry
//! with a new run's answer; it never extends the old one. A renewal refused
//! (counted under `voxterm_cache_renewals_total{kind}`) leaves the entry to
//! expire as it would have.

use super::miss::{MissRun, Origin};
use super::Engine;
use crate::cache::{Key, Verdict};
use crate::exec::Job;
use crate::predict::Refused;
use std::sync::Arc;
use std::time::Duration;
use voxterm_protocol::Priority;

/// A renewal is cut off after this long, as a prefetch is: it must not hold
/// a worker for a slow command.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Renews the entry under `key` that a hit just found due: the line of
    /// `job` (the hit's own) runs again if the renewal gate and an idle
    /// worker allow it now.
    pub(super) fn renew(
        &self,
        tenant: &Arc<str>,
        job: &Job,
        key: Key,
        verdict: &Verdict,
        generation: u64,
    ) {
        let (Some(gate), Some(cache)) = (&self.renewals, &self.cache) else {
            return;
        };
        let metrics = self.metrics.clone();
        let pool = &self.workers.pool;
        let permit = match gate.admit(tenant, pool.busy(), pool.queue_depth(), pool.workers()) {
            Ok(permit) => permit,
            Err(refused) => return metrics.cache.renewal(Refused::as_str(refused)),
        };
        let Some(slot) = pool.try_acquire_idle(tenant) else {
            return metrics.cache.renewal("busy");
        };
        let (follower, publisher) = self.flights.join(key);
        drop(follower);
        let Some(publisher) = publisher else {
            return metrics.cache.renewal("in_flight");
        };
        metrics.cache.renewal("started");
        let run = MissRun {
            cache: cache.clone(),
            workers: self.workers.clone(),
            tenant: tenant.clone(),
            priority: Priority::Prefetch,
            job: Job {
                timeout: RENEWAL_TIMEOUT,
                ..job.clone()
            },
            key,
            verdict: verdict.clone(),
            generation,
            origin: Origin::Renewal(slot),
        };
        tokio::spawn(async move {
            if run.run(publisher).await {
                metrics.cache.renewal("stored");
            }
            drop(permit);
        });
    }
}

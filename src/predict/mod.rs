//! Next-command prediction (DESIGN §2 step 8): an online model per tenant with a
//! global prior, and the gates that decide when a prediction may be prefetched.
//!
//! * [`model`]: order-1 and order-2 transition counts with decay, blended over
//!   the global prior; bounded per tenant.
//! * [`Predictor`]: the models of every tenant (sharded, LRU-bounded), learning
//!   from every executed line and answering top-k with probabilities.
//! * [`store`]: persistence, so the model survives restarts: in Redis when L3 is
//!   on, otherwise in a file under the data directory.
//! * [`gate`]: whether a prefetch may run now (idle workers, the tenant's
//!   budget, the global share of CPU).
//!
//! The engine (`session::prefetch`) drives these: it runs an admitted prefetch
//! through the same single-flight and cache tiers as a request, at prefetch
//! priority.

pub mod gate;
pub mod model;
pub mod store;

pub use gate::{Gate, Refused};
pub use model::{id_of, CmdId, Distribution, Model, Prediction, NONE, START};
pub use store::{Snapshot, Store};

use crate::config::PredictConfig;
use lru::LruCache;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Shards of the tenant map: learning takes one shard's lock for about a
/// microsecond, so 16 keep two cores' worth of requests from queueing on it.
const SHARDS: usize = 16;
/// Contexts of the global prior.
const GLOBAL_CONTEXTS: usize = 4096;

/// One shard of the tenant map: least recently used tenants go first.
type Shard = Mutex<LruCache<Arc<str>, Model>>;

/// Every tenant's model plus the global prior.
pub struct Predictor {
    shards: Box<[Shard]>,
    global: Mutex<Model>,
    /// Tenants learned from since the last save.
    dirty: Mutex<HashSet<Arc<str>>>,
    global_dirty: std::sync::atomic::AtomicBool,
    top_k: usize,
}

use crate::sync::lock;

impl Predictor {
    /// An empty predictor keeping at most `cfg.max_tenants` tenant models.
    pub fn new(cfg: &PredictConfig) -> Predictor {
        let per_shard =
            NonZeroUsize::new(cfg.max_tenants.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Predictor {
            shards: (0..SHARDS)
                .map(|_| {
                    // Not `LruCache::new`: that sizes the table for the bound up
                    // front (2.2 MiB for the default 100,000 tenants), whose pages
                    // then become resident one by one as tenants land on them, a
                    // slow RSS growth no live-heap figure shows. This one grows
                    // with the tenants actually seen.
                    let mut lru = LruCache::unbounded();
                    lru.resize(per_shard);
                    Mutex::new(lru)
                })
                .collect(),
            global: Mutex::new(Model::with_capacity(GLOBAL_CONTEXTS)),
            dirty: Mutex::new(HashSet::new()),
            global_dirty: std::sync::atomic::AtomicBool::new(false),
            top_k: cfg.top_k.max(1),
        }
    }

    fn shard(&self, tenant: &str) -> &Shard {
        // FNV-1a: a shard only spreads lock contention, it needs no
        // cryptographic hash (twice per request, that was measurable).
        let h = tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Learns that `line` followed (`prev2`, `prev1`) in a session of `tenant`
    /// ([`Predictor::observe`] without the prediction). Lines longer than
    /// [`model::MAX_LINE`] are not learned.
    pub fn learn(
        &self,
        tenant: &Arc<str>,
        prev2: CmdId,
        prev1: CmdId,
        next: CmdId,
        line: impl Into<Arc<str>>,
    ) {
        self.observe(tenant, (prev2, prev1), next, &line.into(), false);
    }

    /// Learns that `line` (whose id is `next`) followed (`prev2`, `prev1`)
    /// in a session of `tenant` and, when `predict`, returns what likely
    /// follows it (the context (`prev1`, `next`)) as [`Predictor::predict`]
    /// would: a request's two uses of the models under one taking of each
    /// lock and one lookup of the tenant's model (they were ~15 % of a
    /// cached request's instructions when done apart).
    pub fn observe(
        &self,
        tenant: &Arc<str>,
        (prev2, prev1): (CmdId, CmdId),
        next: CmdId,
        line: &Arc<str>,
        predict: bool,
    ) -> Option<Distribution> {
        let learn = line.len() <= model::MAX_LINE;
        // The tenant's shard first, then the global prior, as in `predict`:
        // one lock order everywhere. The prior's lock is the one every
        // request of every tenant takes, so it is held only for its own
        // learning and the blend, not for the tenant's lookup and learning.
        let mut shard = lock(self.shard(tenant));
        // A tenant seen for the first time gets its model once it learned.
        let mut fresh = None;
        let m = match shard.get_mut(tenant) {
            Some(m) => m,
            None => fresh.insert(Model::default()),
        };
        let newly_unsaved = learn && {
            m.learn(prev2, prev1, next, line, true);
            m.mark_unsaved()
        };
        let dist = {
            let mut global = lock(&self.global);
            if learn {
                global.learn(prev2, prev1, next, line, false);
            }
            predict.then(|| model::blend(Some(&*m), &global, prev1, next, self.top_k))
        };
        if let Some(m) = fresh.filter(|_| learn) {
            shard.put(tenant.clone(), m);
        }
        drop(shard);
        if learn {
            self.global_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Only a model's first change since its save touches the set: asked
        // on every request, the set's lookup was a SipHash of the tenant.
        if newly_unsaved {
            lock(&self.dirty).insert(tenant.clone());
        }
        dist
    }

    /// The `top_k` most likely next commands of `tenant` after (`prev2`, `prev1`).
    pub fn predict(&self, tenant: &str, prev2: CmdId, prev1: CmdId) -> Distribution {
        // The shard, then the prior: the order `observe` takes them in.
        let mut shard = lock(self.shard(tenant));
        let global = lock(&self.global);
        model::blend(shard.get(tenant), &global, prev2, prev1, self.top_k)
    }

    /// Tenant models held.
    pub fn tenants(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether `tenant` has a model in memory.
    pub fn knows(&self, tenant: &str) -> bool {
        lock(self.shard(tenant)).contains(tenant)
    }

    /// Whether anything was learned since the last [`Predictor::take_dirty`].
    pub fn has_changes(&self) -> bool {
        self.global_dirty.load(std::sync::atomic::Ordering::Relaxed)
            || !lock(&self.dirty).is_empty()
    }

    /// Snapshot of the global prior and of the tenants learned from since the last
    /// call (all tenants when `all`), for the store.
    pub fn take_dirty(&self, all: bool) -> Snapshot {
        let dirty: Vec<Arc<str>> = if all {
            lock(&self.dirty).clear();
            self.shards
                .iter()
                .flat_map(|s| lock(s).iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
                .collect()
        } else {
            lock(&self.dirty).drain().collect()
        };
        // A model is marked saved under its shard's lock, with its snapshot:
        // a later change marks it again and puts its tenant back in the set.
        let tenants = dirty
            .into_iter()
            .filter_map(|t| {
                let mut shard = lock(self.shard(&t));
                let m = shard.peek_mut(&t)?;
                m.mark_saved();
                Some((t.to_string(), m.snapshot()))
            })
            .collect();
        let global_dirty = self
            .global_dirty
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        Snapshot {
            version: store::SNAPSHOT_VERSION,
            global: if all || global_dirty {
                lock(&self.global).snapshot()
            } else {
                Vec::new()
            },
            tenants,
        }
    }

    /// Merges a loaded snapshot into the models (a tenant already learning here
    /// keeps what it learned and gains the loaded counts).
    pub fn restore(&self, snap: &Snapshot) {
        lock(&self.global).restore(&snap.global);
        for (tenant, contexts) in &snap.tenants {
            let t: Arc<str> = tenant.as_str().into();
            let mut shard = lock(self.shard(&t));
            match shard.get_mut(&t) {
                Some(m) => m.restore(contexts),
                None => {
                    let mut m = Model::default();
                    m.restore(contexts);
                    shard.put(t, m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_models_stay_within_the_bound_and_keep_the_recent_ones() {
        let cfg = PredictConfig {
            max_tenants: 32,
            ..PredictConfig::default()
        };
        let p = Predictor::new(&cfg);
        let (a, b) = (id_of("ls"), id_of("pwd"));
        for t in 0..1000 {
            let tenant: Arc<str> = format!("t{t}").into();
            p.learn(&tenant, NONE, a, b, "pwd");
        }
        // Two per shard: at most 32, and however the tenants hash, the last one
        // learned from is kept.
        assert!(p.tenants() <= 32, "{} tenants kept", p.tenants());
        assert!(p.tenants() >= 16, "{} tenants kept", p.tenants());
        assert!(p.knows("t999"));
        assert!(!p.knows("t0"));
    }

    #[test]
    fn observing_learns_and_predicts_as_the_two_calls_do() {
        let cfg = PredictConfig::default();
        let (apart, together) = (Predictor::new(&cfg), Predictor::new(&cfg));
        let lines: Vec<Arc<str>> = ["ls", "git status", "ls", "make", "ls", "git status", "ls"]
            .into_iter()
            .map(Arc::from)
            .collect();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        for tenant in [&a, &b, &a] {
            let mut ctx = (NONE, START);
            for line in &lines {
                let id = id_of(line);
                apart.learn(tenant, ctx.0, ctx.1, id, line.clone());
                let expected = apart.predict(tenant, ctx.1, id);
                let got = together.observe(tenant, ctx, id, line, true);
                assert_eq!(got.as_ref(), Some(&expected), "after {line:?}");
                ctx = (ctx.1, id);
            }
        }
        // After `make`, `ls`: `git status`, each time.
        let after_ls = together.predict(&a, id_of("make"), id_of("ls"));
        assert_eq!(&*after_ls[0].line, "git status");
        assert!(after_ls[0].own);
        // Not predicting still learns, and a new tenant gets a model.
        let c: Arc<str> = "c".into();
        assert_eq!(
            together.observe(&c, (NONE, START), id_of("ls"), &lines[0], false),
            None
        );
        assert!(together.knows("c"));
        assert!(together.has_changes());
    }
}

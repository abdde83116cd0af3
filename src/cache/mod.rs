//! The tiered result cache (DESIGN §4): policy, keys, L1 → L2 → L3, generations.
//!
//! * [`policy`] decides from the parsed command line (a `shell::Line`, parsed
//!   once by the engine) whether an answer may be reused (pure, session,
//!   fs-read) and with which TTL, and which lines invalidate (mutating, and
//!   unknown ones, which may write files too). The inputs to stamp come from
//!   the same line's direct argv. Verdicts are not remembered here: the engine
//!   keeps each with its parsed line.
//! * [`key`] hashes everything that decides the output into a 128-bit key.
//! * [`L1`] (per worker thread, lock-free hit path), [`L2`] (process-wide) and
//!   [`L3`] (Redis, shared by instances) hold [`Entry`]s; a lower-tier hit is
//!   promoted to the upper tiers.
//! * Generations: a mutating command bumps its tenant's generation, which is part
//!   of every unvalidated fs-read key (those exist only with the opt-in blind
//!   TTL), so every tier's such entries of that tenant become unreachable at
//!   once, on every instance when L3 is on (INCR in Redis): the others poll it
//!   at most `generation_refresh` late and, with `generation_pubsub`, get it
//!   pushed at once ([`invalidate`]), the poll staying the backstop.
//! * [`flight`] coalesces identical concurrent misses into one run.
//! * [`blobs`] keeps identical outputs of different keys (every tenant's
//!   `cat logs/app.log`) in one allocation.
//! * [`inputs`] validates fs-read answers against their inputs, so that those
//!   of readers, listings, small trees and git's read-only subcommands (`cat F`,
//!   `ls -la D`, `find`, `git status`) may live for minutes and are still never
//!   stale.
//!
//! The engine (`engine::execute`, `engine::miss`) drives these; nothing here ever fails a request:
//! a cache problem is a miss.

pub mod blobs;
mod entry;
mod error;
pub mod flight;
pub mod inputs;
mod invalidate;
mod key;
mod l1;
mod l2;
mod l3;
pub mod policy;

pub use entry::{Entry, Validity, REPLAY_CHUNK};
pub use error::CacheError;
pub use inputs::{Inputs, Taken};
pub use key::{Key, KeyParts, KEY_FORMAT};
pub use l1::{KeyHash, L1};
pub use l2::L2;
pub use l3::{check_url, redact, L3Config, GENERATION_CHANNEL, L3, NAMESPACE};
pub use policy::{Class, Policy, Verdict};

use crate::config::CacheConfig;
use crate::metrics::{Metrics, Tier};
use crate::shell::Line;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A tenant's generation as this instance knows it.
#[derive(Debug, Clone, Copy, Default)]
struct Gen {
    value: u64,
    /// When Redis was last asked (None: never).
    checked: Option<Instant>,
    /// A bump of this instance has not reached Redis (it was unreachable, or the
    /// bump is under way): `value` is then a number of this instance's own
    /// ([`own_generation`]), which Redis never hands out, and the next refresh
    /// bumps Redis first so that the other instances see the write. Counting on
    /// with `+= 1` instead would run ahead of Redis: the next number Redis hands
    /// out would be below it, the `max` would ignore it, and this instance would
    /// serve what another instance's write invalidated (a failover showed it).
    unsynced: bool,
    /// Counts bumps started and bumps failed: Redis's answer to a bump (or to
    /// a refresh's) becomes the generation only if no other bump started or
    /// failed while it was under way (a late answer to an earlier bump would
    /// otherwise give back a number from before a later write).
    epoch: u64,
    /// The highest number Redis handed out here: bumps ask Redis for more than
    /// this, so a Redis that lost the key cannot hand out a number in use.
    synced: u64,
}

/// Every tenant's generation as this instance knows it (shared with the
/// pub/sub subscriber).
type Gens = Mutex<HashMap<Arc<str>, Gen>>;

/// Applies a generation that Redis published for `tenant`, as Redis had it
/// at some moment after `since` (see [`invalidate`]): what a poll sent at
/// `since` could have answered, and applied as such. It never lowers a value,
/// leaves a bump of this instance's that has not reached Redis alone (only the
/// floor of its next try rises; its retry is not put off), and skips a tenant
/// this instance has not asked about (its first lookup asks Redis).
fn pushed(gens: &Gens, tenant: &str, r: u64, since: Instant) {
    let mut gens = crate::sync::lock(gens);
    let Some(g) = gens.get_mut(tenant) else {
        return;
    };
    g.synced = g.synced.max(r);
    if g.unsynced {
        return;
    }
    g.value = g.value.max(r);
    g.checked = g.checked.max(Some(since));
}

/// A generation of this instance's own: random, top bit set, so neither
/// another instance nor Redis (which counts from 0) ever uses the same number.
fn own_generation() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now()) | 1 << 63
}

/// The cache of one engine.
pub struct Cache {
    policy: Policy,
    l1: L1,
    l2: L2,
    l3: Option<Arc<L3>>,
    blobs: blobs::Blobs,
    gens: Arc<Gens>,
    /// Pushes generations from Redis (L3 with `generation_pubsub`).
    subscriber: Option<invalidate::Subscriber>,
    generation_refresh: Duration,
    unknown_invalidates: bool,
    max_entry: usize,
    /// Where and as whom lines run: the hostname, and the `run_as` user when
    /// commands run as another user. In the key of every class whose output
    /// depends on the machine (session, fs-read): a file the server's user may
    /// read and the command user may not must never be answered from an entry
    /// one of them stored (L3 outlives a change of `run_as`).
    host: String,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// Builds the tiers from the configuration; L3 starts connecting in the
    /// background when a Redis URL is configured (this needs a tokio runtime).
    pub fn new(cfg: &CacheConfig, metrics: Arc<Metrics>) -> Result<Cache, CacheError> {
        let policy = match &cfg.policy_file {
            Some(p) => Policy::load(p)?,
            None => Policy::builtin(),
        };
        let l3 = match cfg.redis_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Some(L3::start(
                L3Config {
                    url: url.to_owned(),
                    cluster: cfg.redis_cluster,
                    deadline: cfg.l3_deadline,
                    write_timeout: cfg.l3_write_timeout,
                    compress_at: cfg.l3_compress_threshold,
                    max_entry: cfg.max_entry_bytes,
                    breaker_failures: cfg.breaker_failures,
                    breaker_cooldown: cfg.breaker_cooldown,
                    publish_generations: cfg.generation_pubsub,
                },
                metrics.clone(),
            )?),
            None => None,
        };
        let gens = Arc::new(Gens::default());
        let subscriber = match (&l3, cfg.redis_url.as_deref()) {
            (Some(_), Some(url)) if cfg.generation_pubsub => {
                let seeds = l3::seeds(url).into_iter().map(str::to_owned).collect();
                Some(invalidate::Subscriber::start(
                    seeds,
                    gens.clone(),
                    metrics.clone(),
                ))
            }
            _ => None,
        };
        Ok(Cache {
            policy,
            l1: L1::new(cfg.l1_bytes, metrics.clone()),
            l2: L2::new(cfg.l2_bytes, metrics.clone()),
            l3,
            blobs: blobs::Blobs::default(),
            gens,
            subscriber,
            generation_refresh: cfg.generation_refresh,
            unknown_invalidates: cfg.unknown_invalidates,
            max_entry: cfg.max_entry_bytes,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            metrics,
        })
    }

    /// Scopes machine-dependent entries to the user commands run as
    /// (`[exec] run_as`; empty: the server's own).
    pub fn run_as(mut self, run_as: &str) -> Cache {
        if !run_as.is_empty() {
            self.host = format!("{}\0run_as={run_as}", self.host);
        }
        self
    }

    /// The Redis tier, when configured.
    pub fn l3(&self) -> Option<&Arc<L3>> {
        self.l3.as_ref()
    }

    /// True while generations are pushed to this instance through Redis
    /// pub/sub (false without it, and while it reconnects: polling alone).
    pub fn pubsub_live(&self) -> bool {
        self.subscriber.as_ref().is_some_and(|s| s.live())
    }

    /// Ends the pub/sub subscriber (server shutdown); polling goes on.
    pub fn stop_pubsub(&self) {
        if let Some(s) = &self.subscriber {
            s.stop();
        }
    }

    /// Largest output stored.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    /// The policy's verdict on a parsed line, with the line's input files when
    /// its answers can be validated against them.
    pub fn classify(&self, line: &Line) -> Verdict {
        let mut v = self.policy.classify(line);
        if v.class == Class::FsRead && !self.policy.validated_ttl().is_zero() {
            // Only a line run without a shell has words that are all literal.
            if let Some(argv) = line.direct_argv() {
                v.inputs = Inputs::of(argv).map(Arc::new);
            }
        }
        if v.class == Class::FsRead {
            let how = match (&v.inputs, v.ttl.is_zero()) {
                (Some(_), _) => "served while a stamp of its inputs is unchanged",
                (None, true) => "its inputs cannot be stamped, so it runs every time",
                (None, false) => "its inputs cannot be stamped: served for the opt-in blind TTL",
            };
            v.reason = format!("{}; {how}", v.reason).into();
        }
        v
    }

    /// Whether a request for this line, run in `cwd`, may be answered from
    /// the cache and its answer stored (a prefetch asks the same): a cacheable
    /// class, not a line that invalidates, and not a cwd inside `/proc`, `/sys`
    /// or `/dev`, where every relative name is a kernel file or device.
    pub fn serves(&self, v: &Verdict, cwd: &Path) -> bool {
        v.cacheable() && !self.invalidates(v) && !kernel_dir(cwd)
    }

    /// What an answer of this line, about to run in `cwd` with the environment
    /// `env` under the tenant's `generation`, will depend on: for a validated
    /// line, the stamp of its inputs (taken now, before it runs), or the
    /// generation when they cannot be stamped. [`Cache::settled`] after the run.
    pub fn validity(
        &self,
        v: &Verdict,
        cwd: &Path,
        env: &[(String, String)],
        generation: u64,
    ) -> Before {
        let taken = v
            .inputs
            .as_ref()
            .and_then(|i| i.stamp(cwd, env, self.policy.validated_ttl()));
        let validity = match (&v.inputs, taken) {
            (None, _) => Validity::Always,
            (Some(_), Some(t)) => Validity::Stamp(t.key),
            (Some(_), None) => Validity::Generation(generation),
        };
        Before { validity, taken }
    }

    /// What the answer that ran after [`Cache::validity`] depends on: its
    /// stamp, unless a stamp whose key leaves times out saw its inputs change
    /// while the command ran (see `inputs`), when it is as if they could not
    /// be stamped.
    pub fn settled(
        &self,
        v: &Verdict,
        cwd: &Path,
        env: &[(String, String)],
        generation: u64,
        before: Before,
    ) -> Validity {
        match (&v.inputs, before.taken) {
            (Some(i), Some(t)) if !i.held(cwd, env, self.policy.validated_ttl(), &t) => {
                tracing::debug!("the inputs changed while the line ran: stored unstamped");
                Validity::Generation(generation)
            }
            _ => before.validity,
        }
    }

    /// How long an answer lives: stamped ones much longer; each a random
    /// 80–100 % of its TTL (see [`spread`]).
    pub fn ttl(&self, v: &Verdict, validity: Validity) -> Duration {
        spread(self.policy_ttl(v, validity))
    }

    /// The policy's TTL for `v`'s answers with `validity`.
    fn policy_ttl(&self, v: &Verdict, validity: Validity) -> Duration {
        match validity {
            Validity::Stamp(_) => self.policy.validated_ttl(),
            _ => v.ttl,
        }
    }

    /// Whether the hit on `entry` (an answer for `v`) is the one that renews
    /// it: it has less than a [`RENEW_WITHIN`] share of its TTL left, and no
    /// hit asked before (one try per entry: a renewal refused leaves it to
    /// expire as it would have).
    pub fn renewal_due(&self, v: &Verdict, entry: &Entry) -> bool {
        entry.claim_renewal(self.policy_ttl(v, entry.validity()).mul_f64(RENEW_WITHIN))
    }

    /// What decides whether a stored answer may be served to a request for this
    /// line in `cwd` with the child's environment `env`, the tenant's generation
    /// being `generation`.
    pub fn freshness<'a>(
        &self,
        v: &'a Verdict,
        cwd: &'a Path,
        env: &'a [(String, String)],
        generation: u64,
    ) -> Freshness<'a> {
        Freshness {
            inputs: v.inputs.as_deref(),
            cwd,
            env,
            life: self.policy.validated_ttl(),
            generation,
            now: OnceLock::new(),
        }
    }

    /// Whether `entry` may be served; a refused (stale) entry is counted.
    fn accepts(&self, entry: &Entry, fresh: &Freshness<'_>) -> bool {
        let ok = fresh.accepts(entry);
        if !ok {
            self.metrics.cache.stale();
        }
        ok
    }

    /// True when running this line must invalidate its tenant's fs-read entries.
    pub fn invalidates(&self, v: &Verdict) -> bool {
        v.class == Class::Mutating || (v.class == Class::Unknown && self.unknown_invalidates)
    }

    fn gens(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Gen>> {
        // Values only grow by assignment: a poisoned map is still consistent.
        crate::sync::lock(&self.gens)
    }

    /// The tenant's current generation. With L3, Redis is asked at most once per
    /// `generation_refresh` per tenant (bumps by this instance are seen at once,
    /// other instances' at once too while pub/sub pushes them);
    /// the value never goes down here, even if Redis lost it. After a bump that
    /// did not reach Redis, the refresh bumps Redis instead of reading it.
    pub async fn generation(&self, tenant: &Arc<str>) -> u64 {
        let local = self.gens().get(tenant).copied().unwrap_or_default();
        let Some(l3) = &self.l3 else {
            return local.value;
        };
        let now = Instant::now();
        if local
            .checked
            .is_some_and(|t| now.duration_since(t) < self.generation_refresh)
        {
            return local.value;
        }
        // Redis's futures are boxed: inline (~650 bytes) they were part of
        // every request's future, hit or not, though most requests learn
        // the generation above without asking.
        if local.unsynced {
            return Box::pin(self.sync(l3, tenant, local.epoch)).await;
        }
        let remote = Box::pin(l3.generation(tenant)).await;
        let mut gens = self.gens();
        let g = gens.entry(tenant.clone()).or_default();
        if let Some(r) = remote {
            if !g.unsynced {
                g.value = g.value.max(r);
            }
            g.synced = g.synced.max(r);
            g.checked = Some(now);
        }
        g.value
    }

    /// The tenant's current generation when it is known without asking Redis
    /// (no L3, or asked within `generation_refresh`): what
    /// [`Cache::generation`] would answer at once. None when only Redis can say.
    pub fn generation_now(&self, tenant: &str) -> Option<u64> {
        let local = self.gens().get(tenant).copied().unwrap_or_default();
        let fresh = local
            .checked
            .is_some_and(|t| t.elapsed() < self.generation_refresh);
        (self.l3.is_none() || fresh).then_some(local.value)
    }

    /// Bumps the tenant's generation in Redis and takes its answer, unless
    /// another bump started or failed since `epoch` was read (then the answer
    /// may predate a write: that bump's answer, or the next refresh, decides).
    async fn sync(&self, l3: &L3, tenant: &Arc<str>, epoch: u64) -> u64 {
        let floor = self.gens().get(tenant).map_or(0, |g| g.synced);
        let remote = l3.bump(tenant, floor).await;
        let mut gens = self.gens();
        let g = gens.entry(tenant.clone()).or_default();
        // Asked now either way: a Redis that is down is not asked again on
        // every lookup (the breaker spares it too).
        g.checked = Some(Instant::now());
        match remote {
            Some(r) if g.epoch == epoch => {
                g.value = r;
                g.unsynced = false;
                g.synced = g.synced.max(r);
            }
            Some(r) => g.synced = g.synced.max(r),
            None => {
                g.epoch += 1;
                g.unsynced = true;
            }
        }
        g.value
    }

    /// Bumps the tenant's generation (here at once, and in Redis when L3 is on:
    /// until Redis answers, this instance uses a number of its own).
    pub async fn bump(&self, tenant: &Arc<str>) {
        self.metrics.cache.invalidated();
        let epoch = {
            let mut gens = self.gens();
            let g = gens.entry(tenant.clone()).or_default();
            if self.l3.is_none() {
                g.value += 1;
                return;
            }
            g.value = own_generation();
            g.unsynced = true;
            g.epoch += 1;
            g.epoch
        };
        if let Some(l3) = &self.l3 {
            Box::pin(self.sync(l3, tenant, epoch)).await;
        }
    }

    /// The key of a cacheable line in its context.
    #[allow(clippy::too_many_arguments)]
    pub fn key(
        &self,
        v: &Verdict,
        command: &str,
        env: &crate::env::Env,
        tenant: &str,
        cwd: &Path,
        generation: u64,
    ) -> Key {
        KeyParts {
            class: v.class,
            command,
            env: env.digest(),
            tenant,
            cwd,
            host: &self.host,
            generation,
            validated: v.inputs.is_some(),
        }
        .key()
    }

    /// L1, then L2 (a hit there is promoted to this thread's L1). An entry that
    /// `fresh` refuses is a miss.
    pub fn get_local(&self, key: Key, fresh: &Freshness<'_>) -> Option<(Arc<Entry>, Tier)> {
        let now = Instant::now();
        let m = &self.metrics.cache;
        let l1 = self.l1.get(key, now);
        if let Some(e) = &l1 {
            if self.accepts(e, fresh) {
                m.hit(Tier::L1);
                return l1.map(|e| (e, Tier::L1));
            }
        }
        m.miss(Tier::L1);
        if let Some(e) = self.l2.get(key, now) {
            // The same entry as this thread's L1 was refused already.
            let seen = l1.as_ref().is_some_and(|l| Arc::ptr_eq(l, &e));
            if !seen && self.accepts(&e, fresh) {
                m.hit(Tier::L2);
                self.l1.insert(key, e.clone());
                return Some((e, Tier::L2));
            }
        }
        m.miss(Tier::L2);
        None
    }

    /// Whether an answer of this line, run now in `cwd` with `env`, could be
    /// stored and served: a validated line whose inputs cannot be stamped
    /// now (a tree over the bound, times too fresh) and without a blind TTL
    /// could not. The prefetcher's "worth a guess?" question: it takes a
    /// stamp, so it is asked only of a line about to be prefetched.
    pub fn storable(&self, v: &Verdict, cwd: &Path, env: &[(String, String)]) -> bool {
        match &v.inputs {
            Some(i) if v.ttl.is_zero() => i.stamp(cwd, env, self.policy.validated_ttl()).is_some(),
            _ => true,
        }
    }

    /// Whether an entry that `fresh` accepts is in L2 (every stored entry goes
    /// there), without counting a hit or a miss: the prefetcher's "already
    /// cached?" question.
    pub fn holds(&self, key: Key, fresh: &Freshness<'_>) -> bool {
        self.l2
            .get(key, Instant::now())
            .is_some_and(|e| fresh.accepts(&e))
    }

    /// [`Cache::holds`] without a restamp for an entry that a restamp found
    /// valid under the tenant's generation now: the prefetcher's question
    /// for a line with inputs. Asked after every command for up to two
    /// predicted lines, the restamp doubled or tripled the validation a
    /// 10,000-user server does (it is half its CPU), to prefetch mostly
    /// lines still valid. What this misses, a change by someone else since
    /// the last restamp, only costs the prefetch: the request restamps
    /// before it is served, and a change by the tenant itself moves its
    /// generation, so the line is checked again (`touch`, then `ls -la`).
    pub fn likely_holds(&self, key: Key, fresh: &Freshness<'_>) -> bool {
        self.l2.get(key, Instant::now()).is_some_and(|e| {
            matches!(e.validity(), Validity::Stamp(_)) && e.checked_at(fresh.generation)
                || fresh.accepts(&e)
        })
    }

    /// L3 (a hit is promoted to L2 and this thread's L1). None without L3, or
    /// when `fresh` refuses the entry.
    pub async fn get_remote(&self, key: Key, fresh: &Freshness<'_>) -> Option<Arc<Entry>> {
        let l3 = self.l3.as_ref()?;
        let m = &self.metrics.cache;
        match l3.get(key).await.filter(|e| self.accepts(e, fresh)) {
            Some(e) => {
                m.hit(Tier::L3);
                let e = Arc::new(e.shared(&self.blobs));
                self.l2.insert(key, e.clone());
                self.l1.insert(key, e.clone());
                Some(e)
            }
            None => {
                m.miss(Tier::L3);
                None
            }
        }
    }

    /// Stores a clean result in every tier.
    pub fn store(&self, key: Key, entry: Entry) {
        if entry.len() > self.max_entry || entry.remaining().is_zero() {
            return;
        }
        self.metrics.cache.stored();
        if let Some(l3) = &self.l3 {
            l3.put(key, &entry);
        }
        let e = Arc::new(entry.shared(&self.blobs));
        self.l2.insert(key, e.clone());
        self.l1.insert(key, e);
    }

    /// A `Refresh` request is about to overwrite entries: other threads' L1 copies
    /// must not outlive it.
    pub fn refreshing(&self) {
        self.l1.invalidate_all();
    }

    /// Bytes in L2 (as answers: an output shared by several entries counts once
    /// per entry).
    pub fn l2_bytes(&self) -> u64 {
        self.l2.bytes()
    }

    /// Distinct large outputs held once for several entries.
    pub fn shared_outputs(&self) -> usize {
        self.blobs.len()
    }
}

/// Whether `cwd` is `/proc`, `/sys` or `/dev` or lies under one: what
/// `cwd.starts_with("/proc")` and its siblings say, from the first two
/// components only (three `Path::starts_with` on every request were a
/// visible share of a cache hit).
fn kernel_dir(cwd: &Path) -> bool {
    use std::path::Component;
    let mut c = cwd.components();
    c.next() == Some(Component::RootDir)
        && matches!(c.next(), Some(Component::Normal(n)) if n == "proc" || n == "sys" || n == "dev")
}

/// What a line about to run depends on, taken before it runs
/// ([`Cache::validity`]), settled after ([`Cache::settled`]).
pub struct Before {
    validity: Validity,
    taken: Option<Taken>,
}

/// Whether a stored answer may be served to one request, by its [`Validity`]: an
/// input stamp must equal the stamp of the inputs as they are now (taken at most
/// once per request, however many tiers are asked), a generation the tenant's.
pub struct Freshness<'a> {
    inputs: Option<&'a Inputs>,
    cwd: &'a Path,
    env: &'a [(String, String)],
    life: Duration,
    generation: u64,
    now: OnceLock<Option<u128>>,
}

impl Freshness<'_> {
    /// True when `entry` may be served.
    pub fn accepts(&self, entry: &Entry) -> bool {
        match entry.validity() {
            Validity::Always => true,
            Validity::Generation(g) => g == self.generation,
            Validity::Stamp(stored) => {
                let now = self.now.get_or_init(|| {
                    self.inputs
                        .and_then(|i| i.restamp(self.cwd, self.env, self.life))
                });
                let valid = *now == Some(stored);
                if valid {
                    entry.checked_under(self.generation);
                }
                valid
            }
        }
    }
}

/// The share of its TTL an entry in use has left when a hit renews it
/// (`engine::renew`): a fifth, so that the renewal has minutes to find an
/// idle worker before the entry expires, and a line in use is run once per
/// TTL at most, as it would be without renewal.
pub const RENEW_WITHIN: f64 = 0.2;

/// A lifetime of a random 80–100 % of `ttl`. Entries stored together (every
/// user's first commands in a cold start, a burst) would otherwise all expire
/// together, one TTL later, and come back at once as a storm of misses: a
/// 10,000-user run held 10 minutes saw its hit rate fall from 84 % to 63 % and
/// its p95 go from 60 ms to 3 s exactly one `fs-read-validated` TTL (10 min)
/// after the ramp-up. Never longer than the policy's TTL, so no answer is kept
/// past what the policy allows.
pub fn spread(ttl: Duration) -> Duration {
    ttl.mul_f64(0.8 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::{kernel_dir, own_generation, pushed, spread, Gen, Gens};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn lifetimes_are_spread_below_the_ttl_never_above() {
        let ttl = Duration::from_secs(600);
        let lives: Vec<Duration> = (0..1000).map(|_| spread(ttl)).collect();
        assert!(lives.iter().all(|l| *l <= ttl && *l >= ttl.mul_f64(0.8)));
        // Spread, not one value: entries stored together expire apart.
        let (lo, hi) = (lives.iter().min(), lives.iter().max());
        assert!(hi
            .zip(lo)
            .is_some_and(|(h, l)| *h - *l > Duration::from_secs(60)));
        assert_eq!(spread(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_pushed_generation_only_raises_and_spares_an_unsynced_bump() {
        let gens = Gens::default();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        pushed(&gens, "stranger", 9, t0);
        assert!(
            gens.lock().unwrap().is_empty(),
            "a tenant never asked about"
        );
        let known: Arc<str> = "known".into();
        gens.lock().unwrap().insert(known.clone(), Gen::default());
        pushed(&gens, "known", 7, later);
        pushed(&gens, "known", 3, t0);
        let g = gens.lock().unwrap()[&known];
        assert_eq!((g.value, g.synced), (7, 7), "never lowered");
        assert_eq!(g.checked, Some(later), "asked as of the newest `since`");
        let own = own_generation();
        let pending = Gen {
            value: own,
            unsynced: true,
            epoch: 4,
            ..g
        };
        gens.lock().unwrap().insert(known.clone(), pending);
        pushed(&gens, "known", 12, later + Duration::from_millis(5));
        let g = gens.lock().unwrap()[&known];
        assert_eq!((g.value, g.unsynced, g.epoch), (own, true, 4));
        assert_eq!(g.synced, 12, "the next bump's floor rises");
        assert_eq!(g.checked, Some(later), "its retry is not put off");
    }

    /// The prefetcher's "already cached?" takes a restamp's word while the
    /// tenant's generation is the one it was taken under, and restamps once
    /// it moved; serving restamps every time.
    #[test]
    fn a_restamped_entry_is_taken_as_held_until_the_tenant_writes() {
        use super::{Cache, Entry, Validity};
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        std::fs::write(cwd.join("a.txt"), "one\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let config = crate::config::Preset::Development.config();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let cache = Cache::new(&config.cache, metrics).unwrap();
        let v = cache.classify(&crate::shell::Line::parse("cat a.txt"));
        let env = crate::env::Env::from(Vec::new());
        let gen = 3;
        let key = cache.key(&v, "cat a.txt", &env, "t", cwd, gen);
        let before = cache.validity(&v, cwd, &env, gen);
        let validity = cache.settled(&v, cwd, &env, gen, before);
        assert!(matches!(validity, Validity::Stamp(_)), "{validity:?}");
        let out = [(voxterm_protocol::StreamKind::Stdout, &b"one\n"[..])];
        let entry = Entry::from_chunks(out, Duration::from_secs(60)).valid_while(validity);
        cache.store(key, entry);
        let fresh = |g| cache.freshness(&v, cwd, &env, g);
        assert!(cache.likely_holds(key, &fresh(gen)), "restamped: valid");
        // Changed by someone else: served never, taken as held while the
        // tenant's generation is the one the restamp saw.
        std::fs::write(cwd.join("a.txt"), "two\n").unwrap();
        assert!(cache.get_local(key, &fresh(gen)).is_none());
        assert!(!cache.holds(key, &fresh(gen)));
        assert!(cache.likely_holds(key, &fresh(gen)));
        // The tenant wrote something: restamped, and not held.
        assert!(!cache.likely_holds(key, &fresh(gen + 1)));
    }

    #[test]
    fn kernel_dir_says_what_starts_with_says() {
        for p in [
            "/proc",
            "/proc/",
            "/proc/self",
            "//proc/1",
            "/./sys/x",
            "/dev",
            "/devices",
            "/process",
            "/tmp/proc",
            "proc",
            "/",
            "/home/u",
            "/sys/../tmp",
        ] {
            let p = Path::new(p);
            let want = ["/proc", "/sys", "/dev"].iter().any(|d| p.starts_with(d));
            assert_eq!(kernel_dir(p), want, "{}", p.display());
        }
    }
}

//! Prefetch: after a command ends (and when a session opens), the predictor's
//! likely next lines run ahead of time, so their answers are cached when asked.
//!
//! A predicted line is prefetched only if all of these hold, checked in order
//! (each refusal is counted under `voxterm_prefetch_skipped_total{reason}`):
//!
//! 1. its probability reaches `predict.threshold`, the tenant itself ran it in
//!    this context before (the global prior ranks, it never proposes another
//!    tenant's line), and it is not a builtin;
//! 2. the command policy allows it, and the cache policy calls it pure, session or
//!    fs-read (never volatile, mutating or unknown: a prefetch must not change
//!    anything nor run what nobody asked for) — `not_cacheable`;
//! 3. the pool is idle enough and the CPU share has room — `busy`,
//!    `cpu_share` (see `predict::gate`): asked before the next check, which
//!    for a line with inputs restamps them (file system calls), so a loaded
//!    server spends nothing on a guess it would refuse;
//! 4. it is not already cached for this session's cwd, env and generation —
//!    `cached` (a line with inputs is not restamped for this when a restamp
//!    already found its entry valid under the tenant's generation now:
//!    `Cache::likely_holds`); then the gate admits it for real, taking a place in the CPU
//!    share and the tenant's budget — `busy`, `cpu_share`, `budget`;
//! 5. a worker is free right now (prefetch never queues) — `busy`;
//! 6. its answer could be stored: not a validated line whose inputs cannot be
//!    stamped now (a tree over the bound, times changed a moment ago) and
//!    that has no blind TTL — `unstampable`;
//! 7. nobody runs the same key already — `in_flight`.
//!
//! A predicted line is one the tenant ran before, so it is usually in the
//! engine's memo of parsed lines, verdicts included: prefetching it parses
//! nothing.
//!
//! It then runs like a cache miss (single flight, L3 first, clean results stored
//! in every tier) with its entry marked, so a request answered from it reports
//! `served_from = prefetch`. Invalidation is the cache's: a prefetched fs-read
//! entry carries the tenant's generation like any other.

use super::lines::Parsed;
use super::miss::{MissRun, Origin};
use super::Engine;
use crate::cache::Class;
use crate::config::Config;
use crate::exec::Job;
use crate::predict::{Gate, Refused, NONE, START};
use crate::security::CommandPolicy;
use crate::session::{Builtin, Session};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use voxterm_protocol::Priority;

/// A prefetch is cut off after this long: a guess must not hold a worker for a
/// slow command (the request, if it comes, runs it with its own timeout).
const PREFETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefetch admission and its settings.
pub(crate) struct Prefetcher {
    gate: Arc<Gate>,
    policy: Option<Arc<CommandPolicy>>,
    threshold: f64,
    per_command: usize,
}

impl Prefetcher {
    /// None unless prediction, the cache and `predict.prefetch` are all on.
    /// `policy` is the engine's own: a prefetch is admitted like a request.
    pub(super) fn build(
        config: &Config,
        predicting: bool,
        caching: bool,
        policy: Option<Arc<CommandPolicy>>,
    ) -> Option<Prefetcher> {
        if !(predicting && caching && config.predict.prefetch) {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(Prefetcher {
            gate: Gate::new(&config.predict, cores),
            policy,
            threshold: config.predict.threshold,
            per_command: config.predict.per_command,
        })
    }
}

/// A session's cwd and its children's environment, as a prefetch runs with.
type Launch = (PathBuf, crate::session::ChildEnv);

/// What one prefetch task needs, taken from the session when it was planned.
struct Planned {
    tenant: Arc<str>,
    cwd: PathBuf,
    /// The tenant's root, when the session is confined to one.
    root: Option<PathBuf>,
    env: crate::session::ChildEnv,
    /// The user the tenant's commands run as (`[exec] run_as`).
    user: Option<Arc<crate::exec::Identity>>,
    lines: Vec<Arc<Parsed>>,
}

impl Engine {
    /// Learns `id` (whose line is `text`) as the successor of `context` in
    /// `session` and, unless another command of the session started
    /// meanwhile (its end predicts), predicts what follows it, remembers
    /// that for the accuracy figures and prefetches the likely lines in the
    /// background. `hit`: the line was just answered from the cache.
    pub(super) fn learn_and_predict(
        &self,
        predictor: &crate::predict::Predictor,
        session: &Session,
        context: (crate::predict::CmdId, crate::predict::CmdId),
        id: crate::predict::CmdId,
        text: &Arc<str>,
        hit: bool,
    ) {
        let current = session.context().1 == id;
        let Some(dist) = predictor.observe(session.tenant(), context, id, text, current) else {
            return;
        };
        let mut ids = [NONE; 3];
        for (slot, p) in ids.iter_mut().zip(&dist) {
            *slot = p.id;
        }
        session.set_predicted(id, ids);
        self.plan_prefetch(session, &dist, hit.then_some(id));
    }

    /// Warms a session that was just opened: the tenant's likely first lines.
    /// With the model in Redis, a tenant seen for the first time since start is
    /// loaded first.
    pub fn session_opened(self: &Arc<Self>, session: &Session) {
        let Some(predictor) = self.predictor.clone() else {
            return;
        };
        let tenant = session.tenant().clone();
        if !predictor.knows(&tenant) && matches!(*self.model_store, crate::predict::Store::Redis(_))
        {
            let me = self.clone();
            let (cwd, env) = session.launch(&self.base_env);
            let root = session.root();
            tokio::spawn(async move {
                me.model_store.load_tenant(&predictor, &tenant).await;
                let dist = predictor.predict(&tenant, NONE, START);
                if let Some((lines, (cwd, env))) =
                    me.candidates(&tenant, &dist, None, || (cwd.clone(), env.clone()))
                {
                    me.spawn_prefetch(tenant, cwd, root, env, lines);
                }
            });
            return;
        }
        let dist = predictor.predict(&tenant, NONE, START);
        self.plan_prefetch(session, &dist, None);
    }

    fn plan_prefetch(
        &self,
        session: &Session,
        dist: &crate::predict::Distribution,
        hit: Option<crate::predict::CmdId>,
    ) {
        let tenant = session.tenant();
        if let Some((lines, (cwd, env))) =
            self.candidates(tenant, dist, hit, || session.launch(&self.base_env))
        {
            self.spawn_prefetch(tenant.clone(), cwd, session.root(), env, lines);
        }
    }

    /// The predicted lines worth a prefetch, cheapest checks first, with the
    /// session's cwd and environment (from `launch`); None when no line is.
    /// After a repeated line the usual outcome is none, so `launch` (a lock
    /// and two clones) runs only once a line passes the checks that need
    /// neither: at 250,000 cached requests/s it was a measurable share.
    fn candidates(
        &self,
        tenant: &str,
        dist: &crate::predict::Distribution,
        hit: Option<crate::predict::CmdId>,
        launch: impl Fn() -> Launch,
    ) -> Option<(Vec<Arc<Parsed>>, Launch)> {
        let (Some(pf), Some(cache)) = (&self.prefetcher, &self.cache) else {
            return None;
        };
        let mut launched: Option<Launch> = None;
        let mut lines = Vec::new();
        for p in dist.iter().take(pf.per_command) {
            if !p.own || p.p < pf.threshold {
                continue;
            }
            // The line just answered from the cache (the memo's same entry):
            // cached, as the check below would find. Only a prefetch is
            // decided here, never an answer.
            if hit == Some(p.id) {
                self.metrics.predict.skipped("cached");
                continue;
            }
            let line = self.lines.get(&p.line);
            if Builtin::from_line(line.line()).is_some() {
                continue;
            }
            let (cwd, env) = launched.get_or_insert_with(&launch);
            // Checks 2 and 3 (policy, class, already cached) are synchronous
            // when the tenant's generation is known here: done now, so that
            // the usual outcome, "cached", costs no task. Only lines that may
            // really run (or whose generation only Redis knows) get one.
            match precheck(cache, pf, &self.workers.pool, tenant, cwd, env, &line) {
                Ok(()) => lines.push(line),
                Err(reason) => self.metrics.predict.skipped(reason),
            }
        }
        if lines.is_empty() {
            return None;
        }
        launched.map(|l| (lines, l))
    }

    fn spawn_prefetch(
        &self,
        tenant: Arc<str>,
        cwd: PathBuf,
        root: Option<PathBuf>,
        env: crate::session::ChildEnv,
        lines: Vec<Arc<Parsed>>,
    ) {
        let (Some(pf), Some(cache)) = (&self.prefetcher, &self.cache) else {
            return;
        };
        // No user to run as (a misconfigured per-tenant user): no prefetch; the
        // request itself reports why.
        let Ok(user) = self.user_for(&tenant) else {
            return;
        };
        let plan = Planned {
            tenant,
            cwd,
            root,
            env,
            user,
            lines,
        };
        let task = PrefetchTask {
            cache: cache.clone(),
            workers: self.workers.clone(),
            flights: self.flights.clone(),
            metrics: self.metrics.clone(),
            gate: pf.gate.clone(),
            policy: pf.policy.clone(),
            kill_grace: self.config.exec.kill_grace,
            output_cap: self.config.exec.output_cap,
            containment: self.containment.clone(),
        };
        tokio::spawn(task.run(plan));
    }
}

/// The checks of a prefetch that need no await and no file system call: the
/// command policy, the class, whether the gate is open, and "already cached"
/// for a line without inputs to restamp when the tenant's generation is known
/// without Redis (else the task finds out). `Ok`: the line goes on to the
/// task, which checks it again in full ([`PrefetchTask::one`]).
fn precheck(
    cache: &crate::cache::Cache,
    pf: &Prefetcher,
    pool: &crate::exec::Pool,
    tenant: &str,
    cwd: &std::path::Path,
    env: &crate::session::ChildEnv,
    line: &Parsed,
) -> Result<(), &'static str> {
    if let Some(policy) = &pf.policy {
        if line.admitted(policy).is_err() {
            return Err("not_cacheable");
        }
    }
    let verdict = line.verdict(cache);
    if !cache.serves(verdict, cwd) {
        return Err("not_cacheable");
    }
    if verdict.inputs.is_some() {
        // Its entry is checked by a restamp (file system calls, up to a few
        // hundred µs for git): not here, on the request's way to its `Exit`,
        // and not at all while the gate would refuse the run.
        pf.gate
            .open(pool.busy(), pool.queue_depth(), pool.workers())
            .map_err(Refused::as_str)?;
        return Ok(());
    }
    let generation = match verdict.class {
        Class::Pure | Class::Session => 0,
        _ => match cache.generation_now(tenant) {
            Some(g) => g,
            None => return Ok(()),
        },
    };
    let key = cache.key(verdict, line.line().text(), env, tenant, cwd, generation);
    let fresh = cache.freshness(verdict, cwd, env, generation);
    if cache.holds(key, &fresh) {
        return Err("cached");
    }
    Ok(())
}

/// The engine parts a prefetch runs with (cloned handles, so it owns them).
struct PrefetchTask {
    cache: Arc<crate::cache::Cache>,
    workers: super::workers::Workers,
    flights: crate::cache::flight::Flights<super::Finish>,
    metrics: Arc<crate::metrics::Metrics>,
    gate: Arc<Gate>,
    policy: Option<Arc<CommandPolicy>>,
    kill_grace: Duration,
    output_cap: u64,
    containment: Arc<crate::exec::Containment>,
}

impl PrefetchTask {
    async fn run(self, plan: Planned) {
        for line in &plan.lines {
            if let Err(reason) = self.one(&plan, line).await {
                self.metrics.predict.skipped(reason);
            }
        }
    }

    /// Prefetches one line, or says why not.
    async fn one(&self, plan: &Planned, line: &Parsed) -> Result<(), &'static str> {
        if let Some(policy) = &self.policy {
            if line.admitted(policy).is_err() {
                return Err("not_cacheable");
            }
        }
        let verdict = line.verdict(&self.cache).clone();
        let text = line.line().text();
        // Only what a request could be answered with from the cache: pure,
        // session and validated fs-read lines (never one that writes).
        if !self.cache.serves(&verdict, &plan.cwd) {
            return Err("not_cacheable");
        }
        let generation = match verdict.class {
            Class::Pure | Class::Session => 0,
            _ => self.cache.generation(&plan.tenant).await,
        };
        let key = self.cache.key(
            &verdict,
            text,
            &plan.env,
            &plan.tenant,
            &plan.cwd,
            generation,
        );
        let pool = &self.workers.pool;
        if verdict.inputs.is_some() {
            // The restamp below costs file system calls; the gate may have
            // closed since the plan (another prefetch started).
            self.gate
                .open(pool.busy(), pool.queue_depth(), pool.workers())
                .map_err(Refused::as_str)?;
        }
        let fresh = self
            .cache
            .freshness(&verdict, &plan.cwd, &plan.env, generation);
        if self.cache.likely_holds(key, &fresh) {
            return Err("cached");
        }
        // Like a request: only in a cwd that still lies inside the tenant's root.
        let dir = match &plan.root {
            Some(root) => Some(Arc::new(
                crate::security::open_inside(&plan.cwd, root).map_err(|_| "cwd_outside_root")?,
            )),
            None => None,
        };
        let permit = self
            .gate
            .admit(
                &plan.tenant,
                pool.busy(),
                pool.queue_depth(),
                pool.workers(),
            )
            .map_err(Refused::as_str)?;
        let slot = pool.try_acquire_idle(&plan.tenant).ok_or("busy")?;
        // A guess whose answer could be neither stored nor served is a spawn
        // for nothing (`git log --stat` in a repository whose worktree is over
        // the stamp's bound, at 10,000 users): asked last, as it takes a stamp.
        if !self.cache.storable(&verdict, &plan.cwd, &plan.env) {
            return Err("unstampable");
        }
        let (follower, publisher) = self.flights.join(key);
        drop(follower);
        let publisher = publisher.ok_or("in_flight")?;
        self.metrics.predict.started();
        let started = Instant::now();
        let run = MissRun {
            cache: self.cache.clone(),
            workers: self.workers.clone(),
            tenant: plan.tenant.clone(),
            priority: Priority::Prefetch,
            job: Job {
                line: line.line().clone(),
                cwd: plan.cwd.clone(),
                env: plan.env.clone(),
                timeout: PREFETCH_TIMEOUT,
                kill_grace: self.kill_grace,
                output_cap: self.output_cap,
                containment: self.containment.clone(),
                dir,
                user: plan.user.clone(),
            },
            key,
            verdict,
            generation,
            origin: Origin::Prefetch(slot),
        };
        let stored = run.run(publisher).await;
        drop(permit);
        self.metrics
            .predict
            .finished(stored, started.elapsed().as_micros() as u64);
        Ok(())
    }
}

impl Engine {
    /// Loads the saved model (before serving).
    pub async fn load_model(&self) {
        if let Some(p) = &self.predictor {
            self.model_store.load(p).await;
        }
    }

    /// Saves what the model learned since the last save.
    pub async fn save_model(&self) {
        if let Some(p) = &self.predictor {
            let n = self.model_store.save(p).await;
            if n > 0 {
                tracing::debug!(tenants = n, "prediction model saved");
            }
        }
    }

    /// Saves the model every `predict.save_interval` until `stop`.
    pub fn spawn_model_saver(self: &Arc<Self>, stop: CancellationToken) {
        if self.predictor.is_none() {
            return;
        }
        let me = self.clone();
        let every = self
            .config
            .predict
            .save_interval
            .max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => me.save_model().await,
                }
            }
        });
    }
}

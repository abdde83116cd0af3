//! The way one `Exec` goes from its session to an answer: builtin, cache, or a
//! worker slot and a child process; the predictor learns from every line and
//! may prefetch the next (see `prefetch`).
//!
//! Cache step (DESIGN §2 step 3, §4): the line is classified; a mutating (or
//! unknown) line bumps its tenant's generation before it runs and again after it
//! ends, so an fs-read that ran concurrently cannot store a pre-mutation answer
//! under the generation that follows; a cacheable line is looked up in L1 → L2,
//! then joins the single flight of its key, whose one run tries L3 and then
//! executes, storing a clean result in every tier.

use super::builtins::Builtin;
use super::env::BaseEnv;
use super::prefetch::Prefetcher;
use super::state::Session;
use super::store::SessionStore;
use crate::cache::flight::{Flights, Follower, Publisher, Stopped};
use crate::cache::{Cache, Class, Entry, Key, Verdict};
use crate::config::Config;
use crate::exec::{self, ExecError, Job, Pool, PoolConfig, PoolError, Slot, Stop};
use crate::metrics::{Metrics, Sampled, Tier};
use crate::output::{OutputSink, SinkClosed};
use crate::predict::{Predictor, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{CacheMode, ErrorCode, Exec, KillReason, Priority, ServedFrom, StreamKind};

/// How a request ended; the server turns it into an `Exit` or `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The command ran (or was answered without running).
    Exit {
        /// Exit status of a normal exit.
        code: Option<i32>,
        /// Signal that ended it.
        signal: Option<i32>,
        /// Output was cut at the cap.
        truncated: bool,
        /// Why the engine killed it.
        killed: KillReason,
        /// Where the answer came from.
        served_from: ServedFrom,
    },
    /// It could not be run.
    Error {
        /// Typed reason.
        code: ErrorCode,
        /// Detail for humans.
        message: String,
    },
}

impl Finish {
    /// True for a clean exit with status 0 (what `&&` and sequential batches continue on).
    pub fn succeeded(&self) -> bool {
        matches!(self, Finish::Exit { code: Some(0), .. })
    }

    fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Finish::Error {
            code,
            message: message.into(),
        }
    }
}

/// Everything a request needs besides its connection: sessions, the pool, metrics.
pub struct Engine {
    pub(super) config: Config,
    /// Live sessions.
    pub sessions: Arc<SessionStore>,
    pub(super) workers: Workers,
    /// Process-wide metrics.
    pub metrics: Arc<Metrics>,
    /// The result cache (None with `--no-cache` or when it could not be built).
    pub cache: Option<Arc<Cache>>,
    pub(super) flights: Flights<Finish>,
    pub(super) base_env: BaseEnv,
    home: PathBuf,
    /// Limits and cgroups of every child (exec owns it; built from `[exec]`).
    pub(super) containment: Arc<exec::Containment>,
    /// The users commands run as (`[exec] run_as`); `Ok(None)`: the server's
    /// own. An `Err` (the user vanished since the start-up check) refuses every
    /// command: containment fails closed.
    pub(super) run_as: Result<Option<Arc<exec::RunAs>>, exec::IdentityError>,
    /// Next-command model (None with `--no-predict`).
    pub predictor: Option<Arc<Predictor>>,
    /// Where the model is kept between runs.
    pub(super) model_store: Arc<Store>,
    /// Prefetch admission (None without prediction, cache or `predict.prefetch`).
    pub(super) prefetcher: Option<Prefetcher>,
}

impl Engine {
    /// Builds the engine. `kill` fires when the shutdown drain ends: children still
    /// running then are killed.
    pub fn new(config: Config, kill: CancellationToken) -> Arc<Engine> {
        let base_env = BaseEnv::from_config(&config.session);
        let home = PathBuf::from(base_env.get("HOME").unwrap_or("/"));
        let root = if config.session.root.as_os_str().is_empty() {
            home.clone()
        } else {
            config.session.root.clone()
        };
        let sessions = SessionStore::new(root, config.session.idle_ttl, config.session.history);
        let pool = Pool::new(PoolConfig {
            workers: config.exec.workers,
            tenant_concurrency: config.exec.tenant_concurrency,
            queue_capacity: config.exec.queue_capacity,
        });
        let metrics = Arc::new(Metrics::new());
        let cache = build_cache(&config, &metrics);
        let containment = Arc::new(exec::Containment::new(&config.exec));
        let run_as = exec::RunAs::new(&config.exec.run_as).map(|r| r.map(Arc::new));
        match &run_as {
            Ok(Some(r)) => {
                tracing::info!(run_as = %config.exec.run_as, per_tenant = r.per_tenant(), "commands run as another user")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "every command will be refused"),
        }
        let workers = Workers {
            pool,
            kill,
            max_queue_wait: config.exec.max_queue_wait,
        };
        let predictor = config
            .predict
            .enabled
            .then(|| Arc::new(Predictor::new(&config.predict)));
        let model_store = Arc::new(Store::choose(
            cache.as_ref().and_then(|c| c.l3()),
            config.predict.data_dir().as_deref(),
        ));
        let prefetcher = Prefetcher::build(&config, predictor.is_some(), cache.is_some());
        if predictor.is_some() {
            tracing::info!(
                store = %model_store.describe(),
                prefetch = prefetcher.is_some(),
                "next-command prediction on"
            );
        }
        Arc::new(Engine {
            config,
            sessions,
            workers,
            metrics,
            cache,
            flights: Flights::default(),
            base_env,
            home,
            containment,
            run_as,
            predictor,
            model_store,
            prefetcher,
        })
    }

    /// Kills every running child (the end of a shutdown drain).
    pub fn kill_all(&self) {
        self.workers.kill.cancel();
    }

    /// What confines this engine's children (shown by `/healthz`).
    pub fn containment(&self) -> &exec::Containment {
        &self.containment
    }

    /// The user `tenant`'s commands run as (None: the server's own user).
    pub fn user_for(
        &self,
        tenant: &str,
    ) -> Result<Option<Arc<exec::Identity>>, exec::IdentityError> {
        match &self.run_as {
            Ok(Some(r)) => r.for_tenant(tenant).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.clone()),
        }
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gauges owned by the session store and the pool, for metrics snapshots.
    pub fn sampled(&self) -> Sampled {
        Sampled {
            sessions: self.sessions.len() as u64,
            queue_depth: self.workers.pool.queue_depth() as u64,
            busy_workers: self.workers.pool.busy() as u64,
        }
    }

    /// The timeout a request gets: its own (capped) or the default.
    pub fn timeout_for(&self, exec: &Exec) -> Duration {
        match exec.timeout_ms {
            0 => self.config.exec.default_timeout,
            ms => Duration::from_millis(u64::from(ms)).min(self.config.exec.max_timeout),
        }
    }

    /// Runs one request in `session`, streaming output into `sink`. Always returns
    /// exactly one `Finish`; `cancel` fires on `Cancel` or when the connection goes.
    ///
    /// With prediction on, the line is learned as the successor of the session's
    /// last two, and when it ends the likely next lines are predicted (and may be
    /// prefetched, off this request's path).
    pub async fn execute<S: OutputSink>(
        &self,
        session: &Session,
        exec: &Exec,
        sink: &mut S,
        cancel: CancellationToken,
    ) -> Finish {
        let command = exec.command.trim();
        if command.is_empty() {
            return Finish::error(ErrorCode::InvalidCommand, "empty command");
        }
        session.record(command);
        let Some(predictor) = &self.predictor else {
            return self.answer(session, command, exec, sink, cancel).await;
        };
        let id = crate::predict::id_of(command);
        let ((prev2, prev1), rank) = session.advance(id);
        if let Some(rank) = rank {
            self.metrics.predict.checked(rank);
        }
        predictor.learn(session.tenant(), prev2, prev1, id, command);
        let finish = self.answer(session, command, exec, sink, cancel).await;
        self.predict_next(session, id);
        finish
    }

    /// Answers one line: builtin, cache or a worker.
    async fn answer<S: OutputSink>(
        &self,
        session: &Session,
        command: &str,
        exec: &Exec,
        sink: &mut S,
        cancel: CancellationToken,
    ) -> Finish {
        if let Some(builtin) = Builtin::parse(command) {
            // With per-tenant roots (resolved once, when the session was attached),
            // `cd` stays inside the tenant's root and `~` is it.
            let jail = session.root();
            let home = jail.as_deref().unwrap_or(&self.home);
            let out = builtin.run(session, home, jail.as_deref());
            for (stream, data) in [
                (StreamKind::Stdout, out.stdout),
                (StreamKind::Stderr, out.stderr),
            ] {
                if !data.is_empty() && sink.chunk(stream, &data).await.is_err() {
                    break;
                }
            }
            return Finish::Exit {
                code: Some(out.code),
                signal: None,
                truncated: false,
                killed: KillReason::None,
                served_from: ServedFrom::Builtin,
            };
        }

        let (cwd, env) = session.launch(&self.base_env);
        // With a tenant root, the cwd is re-checked now, at the command, not
        // only when `cd` ran: another session may have replaced a directory on
        // the way with a symlink since. The child starts in what was checked.
        let dir = match session.root() {
            Some(root) => match crate::security::open_inside(&cwd, &root) {
                Ok(fd) => Some(Arc::new(fd)),
                Err(e) => {
                    tracing::info!(tenant = %session.tenant(), error = %e, "command refused: cwd outside the tenant's root");
                    self.metrics
                        .refused(crate::metrics::Refusal::CwdOutsideRoot);
                    return Finish::error(ErrorCode::PolicyDenied, e.to_string());
                }
            },
            None => None,
        };
        let user = match self.user_for(session.tenant()) {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(tenant = %session.tenant(), error = %e, "command refused: no user to run it as");
                return Finish::error(ErrorCode::SpawnFailed, e.to_string());
            }
        };
        let job = Job {
            command: command.to_owned(),
            cwd,
            env,
            timeout: self.timeout_for(exec),
            kill_grace: self.config.exec.kill_grace,
            output_cap: self.config.exec.output_cap,
            containment: Arc::clone(&self.containment),
            dir,
            user,
        };
        let tenant = session.tenant();
        let verdict = self.cache.as_ref().map(|c| (c, c.classify(command)));
        let invalidating = matches!(&verdict, Some((c, v)) if c.invalidates(v));
        if let Some((_, v)) = &verdict {
            tracing::debug!(command, class = v.class.as_str(), reason = %v.reason, "classified");
        }
        let lookup =
            verdict.filter(|(c, v)| exec.cache != CacheMode::Bypass && c.serves(v, &job.cwd));
        let Some((cache, verdict)) = lookup else {
            // Not served from cache. A command that may write bumps the tenant's
            // generation before it runs and again after, so no fs-read result taken
            // while it ran can be stored under the new generation.
            let cache = self.cache.as_ref().filter(|_| invalidating);
            if let Some(cache) = cache {
                cache.bump(tenant).await;
            }
            let finish = self
                .workers
                .run(tenant, exec.priority, &job, sink, cancel)
                .await;
            if let Some(cache) = cache {
                cache.bump(tenant).await;
            }
            return finish;
        };

        self.metrics.cache.cacheable();
        let generation = match verdict.class {
            Class::Pure | Class::Session => 0,
            _ => cache.generation(tenant).await,
        };
        let key = cache.key(&verdict, command, &job.env, tenant, &job.cwd, generation);
        if exec.cache == CacheMode::Default {
            let fresh = cache.freshness(&verdict, &job.cwd, &job.env, generation);
            if let Some((entry, tier)) = cache.get_local(key, &fresh) {
                let from_prefetch = entry.use_prefetched();
                if let Some(first) = from_prefetch {
                    self.metrics.predict.served(first);
                }
                return replay(&entry, tier, from_prefetch.is_some(), sink).await;
            }
        } else {
            cache.refreshing();
        }

        // A refresh must not join (or be joined by) a run that may answer from L3.
        let flight_key = match exec.cache {
            CacheMode::Refresh => key ^ 1,
            _ => key,
        };
        let (mut follower, publisher) = self.flights.join(flight_key);
        if let Some(publisher) = publisher {
            let run = MissRun {
                cache: cache.clone(),
                workers: self.workers.clone(),
                tenant: tenant.clone(),
                priority: exec.priority,
                job,
                key,
                verdict,
                generation,
                refresh: exec.cache == CacheMode::Refresh,
                prefetch: None,
            };
            tokio::spawn(run.run(publisher));
        } else {
            self.metrics.cache.joined();
        }
        follow(&mut follower, sink, &cancel, &self.workers.kill).await
    }
}

/// The cache, unless disabled or impossible to build (then the engine runs
/// without it: not caching is always correct).
fn build_cache(config: &Config, metrics: &Arc<Metrics>) -> Option<Arc<Cache>> {
    if !config.cache.enabled {
        tracing::info!("cache disabled (--no-cache): every command runs");
        return None;
    }
    match Cache::new(&config.cache, metrics.clone()).map(|c| c.run_as(&config.exec.run_as)) {
        Ok(c) => {
            match config.cache.redis_url.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => tracing::info!(
                    redis = %crate::cache::redact(url),
                    "cache: L1 + L2 + L3 (Redis)"
                ),
                None => tracing::info!("cache: L1 + L2 only (no --redis-url: L3 off)"),
            }
            Some(Arc::new(c))
        }
        Err(e) => {
            tracing::error!(error = %e, "cache cannot start; running without it");
            None
        }
    }
}

/// Answers from a cached entry (`prefetched`: the prefetcher stored it).
async fn replay<S: OutputSink>(
    entry: &Entry,
    tier: Tier,
    prefetched: bool,
    sink: &mut S,
) -> Finish {
    let killed = match entry.replay(sink).await {
        Ok(()) => KillReason::None,
        Err(_) => KillReason::Cancelled,
    };
    Finish::Exit {
        code: Some(0),
        signal: None,
        truncated: false,
        killed,
        served_from: match tier {
            _ if prefetched => ServedFrom::Prefetch,
            Tier::L1 => ServedFrom::L1,
            Tier::L2 => ServedFrom::L2,
            Tier::L3 => ServedFrom::L3,
        },
    }
}

/// Follows a flight to its end, or stops following on cancel / shutdown (the
/// run itself goes on while other requests follow it).
async fn follow<S: OutputSink>(
    follower: &mut Follower<Finish>,
    sink: &mut S,
    cancel: &CancellationToken,
    kill: &CancellationToken,
) -> Finish {
    let never = CancellationToken::new();
    let stopped = tokio::select! {
        r = follower.follow(sink, &never) => r,
        _ = cancel.cancelled() => Err(Stopped::Cancelled),
        _ = kill.cancelled() => return cancelled(KillReason::Shutdown),
    };
    match stopped {
        Ok(finish) => finish,
        Err(Stopped::Cancelled | Stopped::SinkClosed) => cancelled(KillReason::Cancelled),
        Err(Stopped::Abandoned) => {
            Finish::error(ErrorCode::Internal, "the shared run ended without a result")
        }
    }
}

/// One run for a cacheable miss, shared by every request that joined its flight.
/// A prefetch is one too: it comes with its slot already taken (idle capacity
/// only), is not stopped when nobody follows it, and marks what it stores.
pub(super) struct MissRun {
    pub(super) cache: Arc<Cache>,
    pub(super) workers: Workers,
    pub(super) tenant: Arc<str>,
    pub(super) priority: Priority,
    pub(super) job: Job,
    pub(super) key: Key,
    pub(super) verdict: Verdict,
    /// The tenant's generation the key was made under.
    pub(super) generation: u64,
    pub(super) refresh: bool,
    /// Set for a prefetch: the worker slot it was admitted with.
    pub(super) prefetch: Option<Slot>,
}

impl MissRun {
    /// Runs the miss and ends the flight. Returns whether a result was stored.
    pub(super) async fn run(mut self, mut publisher: Publisher<Finish>) -> bool {
        let prefetch = self.prefetch.take();
        let served_from = if prefetch.is_some() {
            ServedFrom::Prefetch
        } else {
            ServedFrom::Exec
        };
        if !self.refresh {
            let fresh =
                self.cache
                    .freshness(&self.verdict, &self.job.cwd, &self.job.env, self.generation);
            if let Some(entry) = self.cache.get_remote(self.key, &fresh).await {
                for (stream, bytes) in entry.segments() {
                    publisher.push(stream, bytes);
                }
                publisher.finish(Finish::Exit {
                    code: Some(0),
                    signal: None,
                    truncated: false,
                    killed: KillReason::None,
                    served_from: ServedFrom::L3,
                });
                return false;
            }
        }
        // A request's run stops when its last follower leaves; a prefetch has
        // none to begin with and runs to its end (or shutdown).
        let cancel = if prefetch.is_some() {
            CancellationToken::new()
        } else {
            publisher.cancelled()
        };
        // Taken before the command reads its inputs: a change made while it runs
        // makes the stamp differ at the next lookup.
        let validity =
            self.cache
                .validity(&self.verdict, &self.job.cwd, &self.job.env, self.generation);
        let mut tee = Tee {
            publisher: &mut publisher,
            chunks: Vec::new(),
            bytes: 0,
            limit: self.cache.max_entry(),
        };
        let finish = match prefetch {
            Some(slot) => {
                self.workers
                    .exec(slot, &self.job, &mut tee, cancel, served_from)
                    .await
            }
            None => {
                self.workers
                    .run(&self.tenant, self.priority, &self.job, &mut tee, cancel)
                    .await
            }
        };
        let Tee {
            chunks,
            bytes,
            limit,
            ..
        } = tee;
        let clean = matches!(
            finish,
            Finish::Exit {
                code: Some(0),
                signal: None,
                truncated: false,
                killed: KillReason::None,
                ..
            }
        );
        let stored = clean && bytes <= limit;
        if stored {
            let mut entry = Entry::from_chunks(
                chunks.iter().map(|(s, d)| (*s, d.as_slice())),
                self.cache.ttl(&self.verdict, validity),
            )
            .valid_while(validity);
            if served_from == ServedFrom::Prefetch {
                entry = entry.prefetched();
            }
            self.cache.store(self.key, entry);
            if self.refresh {
                self.cache.refreshing();
            }
        }
        publisher.finish(finish);
        stored
    }
}

/// Publishes output to the flight's followers and keeps a copy for the cache,
/// until it grows past the largest storable entry.
struct Tee<'a> {
    publisher: &'a mut Publisher<Finish>,
    chunks: Vec<(StreamKind, Vec<u8>)>,
    bytes: usize,
    limit: usize,
}

impl OutputSink for Tee<'_> {
    async fn chunk(&mut self, stream: StreamKind, data: &[u8]) -> Result<(), SinkClosed> {
        self.publisher.push(stream, data);
        self.bytes = self.bytes.saturating_add(data.len());
        if self.bytes <= self.limit {
            self.chunks.push((stream, data.to_vec()));
        } else {
            self.chunks = Vec::new();
        }
        Ok(())
    }
}

/// The worker side of the engine, cloned into single-flight runs: the pool, the
/// shutdown kill switch, and how long a request may wait for a worker.
#[derive(Clone)]
pub(super) struct Workers {
    pub(super) pool: Pool,
    kill: CancellationToken,
    max_queue_wait: Duration,
}

impl Workers {
    /// Takes a worker slot and runs the job: the exec path, cached or not.
    pub(super) async fn run<S: OutputSink>(
        &self,
        tenant: &Arc<str>,
        priority: Priority,
        job: &Job,
        sink: &mut S,
        cancel: CancellationToken,
    ) -> Finish {
        // Wait for a worker, but not past the queue-wait bound (load shedding), and
        // give up at once if the request is cancelled meanwhile.
        let slot = tokio::select! {
            slot = tokio::time::timeout(self.max_queue_wait, self.pool.acquire(tenant, priority)) => slot,
            _ = cancel.cancelled() => return cancelled(KillReason::Cancelled),
            _ = self.kill.cancelled() => return cancelled(KillReason::Shutdown),
        };
        let slot = match slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(PoolError::QueueFull)) => {
                return Finish::error(
                    ErrorCode::QuotaExceeded,
                    "worker queue is full, retry later",
                )
            }
            Err(_) => {
                return Finish::error(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "server overloaded: no worker within {:?}, retry later",
                        self.max_queue_wait
                    ),
                )
            }
        };

        self.exec(slot, job, sink, cancel, ServedFrom::Exec).await
    }

    /// Runs the job on a slot already held (the slot is released at the end).
    async fn exec<S: OutputSink>(
        &self,
        _slot: Slot,
        job: &Job,
        sink: &mut S,
        cancel: CancellationToken,
        served_from: ServedFrom,
    ) -> Finish {
        let stop = Stop {
            cancel,
            shutdown: self.kill.clone(),
        };
        match exec::run(job, sink, &stop).await {
            Ok(o) => Finish::Exit {
                code: o.code,
                signal: o.signal,
                truncated: o.truncated,
                killed: o.killed,
                served_from,
            },
            Err(ExecError::Plan(e)) => Finish::error(ErrorCode::InvalidCommand, e.to_string()),
            Err(e @ ExecError::Spawn(_)) => Finish::error(ErrorCode::SpawnFailed, e.to_string()),
            Err(e) => Finish::error(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// A request stopped before it got a worker: nothing ran.
fn cancelled(killed: KillReason) -> Finish {
    Finish::Exit {
        code: None,
        signal: None,
        truncated: false,
        killed,
        served_from: ServedFrom::Exec,
    }
}

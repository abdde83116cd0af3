//! The engine: one `Exec` from its session to an answer (builtin, cache, or a
//! worker slot and a child process), the same for a client's request and a
//! prefetch; the predictor learns from every line and may prefetch the next.
//!
//! The parts, one file each:
//!
//! - `execute`: a request's way (builtin, classify, L1/L2, single flight);
//! - `interactive`: a `Spawn`, a command with live input (and perhaps a
//!   terminal): never cached, never prefetched;
//! - `classify`: what running a line would do, for a client that confirms
//!   before it runs (`Classify`), from the same verdicts the engine acts on;
//! - `miss`: the one run of a cacheable miss, shared by every follower (L3,
//!   then a worker; stores a clean result in every tier);
//! - `workers`: a worker slot and the exec path;
//! - `prefetch`: predicted lines run ahead of time, on idle workers only;
//! - `admit`: a request's line parsed once, and the command policy, built
//!   once, asked the same way for requests and prefetches;
//! - `lines`: the one memo of parsed lines (`shell::Line`), each with the
//!   policy's and the cache's verdict on it, so that a line is parsed once per
//!   request (and a repeated line not at all).
//!
//! Cache step (DESIGN §2 step 3, §4): the line is classified; a mutating (or
//! unknown) line bumps its tenant's generation before it runs and again after it
//! ends, so an fs-read that ran concurrently cannot store a pre-mutation answer
//! under the generation that follows; a cacheable line is looked up in L1 → L2,
//! then joins the single flight of its key, whose one run tries L3 and then
//! executes, storing a clean result in every tier.

use crate::cache::flight::Flights;
use crate::cache::Cache;
use crate::config::Config;
use crate::exec::{self, Pool, PoolConfig};
use crate::metrics::{Metrics, Sampled};
use crate::predict::{Predictor, Store};
use crate::session::{BaseEnv, Durable, SessionStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{ErrorCode, KillReason, ServedFrom};

mod admit;
mod classify;
mod execute;
pub use execute::{Answered, Learning};
mod interactive;

pub use interactive::{Terminal, DEFAULT_TERM};
mod lines;
mod miss;
mod prefetch;
mod renew;
mod suggest;
mod workers;

use lines::Lines;
pub use lines::Parsed;
use prefetch::Prefetcher;
use workers::Workers;

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
    config: Config,
    /// Live sessions.
    pub sessions: Arc<SessionStore>,
    workers: Workers,
    /// Process-wide metrics.
    pub metrics: Arc<Metrics>,
    /// The result cache (None with `--no-cache` or when it could not be built).
    pub cache: Option<Arc<Cache>>,
    flights: Flights<Finish>,
    base_env: BaseEnv,
    home: PathBuf,
    /// Limits and cgroups of every child (exec owns it; built from `[exec]`).
    containment: Arc<exec::Containment>,
    /// The users commands run as (`[exec] run_as`); `Ok(None)`: the server's
    /// own. An `Err` (the user vanished since the start-up check) refuses every
    /// command: containment fails closed.
    run_as: Result<Option<Arc<exec::RunAs>>, exec::IdentityError>,
    /// Next-command model (None with `--no-predict`).
    pub predictor: Option<Arc<Predictor>>,
    /// Where the model is kept between runs.
    model_store: Arc<Store>,
    /// Prefetch admission (None without prediction, cache or `predict.prefetch`).
    prefetcher: Option<Prefetcher>,
    /// Renewal admission (None without the cache or `cache.renew`).
    renewals: Option<Arc<crate::predict::Gate>>,
    /// The command policy (None: no allow or deny list), see `admit`.
    policy: Option<Arc<crate::security::CommandPolicy>>,
    /// Parsed lines and their verdicts.
    lines: Lines,
}

/// Why an engine cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The command policy is malformed.
    #[error("invalid command policy: {0}")]
    Policy(String),
}

impl Engine {
    /// Builds the engine. `kill` fires when the shutdown drain ends: children still
    /// running then are killed.
    /// Fails only on a malformed command policy (`server::check` reports it
    /// before start).
    pub fn new(config: Config, kill: CancellationToken) -> Result<Arc<Engine>, EngineError> {
        let policy = crate::security::CommandPolicy::new(&config.policy)
            .map_err(|e| EngineError::Policy(e.to_string()))?
            .map(Arc::new);
        let base_env = BaseEnv::from_config(&config.session);
        let home = PathBuf::from(base_env.get("HOME").unwrap_or("/"));
        let root = if config.session.root.as_os_str().is_empty() {
            home.clone()
        } else {
            config.session.root.clone()
        };
        let pool = Pool::new(PoolConfig {
            workers: config.exec.workers,
            tenant_concurrency: config.exec.tenant_concurrency,
            queue_capacity: config.exec.queue_capacity,
        });
        let metrics = Arc::new(Metrics::new());
        let cache = build_cache(&config, &metrics);
        let durable = Durable::choose(
            cache.as_ref().and_then(|c| c.l3()),
            config.predict.data_dir().as_deref(),
        );
        tracing::info!(store = %durable.describe(), "sessions are kept");
        let sessions = SessionStore::new(
            root,
            config.session.idle_ttl,
            config.session.history,
            durable,
        );
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
            metrics: metrics.clone(),
        };
        let predictor = config
            .predict
            .enabled
            .then(|| Arc::new(Predictor::new(&config.predict)));
        let model_store = Arc::new(Store::choose(
            cache.as_ref().and_then(|c| c.l3()),
            config.predict.data_dir().as_deref(),
        ));
        let prefetcher = Prefetcher::build(
            &config,
            predictor.is_some(),
            cache.is_some(),
            policy.clone(),
        );
        let renewals = (cache.is_some() && config.cache.renew).then(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            crate::predict::Gate::idle_only(&config.predict, cores)
        });
        if predictor.is_some() {
            tracing::info!(
                store = %model_store.describe(),
                prefetch = prefetcher.is_some(),
                "next-command prediction on"
            );
        }
        Ok(Arc::new(Engine {
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
            renewals,
            policy,
            lines: Lines::new(),
        }))
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

    /// The timeout a request gets: its own (capped) or the default. The
    /// connection refuses one above the cap before it gets here
    /// ([`Engine::check_timeout`]); the cap still holds for any other caller.
    pub fn timeout_for(&self, timeout_ms: u32) -> Duration {
        match timeout_ms {
            0 => self.config.exec.default_timeout,
            ms => Duration::from_millis(u64::from(ms)).min(self.config.exec.max_timeout),
        }
    }

    /// `Err(why)` for a requested timeout above `[exec] max_timeout`: a
    /// client that asked for 20 minutes is told, not silently given 10.
    pub fn check_timeout(&self, timeout_ms: u32) -> Result<(), String> {
        let max = self.config.exec.max_timeout;
        let asked = Duration::from_millis(u64::from(timeout_ms));
        if asked > max {
            return Err(format!(
                "a timeout of {} is above this server's maximum of {} ([exec] max_timeout)",
                humantime::format_duration(asked),
                humantime::format_duration(max)
            ));
        }
        Ok(())
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

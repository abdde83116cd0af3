//! The way one `Exec` goes from its session to an answer: builtin, or a worker
//! slot and a child process. (The cache tiers and the predictor plug in here.)

use super::builtins::Builtin;
use super::env::BaseEnv;
use super::state::Session;
use super::store::SessionStore;
use crate::config::Config;
use crate::exec::{self, ExecError, Job, OutputSink, Pool, PoolConfig, PoolError, Stop};
use crate::metrics::{Metrics, Sampled};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{ErrorCode, Exec, KillReason, ServedFrom, StreamKind};

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
    /// The worker pool.
    pub pool: Pool,
    /// Process-wide metrics.
    pub metrics: Arc<Metrics>,
    base_env: BaseEnv,
    home: PathBuf,
    kill: CancellationToken,
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
        Arc::new(Engine {
            config,
            sessions,
            pool,
            metrics: Arc::new(Metrics::new()),
            base_env,
            home,
            kill,
        })
    }

    /// Kills every running child (the end of a shutdown drain).
    pub fn kill_all(&self) {
        self.kill.cancel();
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gauges owned by the session store and the pool, for metrics snapshots.
    pub fn sampled(&self) -> Sampled {
        Sampled {
            sessions: self.sessions.len() as u64,
            queue_depth: self.pool.queue_depth() as u64,
            busy_workers: self.pool.busy() as u64,
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

        if let Some(builtin) = Builtin::parse(command) {
            let out = builtin.run(session, &self.home);
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

        let (cwd, env) = session.snapshot();
        let job = Job {
            command: command.to_owned(),
            cwd,
            env: self.base_env.compose(&env),
            timeout: self.timeout_for(exec),
            kill_grace: self.config.exec.kill_grace,
            output_cap: self.config.exec.output_cap,
        };

        // Wait for a worker, but give up at once if the request is cancelled meanwhile.
        let slot = tokio::select! {
            slot = self.pool.acquire(session.tenant(), exec.priority) => slot,
            _ = cancel.cancelled() => return cancelled(KillReason::Cancelled),
            _ = self.kill.cancelled() => return cancelled(KillReason::Shutdown),
        };
        let _slot = match slot {
            Ok(slot) => slot,
            Err(PoolError::QueueFull) => {
                return Finish::error(
                    ErrorCode::QuotaExceeded,
                    "worker queue is full, retry later",
                )
            }
        };

        let stop = Stop {
            cancel,
            shutdown: self.kill.clone(),
        };
        match exec::run(&job, sink, &stop).await {
            Ok(o) => Finish::Exit {
                code: o.code,
                signal: o.signal,
                truncated: o.truncated,
                killed: o.killed,
                served_from: ServedFrom::Exec,
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

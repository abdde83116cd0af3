//! The worker side of the engine: a slot from the pool, then the exec path.

use super::{cancelled, Finish};
use crate::exec::{self, ExecError, Interactive, Job, Pool, PoolError, Slot, Stop};
use crate::metrics::{Cause, Metrics};
use crate::output::OutputSink;
use crate::Cancel;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{ErrorCode, KillReason, Priority, ServedFrom};

/// The worker side of the engine, cloned into single-flight runs: the pool, the
/// shutdown kill switch, and how long a request may wait for a worker.
#[derive(Clone)]
pub(super) struct Workers {
    pub(super) pool: Pool,
    pub(super) kill: CancellationToken,
    pub(super) max_queue_wait: Duration,
    /// Where the processes started are counted.
    pub(super) metrics: Arc<Metrics>,
}

/// Why a job runs, for the count of processes started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Why {
    /// What asked for it.
    pub(super) cause: Cause,
    /// The line's cache class (`none` without a cache).
    pub(super) class: &'static str,
    /// It is the one run of a cacheable miss (`cache_miss_runs`).
    pub(super) cacheable_miss: bool,
}

impl Workers {
    /// Takes a worker slot and runs the job: the exec path, cached or not;
    /// with `io`, a command with live input (never cached).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run<S: OutputSink>(
        &self,
        tenant: &Arc<str>,
        priority: Priority,
        job: &Job,
        io: Option<Interactive>,
        why: Why,
        sink: &mut S,
        cancel: Cancel,
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

        self.exec_with(slot, job, io, why, sink, cancel, ServedFrom::Exec)
            .await
    }

    /// Runs the job on a slot already held (the slot is released at the end).
    pub(super) async fn exec<S: OutputSink>(
        &self,
        slot: Slot,
        job: &Job,
        why: Why,
        sink: &mut S,
        cancel: Cancel,
        served_from: ServedFrom,
    ) -> Finish {
        self.exec_with(slot, job, None, why, sink, cancel, served_from)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec_with<S: OutputSink>(
        &self,
        _slot: Slot,
        job: &Job,
        io: Option<Interactive>,
        why: Why,
        sink: &mut S,
        cancel: Cancel,
        served_from: ServedFrom,
    ) -> Finish {
        let stop = Stop {
            cancel,
            shutdown: self.kill.clone(),
        };
        let outcome = match io {
            Some(io) => exec::run_interactive(job, io, sink, &stop).await,
            None => exec::run(job, sink, &stop).await,
        };
        if let Ok(o) = &outcome {
            if o.spawned {
                self.metrics.spawns.started(why.cause, why.class);
                if why.cacheable_miss {
                    self.metrics.cache.miss_run();
                }
            }
        }
        match outcome {
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

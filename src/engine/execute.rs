//! A request's way: builtin, classify, L1 → L2, then the single flight of its
//! key (whose one run is a [`MissRun`](super::miss::MissRun)) or a worker.
//! Every step reads the line parsed at admission; none parses it again.

use super::lines::Parsed;
use super::miss::{MissRun, Origin};
use super::workers::Why;
use super::{cancelled, Engine, Finish};
use crate::cache::flight::{Follower, Stopped};
use crate::cache::{Class, Entry};
use crate::exec::Job;
use crate::metrics::Cause;
use crate::metrics::Tier;
use crate::output::OutputSink;
use crate::predict::CmdId;
use crate::session::{Builtin, Session};
use crate::Cancel;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{CacheMode, ErrorCode, Exec, KillReason, ServedFrom, StreamKind};

/// A request's end and what it leaves to learn.
#[derive(Debug)]
pub struct Answered {
    /// How it ended: the `Exit` or `Error` to send.
    pub finish: Finish,
    /// With prediction on, for [`Engine::learn`] after the terminal frame.
    pub learning: Option<Learning>,
}

impl Answered {
    /// An end with nothing to learn (refused, or prediction off).
    fn alone(finish: Finish) -> Answered {
        Answered {
            finish,
            learning: None,
        }
    }
}

/// A line to learn as the successor of its session's last two, and the
/// prediction and prefetch planning that follow. Apart from the answer so
/// that the answer goes first: under load these cost 3 µs (a session that
/// repeats one line) to 8 µs and more (one whose likely next lines are not
/// cached: a launch to clone, keys to build, a task to start) at the median,
/// and every answer waited for them when they ran before its `Exit` (issue
/// 17, part 1).
#[derive(Debug)]
#[must_use = "a request's line is learned only by `Engine::learn`"]
pub struct Learning {
    context: (CmdId, CmdId),
    id: CmdId,
    text: Arc<str>,
    hit: bool,
}

impl Engine {
    /// Runs one request in `session`, streaming output into `sink`. Always returns
    /// exactly one `Finish`; `cancel` fires on `Cancel` or when the connection goes.
    /// `line` is the request's command as [`Engine::parse`] parsed it at admission.
    ///
    /// With prediction on, the answer comes with its [`Learning`]: the line
    /// as the successor of the session's last two, for [`Engine::learn`]
    /// once the answer is on its way.
    pub async fn execute<S: OutputSink>(
        &self,
        session: &Session,
        exec: &Exec,
        line: &Parsed,
        sink: &mut S,
        cancel: Cancel,
    ) -> Answered {
        let command = match self.begin(session, line) {
            Ok(command) => command,
            Err(refused) => return Answered::alone(refused),
        };
        if self.predictor.is_none() {
            return Answered::alone(self.answer(session, line, exec, sink, cancel).await);
        }
        let (id, text) = line.predict_id();
        debug_assert_eq!(&**text, command);
        let id = *id;
        let (context, rank) = session.advance(id);
        if let Some(rank) = rank {
            self.metrics.predict.checked(rank);
        }
        let finish = self.answer(session, line, exec, sink, cancel).await;
        // Answered whole from a cache tier: the line is cached for this
        // session now, and its prefetch check need not say so at the price of
        // a key and a lookup.
        let hit = matches!(
            &finish,
            Finish::Exit {
                served_from: ServedFrom::L1
                    | ServedFrom::L2
                    | ServedFrom::L3
                    | ServedFrom::Prefetch,
                killed: KillReason::None,
                ..
            }
        );
        Answered {
            finish,
            learning: Some(Learning {
                context,
                id,
                text: text.clone(),
                hit,
            }),
        }
    }

    /// Learns what a request left (see [`Learning`]): its line as the
    /// successor of the session's last two; unless another command of the
    /// session started meanwhile, what follows is predicted and the likely
    /// lines prefetched in the background.
    pub fn learn(&self, session: &Session, learning: Learning) {
        if let Some(predictor) = &self.predictor {
            let Learning {
                context,
                id,
                text,
                hit,
            } = learning;
            self.learn_and_predict(predictor, session, context, id, &text, hit);
        }
    }

    /// Answers one line: builtin, cache or a worker.
    ///
    /// Only a cache hit's path is inline in this future; a builtin, a run
    /// and a miss's wait are boxed when taken. Every request's future is
    /// boxed and moved whole before its first poll, so their states (kilobytes:
    /// a worker's run alone is 2.7 KiB) were copied and allocated for every
    /// hit too; one allocation on a path that starts a process costs nothing
    /// beside the process (issue 17, part 6).
    async fn answer<S: OutputSink>(
        &self,
        session: &Session,
        line: &Parsed,
        exec: &Exec,
        sink: &mut S,
        cancel: Cancel,
    ) -> Finish {
        let command = line.line().text();
        if let Some(builtin) = Builtin::from_line(line.line()) {
            return Box::pin(self.builtin(session, &builtin, sink)).await;
        }

        let job = match self.job(session, line, self.timeout_for(exec.timeout_ms)) {
            Ok(job) => job,
            Err(refused) => return refused,
        };
        let tenant = session.tenant();
        let verdict = self.cache.as_ref().map(|c| (c, line.verdict(c).clone()));
        let class = verdict.as_ref().map_or("none", |(_, v)| v.class.as_str());
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
            let why = Why {
                cause: Cause::Request,
                class,
                cacheable_miss: false,
            };
            if let Some(cache) = cache {
                cache.bump(tenant).await;
            }
            let finish =
                Box::pin(
                    self.workers
                        .run(tenant, exec.priority, &job, None, why, sink, cancel),
                )
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
                if cache.renewal_due(&verdict, &entry) {
                    self.renew(tenant, &job, key, &verdict, generation);
                }
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
        let joined = publisher.is_none();
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
                origin: Origin::Request {
                    refresh: exec.cache == CacheMode::Refresh,
                },
            };
            tokio::spawn(run.run(publisher));
        } else {
            self.metrics.cache.joined();
        }
        let finish = Box::pin(follow(&mut follower, sink, &cancel, &self.workers.kill)).await;
        match finish {
            // It shared another request's process and started none: say so,
            // so that clients (and the load tester) can count spawns exactly.
            Finish::Exit {
                served_from: ServedFrom::Exec,
                code,
                signal,
                truncated,
                killed,
            } if joined => Finish::Exit {
                code,
                signal,
                truncated,
                killed,
                served_from: ServedFrom::Joined,
            },
            other => other,
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
    cancel: &Cancel,
    kill: &CancellationToken,
) -> Finish {
    let never = Cancel::new();
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

impl Engine {
    /// The start of every request's way (an `Exec` or a `Spawn`): an empty
    /// line is refused, anything else goes into the session's history.
    pub(super) fn begin<'l>(&self, session: &Session, line: &'l Parsed) -> Result<&'l str, Finish> {
        let command = line.line().text();
        if command.is_empty() {
            return Err(Finish::error(ErrorCode::InvalidCommand, "empty command"));
        }
        session.record(line.predict_id().1.clone());
        Ok(command)
    }

    /// Runs a builtin in-process (`cd`, `export`, `unset`, `pwd`).
    pub(super) async fn builtin<S: OutputSink>(
        &self,
        session: &Session,
        builtin: &Builtin,
        sink: &mut S,
    ) -> Finish {
        // With per-tenant roots (resolved once, when the session was attached),
        // `cd` stays inside the tenant's root and `~` is it.
        let jail = session.root();
        let home = jail.as_deref().unwrap_or(&self.home);
        let out = builtin.run(session, home, jail.as_deref());
        if builtin.changes_session() {
            // Kept beyond this process at once: the session may be opened on
            // another engine next.
            self.sessions.changed(session);
        }
        for (stream, data) in [
            (StreamKind::Stdout, out.stdout),
            (StreamKind::Stderr, out.stderr),
        ] {
            if !data.is_empty() && sink.chunk(stream, &data).await.is_err() {
                break;
            }
        }
        Finish::Exit {
            code: Some(out.code),
            signal: None,
            truncated: false,
            killed: KillReason::None,
            served_from: ServedFrom::Builtin,
        }
    }

    /// The job that runs `line` in `session`: its cwd (held open and checked
    /// against the tenant's root), env, limits and user. `Err` is the request's
    /// end when it may not run.
    pub(super) fn job(
        &self,
        session: &Session,
        line: &Parsed,
        timeout: std::time::Duration,
    ) -> Result<Job, Finish> {
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
                    return Err(Finish::error(ErrorCode::PolicyDenied, e.to_string()));
                }
            },
            None => None,
        };
        let user = match self.user_for(session.tenant()) {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(tenant = %session.tenant(), error = %e, "command refused: no user to run it as");
                return Err(Finish::error(ErrorCode::SpawnFailed, e.to_string()));
            }
        };
        Ok(Job {
            line: line.line().clone(),
            cwd,
            env,
            timeout,
            kill_grace: self.config.exec.kill_grace,
            output_cap: self.config.exec.output_cap,
            containment: Arc::clone(&self.containment),
            dir,
            user,
        })
    }
}

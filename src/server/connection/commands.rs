//! `Exec` and `Batch`: admission, then a request task per command.
//!
//! Admission happens here, in the reader, so that refusals come back in the
//! order the commands were sent and nothing of a refused line runs. Its checks,
//! in order: shutdown, a duplicate id, the in-flight cap, then `screen` (the
//! timeout against the cap, the line's length, the tenant's rate, the command policy) and the session the
//! `Exec` names. `screen` has the engine parse the line, once: the parsed
//! line goes with the admitted command to its task. An admitted command is
//! registered in flight before its task starts (`Shared::register`); the task
//! ends it (`request`).

use super::Connection;
use crate::engine::{Finish, Parsed};
use crate::metrics::Refusal;
use crate::server::request;
use crate::server::shared::InputPort;
use crate::session::SessionHandle;
use crate::Cancel;
use std::sync::Arc;
use std::time::Instant;
use voxterm_protocol::{Batch, BatchMode, ErrorCode, Exec, RequestId, SessionId, Subject};

/// The fields admission reads, the same in an `Exec` and a `Spawn`.
pub(super) struct Ask<'a> {
    pub request: RequestId,
    pub session: SessionId,
    pub command: &'a str,
    pub timeout_ms: u32,
}

impl<'a> Ask<'a> {
    fn of(exec: &'a Exec) -> Ask<'a> {
        Ask {
            request: exec.request,
            session: exec.session,
            command: &exec.command,
            timeout_ms: exec.timeout_ms,
        }
    }
}

impl Connection {
    /// `Exec`: admitted, then run in a task of its own, so one slow command
    /// never holds up the others on the connection.
    pub(super) async fn on_exec(&mut self, exec: Exec, received: Instant) {
        let Some((session, line, cancel)) = self.admit(Ask::of(&exec), Ok(()), None).await else {
            return;
        };
        let (shared, engine) = (self.shared.clone(), self.engine.clone());
        let run = Box::pin(request::run(
            shared, engine, session, exec, line, received, cancel,
        ));
        request::start(&self.ctx.tracker, run).await;
    }

    /// `Batch`: parallel, each step is an `Exec` of its own; sequential, the
    /// steps run one after the other in one task, and after the first failure
    /// the rest end with `Skipped`.
    pub(super) async fn on_batch(&mut self, batch: Batch, received: Instant) {
        if batch.execs.is_empty() {
            // Nothing to answer it with otherwise: a Batch has no id of its own.
            return self
                .reject(
                    Subject::Batch,
                    0,
                    ErrorCode::InvalidArgument,
                    "an empty Batch runs nothing",
                )
                .await;
        }
        match batch.mode {
            BatchMode::Parallel => {
                for exec in batch.execs {
                    self.on_exec(exec, received).await;
                }
            }
            BatchMode::Sequential => {
                // Admit every step now (so each id is answered exactly once), but a
                // step refused at admission counts as a failure for the ones after it.
                let mut steps = Vec::with_capacity(batch.execs.len());
                for exec in batch.execs {
                    let admitted = self.admit(Ask::of(&exec), Ok(()), None).await;
                    steps.push(
                        admitted.map(|(session, line, cancel)| (exec, session, line, cancel)),
                    );
                }
                let (shared, engine) = (self.shared.clone(), self.engine.clone());
                self.ctx.tracker.spawn(async move {
                    let mut failed = false;
                    for step in steps {
                        let Some((exec, session, line, cancel)) = step else {
                            failed = true;
                            continue;
                        };
                        if failed {
                            let finish = Finish::Error {
                                code: ErrorCode::Skipped,
                                message: "an earlier command of the sequential batch failed".into(),
                            };
                            let out = shared.out_for(exec.request, &session);
                            request::finish_request(
                                &shared,
                                &engine,
                                &out,
                                exec.request,
                                finish,
                                received,
                            )
                            .await;
                            continue;
                        }
                        let ok = request::run(
                            shared.clone(),
                            engine.clone(),
                            session,
                            exec,
                            line,
                            received,
                            cancel,
                        )
                        .await;
                        failed = !ok;
                    }
                });
            }
        }
    }

    /// Admission: checks a request (an `Exec` or a `Spawn`) and registers it
    /// in flight, with its line parsed. `valid`: the caller's own check of
    /// the request's fields, applied once the id is known to be free (so that
    /// its error cannot look like the end of another request). `input`: a
    /// `Spawn`'s input port. `None` means an `Error` was already sent for it.
    pub(super) async fn admit(
        &mut self,
        exec: Ask<'_>,
        valid: Result<(), (ErrorCode, String)>,
        input: Option<InputPort>,
    ) -> Option<(Arc<SessionHandle>, Arc<Parsed>, Cancel)> {
        // One look at the map (its lock) for both checks.
        let (duplicate, in_flight) = {
            let map = self.shared.in_flight();
            (map.contains_key(&exec.request), map.len())
        };
        if !self.draining && duplicate {
            // Not accepted, so it must not look like the in-flight request's end.
            let message = format!("request {} is already in flight", exec.request);
            // Refusals are boxed: inline, their states would size every
            // admitted request's handler (`dispatch::on_frame`).
            Box::pin(self.reject(
                Subject::Request,
                exec.request,
                ErrorCode::DuplicateRequest,
                message,
            ))
            .await;
            return None;
        }
        let refuse = if self.draining {
            Some((
                ErrorCode::ShuttingDown,
                "server is shutting down".to_owned(),
            ))
        } else if in_flight >= self.limits.max_in_flight as usize {
            Some((
                ErrorCode::TooManyRequests,
                format!(
                    "at most {} requests in flight per connection",
                    self.limits.max_in_flight
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refuse {
            Box::pin(self.send_error(Some(exec.request), code, message)).await;
            return None;
        }
        let screened = valid.and_then(|()| self.screen(&exec));
        let admitted = match screened {
            Ok(line) => self.session(exec.session).await.map(|s| (s, line)),
            Err(e) => Err(e),
        };
        let (session, line) = match admitted {
            Ok(s) => s,
            Err((code, message)) => {
                Box::pin(self.send_error(Some(exec.request), code, message)).await;
                return None;
            }
        };
        let cancel = self.shared.register(exec.request, input);
        self.engine.metrics.request_started();
        Some((session, line, cancel))
    }

    /// The timeout against the cap, the line's length, the tenant's rate limit and the command policy,
    /// before anything of the line runs (builtins and cache hits included);
    /// the line, parsed, when it passes. The length comes first: nothing
    /// parses a line over the bound.
    fn screen(&self, exec: &Ask<'_>) -> Result<Arc<Parsed>, (ErrorCode, String)> {
        self.engine
            .check_timeout(exec.timeout_ms)
            .map_err(|why| (ErrorCode::InvalidArgument, why))?;
        let max = self.engine.config().limits.max_command_bytes as usize;
        if max > 0 && exec.command.len() > max {
            self.engine.metrics.refused(Refusal::CommandTooLong);
            return Err((
                ErrorCode::InvalidCommand,
                format!(
                    "the command line is {} bytes long; at most {max} are accepted ([limits] max_command_bytes): put long input in a file",
                    exec.command.len()
                ),
            ));
        }
        let security = &self.ctx.security;
        if let (Some(rate), Some(tenant)) = (&security.rate, &self.tenant) {
            if let Err(wait) = rate.take(tenant, Instant::now()) {
                self.engine.metrics.refused(Refusal::RateLimited);
                let ms = wait.as_millis().max(1);
                return Err((
                    ErrorCode::RateLimited,
                    format!(
                        "tenant {tenant} is over its rate of {} commands/s; retry after {ms} ms (retry_after_ms={ms})",
                        rate.rate()
                    ),
                ));
            }
        }
        let line = self.engine.parse(exec.command);
        if let Err(why) = self.engine.admit(&line) {
            self.engine.metrics.refused(Refusal::Policy);
            return Err((ErrorCode::PolicyDenied, format!("refused: {why}")));
        }
        Ok(line)
    }
}

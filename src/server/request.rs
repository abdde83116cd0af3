//! One request's task: run it through the engine, stream its output as `Output`
//! frames, and end it with exactly one `Exit` or `Error`. An `Exec` that
//! starts a program waiting for a terminal gets a `Notice` first; a `Spawn`'s
//! sink also gives its input credit back (`InputCredit`).

use super::shared::{Out, Shared};
use super::writer::{After, Outbound};
use crate::engine::{Engine, Finish, Learning, Parsed, Terminal};
use crate::exec::Feed;
use crate::metrics::Refusal;
use crate::output::{OutputSink, SinkClosed};
use crate::session::SessionHandle;
use crate::Cancel;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use voxterm_protocol::{
    Error, Exec, Exit, InputCredit, Message, Notice, NoticeKind, Output, RequestId, Spawn,
    StreamKind, Suggestions,
};

/// Room a frame body needs besides `Output.data` (request, stream, seq, length).
const OUTPUT_OVERHEAD: usize = 32;

/// Largest `Output.data` per frame. tungstenite serializes each message whole into
/// a per-connection buffer that keeps its largest size, so this (with the writer's
/// `coalesce_bytes`) bounds every connection's memory high-water mark.
const MAX_OUTPUT_DATA: usize = 16 * 1024;

/// Turns output chunks into `Output` frames on the connection's writer queue,
/// split so that no frame exceeds `max_frame_bytes` nor [`MAX_OUTPUT_DATA`].
pub(super) struct FrameSink {
    request: RequestId,
    seq: u32,
    max_data: usize,
    out: Out,
    /// The tenant's output budget, when `limits.output_bytes_per_second` is set.
    throttle: Option<Throttle>,
    /// A `Spawn`'s credit, given back as its command consumes input.
    credit: Option<Arc<AtomicU64>>,
}

/// What the sink needs to hold output back to the tenant's bytes/s budget.
struct Throttle {
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    tenant: Arc<str>,
    cancel: Cancel,
}

impl Throttle {
    /// Waits until `bytes` fit the tenant's budget. Waiting here holds the
    /// producer: the child's pipe fills and the child slows down, so output is
    /// late but never lost. Cancellation (and the connection's end) cuts the wait.
    async fn admit(&self, bytes: usize) -> Result<(), SinkClosed> {
        let Some(budget) = &self.shared.security.output else {
            return Ok(());
        };
        let wait = budget.take(&self.tenant, bytes, Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        self.engine.metrics.refused(Refusal::OutputThrottled);
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = self.cancel.cancelled() => Err(SinkClosed),
        }
    }
}

impl OutputSink for FrameSink {
    async fn chunk(&mut self, stream: StreamKind, data: &[u8]) -> Result<(), SinkClosed> {
        for piece in data.chunks(self.max_data) {
            if let Some(throttle) = &self.throttle {
                throttle.admit(piece.len()).await?;
            }
            let frame = Message::Output(Output {
                request: self.request,
                stream,
                seq: self.seq,
                data: piece.to_vec(),
            });
            self.seq = self.seq.wrapping_add(1);
            self.out.send(frame).await?;
        }
        Ok(())
    }

    async fn input_consumed(&mut self, n: usize) -> Result<(), SinkClosed> {
        let Some(credit) = &self.credit else {
            return Ok(());
        };
        // At most a window is ever outstanding, so `n` fits a u32.
        let bytes = u32::try_from(n).unwrap_or(u32::MAX);
        credit.fetch_add(u64::from(bytes), Ordering::AcqRel);
        let frame = Message::InputCredit(InputCredit {
            request: self.request,
            bytes,
        });
        self.out.send(frame).await
    }
}

impl FrameSink {
    fn new(
        shared: &Arc<Shared>,
        engine: &Arc<Engine>,
        session: &SessionHandle,
        request: RequestId,
        out: Out,
        cancel: &Cancel,
    ) -> FrameSink {
        let max_frame = engine.config().server.max_frame_bytes as usize;
        FrameSink {
            request,
            seq: 0,
            max_data: max_output_data(max_frame),
            out,
            throttle: shared.security.output.as_ref().map(|_| Throttle {
                shared: shared.clone(),
                engine: engine.clone(),
                tenant: session.tenant().clone(),
                cancel: cancel.clone(),
            }),
            credit: None,
        }
    }
}

/// Starts an admitted request (`request`, the future of [`run`]): polled once
/// here, on the reader's task, and given a task of its own only if it has to
/// wait (a spawn, a full writer queue, Redis). A cache hit, the common case
/// under load, ends in that one poll: no task to create, schedule, wake on
/// another worker and tear down, which cost more than the hit itself (issue
/// 17, part 6). The future is the same either way, so every guarantee of
/// [`run`] holds; what it registered to wake on before it moves wakes the
/// reader once, harmlessly, then its own task.
///
/// The caller boxes the future (`Box::pin(run(…))`) before the call: the
/// reader's own future then holds a pointer while this runs, not the
/// request's whole state machine (kilobytes, in every idle connection).
pub(super) async fn start<F>(tracker: &tokio_util::task::TaskTracker, mut request: Pin<Box<F>>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(request.as_mut().poll(cx))).await;
    if first.is_pending() {
        tracker.spawn(request);
    }
}

/// Runs `exec` (its `line` parsed at admission) and sends its terminal frame.
/// Returns how it ended (for batches).
pub(super) async fn run(
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    session: Arc<SessionHandle>,
    exec: Exec,
    line: Arc<Parsed>,
    received: Instant,
    cancel: Cancel,
) -> bool {
    let out = shared.out_for(exec.request, &session);
    let mut sink = FrameSink::new(
        &shared,
        &engine,
        &session,
        exec.request,
        out.clone(),
        &cancel,
    );
    // Before it starts: a person waiting on `vi` learns why now, not at the timeout.
    if let Some(message) = line.terminal_hint() {
        let notice = Message::Notice(Notice {
            request: exec.request,
            kind: NoticeKind::NeedsTerminal,
            message: message.to_owned(),
        });
        let _ = out.send(notice).await;
    }
    let answered = engine
        .execute(&session, &exec, &line, &mut sink, cancel)
        .await;
    let ok = answered.finish.succeeded();
    finish_request(
        &shared,
        &engine,
        &out,
        exec.request,
        answered.finish,
        received,
    )
    .await;
    if let Some(learning) = answered.learning {
        learn(&shared, &engine, &session, learning);
    }
    suggest(&shared, &engine, &session, &exec, &line).await;
    ok
}

/// Learns what a request left, after its `Exit` is queued: by the writer,
/// once that `Exit` is written ([`Outbound::After`]), so that the answer
/// does not wait for the learning, nor for its own task to yield to the
/// writer. Here at once when the client asked for suggestions (they are
/// made from what was just learned), or when the writer's queue is full or
/// gone.
fn learn(shared: &Shared, engine: &Arc<Engine>, session: &Arc<SessionHandle>, learning: Learning) {
    if shared.suggestions() > 0 {
        return engine.learn(session, learning);
    }
    let (engine, session) = (engine.clone(), session.clone());
    let after = After::new(move || engine.learn(&session, learning));
    if let Err(Outbound::After(after)) = shared.out.try_send(Outbound::After(after)) {
        after.run();
    }
}

/// After an `Exec`'s terminal frame, its likely successors, when the client
/// asked for them (`Configure.suggestions`). Nothing is sent when another
/// command of the session started meanwhile: its own end will suggest.
async fn suggest(
    shared: &Shared,
    engine: &Engine,
    session: &SessionHandle,
    exec: &Exec,
    line: &Parsed,
) {
    let max = shared.suggestions();
    if max == 0 {
        return;
    }
    let Some(lines) = engine.suggest(session, line, max) else {
        return;
    };
    let frame = Message::Suggestions(Suggestions {
        after: exec.request,
        session: exec.session,
        lines,
    });
    let _ = shared.out.send(Outbound::Frame(frame)).await;
}

/// The largest `Output.data` on a connection whose frames are at most
/// `max_frame` bytes (announced in `Configured`).
pub(super) fn max_output_data(max_frame: usize) -> usize {
    max_frame
        .saturating_sub(OUTPUT_OVERHEAD)
        .clamp(1, MAX_OUTPUT_DATA)
}

/// What a `Spawn`'s task needs besides what every request has.
pub(super) struct Spawned {
    /// The command's input, fed by the reader (`Input`, `Resize`).
    pub feed: mpsc::UnboundedReceiver<Feed>,
    /// The request's credit, shared with its input port.
    pub credit: Arc<AtomicU64>,
    /// Its terminal, if it asked for one.
    pub terminal: Option<Terminal>,
    /// Where its frames go (its initial credit went there first).
    pub out: Out,
}

/// Runs a `Spawn` (admitted, its credit sent) and sends its terminal frame.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_spawned(
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    session: Arc<SessionHandle>,
    spawn: Spawn,
    line: Arc<Parsed>,
    io: Spawned,
    received: Instant,
    cancel: Cancel,
) {
    let out = io.out;
    let mut sink = FrameSink::new(
        &shared,
        &engine,
        &session,
        spawn.request,
        out.clone(),
        &cancel,
    );
    sink.credit = Some(io.credit);
    let finish = engine
        .spawn(
            &session,
            &line,
            spawn.timeout_ms,
            io.feed,
            io.terminal,
            &mut sink,
            cancel,
        )
        .await;
    finish_request(&shared, &engine, &out, spawn.request, finish, received).await;
}

/// Sends the terminal frame of an accepted request and forgets it.
pub(super) async fn finish_request(
    shared: &Shared,
    engine: &Engine,
    out: &Out,
    request: RequestId,
    finish: Finish,
    received: Instant,
) {
    // Forget the id before the client can see the end, so it may reuse the id
    // at once. A route does it itself, on the connection the request is on
    // by then (`replay`).
    let now = Instant::now();
    if let Out::Direct(_) = out {
        shared.forget(request, now);
    }
    let backend_us = now.saturating_duration_since(received).as_micros() as u64;
    let frame = match finish {
        Finish::Exit {
            code,
            signal,
            truncated,
            killed,
            served_from,
        } => {
            engine.metrics.request_done(served_from, backend_us);
            Message::Exit(Exit {
                request,
                code,
                signal,
                served_from,
                backend_us,
                truncated,
                killed,
            })
        }
        Finish::Error { code, message } => {
            engine.metrics.request_failed(code, backend_us);
            shared.errored();
            Message::Error(Error {
                request: Some(request),
                code,
                message,
            })
        }
    };
    // If the writer is gone the client is gone: there is nobody left to tell.
    let _ = out.send(frame).await;
}

//! One request's task: run it through the engine, stream its output as `Output`
//! frames, and end it with exactly one `Exit` or `Error`.

use super::shared::Shared;
use super::writer::Outbound;
use crate::engine::{Engine, Finish, Parsed};
use crate::metrics::Refusal;
use crate::output::{OutputSink, SinkClosed};
use crate::session::SessionHandle;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{Error, Exec, Exit, Message, Output, RequestId, StreamKind};

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
    out: mpsc::Sender<Outbound>,
    /// The tenant's output budget, when `limits.output_bytes_per_second` is set.
    throttle: Option<Throttle>,
}

/// What the sink needs to hold output back to the tenant's bytes/s budget.
struct Throttle {
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    tenant: Arc<str>,
    cancel: CancellationToken,
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
            self.out
                .send(Outbound::Frame(frame))
                .await
                .map_err(|_| SinkClosed)?;
        }
        Ok(())
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
    cancel: CancellationToken,
) -> bool {
    let max_frame = engine.config().server.max_frame_bytes as usize;
    let mut sink = FrameSink {
        request: exec.request,
        seq: 0,
        max_data: max_frame
            .saturating_sub(OUTPUT_OVERHEAD)
            .clamp(1, MAX_OUTPUT_DATA),
        out: shared.out.clone(),
        throttle: shared.security.output.as_ref().map(|_| Throttle {
            shared: shared.clone(),
            engine: engine.clone(),
            tenant: session.tenant().clone(),
            cancel: cancel.clone(),
        }),
    };
    let finish = engine
        .execute(&session, &exec, &line, &mut sink, cancel)
        .await;
    let ok = finish.succeeded();
    finish_request(&shared, &engine, exec.request, finish, received).await;
    ok
}

/// Sends the terminal frame of an accepted request and forgets it.
pub(super) async fn finish_request(
    shared: &Shared,
    engine: &Engine,
    request: RequestId,
    finish: Finish,
    received: Instant,
) {
    // Forget the id before the client can see the end, so it may reuse the id at once.
    shared.forget(request);
    let backend_us = received.elapsed().as_micros() as u64;
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
    let _ = shared.out.send(Outbound::Frame(frame)).await;
}

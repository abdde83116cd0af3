//! The writer task: the only owner of a connection's socket write half.
//!
//! It waits for one outbound frame, then takes every other frame already queued
//! (up to `coalesce_bytes`), encodes them all into one WebSocket message and
//! flushes once. When the client is idle that is one frame per message with no
//! added delay; under load it keeps collecting for up to `coalesce_delay` and
//! turns many small frames into few syscalls (see [`run`]). The queue
//! in front of it is bounded, so a client that stops reading fills only its own
//! queue and blocks only its own commands' output.
//!
//! A cancelled request's output that is still queued is dropped here
//! ([`Cancelled`]): after `Cancel` during a flood, its `Exit` would otherwise
//! wait behind megabytes of output the client no longer wants.

use super::context::Transport;
use crate::metrics::Metrics;
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{Codec, Compression, Encoding, Message, RequestId};

/// Requests cancelled while their output may still be queued: the reader
/// adds one on `Cancel`, the writer drops its queued `Output` frames and
/// forgets it when its terminal frame goes by. Costs one atomic load per
/// frame while nothing is cancelled.
#[derive(Default)]
pub(super) struct Cancelled {
    count: AtomicUsize,
    ids: Mutex<HashSet<RequestId>>,
}

impl Cancelled {
    /// `request` was cancelled: its queued output may go.
    pub(super) fn add(&self, request: RequestId) {
        if crate::sync::lock(&self.ids).insert(request) {
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether an `Output` of `request` is to be dropped.
    fn drops(&self, request: RequestId) -> bool {
        self.count.load(Ordering::Acquire) > 0 && crate::sync::lock(&self.ids).contains(&request)
    }

    /// `request` ended (its terminal frame is going out): its id may be reused.
    fn ended(&self, request: RequestId) {
        if self.count.load(Ordering::Acquire) > 0 && crate::sync::lock(&self.ids).remove(&request) {
            self.count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// What the rest of the connection hands the writer.
#[derive(Debug)]
pub(super) enum Outbound {
    /// A frame to send.
    Frame(Message),
    /// Switch encoding and compression for every later frame (after `Welcome`).
    Configure(Encoding, Compression),
    /// Send a close frame and stop.
    Close(CloseCode, &'static str),
    /// Send a WebSocket Ping (keepalive); the peer's Pong proves it is alive.
    Ping,
    /// Send a WebSocket Ping carrying this epoch after the frames queued
    /// before it; its Pong acknowledges them (`replay`).
    AckPing(u64),
}

pub(super) type Sink = SplitSink<WebSocketStream<Transport>, WsMessage>;

/// How the writer batches frames into WebSocket messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Coalesce {
    /// Off: one frame per message, one flush each (`--no-batch`).
    pub enabled: bool,
    /// Largest message built from several frames.
    pub max_bytes: usize,
    /// Under load, how long to keep collecting frames before the flush.
    pub delay: Duration,
}

/// Runs until every sender is gone (then sends the close frame, if one was asked
/// for) or the socket fails.
///
/// Coalescing with a latency bound: the writer always sends at once what it has
/// when nothing else is queued (an idle client never waits). When more frames
/// were already queued behind the first (load), it yields to the scheduler so
/// that request tasks that are ready can add theirs, and keeps collecting while
/// new frames keep coming, for at most `delay` or until `max_bytes`. Yielding
/// instead of sleeping matters: tokio's timer has millisecond resolution, far
/// above the ~200 µs bound.
pub(super) async fn run(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Outbound>,
    mut codec: Codec,
    metrics: Arc<Metrics>,
    coalesce: Coalesce,
    cancelled: Arc<Cancelled>,
) {
    let mut close = None;
    let max_bytes = if coalesce.enabled {
        coalesce.max_bytes
    } else {
        0
    };
    'outer: while let Some(first) = rx.recv().await {
        let mut buf = Vec::with_capacity(256);
        let mut ping = false;
        let mut ack: Option<u64> = None;
        let mut next = Some(first);
        let mut frames = 0usize;
        let mut deadline: Option<Instant> = None;
        loop {
            while let Some(item) = next.take() {
                match item {
                    Outbound::Frame(Message::Output(o)) if cancelled.drops(o.request) => {}
                    Outbound::Frame(msg) => {
                        match &msg {
                            Message::Exit(e) => cancelled.ended(e.request),
                            Message::Error(e) => {
                                if let Some(r) = e.request {
                                    cancelled.ended(r);
                                }
                            }
                            _ => {}
                        }
                        frames += 1;
                        if let Err(e) = codec.encode(&msg, &mut buf) {
                            tracing::error!(error = %e, kind = msg.kind(), "cannot encode frame");
                        }
                    }
                    Outbound::Configure(encoding, compression) => {
                        codec.set_encoding(encoding);
                        codec.set_compression(compression);
                    }
                    // The close frame goes out last: frames queued after it (the final
                    // `Exit`s of requests ending while the connection closes) still go first.
                    Outbound::Close(code, reason) => close = close.or(Some((code, reason))),
                    Outbound::Ping => ping = true,
                    Outbound::AckPing(epoch) => ack = Some(epoch),
                }
                if buf.len() < max_bytes {
                    next = rx.try_recv().ok();
                }
            }
            // Only under load (several frames were waiting) and with room left.
            if frames < 2 || buf.len() >= max_bytes || coalesce.delay.is_zero() {
                break;
            }
            let until = *deadline.get_or_insert_with(|| Instant::now() + coalesce.delay);
            if Instant::now() >= until {
                break;
            }
            tokio::task::yield_now().await;
            next = rx.try_recv().ok();
            if next.is_none() {
                break;
            }
        }
        if !buf.is_empty() {
            metrics.add_bytes_out(buf.len());
            if sink.feed(WsMessage::Binary(buf.into())).await.is_err() {
                break 'outer;
            }
        }
        if ping
            && sink
                .feed(WsMessage::Ping(Default::default()))
                .await
                .is_err()
        {
            break;
        }
        if let Some(epoch) = ack {
            let payload = epoch.to_be_bytes().to_vec();
            if sink.feed(WsMessage::Ping(payload.into())).await.is_err() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(WsMessage::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

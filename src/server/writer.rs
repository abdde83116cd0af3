//! The writer task: the only owner of a connection's socket write half.
//!
//! It waits for one outbound frame, then takes every other frame already queued
//! (up to `coalesce_bytes`), encodes them all into one WebSocket message and
//! flushes once. When the client is idle that is one frame per message with no
//! added delay; under load it turns many small frames into few syscalls. The queue
//! in front of it is bounded, so a client that stops reading fills only its own
//! queue and blocks only its own commands' output.

use crate::metrics::Metrics;
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{Codec, Compression, Encoding, Message};

/// What the rest of the connection hands the writer.
#[derive(Debug)]
pub(super) enum Outbound {
    /// A frame to send.
    Frame(Message),
    /// Switch encoding and compression for every later frame (after `Welcome`).
    Configure(Encoding, Compression),
    /// Send a close frame and stop.
    Close(CloseCode, &'static str),
}

pub(super) type Sink = SplitSink<WebSocketStream<TcpStream>, WsMessage>;

/// Runs until every sender is gone (then sends the close frame, if one was asked
/// for) or the socket fails.
pub(super) async fn run(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Outbound>,
    mut codec: Codec,
    metrics: Arc<Metrics>,
    coalesce_bytes: usize,
) {
    let mut close = None;
    'outer: while let Some(first) = rx.recv().await {
        let mut buf = Vec::with_capacity(256);
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(msg) => {
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
            }
            if buf.len() < coalesce_bytes {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            metrics.add_bytes_out(buf.len());
            if sink.feed(WsMessage::Binary(buf.into())).await.is_err() {
                break 'outer;
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

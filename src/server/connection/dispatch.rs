//! From the socket to the handlers: what the reader does with each WebSocket
//! message, each frame in it, and each kind of frame.
//!
//! One binary WebSocket message may carry several frames (clients batch
//! them); each is decoded and handled in order. Until `Hello` is accepted,
//! every other frame is refused with `HelloRequired`. The handlers of the
//! larger frames live in their own files (`hello`, `sessions`, `commands`,
//! `stats`); the one-liners are here.

use super::timers::Timers;
use super::{Connection, Ending, Step};
use std::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use voxterm_protocol::{Cancel, ErrorCode, Message, Ping, Pong, Subject};

impl Connection {
    /// One item from the socket: a message, an error, or its end (`None`).
    pub(super) async fn on_socket(
        &mut self,
        item: Option<Result<WsMessage, WsError>>,
        timers: &mut Timers,
    ) -> Step {
        match item {
            Some(Ok(WsMessage::Binary(bytes))) => {
                self.engine.metrics.add_bytes_in(bytes.len());
                // One clock read for both: the idle timer and the start of
                // every request's `backend_us`.
                let received = Instant::now();
                timers.heard_at(true, received);
                self.on_message(&bytes, received).await;
                if self.closing {
                    return Step::Break(Ending::Orderly);
                }
            }
            Some(Ok(WsMessage::Text(_))) => {
                timers.heard(true);
                self.reject(
                    Subject::Connection,
                    0,
                    ErrorCode::TextFrame,
                    "only binary messages are accepted",
                )
                .await;
            }
            Some(Ok(WsMessage::Close(_))) => return Step::Break(Ending::Orderly),
            // The stream ended without a close frame: the connection was lost.
            None => return Step::Break(Ending::Lost),
            // Pongs answer our keepalive, or acknowledge frames (`replay`).
            Some(Ok(WsMessage::Pong(payload))) => {
                timers.heard(false);
                if let Some(acks) = self.shared.acks() {
                    acks.pong(&payload);
                }
            }
            // Pings are answered by tungstenite.
            Some(Ok(_)) => timers.heard(false),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                tracing::debug!(conn = self.id, size, max_size, "message too large");
                self.engine.metrics.error(ErrorCode::FrameTooLarge);
                self.close(CloseCode::Size, "message too large").await;
                return Step::Break(Ending::Orderly);
            }
            Some(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "connection error");
                return Step::Break(Ending::Lost);
            }
        }
        Step::Continue(())
    }

    /// One binary message, `received` at that instant: its frames, in order.
    /// A frame that does not decode gets an `Error` and the next one is still read.
    async fn on_message(&mut self, bytes: &[u8], received: Instant) {
        // Decode everything first: the decoder borrows the codec, which a
        // `Hello` among the frames switches.
        let frames: Vec<_> = self.codec.decode(bytes).collect();
        for frame in frames {
            if self.closing {
                return;
            }
            match frame {
                Ok(msg) => self.on_frame(msg, received).await,
                Err(e) => {
                    let kind = e.kind().unwrap_or(0);
                    self.reject(Subject::Frame, u32::from(kind), e.code(), e.to_string())
                        .await;
                }
            }
        }
    }

    /// One frame, to its handler. `received` is when its message arrived
    /// (the start of every request's `backend_us`).
    ///
    /// A frame's handler is boxed with the message's (`connection::run`)
    /// and moved whole into the box, so this future is kept to the size of
    /// the hot handlers (`Exec`, `Cancel`, `Input`, `Ping`): the larger, rarer
    /// ones are boxed on their own when they come.
    async fn on_frame(&mut self, msg: Message, received: Instant) {
        if let Message::Hello(hello) = msg {
            return Box::pin(self.on_hello(*hello)).await;
        }
        if self.tenant.is_none() {
            let request = match &msg {
                Message::Exec(e) => Some(e.request),
                Message::Spawn(s) => Some(s.request),
                Message::Classify(c) => Some(c.request),
                _ => None,
            };
            return self
                .send_error(request, ErrorCode::HelloRequired, "send Hello first")
                .await;
        }
        match msg {
            Message::Exec(exec) => self.on_exec(exec, received).await,
            Message::Batch(batch) => Box::pin(self.on_batch(batch, received)).await,
            Message::Cancel(cancel) => self.on_cancel(cancel),
            Message::Spawn(spawn) => Box::pin(self.on_spawn(*spawn, received)).await,
            Message::Input(input) => self.on_input(input).await,
            Message::Resize(resize) => self.on_resize(resize).await,
            Message::Classify(classify) => Box::pin(self.on_classify(classify)).await,
            Message::OpenSession(open) => Box::pin(self.on_open(open)).await,
            Message::CloseSession(close) => self.on_close_session(close).await,
            Message::Ping(ping) => self.on_ping(ping).await,
            Message::Pong(_) => {}
            Message::StatsRequest(r) => self.on_stats(r).await,
            Message::Configure(configure) => self.on_configure(configure).await,
            Message::Attach(attach) => Box::pin(self.on_attach(attach)).await,
            other => {
                self.reject(
                    Subject::Frame,
                    u32::from(other.kind()),
                    ErrorCode::UnexpectedMessage,
                    format!(
                        "frame type 0x{:02x} is sent by servers, not clients",
                        other.kind()
                    ),
                )
                .await
            }
        }
    }

    /// `Cancel`: fires the request's token; its task then ends it (with
    /// `Exit { killed: Cancelled }`). A request not in flight (finished, or
    /// never sent) is ignored: the client may race the end.
    fn on_cancel(&self, cancel: Cancel) {
        if let Some(entry) = self.shared.in_flight().get(&cancel.request) {
            entry.cancel.cancel();
            // Output it still has queued goes no further: its Exit comes next.
            self.shared.cancelled.add(cancel.request);
        }
    }

    /// The protocol's own `Ping` (not the WebSocket one): answered at once,
    /// in order with the frames around it.
    async fn on_ping(&self, ping: Ping) {
        self.send(Message::Pong(Pong { nonce: ping.nonce })).await;
    }
}

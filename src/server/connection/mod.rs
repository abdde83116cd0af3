//! One WebSocket connection: the reader task that decodes frames and dispatches
//! them, from the upgrade to the close.
//!
//! This file is the reader's frame: its state ([`Connection`]), its loop
//! ([`run`]) and its teardown. What the reader does with each thing that can
//! happen lives next to it, one concern per file:
//!
//! - `timers`: the Hello deadline, the token's expiry, the idle timeout and
//!   keepalive;
//! - `dispatch`: a WebSocket message → its frames → one handler per frame kind;
//! - `hello`: the handshake (version, authentication, the tenant's connection
//!   cap, `Welcome`) and the re-check of the tokens after a reload;
//! - `sessions`: `OpenSession`, `CloseSession` and the session an `Exec` names;
//! - `commands`: admission of `Exec` and `Batch` (and of `Spawn`), and
//!   starting their requests;
//! - `interactive`: `Spawn`, `Input` and `Resize` (live input, terminals,
//!   input credit);
//! - `classify`: `Classify`, answered without running anything;
//! - `configure`: `Configure`, the opt-in additions (suggestions, rejections,
//!   re-attach) and the timers and sizes a client paces itself by;
//! - `attach`: `Attach`, taking over a request of a connection that dropped;
//! - `stats`: `StatsRequest`.
//!
//! Invariants these files keep:
//! - every accepted `Exec` is registered in flight (`Shared::register`) before
//!   its task starts and leaves it exactly once, when its terminal frame is
//!   queued (`request`);
//! - bad input (undecodable frames, text messages, wrong order) gets an `Error`
//!   frame and the connection stays usable; only an oversized message closes it (1009);
//! - when the connection ends, every request's process group is killed,
//!   unless the connection asked for re-attach and was lost: its requests are
//!   then held for `detach_grace` (`hold_for_reattach`).
//!
//! Besides the timers and the socket, the reader watches two things: the
//! server's drain (on shutdown it stops taking commands and closes with 1001
//! once none is in flight) and tokens reloads (SIGHUP), after which it
//! re-checks the tokens it authenticated with: revoked (1008,
//! `token_revoked`) or a new expiry.

mod attach;
mod classify;
mod commands;
mod configure;
mod dispatch;
mod hello;
mod interactive;
mod sessions;
mod stats;
mod timers;

use super::context::{ServerContext, Transport};
use super::gate::Ticket;
use super::shared::Shared;
use super::writer::{self, Outbound};
use crate::config::Config;
use crate::engine::Engine;
use crate::security::{Grant, Slot};
use crate::session::SessionHandle;
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use timers::Timers;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use voxterm_protocol::{
    Codec, CodecSettings, Compression, Encoding, Error, ErrorCode, Limits, Message, Rejected,
    RequestId, SessionId, Subject,
};

/// What the upgrade decided about the connection before it became a WebSocket:
/// the header-authenticated tenant and the connection slots it holds (given back
/// when the connection ends).
pub(super) struct Admitted {
    /// The connection's place in the open-files budget.
    pub ticket: Ticket,
    /// The tenant of the valid tokens in the headers, with their expiry.
    pub tenant: Option<Grant>,
    /// The source address's slot, when `max_connections_per_ip` is set.
    pub ip_slot: Option<Slot<IpAddr>>,
    /// The tenant's slot, when `max_connections_per_tenant` is set and the tenant
    /// is known from the headers (otherwise it is taken at `Hello`).
    pub tenant_slot: Option<Slot<Arc<str>>>,
}

/// Per-connection state owned by the reader.
struct Connection {
    id: u64,
    ctx: Arc<ServerContext>,
    engine: Arc<Engine>,
    shared: Arc<Shared>,
    codec: Codec,
    /// Set by an accepted `Hello`; until then only `Hello` is answered.
    tenant: Option<Arc<str>>,
    /// The tenant of the valid tokens in the upgrade request's headers.
    header_tenant: Option<Grant>,
    /// What the connection authenticated as (after `Hello`): the tokens are
    /// re-checked on every reload, the earliest expiry ends the connection.
    grant: Option<Grant>,
    /// Connection slots held until the connection ends.
    _ip_slot: Option<Slot<IpAddr>>,
    tenant_slot: Option<Slot<Arc<str>>>,
    /// The tenant's count of open connections (every tenant, for its `Stats`).
    tenant_open: Option<Slot<Arc<str>>>,
    /// The connection's place in the open-files budget.
    _ticket: Ticket,
    /// The client's address (failed authentications are throttled per address).
    peer: SocketAddr,
    sessions: HashMap<SessionId, Arc<SessionHandle>, crate::sync::NumHash>,
    /// Shutdown has begun: no new commands; close once none is in flight.
    draining: bool,
    /// Set when the connection must end (failed authentication): a close frame is queued.
    closing: bool,
    /// What `Welcome` announces and admission enforces.
    limits: Limits,
    /// `Configure.rejections`: errors about no request come as `Rejected`.
    rejections: bool,
    /// Fired by an `Attach` on another connection of the tenant that names
    /// this one: its client reconnected, so this one is lost (the drop just
    /// had not been seen here yet). Made when re-attach is granted: only
    /// such a connection can be named. The wait itself is kept (not made
    /// per loop turn): each new one would register under the token's lock.
    taken_over: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

/// Messages already read that one turn of the reader loop handles before it
/// looks at its timers, the drain and a takeover again.
const READY_BATCH: usize = 16;

/// Why the reader loop ended, when that changes how the connection is torn down.
#[derive(PartialEq, Eq)]
enum Ending {
    /// Close frame queued (or the peer closed): let the writer finish.
    Orderly,
    /// The peer stopped answering: its socket may never drain, so the writer
    /// gets a moment for the close frame and is then dropped.
    DeadPeer,
    /// The socket failed or ended without a close frame: the network went,
    /// not the client's wish. Requests may be held for re-attach.
    Lost,
}

/// What each handler of the reader loop tells it: go on, or end the
/// connection this way.
type Step = ControlFlow<Ending>;

/// Drives a WebSocket connection until it closes.
///
/// Not an `async fn`: the connection's state is built here, before the
/// future exists, and the future (`async move` below) captures only what
/// the loop uses. An `async fn` keeps its arguments for its whole life, the
/// socket and the upgrade's slots moved out of or not (rust-lang/rust#62958):
/// 496 bytes of every idle connection's task (issue 17, part 7).
pub(super) fn run(
    ctx: Arc<ServerContext>,
    ws: WebSocketStream<Transport>,
    peer: SocketAddr,
    admitted: Admitted,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let engine = ctx.engine.clone();
    // Borrowed, not cloned: a clone (every section, its strings and lists)
    // lived in this future, and on the heap, for the connection's whole life.
    let cfg = engine.config();
    let (sink, mut stream) = ws.split();
    let (out, rx) = writer::queue(cfg.server.write_queue);
    // Every connection starts in bincode without compression; `Hello` may
    // switch both (the writer is told with `Outbound::Configure`).
    let settings = CodecSettings {
        encoding: Encoding::Bincode,
        compression: Compression::None,
        max_frame_bytes: cfg.server.max_frame_bytes,
        compress_threshold: cfg.server.compress_threshold,
    };
    let cancelled = Arc::new(writer::Cancelled::default());
    let mut writer = tokio::spawn(writer::run(
        sink,
        rx,
        Codec::new(settings.clone()),
        engine.metrics.clone(),
        writer::Coalesce {
            enabled: cfg.server.coalesce,
            max_bytes: cfg.server.coalesce_bytes,
            delay: cfg.server.coalesce_delay,
        },
        cancelled.clone(),
    ));
    let shared = Arc::new(Shared::new(out, ctx.security.clone(), cancelled));
    let mut conn = Connection::new(&ctx, cfg, shared, Codec::new(settings), peer, admitted);
    engine.metrics.connection_opened();
    tracing::debug!(conn = conn.id, %peer, "connected");
    let mut timers = Timers::start(&cfg.server);
    // Tokens reloads (SIGHUP): re-check this connection's tokens. Without
    // authentication the sender never changes and the branch never fires.
    let mut token_reloads = match &ctx.security.tokens {
        Some(store) => store.reloads(),
        None => tokio::sync::watch::channel(0u64).1,
    };
    // The future captures `conn` and the loop's own state, nothing twice
    // (the context, the engine and the peer are the connection's fields).
    async move {
        // Created once, not per message: `cancelled()` in the loop would register
        // with (and leave) the server-wide token's waiters, under its lock, on
        // every message of every connection.
        let drain = conn.ctx.drain.clone().cancelled_owned();
        tokio::pin!(drain);
        // Every handler's state is boxed while it runs: inline, the largest of
        // them (a message's, ~1.4 KiB) would be part of this future, which every
        // idle connection holds for its whole life. One allocation per message
        // (~20 ns from jemalloc's thread cache) buys it back.
        let ending = loop {
            timers.arm_expiry(conn.grant.as_ref().and_then(|g| g.expires));
            // Pending forever until re-attach is granted (`configure`).
            let taken_over = conn.taken_over.as_mut();
            let step = tokio::select! {
                ring = timers.next(conn.tenant.is_none()) => Box::pin(conn.on_timer(ring, &mut timers)).await,
                Ok(()) = token_reloads.changed(), if conn.grant.as_ref().is_some_and(|g| !g.tokens.is_empty()) => {
                    Box::pin(conn.on_tokens_reloaded(&mut timers)).await
                }
                _ = &mut drain, if !conn.draining => {
                    conn.draining = true;
                    Step::Continue(())
                }
                _ = conn.shared.emptied().notified(), if conn.draining => Step::Continue(()),
                _ = async {
                    match taken_over {
                        Some(lost) => lost.await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::debug!(conn = conn.id, "taken over by a new connection of its client: lost");
                    Step::Break(Ending::Lost)
                }
                msg = stream.next() => {
                    // Messages already read are handled before the other branches
                    // are polled again: each poll of the two token futures takes
                    // their locks, ~7 % of a cached request's instructions when
                    // done per message (callgrind, `benches/hot_path`). At most
                    // `READY_BATCH`, so a timer or the drain waits for no more.
                    let mut step = Box::pin(conn.on_socket(msg, &mut timers)).await;
                    for _ in 1..READY_BATCH {
                        if step.is_break() {
                            break;
                        }
                        let Some(msg) = stream.next().now_or_never() else {
                            break;
                        };
                        step = Box::pin(conn.on_socket(msg, &mut timers)).await;
                    }
                    step
                }
            };
            if let Step::Break(ending) = step {
                break ending;
            }
            if conn.draining && conn.shared.in_flight().is_empty() {
                conn.close(CloseCode::Away, "server shutting down").await;
                break Ending::Orderly;
            }
        };

        // A connection that asked for re-attach and was lost (not closed by its
        // client, not by shutdown) leaves its requests held for `Attach`; any
        // other end kills its commands with it.
        if conn.shared.acks().is_some() && matches!(ending, Ending::Lost | Ending::DeadPeer) {
            // The socket is gone: a writer stuck on it would hold a request's
            // route (its lock) while the requests are handed over, and held
            // requests keep its queue open.
            writer.abort();
        }
        let held = conn.hold_for_reattach(&ending).await;
        if !held {
            conn.shared.cancel_all();
        }
        conn.shared.stop_acker();
        // The writer ends when every sender of its queue is gone: the reader's
        // now, the request tasks' as they finish. The slots and the ticket stay
        // held (in `conn`) until the writer is done and the socket closed.
        let Connection {
            shared, sessions, ..
        } = conn;
        drop(sessions);
        drop(shared);
        // (A writer aborted above, for held requests, ends at once here.)
        if matches!(ending, Ending::DeadPeer | Ending::Lost) {
            if tokio::time::timeout(Duration::from_secs(1), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        } else {
            let _ = writer.await;
        }
        conn.engine.metrics.connection_closed();
        tracing::debug!(peer = %conn.peer, "disconnected");
    }
}

impl Connection {
    /// The reader's state for a connection just upgraded.
    fn new(
        ctx: &Arc<ServerContext>,
        cfg: &Config,
        shared: Arc<Shared>,
        codec: Codec,
        peer: SocketAddr,
        admitted: Admitted,
    ) -> Connection {
        Connection {
            id: ctx.connection_id(),
            ctx: ctx.clone(),
            engine: ctx.engine.clone(),
            shared,
            codec,
            tenant: None,
            header_tenant: admitted.tenant,
            grant: None,
            _ip_slot: admitted.ip_slot,
            tenant_slot: admitted.tenant_slot,
            tenant_open: None,
            _ticket: admitted.ticket,
            peer,
            sessions: HashMap::default(),
            draining: false,
            closing: false,
            limits: Limits {
                max_message_bytes: cfg.server.max_message_bytes,
                max_frame_bytes: cfg.server.max_frame_bytes,
                max_in_flight: cfg.server.max_in_flight,
                max_sessions: cfg.server.max_sessions,
                default_timeout_ms: cfg.exec.default_timeout.as_millis().min(u32::MAX as u128)
                    as u32,
                output_cap_bytes: cfg.exec.output_cap,
            },
            rejections: false,
            taken_over: None,
        }
    }

    /// Queues a frame for the writer. A closed queue means the writer (and
    /// so the client) is gone: there is nobody left to tell.
    async fn send(&self, msg: Message) {
        let _ = self.shared.out.send(Outbound::Frame(msg)).await;
    }

    /// Sends an `Error` frame, counted in the metrics and the connection's
    /// own `Stats`.
    async fn send_error(
        &self,
        request: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
    ) {
        self.engine.metrics.error(code);
        self.shared.errored();
        self.send(Message::Error(Error {
            request,
            code,
            message: message.into(),
        }))
        .await;
    }

    /// Refuses something that is not a request's end: a duplicate id, a
    /// session call, a frame. As `Rejected` naming it when the client asked
    /// for that (`Configure.rejections`), otherwise as an `Error` without a
    /// request. Counted like every `Error`.
    async fn reject(&self, about: Subject, id: u32, code: ErrorCode, message: impl Into<String>) {
        if !self.rejections {
            return self.send_error(None, code, message).await;
        }
        self.engine.metrics.error(code);
        self.shared.errored();
        self.send(Message::Rejected(Rejected {
            about,
            id,
            code,
            message: message.into(),
        }))
        .await;
    }

    /// At the connection's end: with re-attach on and the connection lost,
    /// hands its requests (running, or ended but not acknowledged) to the
    /// server's `detached` holder for `detach_grace`, and returns true.
    /// Otherwise closes their routes and returns false (they are killed).
    async fn hold_for_reattach(&self, ending: &Ending) -> bool {
        let Some(acks) = self.shared.acks() else {
            return false;
        };
        let routes = acks.take_all();
        let grace = self.engine.config().server.detach_grace;
        let lost = matches!(ending, Ending::Lost | Ending::DeadPeer);
        match (&self.tenant, lost && !self.draining && !grace.is_zero()) {
            (Some(tenant), true) => {
                let mut held = Vec::with_capacity(routes.len());
                for route in routes {
                    route.detach().await;
                    let in_flight = self.shared.take_in_flight(route.request());
                    held.push((route, in_flight));
                }
                // What reached the server and has not ended: the held ones,
                // and any admitted but not started (a sequential batch's
                // later steps). An `Attach` of anything else was never
                // received.
                let received = held
                    .iter()
                    .map(|(route, _)| route.request())
                    .chain(self.shared.in_flight().keys().copied())
                    .collect();
                self.ctx
                    .detached
                    .hold(tenant.clone(), self.id, held, received, grace);
                true
            }
            (tenant, _) => {
                if let Some(tenant) = tenant {
                    self.ctx.detached.closed(tenant, self.id);
                }
                for route in routes {
                    route.close().await;
                }
                false
            }
        }
    }

    /// Queues a close frame; the writer sends it after every frame queued
    /// before it.
    async fn close(&self, code: CloseCode, reason: &'static str) {
        let _ = self.shared.out.send(Outbound::Close(code, reason)).await;
    }
}

/// Tenant and session names: short, printable, safe in logs and keys.
fn valid_name(name: &str) -> bool {
    crate::security::valid_tenant(name)
}

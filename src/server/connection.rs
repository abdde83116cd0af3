//! One WebSocket connection: the reader loop that decodes frames and dispatches
//! them, and the state the connection's request tasks share.
//!
//! Invariants this file keeps:
//! - every accepted `Exec` is registered in `in_flight` before its task starts and
//!   leaves it exactly once, when its terminal frame is queued (`request.rs`);
//! - bad input (undecodable frames, text messages, wrong order) gets an `Error`
//!   frame and the connection stays usable; only an oversized message closes it (1009);
//! - when the connection ends for any reason, every request's process group is killed.
//!
//! Timers of the reader: the `Hello` deadline, the token's expiry (1008), the idle
//! timeout (1000, only while no request is in flight) and keepalive (a WebSocket
//! Ping every `ping_interval`; a peer that sent nothing since the last one is
//! dropped). The idle and expiry timers are re-armed lazily when they fire, so
//! traffic costs one `Instant` store per message, not a timer update. Besides
//! the timers, a tokens reload (SIGHUP) makes the reader re-check the tokens it
//! authenticated with: revoked (1008, `token_revoked`) or a new expiry.

use super::auth;
use super::context::{ServerContext, Transport};
use super::gate::Ticket;
use super::request;
use super::shared::Shared;
use super::writer::{self, Outbound};
use crate::metrics::Refusal;
use crate::security::{Grant, Revoked, Slot, TokenCheck};
use crate::session::{Builtin, Engine, SessionHandle};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{
    Batch, BatchMode, Codec, CodecSettings, Compression, Encoding, Error, ErrorCode, Exec, Hello,
    Limits, Message, OpenSession, Pong, RequestId, SessionClosed, SessionId, SessionOpened,
    Welcome, PROTOCOL_VERSION,
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
    sessions: HashMap<SessionId, Arc<SessionHandle>>,
    draining: bool,
    /// Set when the connection must end (failed authentication): a close frame is queued.
    closing: bool,
    limits: Limits,
}

/// Why the reader loop ended, when that changes how the connection is torn down.
#[derive(PartialEq, Eq)]
enum Ending {
    /// Close frame queued (or the peer closed): let the writer finish.
    Orderly,
    /// The peer stopped answering: its socket may never drain, so the writer
    /// gets a moment for the close frame and is then dropped.
    DeadPeer,
}

/// Drives a WebSocket connection until it closes.
pub(super) async fn run(
    ctx: Arc<ServerContext>,
    ws: WebSocketStream<Transport>,
    peer: SocketAddr,
    admitted: Admitted,
) {
    let engine = ctx.engine.clone();
    let cfg = engine.config().clone();
    let (sink, mut stream) = ws.split();
    let (out, rx) = mpsc::channel(cfg.server.write_queue);
    let settings = CodecSettings {
        encoding: Encoding::Bincode,
        compression: Compression::None,
        max_frame_bytes: cfg.server.max_frame_bytes,
        compress_threshold: cfg.server.compress_threshold,
    };
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
    ));
    let mut conn = Connection {
        id: ctx.connection_id(),
        ctx: ctx.clone(),
        engine: engine.clone(),
        shared: Arc::new(Shared::new(out, ctx.security.clone())),
        codec: Codec::new(settings),
        tenant: None,
        header_tenant: admitted.tenant,
        grant: None,
        _ip_slot: admitted.ip_slot,
        tenant_slot: admitted.tenant_slot,
        tenant_open: None,
        _ticket: admitted.ticket,
        peer,
        sessions: HashMap::new(),
        draining: false,
        closing: false,
        limits: Limits {
            max_message_bytes: cfg.server.max_message_bytes,
            max_frame_bytes: cfg.server.max_frame_bytes,
            max_in_flight: cfg.server.max_in_flight,
            max_sessions: cfg.server.max_sessions,
            default_timeout_ms: cfg.exec.default_timeout.as_millis().min(u32::MAX as u128) as u32,
            output_cap_bytes: cfg.exec.output_cap,
        },
    };
    engine.metrics.connection_opened();
    tracing::debug!(conn = conn.id, %peer, "connected");
    // A client must say Hello within the handshake timeout, or it only holds a socket.
    let hello_deadline = tokio::time::sleep(cfg.server.handshake_timeout);
    tokio::pin!(hello_deadline);
    // Timers that are off sleep "forever" (a year) and are never polled.
    let far = Duration::from_secs(365 * 86_400);
    let or_far = |d: Duration| if d.is_zero() { far } else { d };
    let idle_after = cfg.server.idle_timeout;
    let idle = tokio::time::sleep(or_far(idle_after));
    tokio::pin!(idle);
    let expiry = tokio::time::sleep(far);
    tokio::pin!(expiry);
    let mut expiry_armed = false;
    // Tokens reloads (SIGHUP): re-check this connection's tokens. Without
    // authentication the sender never changes and the branch never fires.
    let mut token_reloads = match &ctx.security.tokens {
        Some(store) => store.reloads(),
        None => tokio::sync::watch::channel(0u64).1,
    };
    let ping_every = cfg.server.ping_interval;
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + or_far(ping_every),
        or_far(ping_every),
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Any message from the peer (pongs included) proves it alive; only data
    // messages count against the idle timeout.
    let mut last_heard = Instant::now();
    let mut last_active = Instant::now();
    let mut last_ping: Option<Instant> = None;
    let mut ending = Ending::Orderly;

    loop {
        if !expiry_armed {
            if let Some(at) = conn.grant.as_ref().and_then(|g| g.expires) {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                expiry.as_mut().reset(tokio::time::Instant::now() + left);
                expiry_armed = true;
            }
        }
        tokio::select! {
            _ = &mut hello_deadline, if conn.tenant.is_none() => {
                engine.metrics.refused(Refusal::HandshakeTimeout);
                let _ = conn.shared.out.send(Outbound::Close(CloseCode::Policy, "no Hello within the handshake timeout")).await;
                break;
            }
            _ = &mut expiry, if expiry_armed => {
                engine.metrics.refused(Refusal::TokenExpired);
                tracing::info!(conn = conn.id, %peer, "token expired: closing");
                conn.send_error(None, ErrorCode::Unauthorized, "token expired").await;
                let _ = conn.shared.out.send(Outbound::Close(CloseCode::Policy, "token expired")).await;
                break;
            }
            Ok(()) = token_reloads.changed(), if conn.grant.as_ref().is_some_and(|g| !g.tokens.is_empty()) => {
                if !conn.recheck_grant().await {
                    break;
                }
                // The expiry may have moved.
                expiry_armed = false;
                expiry.as_mut().reset(tokio::time::Instant::now() + far);
            }
            _ = &mut idle, if !idle_after.is_zero() => {
                let now = Instant::now();
                let since = last_active.max(conn.shared.last_end());
                if !conn.shared.in_flight().is_empty() {
                    idle.as_mut().reset((now + idle_after).into());
                } else if since + idle_after > now {
                    idle.as_mut().reset((since + idle_after).into());
                } else {
                    engine.metrics.refused(Refusal::IdleTimeout);
                    tracing::debug!(conn = conn.id, %peer, "idle timeout");
                    let _ = conn.shared.out.send(Outbound::Close(CloseCode::Normal, "idle timeout")).await;
                    break;
                }
            }
            _ = keepalive.tick(), if !ping_every.is_zero() => {
                if last_ping.is_some_and(|sent| last_heard < sent) {
                    engine.metrics.refused(Refusal::DeadPeer);
                    tracing::info!(conn = conn.id, %peer, "peer stopped answering pings: dropped");
                    let _ = conn.shared.out.try_send(Outbound::Close(CloseCode::Away, "keepalive timeout"));
                    ending = Ending::DeadPeer;
                    break;
                }
                // A full queue means the peer is not reading: the ping is skipped,
                // and the peer must still show life before the next tick.
                let _ = conn.shared.out.try_send(Outbound::Ping);
                last_ping = Some(Instant::now());
            }
            _ = ctx.drain.cancelled(), if !conn.draining => conn.draining = true,
            _ = conn.shared.emptied().notified(), if conn.draining => {},
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    engine.metrics.add_bytes_in(bytes.len());
                    last_heard = Instant::now();
                    last_active = last_heard;
                    conn.on_message(&bytes).await;
                    if conn.closing {
                        break;
                    }
                }
                Some(Ok(WsMessage::Text(_))) => {
                    last_heard = Instant::now();
                    last_active = last_heard;
                    conn.send_error(None, ErrorCode::TextFrame, "only binary messages are accepted").await;
                }
                Some(Ok(WsMessage::Close(_))) | None => break,
                // Pings are answered by tungstenite; pongs answer our keepalive.
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    tracing::debug!(conn = conn.id, size, max_size, "message too large");
                    engine.metrics.error(ErrorCode::FrameTooLarge);
                    let _ = conn.shared.out.send(Outbound::Close(CloseCode::Size, "message too large")).await;
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(conn = conn.id, error = %e, "connection error");
                    break;
                }
            },
        }
        if conn.draining && conn.shared.in_flight().is_empty() {
            let _ = conn
                .shared
                .out
                .send(Outbound::Close(CloseCode::Away, "server shutting down"))
                .await;
            break;
        }
    }

    // Whatever ended the connection, its commands die with it.
    conn.shared.cancel_all();
    let Connection {
        shared, sessions, ..
    } = conn;
    drop(sessions);
    drop(shared);
    if ending == Ending::DeadPeer {
        if tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    } else {
        let _ = writer.await;
    }
    engine.metrics.connection_closed();
    tracing::debug!(%peer, "disconnected");
}

impl Connection {
    async fn send(&self, msg: Message) {
        let _ = self.shared.out.send(Outbound::Frame(msg)).await;
    }

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

    async fn on_message(&mut self, bytes: &[u8]) {
        let received = Instant::now();
        // Decode everything first: the decoder borrows the codec.
        let frames: Vec<_> = self.codec.decode(bytes).collect();
        for frame in frames {
            if self.closing {
                return;
            }
            match frame {
                Ok(msg) => self.on_frame(msg, received).await,
                Err(e) => {
                    let code = e.code();
                    self.send_error(None, code, e.to_string()).await;
                }
            }
        }
    }

    async fn on_frame(&mut self, msg: Message, received: Instant) {
        if let Message::Hello(hello) = msg {
            return self.on_hello(*hello).await;
        }
        if self.tenant.is_none() {
            let request = match &msg {
                Message::Exec(e) => Some(e.request),
                _ => None,
            };
            return self
                .send_error(request, ErrorCode::HelloRequired, "send Hello first")
                .await;
        }
        match msg {
            Message::Exec(exec) => self.on_exec(exec, received).await,
            Message::Batch(batch) => self.on_batch(batch, received).await,
            Message::Cancel(c) => {
                if let Some(token) = self.shared.in_flight().get(&c.request) {
                    token.cancel();
                }
            }
            Message::OpenSession(open) => self.on_open(open).await,
            Message::CloseSession(close) => {
                if self.sessions.remove(&close.session).is_some() {
                    self.send(Message::SessionClosed(SessionClosed {
                        session: close.session,
                    }))
                    .await;
                } else {
                    self.send_error(
                        None,
                        ErrorCode::UnknownSession,
                        format!("session {} is not open", close.session),
                    )
                    .await;
                }
            }
            Message::Ping(p) => self.send(Message::Pong(Pong { nonce: p.nonce })).await,
            Message::Pong(_) => {}
            Message::StatsRequest(r) => {
                let stats = if self.ctx.security.sees_everything(self.grant.as_ref()) {
                    self.engine.metrics.stats(r.nonce, self.engine.sampled())
                } else {
                    self.tenant_stats(r.nonce)
                };
                self.send(Message::Stats(Box::new(stats))).await;
            }
            other => {
                self.send_error(
                    None,
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

    /// `Stats` for a tenant that is not an admin: its own figures only. The
    /// server-wide ones (other tenants' connections, sessions, requests, the
    /// load, the process's memory and CPU, the latency histogram, the cache's
    /// and refusals' counters) are zero or empty; the counter `scope_tenant`
    /// says so. `connections` and `sessions` are the tenant's; `requests`,
    /// `in_flight` and `errors` this connection's.
    fn tenant_stats(&self, nonce: u64) -> voxterm_protocol::Stats {
        let (connections, sessions) = match &self.tenant {
            Some(t) => (
                u64::from(self.ctx.security.tenant_open.held(t)),
                self.engine.sessions.count_of(t) as u64,
            ),
            None => (0, 0),
        };
        let (requests, errors) = self.shared.counts();
        voxterm_protocol::Stats {
            nonce,
            uptime_ms: self.engine.metrics.uptime().as_millis() as u64,
            connections,
            sessions,
            requests,
            in_flight: self.shared.in_flight().len() as u64,
            errors,
            queue_depth: 0,
            busy_workers: 0,
            rss_bytes: 0,
            cpu_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            backend_histogram: Vec::new(),
            counters: vec![voxterm_protocol::Counter {
                name: "scope_tenant".into(),
                value: 1,
            }],
        }
    }

    async fn on_hello(&mut self, hello: Hello) {
        if self.tenant.is_some() {
            return self
                .send_error(
                    None,
                    ErrorCode::UnexpectedMessage,
                    "Hello was already received",
                )
                .await;
        }
        if hello.version != PROTOCOL_VERSION {
            return self
                .send_error(
                    None,
                    ErrorCode::UnsupportedVersion,
                    format!("protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}", hello.version),
                )
                .await;
        }
        let ip = self.peer.ip().to_canonical();
        if let Some(wait) = auth::must_wait(&self.ctx, ip) {
            self.engine.metrics.refused(Refusal::AuthThrottled);
            let secs = auth::retry_secs(wait);
            let message = format!(
                "too many failed authentications from {ip}: retry in {secs} s (retry_after_ms={})",
                secs * 1000
            );
            self.send_error(None, ErrorCode::RateLimited, message).await;
            let _ = self
                .shared
                .out
                .send(Outbound::Close(
                    CloseCode::Policy,
                    "too many failed authentications",
                ))
                .await;
            self.closing = true;
            return;
        }
        let grant = match self.authenticate(&hello) {
            Ok(g) => g,
            Err((kind, why)) => {
                if why == HELLO_UNKNOWN_TOKEN {
                    auth::failed(&self.ctx, ip);
                }
                return self.refuse_auth(kind, why).await;
            }
        };
        let tenant = grant.tenant.clone();
        if !valid_name(&tenant) {
            return self
                .send_error(
                    None,
                    ErrorCode::Unauthorized,
                    "tenant names are 1-64 characters of [A-Za-z0-9._-], not . or ..",
                )
                .await;
        }
        if self.tenant_slot.is_none() {
            if let Some(slots) = &self.ctx.security.tenant_connections {
                match slots.acquire(&tenant) {
                    Some(slot) => self.tenant_slot = Some(slot),
                    None => {
                        self.engine.metrics.refused(Refusal::TenantConnections);
                        let message = format!(
                            "tenant {tenant} already has its maximum of {} connections",
                            slots.max()
                        );
                        self.send_error(None, ErrorCode::QuotaExceeded, message)
                            .await;
                        let _ = self
                            .shared
                            .out
                            .send(Outbound::Close(CloseCode::Again, "too many connections"))
                            .await;
                        self.closing = true;
                        return;
                    }
                }
            }
        }
        self.tenant_open = self.ctx.security.tenant_open.acquire(&tenant);
        self.grant = Some(grant);
        // Both encodings and all compressions are supported: take the client's first choice.
        let encoding = hello
            .encodings
            .first()
            .copied()
            .unwrap_or(Encoding::Bincode);
        let compression = hello
            .compression
            .first()
            .copied()
            .unwrap_or(Compression::None);
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            server: concat!("voxterm/", env!("CARGO_PKG_VERSION")).to_owned(),
            encoding,
            compression,
            limits: self.limits.clone(),
            tenant: tenant.to_string(),
            connection: self.id,
        };
        self.tenant = Some(tenant);
        self.send(Message::Welcome(Box::new(welcome))).await;
        let _ = self
            .shared
            .out
            .send(Outbound::Configure(encoding, compression))
            .await;
        self.codec.set_encoding(encoding);
        self.codec.set_compression(compression);
    }

    /// The tenant this `Hello` may act for, and when its token expires. Without
    /// tokens: the one it names (or `default`). With tokens: the token's (from the
    /// headers or `Hello.token`, which must agree); a `Hello.tenant` must then match it.
    fn authenticate(&self, hello: &Hello) -> Result<Grant, (Refusal, &'static str)> {
        let Some(tokens) = &self.ctx.security.tokens else {
            return Ok(Grant::unauthenticated(
                hello.tenant.as_deref().unwrap_or("default").into(),
            ));
        };
        let unauthorized = |why| Err((Refusal::Unauthorized, why));
        let from_hello = match hello.token.as_deref() {
            None => None,
            Some(t) => match tokens.check(t, SystemTime::now()) {
                TokenCheck::Expired(_) => return Err((Refusal::TokenExpired, "token expired")),
                TokenCheck::Unknown => return unauthorized(HELLO_UNKNOWN_TOKEN),
                valid => valid.grant(),
            },
        };
        let grant = match (self.header_tenant.clone(), from_hello) {
            (Some(h), Some(t)) => match h.with(t) {
                Some(both) => both,
                None => {
                    return unauthorized(
                        "the token in Hello is for another tenant than the header token",
                    )
                }
            },
            (Some(found), None) | (None, Some(found)) => found,
            (None, None) => return unauthorized(
                "a token is required (Authorization: Bearer, a `bearer.<token>` subprotocol, or Hello.token)",
            ),
        };
        match hello.tenant.as_deref() {
            Some(named) if *named != *grant.tenant => {
                unauthorized("Hello.tenant does not match the token's tenant")
            }
            _ => Ok(grant),
        }
    }

    /// After a tokens reload: whether the tokens this connection authenticated
    /// with still hold. `false` when one was removed, moved to another tenant or
    /// expired; the connection has then been told (`Error{Unauthorized}`, 1008).
    async fn recheck_grant(&mut self) -> bool {
        let (Some(store), Some(grant)) = (&self.ctx.security.tokens, &mut self.grant) else {
            return true;
        };
        let (kind, why) = match store.recheck(grant, SystemTime::now()) {
            Ok(expires) => {
                grant.expires = expires;
                return true;
            }
            Err(Revoked::Removed) => (Refusal::TokenRevoked, "token revoked"),
            Err(Revoked::Expired) => (Refusal::TokenExpired, "token expired"),
        };
        self.engine.metrics.refused(kind);
        tracing::info!(conn = self.id, tenant = %grant.tenant, reason = why, "tokens reloaded: closing");
        self.send_error(None, ErrorCode::Unauthorized, why).await;
        let _ = self
            .shared
            .out
            .send(Outbound::Close(CloseCode::Policy, why))
            .await;
        false
    }

    /// Failed authentication: `Error{Unauthorized}`, then close with 1008.
    async fn refuse_auth(&mut self, kind: Refusal, why: &'static str) {
        self.engine.metrics.refused(kind);
        tracing::info!(
            conn = self.id,
            reason = why,
            kind = kind.as_str(),
            "Hello refused"
        );
        self.send_error(None, ErrorCode::Unauthorized, why).await;
        let _ = self
            .shared
            .out
            .send(Outbound::Close(CloseCode::Policy, "unauthorized"))
            .await;
        self.closing = true;
    }

    /// Attaches to the tenant's session `name`, within the tenant's session quota
    /// and confined to its root when `tenant_roots` is on.
    fn attach(&self, name: &str) -> Result<(SessionHandle, bool), (ErrorCode, String)> {
        let Some(tenant) = self.tenant.clone() else {
            return Err((ErrorCode::HelloRequired, "send Hello first".into()));
        };
        let cfg = self.engine.config();
        let max = match cfg.limits.max_sessions_per_tenant {
            0 => usize::MAX,
            n => n as usize,
        };
        let Some((handle, resumed)) = self.engine.sessions.open_within(&tenant, name, max) else {
            self.engine.metrics.refused(Refusal::Quota);
            return Err((
                ErrorCode::QuotaExceeded,
                format!("tenant {tenant} already has its maximum of {max} sessions"),
            ));
        };
        match crate::security::tenant_root(&cfg.session, &tenant) {
            Ok(Some(root)) => Builtin::confine(&handle, &root),
            Ok(None) => {}
            Err(e) => {
                return Err((
                    ErrorCode::Internal,
                    format!("cannot prepare the tenant's root: {e}"),
                ))
            }
        }
        if !resumed {
            // Warm the tenant's likely first commands (prediction, when on).
            self.engine.session_opened(&handle);
        }
        Ok((handle, resumed))
    }

    async fn on_open(&mut self, open: OpenSession) {
        if !valid_name(&open.name) {
            return self
                .send_error(
                    None,
                    ErrorCode::InvalidCommand,
                    "session names are 1-64 characters of [A-Za-z0-9._-]",
                )
                .await;
        }
        if !self.sessions.contains_key(&open.session)
            && self.sessions.len() >= self.limits.max_sessions as usize
        {
            return self
                .send_error(
                    None,
                    ErrorCode::TooManySessions,
                    format!(
                        "at most {} sessions per connection",
                        self.limits.max_sessions
                    ),
                )
                .await;
        }
        let (handle, resumed) = match self.attach(&open.name) {
            Ok(opened) => opened,
            Err((code, message)) => return self.send_error(None, code, message).await,
        };
        let cwd = handle.cwd().display().to_string();
        self.sessions.insert(open.session, Arc::new(handle));
        self.send(Message::SessionOpened(SessionOpened {
            session: open.session,
            cwd,
            resumed,
        }))
        .await;
    }

    /// The session an `Exec` names; handle 0 opens `default` on first use.
    fn session(&mut self, id: SessionId) -> Result<Arc<SessionHandle>, (ErrorCode, String)> {
        if let Some(s) = self.sessions.get(&id) {
            return Ok(s.clone());
        }
        if id != 0 {
            return Err((
                ErrorCode::UnknownSession,
                format!("session {id} is not open"),
            ));
        }
        let (handle, _) = self.attach("default")?;
        let handle = Arc::new(handle);
        self.sessions.insert(0, handle.clone());
        Ok(handle)
    }

    /// The line's length, the tenant's rate limit and the command policy,
    /// before anything of the line runs (builtins and cache hits included).
    /// The length comes first: nothing parses a line over the bound.
    fn screen(&self, exec: &Exec) -> Result<(), (ErrorCode, String)> {
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
        if let Some(policy) = &security.policy {
            if let Err(why) = policy.check(&exec.command) {
                self.engine.metrics.refused(Refusal::Policy);
                return Err((ErrorCode::PolicyDenied, format!("refused: {why}")));
            }
        }
        Ok(())
    }

    /// Admission: checks an `Exec` and registers it in flight. `None` means an
    /// `Error` was already sent for it.
    async fn admit(&mut self, exec: &Exec) -> Option<(Arc<SessionHandle>, CancellationToken)> {
        let refuse = if self.draining {
            Some((
                Some(exec.request),
                ErrorCode::ShuttingDown,
                "server is shutting down".to_owned(),
            ))
        } else if self.shared.in_flight().contains_key(&exec.request) {
            // Not accepted, so it must not look like the in-flight request's end.
            Some((
                None,
                ErrorCode::DuplicateRequest,
                format!("request {} is already in flight", exec.request),
            ))
        } else if self.shared.in_flight().len() >= self.limits.max_in_flight as usize {
            Some((
                Some(exec.request),
                ErrorCode::TooManyRequests,
                format!(
                    "at most {} requests in flight per connection",
                    self.limits.max_in_flight
                ),
            ))
        } else {
            None
        };
        if let Some((request, code, message)) = refuse {
            self.send_error(request, code, message).await;
            return None;
        }
        let screened = self.screen(exec);
        let session = screened.and_then(|()| self.session(exec.session));
        let session = match session {
            Ok(s) => s,
            Err((code, message)) => {
                self.send_error(Some(exec.request), code, message).await;
                return None;
            }
        };
        let token = self.shared.register(exec.request);
        self.engine.metrics.request_started();
        Some((session, token))
    }

    async fn on_exec(&mut self, exec: Exec, received: Instant) {
        let Some((session, cancel)) = self.admit(&exec).await else {
            return;
        };
        let (shared, engine) = (self.shared.clone(), self.engine.clone());
        self.ctx.tracker.spawn(request::run(
            shared, engine, session, exec, received, cancel,
        ));
    }

    async fn on_batch(&mut self, batch: Batch, received: Instant) {
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
                    let admitted = self.admit(&exec).await;
                    steps.push(admitted.map(|(session, cancel)| (exec, session, cancel)));
                }
                let (shared, engine) = (self.shared.clone(), self.engine.clone());
                self.ctx.tracker.spawn(async move {
                    let mut failed = false;
                    for step in steps {
                        let Some((exec, session, cancel)) = step else {
                            failed = true;
                            continue;
                        };
                        if failed {
                            let finish = crate::session::Finish::Error {
                                code: ErrorCode::Skipped,
                                message: "an earlier command of the sequential batch failed".into(),
                            };
                            request::finish_request(
                                &shared,
                                &engine,
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
}

/// The refusal reason of an unknown `Hello.token` (counted by the auth throttle).
const HELLO_UNKNOWN_TOKEN: &str = "invalid token";

/// Tenant and session names: short, printable, safe in logs and keys.
fn valid_name(name: &str) -> bool {
    crate::security::valid_tenant(name)
}

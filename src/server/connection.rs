//! One WebSocket connection: the reader loop that decodes frames and dispatches
//! them, and the state the connection's request tasks share.
//!
//! Invariants this file keeps:
//! - every accepted `Exec` is registered in `in_flight` before its task starts and
//!   leaves it exactly once, when its terminal frame is queued (`request.rs`);
//! - bad input (undecodable frames, text messages, wrong order) gets an `Error`
//!   frame and the connection stays usable; only an oversized message closes it (1009);
//! - when the connection ends for any reason, every request's process group is killed.

use super::request;
use super::writer::{self, Outbound};
use super::ServerContext;
use crate::metrics::Refusal;
use crate::session::{Builtin, Engine, SessionHandle};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
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

/// What the reader and the connection's request tasks share.
pub(super) struct Shared {
    /// The writer's queue.
    pub out: mpsc::Sender<Outbound>,
    in_flight: Mutex<HashMap<RequestId, CancellationToken>>,
    /// Parent of every request's cancel token: fires when the connection ends.
    cancel_all: CancellationToken,
    /// Signalled when `in_flight` becomes empty (the drain waits on it).
    idle: Notify,
}

impl Shared {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, CancellationToken>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes a finished request.
    pub fn forget(&self, request: RequestId) {
        let mut map = self.in_flight();
        map.remove(&request);
        if map.is_empty() {
            self.idle.notify_one();
        }
    }
}

/// Per-connection state owned by the reader.
struct Connection {
    id: u64,
    ctx: Arc<ServerContext>,
    engine: Arc<Engine>,
    shared: Arc<Shared>,
    codec: Codec,
    tenant: Option<Arc<str>>,
    /// The tenant of a valid token in the upgrade request's headers.
    header_tenant: Option<Arc<str>>,
    sessions: HashMap<SessionId, Arc<SessionHandle>>,
    draining: bool,
    /// Set when the connection must end (failed authentication): a close frame is queued.
    closing: bool,
    limits: Limits,
}

/// Drives a WebSocket connection until it closes.
pub(super) async fn run(
    ctx: Arc<ServerContext>,
    ws: WebSocketStream<TcpStream>,
    peer: SocketAddr,
    header_tenant: Option<Arc<str>>,
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
    let writer = tokio::spawn(writer::run(
        sink,
        rx,
        Codec::new(settings.clone()),
        engine.metrics.clone(),
        cfg.server.coalesce_bytes,
    ));
    let mut conn = Connection {
        id: ctx.connection_id(),
        ctx: ctx.clone(),
        engine: engine.clone(),
        shared: Arc::new(Shared {
            out,
            in_flight: Mutex::new(HashMap::new()),
            cancel_all: CancellationToken::new(),
            idle: Notify::new(),
        }),
        codec: Codec::new(settings),
        tenant: None,
        header_tenant,
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

    loop {
        tokio::select! {
            _ = &mut hello_deadline, if conn.tenant.is_none() => {
                let _ = conn.shared.out.send(Outbound::Close(CloseCode::Policy, "no Hello within the handshake timeout")).await;
                break;
            }
            _ = ctx.drain.cancelled(), if !conn.draining => conn.draining = true,
            _ = conn.shared.idle.notified(), if conn.draining => {},
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    engine.metrics.add_bytes_in(bytes.len());
                    conn.on_message(&bytes).await;
                    if conn.closing {
                        break;
                    }
                }
                Some(Ok(WsMessage::Text(_))) => {
                    conn.send_error(None, ErrorCode::TextFrame, "only binary messages are accepted").await;
                }
                Some(Ok(WsMessage::Close(_))) | None => break,
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite
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
    conn.shared.cancel_all.cancel();
    let Connection {
        shared, sessions, ..
    } = conn;
    drop(sessions);
    drop(shared);
    let _ = writer.await;
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
                let stats = self.engine.metrics.stats(r.nonce, self.engine.sampled());
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
        let tenant = match self.authenticate(&hello) {
            Ok(t) => t,
            Err(why) => return self.refuse_auth(why).await,
        };
        if !valid_name(&tenant) {
            return self
                .send_error(
                    None,
                    ErrorCode::Unauthorized,
                    "tenant names are 1-64 characters of [A-Za-z0-9._-], not . or ..",
                )
                .await;
        }
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

    /// The tenant this `Hello` may act for. Without tokens: the one it names (or
    /// `default`). With tokens: the token's (from the headers or `Hello.token`,
    /// which must agree); a `Hello.tenant` must then match it.
    fn authenticate(&self, hello: &Hello) -> Result<Arc<str>, &'static str> {
        let Some(tokens) = &self.ctx.security.tokens else {
            return Ok(hello.tenant.as_deref().unwrap_or("default").into());
        };
        let from_hello = hello.token.as_deref().map(|t| tokens.tenant(t));
        let tenant = match (self.header_tenant.clone(), from_hello) {
            (_, Some(None)) => return Err("invalid token"),
            (Some(h), Some(Some(t))) if h != t => {
                return Err("the token in Hello is for another tenant than the header token")
            }
            (Some(t), _) | (None, Some(Some(t))) => t,
            (None, None) => return Err(
                "a token is required (Authorization: Bearer, a `bearer.<token>` subprotocol, or Hello.token)",
            ),
        };
        match hello.tenant.as_deref() {
            Some(named) if *named != *tenant => {
                Err("Hello.tenant does not match the token's tenant")
            }
            _ => Ok(tenant),
        }
    }

    /// Failed authentication: `Error{Unauthorized}`, then close with 1008.
    async fn refuse_auth(&mut self, why: &'static str) {
        self.engine.metrics.refused(Refusal::Unauthorized);
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

    /// The tenant's rate limit and the command policy, before anything of the
    /// line runs (builtins and cache hits included).
    fn screen(&self, exec: &Exec) -> Result<(), (ErrorCode, String)> {
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
        let token = self.shared.cancel_all.child_token();
        self.shared.in_flight().insert(exec.request, token.clone());
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

/// Tenant and session names: short, printable, safe in logs and keys.
fn valid_name(name: &str) -> bool {
    crate::security::valid_tenant(name)
}

//! The HTTP part of a TCP connection: read the request head once, then either
//! answer it (`/healthz`, `/metrics`, errors) or upgrade it to a WebSocket.
//!
//! The upgrade is done here rather than by tungstenite's `accept_hdr` so that one
//! parse of the head serves every route (tungstenite rejects a non-upgrade GET
//! before a callback could answer it), and the bytes read past the head are handed
//! to the WebSocket with `from_partially_read` instead of through a replay wrapper.
//!
//! After a successful upgrade the connection is `connection`'s: this module
//! hands it over ([`connection::run`]) with what the upgrade decided
//! ([`Admitted`]), and nothing in `connection` calls back here.

use super::assets;
use super::auth;
use super::connection::{self, Admitted};
use super::context::{ServerContext, Transport};
use super::gate::Ticket;
use crate::metrics::Refusal;
use crate::security::{Grant, Slot, TokenCheck};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Longest request head accepted (431 beyond).
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// What a connection holds from `accept` on: its place in the open-files
/// budget, its address's half-open slot (until the head is in) and its
/// address's connection slot (when `max_connections_per_ip` is set and the
/// address was under it).
pub(super) struct Accepted {
    pub ticket: Ticket,
    pub pending: Option<Slot<IpAddr>>,
    pub ip_slot: Option<Slot<IpAddr>>,
}

/// Serves one TCP connection from its first byte to its close. The TLS handshake
/// (when configured) and the request head share one `handshake_timeout`, so a
/// client that connects and sends nothing, or trickles, is cut off; until the
/// head is in, the connection may also be closed to make room for newer ones
/// when open files run short (see `gate`).
pub(super) async fn serve_tcp(
    ctx: Arc<ServerContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    accepted: Accepted,
) {
    let _ = tcp.set_nodelay(true);
    let Accepted {
        mut ticket,
        pending,
        ip_slot,
    } = accepted;
    let deadline = Instant::now() + ctx.engine.config().server.handshake_timeout;
    let timed_out = || {
        ctx.engine.metrics.refused(Refusal::HandshakeTimeout);
        tracing::debug!(%peer, "handshake timed out");
    };
    let evicted = ticket.evicted();
    let mut stream = match &ctx.security.tls {
        None => Transport::Plain(tcp),
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
            let done = tokio::select! {
                done = handshake => done,
                _ = evicted.cancelled() => return,
            };
            match done {
                Ok(Ok(tls)) => Transport::Tls(Box::new(tls.into())),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return timed_out(),
            }
        }
    };
    let read = tokio::time::timeout_at(deadline, read_head(&mut stream));
    let read = tokio::select! {
        read = read => read,
        _ = evicted.cancelled() => {
            tracing::debug!(%peer, "half-open connection closed to make room (open-files budget)");
            return;
        }
    };
    ticket.head_done();
    drop(pending);
    let head = match read {
        Ok(Ok(head)) => head,
        Ok(Err(status)) => {
            let _ = respond(&mut stream, status, "text/plain", "", status.1).await;
            return;
        }
        Err(_) => return timed_out(),
    };
    // Held here until the response is written: a plain HTTP answer keeps its
    // place in the budget while its descriptor is open; an upgrade takes it.
    let mut ticket = Some(ticket);
    match route(&ctx, &head, peer, &mut ticket, ip_slot) {
        Reply::Upgrade {
            accept,
            leftover,
            protocol,
            admitted,
        } => {
            // Browsers fail the handshake unless one of the subprotocols they
            // offered is echoed back.
            let protocol = protocol
                .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            // rustls holds written bytes until flushed; a no-op on plain TCP.
            if stream.flush().await.is_err() {
                return;
            }
            let cfg = &ctx.engine.config().server;
            let ws_config = WebSocketConfig::default()
                .read_buffer_size(cfg.ws_read_buffer)
                .write_buffer_size(cfg.ws_write_buffer)
                .max_message_size(Some(cfg.max_message_bytes as usize))
                .max_frame_size(Some(cfg.max_message_bytes as usize));
            let ws = WebSocketStream::from_partially_read(
                stream,
                leftover,
                Role::Server,
                Some(ws_config),
            )
            .await;
            // A task of its own: this one, with the state of the HTTP exchange
            // (kilobytes), ends here instead of living as long as the connection.
            let tracker = ctx.tracker.clone();
            tracker.spawn(connection::run(ctx, ws, peer, admitted));
        }
        Reply::Http(status, content_type, extra, body) => {
            let _ = respond(&mut stream, status, content_type, &extra, &body).await;
        }
        Reply::Asset(asset) => {
            if stream.write_all(asset.head.as_bytes()).await.is_ok()
                && stream.write_all(asset.body).await.is_ok()
            {
                let _ = stream.shutdown().await;
            }
        }
    }
}

type Status = (u16, &'static str);

/// A parsed request head, owned.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    leftover: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, Status> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| (400, "Bad Request"))?;
        if n == 0 {
            return Err((400, "Bad Request"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Ok(Head {
                    method: req.method.unwrap_or("").to_owned(),
                    path: req.path.unwrap_or("").to_owned(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), h.value.to_owned()))
                        .collect(),
                    leftover: buf[len..].to_vec(),
                })
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err((431, "Request Header Fields Too Large")),
            Err(_) => return Err((400, "Bad Request")),
        }
    }
}

enum Reply {
    Upgrade {
        accept: String,
        leftover: Vec<u8>,
        /// The subprotocol to echo in the 101, if the client offered any we take.
        protocol: Option<String>,
        admitted: Admitted,
    },
    /// Status, content type, extra header lines, body.
    Http(Status, &'static str, String, String),
    /// A file of the voice terminal's page (`assets`).
    Asset(assets::Response),
}

/// Subprotocol carrying a token, for browsers (`new WebSocket(url, ["voxterm",
/// "bearer." + token])`); the token must then consist of HTTP token characters.
const BEARER_PROTOCOL: &str = "bearer.";
/// Subprotocol name echoed back when offered.
const VOXTERM_PROTOCOL: &str = "voxterm";

/// What the upgrade request's headers say about authentication.
enum HeaderAuth {
    /// No token in the headers.
    None,
    /// Every token presented is valid and names this tenant.
    Tenant(Grant),
    /// A token was presented (or an `Authorization` header sent) that is not
    /// valid: the refusal kind and why, for the log.
    Refused(Refusal, &'static str),
}

/// Tokens from `Authorization: Bearer` and from `bearer.<token>` subprotocols,
/// checked against the configured ones.
fn header_auth(ctx: &ServerContext, head: &Head) -> HeaderAuth {
    let Some(tokens) = &ctx.security.tokens else {
        return HeaderAuth::None;
    };
    let mut presented: Vec<&str> = Vec::new();
    if let Some(value) = head.header("authorization") {
        let value = std::str::from_utf8(value).unwrap_or("").trim();
        match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                presented.push(token.trim())
            }
            // Another scheme, or `Bearer` with nothing after it.
            _ => {
                return HeaderAuth::Refused(
                    Refusal::Unauthorized,
                    "Authorization is not a bearer token",
                )
            }
        }
    }
    presented.extend(offered_protocols(head).filter_map(|p| p.strip_prefix(BEARER_PROTOCOL)));
    let now = SystemTime::now();
    let mut found: Option<Grant> = None;
    for token in presented {
        let grant = match tokens.check(token, now) {
            TokenCheck::Unknown => {
                return HeaderAuth::Refused(Refusal::Unauthorized, UNKNOWN_TOKEN)
            }
            TokenCheck::Expired(_) => {
                return HeaderAuth::Refused(Refusal::TokenExpired, "token expired")
            }
            valid => valid.grant(),
        };
        found = match (found, grant) {
            (None, g) => g,
            (Some(prev), Some(g)) => match prev.with(g) {
                Some(both) => Some(both),
                None => {
                    return HeaderAuth::Refused(
                        Refusal::Unauthorized,
                        "tokens of different tenants",
                    )
                }
            },
            (prev, None) => prev,
        };
    }
    found.map_or(HeaderAuth::None, HeaderAuth::Tenant)
}

fn offered_protocols(head: &Head) -> impl Iterator<Item = &str> {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The subprotocol to echo: `voxterm` when offered, else the `bearer.` one.
fn chosen_protocol(head: &Head) -> Option<String> {
    let mut bearer = None;
    for p in offered_protocols(head) {
        if p.eq_ignore_ascii_case(VOXTERM_PROTOCOL) {
            return Some(p.to_owned());
        }
        if bearer.is_none() && p.starts_with(BEARER_PROTOCOL) {
            bearer = Some(p.to_owned());
        }
    }
    bearer
}

fn route(
    ctx: &ServerContext,
    head: &Head,
    peer: SocketAddr,
    ticket: &mut Option<Ticket>,
    ip_slot: Option<Slot<IpAddr>>,
) -> Reply {
    let path = head.path.split('?').next().unwrap_or("");
    if head.method != "GET" {
        return text((405, "Method Not Allowed"));
    }
    let engine = &ctx.engine;
    if matches!(path, "/healthz" | "/metrics" | "/scorecard") {
        let host = head.header("host").map(String::from_utf8_lossy);
        if !ctx.security.host_allowed(host.as_deref()) {
            return misdirected(ctx, host.as_deref().unwrap_or(""), path);
        }
    }
    match path {
        "/healthz" => Reply::Http(
            (200, "OK"),
            "application/json",
            String::new(),
            health_json(ctx),
        ),
        "/metrics" => Reply::Http(
            (200, "OK"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            String::new(),
            engine.metrics.render_prometheus(engine.sampled()),
        ),
        "/scorecard" => {
            let query = head.path.split_once('?').map_or("", |(_, q)| q);
            let accept = head.header("accept");
            let r =
                crate::scorecard::live::respond(query, accept, &engine.metrics, engine.sampled());
            Reply::Http(r.status, r.content_type, String::new(), r.body)
        }
        "/ws" => match ticket.take() {
            Some(ticket) => upgrade(ctx, head, peer, ticket, ip_slot),
            None => text((500, "Internal Server Error")),
        },
        _ => {
            let host = head
                .header("host")
                .and_then(|h| std::str::from_utf8(h).ok());
            let etag = head
                .header("if-none-match")
                .and_then(|h| std::str::from_utf8(h).ok());
            match assets::get(path, host, etag) {
                Some(asset) => Reply::Asset(asset),
                None => text((404, "Not Found")),
            }
        }
    }
}

/// `/healthz`: the metrics' health figures plus what confines children
/// (`containment`), so a deployment without rlimits or cgroups is visible from
/// outside.
fn health_json(ctx: &ServerContext) -> String {
    let engine = &ctx.engine;
    let mut v = engine.metrics.health(engine.sampled());
    let containment =
        serde_json::to_value(engine.containment().status()).unwrap_or(serde_json::Value::Null);
    v.insert("containment".to_owned(), containment);
    serde_json::Value::Object(v).to_string()
}

/// The `/ws` route: protocol checks, then origin, the source address's
/// connection cap, authentication and the tenant's connection cap, each refused
/// with its own status before the upgrade.
fn upgrade(
    ctx: &ServerContext,
    head: &Head,
    peer: SocketAddr,
    ticket: Ticket,
    ip_slot: Option<Slot<IpAddr>>,
) -> Reply {
    let engine = &ctx.engine;
    let upgrade = head.header_has_token("upgrade", "websocket")
        && head.header_has_token("connection", "upgrade");
    if !upgrade {
        return text((426, "Upgrade Required"));
    }
    if head.header("sec-websocket-version") != Some(b"13") {
        return text((400, "Bad Request"));
    }
    let Some(key) = head.header("sec-websocket-key") else {
        return text((400, "Bad Request"));
    };
    let security = &ctx.security;
    let origin = head.header("origin").map(String::from_utf8_lossy);
    let host = head.header("host").map(String::from_utf8_lossy);
    let tls = security.tls.is_some();
    if !security.origin_allowed_for(origin.as_deref(), host.as_deref(), tls) {
        return forbidden_origin(ctx, origin.as_deref().unwrap_or(""), peer);
    }
    if !ctx.gate.room_for_websocket() {
        engine.metrics.refused(Refusal::FdReserve);
        tracing::warn!(%peer, connections = ctx.gate.soft_cap(), "upgrade refused (503): the server is near its open-files limit");
        return Reply::Http(
            (503, "Service Unavailable"),
            "text/plain",
            "Retry-After: 5\r\n".into(),
            format!(
                "the server is near its open-files limit ({} connections): try again later\n",
                ctx.gate.soft_cap()
            ),
        );
    }
    let ip = peer.ip().to_canonical();
    if let (Some(slots), None) = (&security.ip_connections, &ip_slot) {
        engine.metrics.refused(Refusal::IpConnections);
        tracing::info!(%ip, max = slots.max(), "connection refused: per-address cap");
        return too_many(format!(
            "too many connections from {ip}: at most {} at once",
            slots.max()
        ));
    }
    if let Some(wait) = auth::must_wait(ctx, ip) {
        return throttled(ctx, ip, wait);
    }
    let tenant = match header_auth(ctx, head) {
        HeaderAuth::Tenant(grant) => Some(grant),
        HeaderAuth::None if security.tokens.is_none() || engine.config().auth.hello_token => None,
        HeaderAuth::None => return unauthorized(ctx, Refusal::Unauthorized, "no token", peer),
        HeaderAuth::Refused(kind, why) => {
            if why == UNKNOWN_TOKEN {
                auth::failed(ctx, ip);
            }
            return unauthorized(ctx, kind, why, peer);
        }
    };
    let tenant_slot = match (&security.tenant_connections, &tenant) {
        (Some(slots), Some(Grant { tenant: t, .. })) => match slots.acquire(t) {
            Some(slot) => Some(slot),
            None => {
                engine.metrics.refused(Refusal::TenantConnections);
                tracing::info!(tenant = %t, max = slots.max(), "connection refused: per-tenant cap");
                return too_many(format!(
                    "tenant {t} already has its maximum of {} connections",
                    slots.max()
                ));
            }
        },
        _ => None,
    };
    Reply::Upgrade {
        accept: derive_accept_key(key),
        leftover: head.leftover.clone(),
        protocol: chosen_protocol(head),
        admitted: Admitted {
            ticket,
            tenant,
            ip_slot,
            tenant_slot,
        },
    }
}

/// 401 with a `WWW-Authenticate` challenge; an expired token is said so
/// (RFC 6750 `invalid_token`), so a client knows to renew rather than retry.
fn unauthorized(ctx: &ServerContext, kind: Refusal, why: &'static str, peer: SocketAddr) -> Reply {
    ctx.engine.metrics.refused(kind);
    tracing::info!(%peer, reason = why, kind = kind.as_str(), "upgrade refused: 401");
    let (challenge, body) = match kind {
        Refusal::TokenExpired => (
            "WWW-Authenticate: Bearer realm=\"voxterm\", error=\"invalid_token\", error_description=\"token expired\"\r\n",
            "Unauthorized: token expired\n",
        ),
        _ => (
            "WWW-Authenticate: Bearer realm=\"voxterm\"\r\n",
            "Unauthorized\n",
        ),
    };
    Reply::Http(
        (401, "Unauthorized"),
        "text/plain",
        challenge.into(),
        body.into(),
    )
}

/// The refusal reason of a token that is not configured: what a guesser gets,
/// and what the auth throttle counts.
const UNKNOWN_TOKEN: &str = "unknown token";

/// 429 for an address that must wait after failed authentications.
fn throttled(ctx: &ServerContext, ip: IpAddr, wait: std::time::Duration) -> Reply {
    ctx.engine.metrics.refused(Refusal::AuthThrottled);
    let secs = auth::retry_secs(wait);
    tracing::debug!(%ip, secs, "upgrade refused: address waiting after failed authentications");
    Reply::Http(
        (429, "Too Many Requests"),
        "text/plain",
        format!("Retry-After: {secs}\r\n"),
        format!("too many failed authentications from {ip}: retry in {secs} s\n"),
    )
}

/// 421 for `/healthz`, `/metrics` or `/scorecard` under a `Host` that is not allowed: the
/// body says which host and how to allow it.
fn misdirected(ctx: &ServerContext, host: &str, path: &str) -> Reply {
    ctx.engine.metrics.refused(Refusal::Host);
    let name = crate::security::host_name(host);
    tracing::debug!(host, path, "refused: Host not allowed");
    Reply::Http(
        (421, "Misdirected Request"),
        "text/plain",
        String::new(),
        format!(
            "{path} does not answer to Host {host:?}: only localhost, IP addresses and the names in [server] allowed_hosts \
             (a defence against DNS rebinding). To allow it, add allowed_hosts = [\"{name}\"] to the [server] section of the config file.\n"
        ),
    )
}

/// 403 for an `Origin` that may not open `/ws`: the body and the log line say
/// which origin and the configuration line that allows it.
fn forbidden_origin(ctx: &ServerContext, origin: &str, peer: SocketAddr) -> Reply {
    ctx.engine.metrics.refused(Refusal::Origin);
    let origin: String = origin
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let how = format!(
        "only the page's own origin (served at / under localhost, an IP address or a name in [server] allowed_hosts) \
         and the origins in [server] allowed_origins may open /ws. To allow this one, add allowed_origins = [\"{origin}\"] \
         to the [server] section of the config file"
    );
    tracing::info!(%peer, origin = %origin, "upgrade refused (403): origin not allowed: {how}");
    Reply::Http(
        (403, "Forbidden"),
        "text/plain",
        String::new(),
        format!("Forbidden: origin {origin:?} may not open /ws: {how}.\n"),
    )
}

/// 429 for a connection cap: the body says which.
fn too_many(message: String) -> Reply {
    Reply::Http(
        (429, "Too Many Requests"),
        "text/plain",
        "Retry-After: 1\r\n".into(),
        format!("{message}\n"),
    )
}

fn text(status: Status) -> Reply {
    Reply::Http(
        status,
        "text/plain",
        String::new(),
        format!("{}\n", status.1),
    )
}

async fn respond(
    stream: &mut Transport,
    (code, reason): Status,
    content_type: &str,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

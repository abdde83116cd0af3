//! The HTTP part of a TCP connection: read the request head once, then either
//! answer it (`/healthz`, `/metrics`, errors) or upgrade it to a WebSocket.
//!
//! The upgrade is done here rather than by tungstenite's `accept_hdr` so that one
//! parse of the head serves every route (tungstenite rejects a non-upgrade GET
//! before a callback could answer it), and the bytes read past the head are handed
//! to the WebSocket with `from_partially_read` instead of through a replay wrapper.

use super::{connection, ServerContext};
use crate::metrics::Refusal;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Longest request head accepted (431 beyond).
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// Serves one TCP connection from its first byte to its close.
pub(super) async fn serve_tcp(ctx: Arc<ServerContext>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let timeout = ctx.engine.config().server.handshake_timeout;
    let head = match tokio::time::timeout(timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(status)) => {
            let _ = respond(&mut stream, status, "text/plain", "", status.1).await;
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    match route(&ctx, &head) {
        Reply::Upgrade {
            accept,
            leftover,
            protocol,
            tenant,
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
            connection::run(ctx, ws, peer, tenant).await;
        }
        Reply::Http(status, content_type, body) => {
            let extra = match status.0 {
                401 => "WWW-Authenticate: Bearer realm=\"voxterm\"\r\n",
                _ => "",
            };
            let _ = respond(&mut stream, status, content_type, extra, &body).await;
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

async fn read_head(stream: &mut TcpStream) -> Result<Head, Status> {
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
        /// The tenant of a valid token presented in the headers.
        tenant: Option<Arc<str>>,
    },
    Http(Status, &'static str, String),
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
    Tenant(Arc<str>),
    /// A token was presented (or an `Authorization` header sent) that is not valid.
    Refused,
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
            _ => return HeaderAuth::Refused,
        }
    }
    presented.extend(offered_protocols(head).filter_map(|p| p.strip_prefix(BEARER_PROTOCOL)));
    let mut tenant: Option<Arc<str>> = None;
    for token in presented {
        match (tokens.tenant(token), &tenant) {
            (None, _) => return HeaderAuth::Refused,
            (Some(t), Some(prev)) if t != *prev => return HeaderAuth::Refused,
            (Some(t), _) => tenant = Some(t),
        }
    }
    tenant.map_or(HeaderAuth::None, HeaderAuth::Tenant)
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

fn route(ctx: &ServerContext, head: &Head) -> Reply {
    let path = head.path.split('?').next().unwrap_or("");
    if head.method != "GET" {
        return text((405, "Method Not Allowed"));
    }
    let engine = &ctx.engine;
    match path {
        "/healthz" => Reply::Http(
            (200, "OK"),
            "application/json",
            engine.metrics.health_json(engine.sampled()),
        ),
        "/metrics" => Reply::Http(
            (200, "OK"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            engine.metrics.render_prometheus(engine.sampled()),
        ),
        "/ws" => {
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
            if !security.origin_allowed(origin.as_deref()) {
                engine.metrics.refused(Refusal::Origin);
                tracing::debug!(origin = ?origin, "origin not allowed");
                return text((403, "Forbidden"));
            }
            let tenant = match header_auth(ctx, head) {
                HeaderAuth::Tenant(t) => Some(t),
                HeaderAuth::None
                    if security.tokens.is_none() || engine.config().auth.hello_token =>
                {
                    None
                }
                HeaderAuth::None | HeaderAuth::Refused => {
                    engine.metrics.refused(Refusal::Unauthorized);
                    return text((401, "Unauthorized"));
                }
            };
            Reply::Upgrade {
                accept: derive_accept_key(key),
                leftover: head.leftover.clone(),
                protocol: chosen_protocol(head),
                tenant,
            }
        }
        _ => text((404, "Not Found")),
    }
}

fn text(status: Status) -> Reply {
    Reply::Http(status, "text/plain", format!("{}\n", status.1))
}

async fn respond(
    stream: &mut TcpStream,
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

//! The HTTP part of a TCP connection: read the request head once, then either
//! answer it (`/healthz`, `/metrics`, errors) or upgrade it to a WebSocket.
//!
//! The upgrade is done here rather than by tungstenite's `accept_hdr` so that one
//! parse of the head serves every route (tungstenite rejects a non-upgrade GET
//! before a callback could answer it), and the bytes read past the head are handed
//! to the WebSocket with `from_partially_read` instead of through a replay wrapper.

use super::{connection, ServerContext};
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
            let _ = respond(&mut stream, status, "text/plain", status.1).await;
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    match route(&ctx, &head) {
        Reply::Upgrade { accept, leftover } => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
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
            connection::run(ctx, ws, peer).await;
        }
        Reply::Http(status, content_type, body) => {
            let _ = respond(&mut stream, status, content_type, &body).await;
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
    Upgrade { accept: String, leftover: Vec<u8> },
    Http(Status, &'static str, String),
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
            match head.header("sec-websocket-key") {
                Some(key) => Reply::Upgrade {
                    accept: derive_accept_key(key),
                    leftover: head.leftover.clone(),
                },
                None => text((400, "Bad Request")),
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
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

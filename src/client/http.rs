//! A plain HTTP GET to a voxterm server's `/healthz` or `/metrics`, over the
//! same TCP or TLS connection code as the WebSocket client, so `voxterm
//! health` and `loadtest health` check a server the same way (TLS included).

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::http::Uri;

use super::{open, ClientError};

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code (200, 421, 503…).
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// The body, as text.
    pub body: String,
}

/// GETs `path` from the server named by `url` (`ws://`, `http://`, or `wss://`,
/// `https://` for TLS; only the scheme, host and port are used), reading until
/// the server closes (`Connection: close`).
pub async fn http_get(
    url: &str,
    path: &str,
    ca_cert: Option<&Path>,
) -> Result<HttpReply, ClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ClientError::Protocol(format!("invalid URL {url:?}: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| ClientError::Protocol(format!("the URL {url:?} has no host")))?;
    let mut stream = open(&uri, &["ws", "http"], &["wss", "https"], ca_cert).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let io = |e: std::io::Error| ClientError::Protocol(format!("HTTP to {authority}: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("malformed HTTP response".into()))?;
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("malformed status line {status_line:?}")))?;
    Ok(HttpReply {
        status,
        status_line,
        body: body.to_owned(),
    })
}

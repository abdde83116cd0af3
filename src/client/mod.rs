//! A small async client for the voxterm protocol, used by `voxterm exec`, the tests
//! and the load tester.
//!
//! [`Client`] is a thin, honest layer: `send` puts frames on the wire, `recv` takes
//! them off one at a time (a WebSocket message may carry several), and `run` is the
//! convenience of one command from `Exec` to its terminal frame. Multiplexing many
//! requests is done by the caller with `send` and `recv`.

mod http;
pub use http::{http_get, HttpReply};

use crate::security::tls::{self, MaybeTls, TlsError};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::path::PathBuf;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{
    CacheMode, Codec, CodecSettings, Compression, Configure, DecodeError, EncodeError, Encoding,
    Error, ErrorCode, Exec, Exit, Hello, Message, Priority, RequestId, SessionId, StreamKind,
    Welcome, PROTOCOL_VERSION,
};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// WebSocket or TCP failure.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent a frame this client cannot decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The server closed the connection (close code and reason, if given).
    #[error("connection closed{}", .0.as_ref().map(|(c, r)| format!(" ({c}: {r})")).unwrap_or_default())]
    Closed(Option<(u16, String)>),
    /// The server answered out of protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// host:port.
        addr: String,
        /// The I/O error (in the message; not a `source`, so that a report
        /// of the error chain does not say it twice).
        error: std::io::Error,
    },
    /// TLS could not be set up or the handshake failed (e.g. an untrusted certificate).
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The server refused a connection-wide request (its `Error` frame).
    #[error("refused: {:?}: {}", .0.code, .0.message)]
    Refused(Box<Error>),
    /// The TLS handshake with the server failed.
    #[error("tls handshake with {addr}: {error}")]
    TlsHandshake {
        /// host:port.
        addr: String,
        /// What rustls reported (in the message, not a `source`).
        error: std::io::Error,
    },
}

/// How to introduce ourselves in `Hello`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Client name for the server's logs.
    pub name: String,
    /// Tenant to act as (servers without tokens).
    pub tenant: Option<String>,
    /// Authentication token, sent as `Authorization: Bearer` in the upgrade
    /// request and as `Hello.token`.
    pub token: Option<String>,
    /// Preferred body encoding.
    pub encoding: Encoding,
    /// Preferred compression.
    pub compression: Compression,
    /// For `wss://`: PEM certificates to trust instead of the system's roots
    /// (a private CA, or a self-signed server certificate).
    pub ca_cert: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            name: concat!("voxterm-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            tenant: None,
            token: None,
            encoding: Encoding::Bincode,
            compression: Compression::None,
            ca_cert: None,
        }
    }
}

/// Output and end of one command, as collected by [`Client::run`].
#[derive(Debug, Clone, Default)]
pub struct Completed {
    /// All stdout bytes, in order.
    pub stdout: Vec<u8>,
    /// All stderr bytes, in order.
    pub stderr: Vec<u8>,
    /// The `Exit`, when the command ended with one.
    pub exit: Option<Exit>,
    /// The `Error`, when it ended with one.
    pub error: Option<Error>,
    /// `Output` frames received.
    pub chunks: usize,
}

/// The framed WebSocket under a client: frames in, frames out.
struct Wire {
    ws: WebSocketStream<MaybeTls>,
    codec: Codec,
    pending: VecDeque<Result<Message, DecodeError>>,
}

impl Wire {
    async fn send_all(&mut self, msgs: &[Message]) -> Result<(), ClientError> {
        let mut buf = Vec::new();
        for msg in msgs {
            self.codec.encode(msg, &mut buf)?;
        }
        self.ws.send(WsMessage::Binary(buf.into())).await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Message, ClientError> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame?);
            }
            let next = self.ws.next().await;
            self.take(next)?;
        }
    }

    /// Reads until `until`, keeping the frames that come for [`Wire::recv`].
    async fn idle(&mut self, until: tokio::time::Instant) -> Result<(), ClientError> {
        // `next` is cancel-safe: a message half read when the time is up
        // stays in the stream for the next read.
        while let Ok(next) = tokio::time::timeout_at(until, self.ws.next()).await {
            self.take(next)?;
        }
        Ok(())
    }

    /// One WebSocket message read: its frames kept, a close or an error
    /// returned. A ping's pong goes out with the next read or write, which
    /// the loops above make at once.
    fn take(
        &mut self,
        next: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), ClientError> {
        match next {
            Some(Ok(WsMessage::Binary(bytes))) => {
                self.pending.extend(self.codec.decode(&bytes));
                Ok(())
            }
            Some(Ok(WsMessage::Close(frame))) => Err(ClientError::Closed(
                frame.map(|f| (u16::from(f.code), f.reason.to_string())),
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
            None => Err(ClientError::Closed(None)),
        }
    }
}

/// The TCP connection for a `ws://` or `wss://` request, TLS-wrapped for `wss://`.
async fn transport(
    request: &tokio_tungstenite::tungstenite::handshake::client::Request,
    ca_cert: Option<&std::path::Path>,
) -> Result<MaybeTls, ClientError> {
    open(request.uri(), &["ws"], &["wss"], ca_cert).await
}

/// A TCP connection to `uri`'s host and port, TLS-wrapped when its scheme is
/// one of `secure` (a scheme in neither list is refused).
async fn open(
    uri: &tokio_tungstenite::tungstenite::http::Uri,
    plain: &[&str],
    secure: &[&str],
    ca_cert: Option<&std::path::Path>,
) -> Result<MaybeTls, ClientError> {
    let scheme = uri.scheme_str().unwrap_or_default();
    let secure = if plain.contains(&scheme) {
        false
    } else if secure.contains(&scheme) {
        true
    } else {
        let all: Vec<String> = plain
            .iter()
            .chain(secure)
            .map(|s| format!("{s}://"))
            .collect();
        return Err(ClientError::Protocol(format!(
            "unsupported URL scheme {scheme:?}: use {}",
            all.join(" or ")
        )));
    };
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Protocol("the URL has no host".into()))?;
    // `[::1]` in a URL is `::1` to the resolver and to TLS.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addr = format!("{host}:{port}");
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| ClientError::Connect {
            addr: addr.clone(),
            error,
        })?;
    let _ = tcp.set_nodelay(true);
    if !secure {
        return Ok(MaybeTls::Plain(tcp));
    }
    let config = tls::client_config(ca_cert)?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| ClientError::Protocol(format!("invalid TLS server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|error| ClientError::TlsHandshake { addr, error })?;
    Ok(MaybeTls::Tls(Box::new(tls.into())))
}

/// One connection to a voxterm server, after `Hello`/`Welcome`.
pub struct Client {
    wire: Wire,
    welcome: Welcome,
    next_request: RequestId,
}

impl Client {
    /// Connects to `url` (`ws://127.0.0.1:7878/ws`, or `wss://` for a server
    /// with TLS) and performs the handshake.
    pub async fn connect(url: &str, opts: ClientOptions) -> Result<Client, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(16 << 10)
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        // The token goes in the upgrade request too, so a wrong one is refused with
        // 401 before the WebSocket exists (it is also sent in Hello, below).
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        if let Some(token) = &opts.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                ClientError::Protocol("the token cannot go in an HTTP header".into())
            })?;
            request.headers_mut().insert("authorization", value);
        }
        let stream = transport(&request, opts.ca_cert.as_deref()).await?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        let mut wire = Wire {
            ws,
            codec: Codec::new(CodecSettings {
                max_frame_bytes: (1 << 24) - 1,
                ..CodecSettings::default()
            }),
            pending: VecDeque::new(),
        };
        let hello = Message::Hello(Box::new(Hello {
            version: PROTOCOL_VERSION,
            client: opts.name,
            encodings: vec![opts.encoding],
            compression: vec![opts.compression],
            tenant: opts.tenant,
            token: opts.token,
        }));
        wire.send_all(&[hello]).await?;
        let welcome = match wire.recv().await? {
            Message::Welcome(w) => *w,
            Message::Error(e) => {
                return Err(ClientError::Protocol(format!(
                    "handshake refused: {:?}: {}",
                    e.code, e.message
                )))
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got frame type 0x{:02x}",
                    other.kind()
                )))
            }
        };
        wire.codec.set_encoding(welcome.encoding);
        wire.codec.set_compression(welcome.compression);
        Ok(Client {
            wire,
            welcome,
            next_request: 1,
        })
    }

    /// What the server chose in the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// A request id not used before on this client.
    pub fn next_request_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// Sends one frame in its own WebSocket message.
    pub async fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        self.send_all(std::slice::from_ref(msg)).await
    }

    /// Sends several frames in one WebSocket message.
    pub async fn send_all(&mut self, msgs: &[Message]) -> Result<(), ClientError> {
        self.wire.send_all(msgs).await
    }

    /// Sends a raw WebSocket message (for tests of malformed input).
    pub async fn send_raw(&mut self, msg: WsMessage) -> Result<(), ClientError> {
        self.wire.ws.send(msg).await?;
        Ok(())
    }

    /// The next frame from the server.
    pub async fn recv(&mut self) -> Result<Message, ClientError> {
        self.wire.recv().await
    }

    /// Sends an `Exec` for `command` in `session` with default options; returns its id.
    pub async fn exec(
        &mut self,
        session: SessionId,
        command: &str,
        timeout_ms: u32,
    ) -> Result<RequestId, ClientError> {
        let request = self.next_request_id();
        self.send(&Message::Exec(Exec {
            request,
            session,
            command: command.to_owned(),
            priority: Priority::Normal,
            timeout_ms,
            cache: CacheMode::Default,
        }))
        .await?;
        Ok(request)
    }

    /// Runs one command and collects everything until its terminal frame. Frames of
    /// other requests that arrive meanwhile are dropped: use `send`/`recv` to multiplex.
    pub async fn run(
        &mut self,
        session: SessionId,
        command: &str,
        timeout_ms: u32,
    ) -> Result<Completed, ClientError> {
        let request = self.next_request_id();
        self.run_exec(Exec {
            request,
            session,
            command: command.to_owned(),
            priority: Priority::Normal,
            timeout_ms,
            cache: CacheMode::Default,
        })
        .await
    }

    /// Like [`Client::run`], for a fully specified `Exec` (priority, cache mode).
    pub async fn run_exec(&mut self, exec: Exec) -> Result<Completed, ClientError> {
        let request = exec.request;
        self.send(&Message::Exec(exec)).await?;
        let mut done = Completed::default();
        loop {
            match self.recv().await? {
                Message::Output(o) if o.request == request => {
                    done.chunks += 1;
                    match o.stream {
                        StreamKind::Stdout => done.stdout.extend_from_slice(&o.data),
                        StreamKind::Stderr => done.stderr.extend_from_slice(&o.data),
                    }
                }
                Message::Exit(e) if e.request == request => {
                    done.exit = Some(e);
                    return Ok(done);
                }
                Message::Error(e) if e.request == Some(request) => {
                    done.error = Some(e);
                    return Ok(done);
                }
                _ => {}
            }
        }
    }

    /// Asks the server to hold this connection's commands over a dropped
    /// connection (`Configure { reattach: true }`, PROTOCOL.md §7) and waits
    /// for the grace it grants: zero from a server that keeps nothing, or
    /// that is too old to know `Configure`. Frames of other requests that
    /// arrive meanwhile are kept for [`Client::recv`], in order.
    pub async fn reattach(&mut self) -> Result<std::time::Duration, ClientError> {
        self.send(&Message::Configure(Configure {
            suggestions: 0,
            rejections: false,
            reattach: true,
        }))
        .await?;
        let mut others = VecDeque::new();
        let granted = loop {
            match self.wire.recv().await {
                Ok(Message::Configured(c)) => {
                    break Ok(std::time::Duration::from_millis(u64::from(c.reattach_ms)))
                }
                Ok(Message::Error(e)) if e.request.is_none() => {
                    break match e.code {
                        ErrorCode::UnknownType => Ok(std::time::Duration::ZERO),
                        _ => Err(ClientError::Refused(Box::new(e))),
                    }
                }
                Ok(other) => others.push_back(Ok(other)),
                Err(e) => break Err(e),
            }
        };
        others.extend(self.wire.pending.drain(..));
        self.wire.pending = others;
        granted
    }

    /// Waits for `time` while reading, so that the server's keepalive pings
    /// are answered: a connection that reads nothing for two ping intervals
    /// (`[server] ping_interval`, 30 s by default) is dropped as a dead peer.
    /// A caller that pauses between requests pauses here instead of in a
    /// sleep. Frames that arrive meanwhile are kept for [`Client::recv`];
    /// the server closing the connection is an error.
    pub async fn idle(&mut self, time: std::time::Duration) -> Result<(), ClientError> {
        self.wire.idle(tokio::time::Instant::now() + time).await
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.wire.ws.close(None).await?;
        Ok(())
    }
}

//! One multiplexed WebSocket connection of the load tester.
//!
//! Unlike `voxterm::client::Client` (one task does both directions), the socket is
//! split: a writer task coalesces queued frames into WebSocket messages and a
//! reader task routes every frame by request id to the request's record. So a
//! request is timed from its due time to its terminal frame even while other
//! requests of the same connection are being sent, and both directions' bytes are
//! counted on the client (the network metric).
//!
//! Two clocks per request, as wrk2 keeps them: the due time (the open model's
//! schedule: what a user feels, including any lateness of the load tester) and
//! the actual send (stamped by the writer once the message is on the socket).
//! Their difference is the send lag, which says whether the load tester kept
//! its own schedule.

use crate::profile::CommandClass;
use crate::record::{Done, End, Recorder};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{
    CacheMode, Codec, CodecSettings, Compression, Encoding, Exec, Hello, Message, OpenSession,
    Priority, RequestId, SessionId, PROTOCOL_VERSION,
};

/// The raw WebSocket type.
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://host:port/ws`.
    pub url: String,
    /// host:port, resolved.
    pub addr: SocketAddr,
    /// Body encoding to ask for.
    pub encoding: Encoding,
    /// Compression to ask for.
    pub compression: Compression,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH`.
    pub fn parse(
        url: &str,
        encoding: Encoding,
        compression: Compression,
    ) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .context("only ws:// URLs are supported")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            encoding,
            compression,
        })
    }
}

/// Opens the TCP connection (from `source` when given, to spread source addresses
/// over 127.0.0.x past the ~28k ephemeral ports of one address) and upgrades it.
pub async fn connect_ws(t: &Target, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let socket = if t.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket
        .connect(t.addr)
        .await
        .with_context(|| format!("cannot connect to {}", t.addr))?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(t.url.as_str(), stream, Some(config))
        .await
        .context("websocket upgrade failed")?;
    Ok(ws)
}

/// Sends `Hello` and waits for `Welcome`; returns the codec set up for the rest.
pub async fn handshake(ws: &mut Ws, t: &Target, tenant: &str) -> anyhow::Result<Codec> {
    let mut codec = Codec::new(CodecSettings {
        max_frame_bytes: (1 << 24) - 1,
        ..CodecSettings::default()
    });
    let hello = Message::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        client: concat!("voxterm-loadtest/", env!("CARGO_PKG_VERSION")).to_owned(),
        encodings: vec![t.encoding],
        compression: vec![t.compression],
        tenant: Some(tenant.to_owned()),
        token: None,
    }));
    let mut buf = Vec::new();
    codec.encode(&hello, &mut buf)?;
    ws.send(WsMessage::Binary(buf.into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                let first = codec.decode(&b).next();
                match first {
                    Some(Ok(Message::Welcome(w))) => {
                        codec.set_encoding(w.encoding);
                        codec.set_compression(w.compression);
                        return Ok(codec);
                    }
                    Some(Ok(Message::Error(e))) => {
                        bail!("handshake refused: {:?}: {}", e.code, e.message)
                    }
                    Some(Ok(other)) => bail!("expected Welcome, got 0x{:02x}", other.kind()),
                    Some(Err(e)) => bail!("bad Welcome: {e}"),
                    None => bail!("empty message instead of Welcome"),
                }
            }
            Some(Ok(WsMessage::Close(f))) => bail!("closed during handshake: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed during handshake"),
        }
    }
}

/// What a request is, for recording when its terminal frame comes.
pub struct Pending {
    /// When it was due (the open model's clock).
    pub due: Instant,
    /// When its message was written to the socket (set by the writer).
    pub sent: Option<Instant>,
    /// Profile index.
    pub profile: u8,
    /// Class.
    pub class: CommandClass,
    /// Capacity step, if any.
    pub step: Option<u16>,
    /// Counted in the results (setup and chaos requests are not).
    pub measured: bool,
    /// Told when the request ends (setup steps wait on it).
    pub notify: Option<oneshot::Sender<End>>,
}

/// A live connection: queue frames to it, and its reader records answers.
pub struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<RequestId, Pending>>>,
    next_id: AtomicU32,
    alive: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Conn {
    /// Connects, handshakes and starts the reader and writer tasks.
    pub async fn open(
        t: &Target,
        tenant: &str,
        source: Option<IpAddr>,
        rec: Arc<Recorder>,
    ) -> anyhow::Result<Conn> {
        let mut ws = connect_ws(t, source).await?;
        let codec = handshake(&mut ws, t, tenant).await?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let pending: Arc<Mutex<HashMap<RequestId, Pending>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let mut wcodec = codec.clone_settings();
        let rec_w = rec.clone();
        let alive_w = alive.clone();
        let pend_w = pending.clone();
        let writer = tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut buf = Vec::with_capacity(128);
                let mut next = Some(first);
                ids.clear();
                while let Some(msg) = next.take() {
                    if wcodec.encode(&msg, &mut buf).is_err() {
                        continue;
                    }
                    if let Message::Exec(e) = &msg {
                        ids.push(e.request);
                    }
                    if buf.len() < 32 << 10 {
                        next = rx.try_recv().ok();
                    }
                }
                rec_w
                    .bytes_out
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                if sink.send(WsMessage::Binary(buf.into())).await.is_err() {
                    break;
                }
                if !ids.is_empty() {
                    let now = Instant::now();
                    let mut pending = pend_w.lock();
                    for id in &ids {
                        if let Some(p) = pending.get_mut(id) {
                            p.sent = Some(now);
                        }
                    }
                }
            }
            alive_w.store(false, Ordering::Relaxed);
            let _ = sink.close().await;
        });
        let pend_r = pending.clone();
        let alive_r = alive.clone();
        let mut rcodec = codec;
        let reader = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let bytes = match msg {
                    Ok(WsMessage::Binary(b)) => b,
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                rec.bytes_in
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let now = Instant::now();
                for frame in rcodec.decode(&bytes) {
                    let (id, end) = match frame {
                        Ok(Message::Exit(e)) => (e.request, End::Exit(e.code, e.served_from)),
                        Ok(Message::Error(e)) => match e.request {
                            Some(id) => (id, End::Error(e.code)),
                            None => continue,
                        },
                        _ => continue,
                    };
                    let Some(p) = pend_r.lock().remove(&id) else {
                        continue;
                    };
                    if p.measured {
                        let us = |d: std::time::Duration| d.as_micros() as u64;
                        rec.record(Done {
                            latency_us: us(now.saturating_duration_since(p.due)),
                            sent: p.sent.map(|sent| {
                                (
                                    us(sent.saturating_duration_since(p.due)),
                                    us(now.saturating_duration_since(sent)),
                                )
                            }),
                            profile: p.profile,
                            class: p.class,
                            end,
                            step: p.step,
                        });
                    }
                    if let Some(n) = p.notify {
                        let _ = n.send(end);
                    }
                }
            }
            alive_r.store(false, Ordering::Relaxed);
        });
        Ok(Conn {
            tx,
            pending,
            next_id: AtomicU32::new(1),
            alive,
            tasks: vec![writer, reader],
        })
    }

    /// Whether both directions still work.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Queues `OpenSession`.
    pub fn open_session(&self, session: SessionId, name: &str) -> bool {
        self.tx
            .send(Message::OpenSession(OpenSession {
                session,
                name: name.to_owned(),
            }))
            .is_ok()
    }

    /// Queues an `Exec` and registers it; false when the connection is gone.
    pub fn exec(&self, session: SessionId, command: String, timeout_ms: u32, p: Pending) -> bool {
        let request = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().insert(request, p);
        let sent = self
            .tx
            .send(Message::Exec(Exec {
                request,
                session,
                command,
                priority: Priority::Normal,
                timeout_ms,
                cache: CacheMode::Default,
            }))
            .is_ok();
        if !sent {
            self.pending.lock().remove(&request);
        }
        sent
    }

    /// Measured requests still without a terminal frame.
    pub fn outstanding(&self) -> u64 {
        self.pending.lock().values().filter(|p| p.measured).count() as u64
    }

    /// Stops both tasks (the socket is dropped without a close handshake).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A second codec with the same negotiated settings (codecs hold compression state,
/// so the reader and the writer each need their own).
trait CloneSettings {
    fn clone_settings(&self) -> Codec;
}

impl CloneSettings for Codec {
    fn clone_settings(&self) -> Codec {
        Codec::new(self.settings().clone())
    }
}

//! One multiplexed WebSocket connection of the load tester.
//!
//! Unlike `voxterm::client::Client` (one task does both directions), the socket is
//! split: a writer task coalesces queued frames into WebSocket messages and a
//! reader task routes every frame by request id to the request's record; a
//! command due when nothing is queued is written by the scheduling thread
//! itself, through the same write half under the same lock. So a
//! request is timed from its due time to its terminal frame even while other
//! requests of the same connection are being sent, and both directions' bytes are
//! counted on the client (the network metric).
//!
//! Two clocks per request, as wrk2 keeps them: the due time (the open model's
//! schedule: what a user feels, including any lateness of the load tester) and
//! the actual send (stamped as the write that puts the message on the socket
//! starts, as wrk2 stamps it, so that the write's own cost counts as the
//! floor probe's does). Their difference is the send lag, which says whether
//! the load tester kept its own schedule.
//!
//! A connection that drops mid-run reconnects as a voice terminal does (the
//! page and `voxterm exec` both re-attach): to the same target, or the next
//! one of several `--url`s, its sessions opened again by name and every
//! request it had written taken over with `Attach`. What the server answers
//! is recorded as it comes: the request's own end, or `RequestLost` when it
//! ran on an engine that died — counted, never silently dropped.

use crate::profile::CommandClass;
use crate::record::{Done, End, Recorder, RunPhase};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{
    Attach, CacheMode, Codec, CodecSettings, Compression, Configure, Encoding, ErrorCode, Exec,
    Hello, Message, NoticeKind, OpenSession, Priority, RequestId, SessionId, PROTOCOL_VERSION,
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
    Ok(handshake_welcome(ws, t, tenant).await?.0)
}

/// [`handshake`], also returning `Welcome.connection` (what `Attach` names).
async fn handshake_welcome(ws: &mut Ws, t: &Target, tenant: &str) -> anyhow::Result<(Codec, u64)> {
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
                        return Ok((codec, w.connection));
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
    /// When its message was written to the socket (set by whoever wrote it).
    pub sent: Option<Instant>,
    /// `Welcome.connection` of the connection the writer last tried to
    /// write it on, or that took it over (`Notice { Reattached }`): the one
    /// an `Attach` must name. None until written; from then on only the
    /// server knows whether it arrived, so after a drop it is re-attached,
    /// and sent again only when the server answers that it never arrived
    /// (`NotReceived`).
    pub home: Option<u64>,
    /// The `Exec` as written (set by [`Conn::exec`]), for sending it again.
    pub resend: Option<Exec>,
    /// The session handle it runs in.
    pub session: SessionId,
    /// Profile index.
    pub profile: u8,
    /// The profile's state (its line).
    pub line: u8,
    /// Class.
    pub class: CommandClass,
    /// Capacity step, if any.
    pub step: Option<u16>,
    /// The part of the run it was sent in.
    pub phase: RunPhase,
    /// Counted in the results (setup and chaos requests are not).
    pub measured: bool,
    /// Told when the request ends (setup steps wait on it).
    pub notify: Option<oneshot::Sender<End>>,
}

/// How a connection behaves when it drops.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Where to reconnect, in order of preference after the one that dropped
    /// (behind a balancer: the balancer again; several `--url`s: the next).
    pub targets: Arc<[Target]>,
    /// Ask the server to hold running commands over a drop (`Configure {
    /// reattach }`), so that they are taken over with `Attach`; without it,
    /// commands running at a drop are killed by the server, and recorded here
    /// as `Dropped`.
    pub reattach: bool,
    /// Give up reconnecting after this long (the engine is gone for good).
    pub give_up: Duration,
    /// Set at the end of the run: a drop then is not reconnected.
    pub stop: Arc<AtomicBool>,
    /// The directory every session works under once set up (the fixture):
    /// a session opened again after a drop must come back resumed, under it.
    pub home: Arc<str>,
}

/// A live connection: queue frames to it, and its reader records answers.
/// When it drops it reconnects by itself (the next target when the one it was
/// on does not answer), opens its sessions again by name (their cwd and env
/// come back from the server's session store) and re-attaches every request
/// it had written; the users on it queue commands meanwhile.
pub struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    link: Arc<Link>,
    next_id: AtomicU32,
    task: tokio::task::JoinHandle<()>,
}

/// One connection's state shared by its owner and the task that carries it.
struct Link {
    pending: Mutex<HashMap<RequestId, Pending>>,
    /// Sessions opened on it, to open again after a drop.
    sessions: Mutex<Vec<(SessionId, String)>>,
    /// Connected now.
    alive: AtomicBool,
    rec: Arc<Recorder>,
    tenant: String,
    source: Option<IpAddr>,
    /// Sessions opened again after a drop whose `SessionOpened` is still to come.
    reopening: AtomicU32,
    /// See [`Reconnect::home`].
    home: Arc<str>,
    /// The writer's queue, for requests sent again (weak: the owner's
    /// sender alone keeps the writer going).
    queue: mpsc::WeakUnboundedSender<Message>,
    /// Frames queued for the writer and not yet on the socket: a command is
    /// written directly ([`Link::send_direct`]) only when there are none, so
    /// it never overtakes an `OpenSession` or another command.
    queued: AtomicUsize,
    /// The socket's write half and its codec while connected, shared by the
    /// writer task and the direct path. Weak: the task that carries the
    /// connection owns it, so the socket closes when that task ends or is
    /// aborted, whoever still holds the `Conn`.
    sink: Mutex<Weak<SinkCell>>,
    /// `Welcome.connection` of the connection now (a written request's home).
    conn_id: AtomicU64,
    /// Requests the direct path left in the WebSocket's buffer (the socket
    /// was full): the writer flushes them and stamps their send.
    unflushed: Mutex<Vec<RequestId>>,
    /// Tells the writer to flush what the direct path left buffered.
    flush: tokio::sync::Notify,
}

/// A command made ready before its due time ([`Conn::ready`]).
pub struct Ready {
    exec: Exec,
    frame: Option<Encoded>,
}

/// An `Exec` frame encoded ahead, and the connection whose codec made it
/// (`Welcome.connection`: a reconnect negotiates a codec anew).
struct Encoded {
    bytes: Vec<u8>,
    conn: u64,
}

/// `exec` as one frame of `codec`.
fn encode_exec(codec: &mut Codec, exec: &Exec) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    codec
        .encode(&Message::Exec(exec.clone()), &mut buf)
        .ok()
        .map(|()| buf)
}

/// The write half of the socket.
type Sink = futures_util::stream::SplitSink<Ws, WsMessage>;
/// The write half and its codec, under the lock both writers take.
type SinkCell = tokio::sync::Mutex<Option<(Sink, Codec)>>;

impl Link {
    /// The server never received `request` on the connection that dropped
    /// (`NotReceived`): it did not run, so it is written again as it was,
    /// on the connection there is now.
    fn send_again(&self, request: RequestId) {
        let exec = {
            let mut pending = self.pending.lock();
            let Some(p) = pending.get_mut(&request) else {
                return;
            };
            p.home = None;
            p.sent = None;
            p.resend.clone()
        };
        let queued = exec
            .zip(self.queue.upgrade())
            .is_some_and(|(exec, queue)| self.enqueue(&queue, Message::Exec(exec)));
        if queued {
            self.rec.resent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues `msg` for the writer, counted in `queued`.
    fn enqueue(&self, queue: &mpsc::UnboundedSender<Message>, msg: Message) -> bool {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let ok = queue.send(msg).is_ok();
        if !ok {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        ok
    }

    /// Writes `exec` (registered as `request`) on the socket from the
    /// caller's thread, when that can be done now without waiting: the
    /// scheduling thread sends at the due time itself, instead of handing
    /// the command to the writer task and waiting for that task to be woken
    /// (on two busy cores, most of the send lag: p50 0.13 ms). `frame` is
    /// `exec` encoded ahead ([`Conn::ready`]), used when the connection is
    /// still the one whose codec made it. False when it was not written (the
    /// writer busy or the socket not ready, frames queued ahead of it, no
    /// connection): the caller queues it.
    fn send_direct(&self, request: RequestId, exec: &Exec, frame: Option<Encoded>) -> bool {
        use futures_util::Sink as _;
        use std::task::{Context, Poll};
        let Some(cell) = self.sink.lock().upgrade() else {
            return false;
        };
        let Ok(mut guard) = cell.try_lock() else {
            return false;
        };
        if self.queued.load(Ordering::Acquire) > 0 {
            return false;
        }
        let Some((sink, codec)) = guard.as_mut() else {
            return false;
        };
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        if !matches!(
            std::pin::Pin::new(&mut *sink).poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ) {
            return false;
        }
        // Encoded ahead by this connection's codec, unless it reconnected
        // since (a new codec, negotiated anew).
        let now = self.conn_id.load(Ordering::Relaxed);
        let buf = match frame.filter(|f| f.conn == now) {
            Some(f) => f.bytes,
            None => match encode_exec(codec, exec) {
                Some(buf) => buf,
                None => return false,
            },
        };
        // Its home from now on, as the writer sets it before it writes: if
        // the socket fails, the reconnect re-attaches it.
        if let Some(p) = self.pending.lock().get_mut(&request) {
            p.home = Some(self.conn_id.load(Ordering::Relaxed));
        }
        self.rec
            .bytes_out
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        // Stamped as the write starts (as wrk2 does): on loopback the write
        // call itself carries the message through the server's side of TCP
        // and wakes its reader, a cost every client pays, the floor's too.
        let writing = Instant::now();
        if std::pin::Pin::new(&mut *sink)
            .start_send(WsMessage::Binary(buf.into()))
            .is_err()
        {
            return true;
        }
        match std::pin::Pin::new(&mut *sink).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {
                if let Some(p) = self.pending.lock().get_mut(&request) {
                    p.sent = Some(writing);
                }
            }
            // The socket failed: the reader sees it, the reconnect re-attaches.
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                self.unflushed.lock().push(request);
                self.flush.notify_one();
            }
        }
        true
    }
}

impl Conn {
    /// Connects, handshakes and starts the task that carries the connection
    /// (and reconnects it, per `reconnect`).
    pub async fn open(
        t: &Target,
        tenant: &str,
        source: Option<IpAddr>,
        rec: Arc<Recorder>,
        reconnect: Reconnect,
    ) -> anyhow::Result<Conn> {
        let mut ws = connect_ws(t, source).await?;
        let (codec, id) = handshake_welcome(&mut ws, t, tenant).await?;
        if reconnect.reattach {
            send_now(&mut ws, &codec, &[configure()]).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        let link = Arc::new(Link {
            pending: Mutex::default(),
            sessions: Mutex::default(),
            alive: AtomicBool::new(true),
            rec,
            tenant: tenant.to_owned(),
            source,
            reopening: AtomicU32::new(0),
            home: reconnect.home.clone(),
            queue: tx.downgrade(),
            queued: AtomicUsize::new(0),
            sink: Mutex::new(Weak::new()),
            conn_id: AtomicU64::new(id),
            unflushed: Mutex::default(),
            flush: tokio::sync::Notify::new(),
        });
        let at = reconnect
            .targets
            .iter()
            .position(|x| x.url == t.url)
            .unwrap_or(0);
        let task = tokio::spawn(carry(link.clone(), reconnect, at, ws, codec, id, rx));
        Ok(Conn {
            tx,
            link,
            next_id: AtomicU32::new(1),
            task,
        })
    }

    /// Whether it is connected now.
    pub fn is_alive(&self) -> bool {
        self.link.alive.load(Ordering::Relaxed)
    }

    /// Queues `OpenSession` (and remembers it, to open it again after a drop).
    pub fn open_session(&self, session: SessionId, name: &str) -> bool {
        self.link.sessions.lock().push((session, name.to_owned()));
        self.link.enqueue(
            &self.tx,
            Message::OpenSession(OpenSession {
                session,
                name: name.to_owned(),
            }),
        )
    }

    /// Queues an `Exec` and registers it; false when the connection is gone.
    pub fn exec(&self, session: SessionId, command: String, timeout_ms: u32, p: Pending) -> bool {
        let ready = Ready {
            exec: self.make_exec(session, command, timeout_ms),
            frame: None,
        };
        self.send_via(ready, p, false)
    }

    fn make_exec(&self, session: SessionId, command: String, timeout_ms: u32) -> Exec {
        Exec {
            request: self.next_id.fetch_add(1, Ordering::Relaxed),
            session,
            command,
            priority: Priority::Normal,
            timeout_ms,
            cache: CacheMode::Default,
        }
    }

    /// Makes a command ready to be written: its request number taken and,
    /// when the codec is free now, its frame encoded. The scheduling thread
    /// does this while it waits for the due time, so that at the due time
    /// only the write is left ([`Conn::send_ready`]).
    pub fn ready(&self, session: SessionId, command: String, timeout_ms: u32) -> Ready {
        let exec = self.make_exec(session, command, timeout_ms);
        let frame = self.link.sink.lock().upgrade().and_then(|cell| {
            let mut guard = cell.try_lock().ok()?;
            let (_, codec) = guard.as_mut()?;
            Some(Encoded {
                bytes: encode_exec(codec, &exec)?,
                conn: self.link.conn_id.load(Ordering::Relaxed),
            })
        });
        Ready { exec, frame }
    }

    /// Registers and sends a command made ready earlier, from the scheduling
    /// thread: written on the socket from this thread when that can be done
    /// at once ([`Link::send_direct`]), queued for the writer otherwise.
    /// Only that thread, which does nothing else: the capacity search's
    /// generator, a tokio task, fell behind its arrivals writing inline
    /// (capacity 2,000 cmds/s in two 10,000-user runs, 4,000 queued).
    pub fn send_ready(&self, ready: Ready, p: Pending) -> bool {
        self.send_via(ready, p, true)
    }

    fn send_via(&self, ready: Ready, mut p: Pending, direct: bool) -> bool {
        let Ready { exec, frame } = ready;
        let request = exec.request;
        p.resend = Some(exec.clone());
        self.link.pending.lock().insert(request, p);
        if direct && self.link.send_direct(request, &exec, frame) {
            return true;
        }
        let sent = self.link.enqueue(&self.tx, Message::Exec(exec));
        if !sent {
            self.link.pending.lock().remove(&request);
        }
        sent
    }

    /// Measured requests still without a terminal frame.
    pub fn outstanding(&self) -> u64 {
        self.link
            .pending
            .lock()
            .values()
            .filter(|p| p.measured)
            .count() as u64
    }

    /// Stops the connection (the socket is dropped without a close handshake).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// `Configure` asking only for re-attach.
fn configure() -> Message {
    Message::Configure(Configure {
        suggestions: 0,
        rejections: false,
        reattach: true,
    })
}

/// Writes `msgs` as one WebSocket message, outside the writer loop.
async fn send_now(ws: &mut Ws, codec: &Codec, msgs: &[Message]) -> anyhow::Result<()> {
    let mut c = codec.clone_settings();
    let mut buf = Vec::new();
    for m in msgs {
        c.encode(m, &mut buf)?;
    }
    ws.send(WsMessage::Binary(buf.into())).await?;
    Ok(())
}

/// Carries one connection for its whole life: the writer and the reader until
/// the socket drops, then a reconnect with re-attach, until the run stops or
/// no target answers within `give_up`.
async fn carry(
    link: Arc<Link>,
    reconnect: Reconnect,
    mut at: usize,
    mut ws: Ws,
    mut codec: Codec,
    mut id: u64,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    loop {
        let (sink, stream) = ws.split();
        let cell: Arc<SinkCell> = Arc::new(tokio::sync::Mutex::new(Some((
            sink,
            codec.clone_settings(),
        ))));
        *link.sink.lock() = Arc::downgrade(&cell);
        link.conn_id.store(id, Ordering::Relaxed);
        tokio::select! {
            () = write_loop(&link, &mut rx, &cell, id) => {}
            () = read_loop(&link, stream, codec, id) => {}
        }
        // The old socket closes now, even if the direct path holds the cell.
        *cell.lock().await = None;
        drop(cell);
        link.alive.store(false, Ordering::Relaxed);
        if reconnect.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some((next, w, c, new_id)) = reopen(&link, &reconnect, at).await else {
            return;
        };
        (at, ws, codec, id) = (next, w, c, new_id);
        // A resume that fails leaves a socket the next round sees drop.
        if let Err(e) = resume(&link, &reconnect, &mut ws, &codec).await {
            tracing::debug!(error = %e, "resume after reconnect failed");
        }
        link.rec.reconnects.fetch_add(1, Ordering::Relaxed);
        link.alive.store(true, Ordering::Relaxed);
    }
}

/// Connects again, trying the target it was on, then the others in order,
/// with a growing pause, until one handshakes or `give_up` passes.
async fn reopen(link: &Link, r: &Reconnect, at: usize) -> Option<(usize, Ws, Codec, u64)> {
    let deadline = Instant::now() + r.give_up;
    let mut pause = Duration::from_millis(20);
    let n = r.targets.len().max(1);
    let mut i = 0usize;
    while Instant::now() < deadline && !r.stop.load(Ordering::Relaxed) {
        let k = (at + i) % n;
        let t = r.targets.get(k)?;
        if let Ok(mut ws) = connect_ws(t, link.source).await {
            if let Ok((codec, id)) = handshake_welcome(&mut ws, t, &link.tenant).await {
                return Some((k, ws, codec, id));
            }
        }
        i += 1;
        if i % n == 0 {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    None
}

/// On a new connection (`Welcome.connection` `id`): re-attach on, the
/// sessions opened again, and every request written before taken over with
/// `Attach`, naming the connection it was last on — or, without re-attach,
/// recorded as dropped (the server killed it with the connection).
async fn resume(link: &Link, r: &Reconnect, ws: &mut Ws, codec: &Codec) -> anyhow::Result<()> {
    let mut msgs = Vec::new();
    if r.reattach {
        msgs.push(configure());
    }
    {
        let sessions = link.sessions.lock();
        link.reopening
            .store(sessions.len() as u32, Ordering::Relaxed);
        msgs.extend(sessions.iter().map(|(session, name)| {
            Message::OpenSession(OpenSession {
                session: *session,
                name: name.clone(),
            })
        }));
    }
    let now = Instant::now();
    let mut dropped = Vec::new();
    {
        let mut pending = link.pending.lock();
        let written: Vec<RequestId> = pending
            .iter()
            .filter(|(_, p)| p.home.is_some())
            .map(|(id, _)| *id)
            .collect();
        for request in written {
            if r.reattach {
                let Some((p, home)) = pending
                    .get_mut(&request)
                    .and_then(|p| p.home.map(|h| (p, h)))
                else {
                    continue;
                };
                // It stays the old connection's until the server says it
                // took it over (`Notice { Reattached }`): if this one drops
                // first, the next Attach names the old one again, which the
                // server follows to wherever the request went.
                msgs.push(Message::Attach(Attach {
                    request,
                    connection: home,
                    session: p.session,
                    after_seq: None,
                }));
            } else if let Some(p) = pending.remove(&request) {
                dropped.push(p);
            }
        }
    }
    for p in dropped {
        finish(&link.rec, p, End::Dropped, None, now);
    }
    send_now(ws, codec, &msgs).await
}

/// Takes queued frames, coalesces them into WebSocket messages and writes
/// them, stamping each `Exec`'s actual send; flushes what the direct path left
/// buffered; returns when the socket fails.
async fn write_loop(
    link: &Link,
    rx: &mut mpsc::UnboundedReceiver<Message>,
    cell: &SinkCell,
    id: u64,
) {
    let mut ids = Vec::new();
    loop {
        let first = tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => Some(msg),
                None => break,
            },
            () = link.flush.notified() => None,
        };
        let mut guard = cell.lock().await;
        let Some((sink, wcodec)) = guard.as_mut() else {
            return;
        };
        let mut buf = Vec::with_capacity(128);
        let mut next = first;
        let mut taken = 0usize;
        ids.clear();
        while let Some(msg) = next.take() {
            taken += 1;
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
        if !ids.is_empty() {
            let mut pending = link.pending.lock();
            for req in &ids {
                if let Some(p) = pending.get_mut(req) {
                    p.home = Some(id);
                }
            }
        }
        link.rec
            .bytes_out
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        // What the direct path left in the WebSocket's buffer goes with this flush.
        ids.append(&mut link.unflushed.lock());
        let writing = Instant::now();
        let written = if buf.is_empty() {
            sink.flush().await
        } else {
            sink.send(WsMessage::Binary(buf.into())).await
        };
        link.queued.fetch_sub(taken, Ordering::AcqRel);
        if written.is_err() {
            return;
        }
        if !ids.is_empty() {
            let mut pending = link.pending.lock();
            for req in &ids {
                if let Some(p) = pending.get_mut(req) {
                    p.sent = Some(writing);
                }
            }
        }
    }
    // The run is over and the connection dropped by its owner.
    std::future::pending::<()>().await;
}

/// Routes every terminal frame to its request's record; returns when the
/// socket closes or fails.
async fn read_loop(
    link: &Link,
    mut stream: futures_util::stream::SplitStream<Ws>,
    mut rcodec: Codec,
    id: u64,
) {
    while let Some(msg) = stream.next().await {
        let bytes = match msg {
            Ok(WsMessage::Binary(b)) => b,
            Ok(WsMessage::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        link.rec
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        for frame in rcodec.decode(&bytes) {
            let (request, end, backend_us) = match frame {
                Ok(Message::Exit(e)) => (
                    e.request,
                    End::Exit(e.code, e.served_from),
                    Some(e.backend_us),
                ),
                Ok(Message::Error(e)) if e.code == ErrorCode::NotReceived => {
                    if let Some(request) = e.request {
                        link.send_again(request);
                    }
                    continue;
                }
                Ok(Message::Error(e)) => match e.request {
                    Some(request) => (request, End::Error(e.code), None),
                    None => continue,
                },
                Ok(Message::Notice(n)) if n.kind == NoticeKind::Reattached => {
                    // Taken over: the next Attach, if any, names this connection.
                    if let Some(p) = link.pending.lock().get_mut(&n.request) {
                        p.home = Some(id);
                    }
                    link.rec.reattached.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Ok(Message::SessionOpened(o)) => {
                    let after_drop = link
                        .reopening
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                    if after_drop {
                        // Users `cd` around the project: in it, not at its root.
                        let intact = o.resumed && o.cwd.starts_with(&*link.home);
                        let counter = match intact {
                            true => &link.rec.sessions_intact,
                            false => &link.rec.sessions_changed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(p) = link.pending.lock().remove(&request) else {
                continue;
            };
            finish(&link.rec, p, end, backend_us, now);
        }
    }
}

/// Records a request's end (when measured) and tells whoever waits on it;
/// `backend_us`: the server's own span, from its `Exit`.
fn finish(rec: &Recorder, p: Pending, end: End, backend_us: Option<u64>, now: Instant) {
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
            line: p.line,
            class: p.class,
            end,
            backend_us,
            step: p.step,
            phase: p.phase,
        });
    }
    if let Some(n) = p.notify {
        let _ = n.send(end);
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

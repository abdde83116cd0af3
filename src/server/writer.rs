//! The writer task: the only owner of a connection's socket write half.
//!
//! It waits for one outbound frame, then takes every other frame already queued
//! (up to `coalesce_bytes`), encodes them all into one WebSocket message and
//! flushes once. When the client is idle that is one answer per message with
//! no added delay; under load it keeps collecting for up to `coalesce_delay`
//! and turns many small frames into few syscalls (see [`run`]). The queue
//! in front of it is bounded, so a client that stops reading fills only its own
//! queue and blocks only its own commands' output.
//!
//! A cancelled request's output that is still queued is dropped here
//! ([`Cancelled`]): after `Cancel` during a flood, its `Exit` would otherwise
//! wait behind megabytes of output the client no longer wants.

use super::context::Transport;
use crate::metrics::Metrics;
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use voxterm_protocol::{Codec, Compression, Encoding, Message, RequestId};

/// Requests cancelled while their output may still be queued: the reader
/// adds one on `Cancel`, the writer drops its queued `Output` frames and
/// forgets it when its terminal frame goes by. Costs one atomic load per
/// frame while nothing is cancelled.
#[derive(Default)]
pub(super) struct Cancelled {
    count: AtomicUsize,
    ids: Mutex<HashSet<RequestId>>,
}

impl Cancelled {
    /// `request` was cancelled: its queued output may go.
    pub(super) fn add(&self, request: RequestId) {
        if crate::sync::lock(&self.ids).insert(request) {
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether an `Output` of `request` is to be dropped.
    fn drops(&self, request: RequestId) -> bool {
        self.count.load(Ordering::Acquire) > 0 && crate::sync::lock(&self.ids).contains(&request)
    }

    /// `request` ended (its terminal frame is going out): its id may be reused.
    fn ended(&self, request: RequestId) {
        if self.count.load(Ordering::Acquire) > 0 && crate::sync::lock(&self.ids).remove(&request) {
            self.count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The writer's queue: bounded (`write_queue` frames), so that a client that
/// stops reading blocks only its own commands, and closed for the writer when
/// every sender is gone.
///
/// Not tokio's `mpsc`: its channel allocates its first block of 32 slots
/// (~1.6 KiB) when made, and every connection held one for its whole life,
/// idle or not (issue 17, part 7). Here the frames wait in a `VecDeque`
/// that grows on first use and is released when the writer finds it empty
/// with room for more than [`KEEP_SLOTS`]; the bound is a semaphore's permits.
pub(super) fn queue(bound: usize) -> (Tx, Rx) {
    let q = Arc::new(Queue {
        items: Mutex::new(VecDeque::new()),
        space: Semaphore::new(bound.max(1)),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    (
        Tx(q.clone()),
        Rx {
            queue: q,
            taken: VecDeque::new(),
        },
    )
}

/// Slots an idle queue keeps: a few frames' worth, so that a connection
/// answering one request at a time never reallocates.
const KEEP_SLOTS: usize = 8;

struct Queue {
    items: Mutex<VecDeque<Outbound>>,
    /// Free places in the queue.
    space: Semaphore,
    /// Wakes the writer: a frame was queued, or the last sender went.
    ready: Notify,
    senders: AtomicUsize,
}

/// The sending side of the writer's queue; cheap to clone.
pub(super) struct Tx(Arc<Queue>);

/// The writer is gone (the connection ended): the frame was not queued.
#[derive(Debug)]
pub(super) struct Closed;

impl Tx {
    /// Queues `item`, waiting while the queue is full.
    pub(super) async fn send(&self, item: Outbound) -> Result<(), Closed> {
        // Room is the usual case: taken without building the waiting future.
        // That future is boxed when needed: inline, it made this one (and
        // every future that sends a frame: a request's, a cached replay's)
        // ~150 bytes larger for a wait that happens only under backpressure.
        let permit = match self.0.space.try_acquire() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                Box::pin(self.0.space.acquire()).await.map_err(|_| Closed)?
            }
        };
        permit.forget();
        crate::sync::lock(&self.0.items).push_back(item);
        self.0.ready.notify_one();
        Ok(())
    }

    /// Queues `item` if there is room now; gives it back when there is not
    /// (the queue full, or the writer gone).
    pub(super) fn try_send(&self, item: Outbound) -> Result<(), Outbound> {
        let Ok(permit) = self.0.space.try_acquire() else {
            return Err(item);
        };
        permit.forget();
        crate::sync::lock(&self.0.items).push_back(item);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl Tx {
    /// A handle that does not keep the queue open (the acker's).
    pub(super) fn downgrade(&self) -> WeakTx {
        WeakTx(Arc::downgrade(&self.0))
    }
}

/// A sender that does not keep the writer's queue open: [`WeakTx::upgrade`]
/// gives a [`Tx`] only while some other sender still exists.
pub(super) struct WeakTx(std::sync::Weak<Queue>);

impl WeakTx {
    /// A sender, unless every one is gone (the writer then ends).
    pub(super) fn upgrade(&self) -> Option<Tx> {
        let q = self.0.upgrade()?;
        let mut n = q.senders.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return None;
            }
            match q
                .senders
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Tx(q)),
                Err(now) => n = now,
            }
        }
    }
}

impl Clone for Tx {
    fn clone(&self) -> Tx {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Tx(self.0.clone())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: the writer may be waiting for a frame that never comes.
            self.0.ready.notify_one();
        }
    }
}

/// The writer's end of its queue, with the frames it took from the queue
/// in one go and has not handled yet.
pub(super) struct Rx {
    queue: Arc<Queue>,
    taken: VecDeque<Outbound>,
}

impl Rx {
    /// The next frame, or None once the queue is empty and every sender gone.
    async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.queue.senders.load(Ordering::Acquire) == 0 {
                // A frame queued just before the last sender left is still taken.
                return self.try_recv();
            }
            {
                let mut items = crate::sync::lock(&self.queue.items);
                if items.is_empty() && items.capacity() > KEEP_SLOTS {
                    *items = VecDeque::new();
                }
            }
            if self.taken.capacity() > KEEP_SLOTS {
                self.taken = VecDeque::new();
            }
            // A `notify_one` since the check above left a permit: no lost wake-up.
            self.queue.ready.notified().await;
        }
    }

    /// A frame already queued, if any. Everything queued is taken at once
    /// (the two deques swap, so their allocations are reused) and its places
    /// freed with one `add_permits`: per frame, the queue's lock and the
    /// semaphore's were ~3 % of a cached request's instructions. Frames taken
    /// are no longer counted against the bound, so at most twice the bound
    /// waits, and only while the writer is draining (a writer stuck on the
    /// socket takes nothing).
    fn try_recv(&mut self) -> Option<Outbound> {
        if let Some(item) = self.taken.pop_front() {
            return Some(item);
        }
        let taken = {
            let mut items = crate::sync::lock(&self.queue.items);
            std::mem::swap(&mut *items, &mut self.taken);
            self.taken.len()
        };
        if taken == 0 {
            return None;
        }
        self.queue.space.add_permits(taken);
        self.taken.pop_front()
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        // Senders waiting for room learn that nobody will read.
        self.queue.space.close();
    }
}

/// What the rest of the connection hands the writer.
#[derive(Debug)]
pub(super) enum Outbound {
    /// A frame to send.
    Frame(Message),
    /// Switch encoding and compression for every later frame (after `Welcome`).
    Configure(Encoding, Compression),
    /// Send a close frame and stop.
    Close(CloseCode, &'static str),
    /// Send a WebSocket Ping (keepalive); the peer's Pong proves it is alive.
    Ping,
    /// Send a WebSocket Ping carrying this epoch after the frames queued
    /// before it; its Pong acknowledges them (`replay`).
    AckPing(u64),
    /// Work to do once the frames queued before it are written: what a
    /// request leaves for after its answer (its line to learn), so that the
    /// answer never waits for it.
    After(After),
}

/// Work for the writer to run after its next write ([`Outbound::After`]).
pub(super) struct After(Box<dyn FnOnce() + Send>);

impl After {
    /// `work`, to run after the write.
    pub(super) fn new(work: impl FnOnce() + Send + 'static) -> After {
        After(Box::new(work))
    }

    /// Runs it now.
    pub(super) fn run(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("After(..)")
    }
}

pub(super) type Sink = SplitSink<WebSocketStream<Transport>, WsMessage>;

/// How the writer batches frames into WebSocket messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Coalesce {
    /// Off: one frame per message, one flush each (`--no-batch`).
    pub enabled: bool,
    /// Largest message built from several frames.
    pub max_bytes: usize,
    /// Under load, how long to keep collecting frames before the flush.
    pub delay: Duration,
}

/// What one batch took, for the coalescing rule ([`run`]).
#[derive(Default)]
struct Load {
    frames: usize,
    /// The request of the batch's first frame.
    request: Option<RequestId>,
    /// A frame of another request, or of none, was taken too.
    mixed: bool,
    /// The first request's terminal frame was taken.
    ended: bool,
}

impl Load {
    fn add(&mut self, msg: &Message) {
        let (request, terminal) = match msg {
            Message::Output(o) => (Some(o.request), false),
            Message::Exit(e) => (Some(e.request), true),
            Message::Error(e) => (e.request, e.request.is_some()),
            _ => (None, false),
        };
        match (self.frames, self.request, request) {
            (0, _, Some(r)) => self.request = Some(r),
            (_, Some(first), Some(r)) if first == r => {}
            _ => self.mixed = true,
        }
        self.ended |= terminal && !self.mixed;
        self.frames += 1;
    }

    /// Several frames were waiting, and they are more than one request's
    /// whole answer: load, worth collecting for. A cached answer (its
    /// `Output` and `Exit`, queued together) is not: it goes at once, as
    /// the floor's does, instead of yielding to every other ready task
    /// first (an `epoll_wait` and the others' work on each answer's way
    /// out): `loadtest --scenario quick`'s plain client, p50 of a cached
    /// round trip 171 → 145 µs (medians of five alternating runs each).
    fn is_load(&self) -> bool {
        self.frames >= 2 && (self.mixed || !self.ended)
    }
}

/// Runs until every sender is gone (then sends the close frame, if one was asked
/// for) or the socket fails.
///
/// Coalescing with a latency bound: the writer always sends at once what it has
/// when nothing else is queued (an idle client never waits), or when what was
/// queued is one request's whole answer (a cached one's `Output` and `Exit`:
/// see [`Load`]). When more was already queued behind the first frame (load), it yields to the scheduler so
/// that request tasks that are ready can add theirs, and keeps collecting while
/// new frames keep coming, for at most `delay` or until `max_bytes`. Yielding
/// instead of sleeping matters: tokio's timer has millisecond resolution, far
/// above the ~200 µs bound.
///
/// An `async move` block, not an `async fn`: an `async fn` keeps its
/// arguments twice in its future, as captured and as moved into its body
/// (rust-lang/rust#62958), 168 bytes of every connection's writer.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(super) fn run(
    mut sink: Sink,
    mut rx: Rx,
    mut codec: Codec,
    metrics: Arc<Metrics>,
    coalesce: Coalesce,
    cancelled: Arc<Cancelled>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let mut close = None;
        let max_bytes = if coalesce.enabled {
            coalesce.max_bytes
        } else {
            0
        };
        // Work for after the write, kept across batches (its allocation too).
        let mut after: Vec<After> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut buf = Vec::with_capacity(256);
            let mut ping = false;
            let mut ack: Option<u64> = None;
            let mut next = Some(first);
            let mut load = Load::default();
            let mut deadline: Option<Instant> = None;
            loop {
                while let Some(item) = next.take() {
                    match item {
                        Outbound::Frame(Message::Output(o)) if cancelled.drops(o.request) => {}
                        Outbound::Frame(msg) => {
                            match &msg {
                                Message::Exit(e) => cancelled.ended(e.request),
                                Message::Error(e) => {
                                    if let Some(r) = e.request {
                                        cancelled.ended(r);
                                    }
                                }
                                _ => {}
                            }
                            load.add(&msg);
                            if let Err(e) = codec.encode(&msg, &mut buf) {
                                tracing::error!(error = %e, kind = msg.kind(), "cannot encode frame");
                            }
                        }
                        Outbound::Configure(encoding, compression) => {
                            codec.set_encoding(encoding);
                            codec.set_compression(compression);
                        }
                        // The close frame goes out last: frames queued after it (the final
                        // `Exit`s of requests ending while the connection closes) still go first.
                        Outbound::Close(code, reason) => close = close.or(Some((code, reason))),
                        Outbound::Ping => ping = true,
                        Outbound::AckPing(epoch) => ack = Some(epoch),
                        Outbound::After(work) => after.push(work),
                    }
                    if buf.len() < max_bytes {
                        next = rx.try_recv();
                    }
                }
                // Only under load and with room left.
                if !load.is_load() || buf.len() >= max_bytes || coalesce.delay.is_zero() {
                    break;
                }
                let until = *deadline.get_or_insert_with(|| Instant::now() + coalesce.delay);
                if Instant::now() >= until {
                    break;
                }
                tokio::task::yield_now().await;
                next = rx.try_recv();
                if next.is_none() {
                    break;
                }
            }
            // Inline, not a helper `async fn`: that one kept its arguments
            // twice in its future, ~150 bytes of every idle connection.
            let written = 'write: {
                if !buf.is_empty() {
                    metrics.add_bytes_out(buf.len());
                    if sink.feed(WsMessage::Binary(buf.into())).await.is_err() {
                        break 'write false;
                    }
                }
                if ping
                    && sink
                        .feed(WsMessage::Ping(Default::default()))
                        .await
                        .is_err()
                {
                    break 'write false;
                }
                if let Some(epoch) = ack {
                    let payload = epoch.to_be_bytes().to_vec();
                    if sink.feed(WsMessage::Ping(payload.into())).await.is_err() {
                        break 'write false;
                    }
                }
                sink.flush().await.is_ok()
            };
            // Written (or never to be): what waited for it runs now, even
            // when the socket failed, since it is the engine's, not the client's.
            for work in after.drain(..) {
                work.run();
            }
            if after.capacity() > KEEP_SLOTS {
                after = Vec::new();
            }
            if !written {
                break;
            }
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(WsMessage::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(item: Option<Outbound>) -> Option<u64> {
        match item {
            Some(Outbound::AckPing(n)) => Some(n),
            _ => None,
        }
    }

    /// A cached answer's `Exit` of `request`.
    fn exit(request: RequestId) -> Message {
        Message::Exit(voxterm_protocol::Exit {
            request,
            code: Some(0),
            signal: None,
            served_from: voxterm_protocol::ServedFrom::L1,
            backend_us: 20,
            truncated: false,
            killed: voxterm_protocol::KillReason::None,
        })
    }

    /// One request's whole answer goes at once; more is load.
    #[test]
    fn one_whole_answer_is_not_load_and_more_is() {
        use voxterm_protocol::{Error, ErrorCode, Output, StreamKind};
        let out = |request| {
            Message::Output(Output {
                request,
                stream: StreamKind::Stdout,
                seq: 0,
                data: b"hello\n".to_vec(),
            })
        };
        let error = |request| {
            Message::Error(Error {
                request,
                code: ErrorCode::Malformed,
                message: String::new(),
            })
        };
        let load = |frames: &[Message]| {
            let mut l = Load::default();
            frames.iter().for_each(|m| l.add(m));
            l.is_load()
        };
        assert!(!load(&[exit(1)]));
        assert!(!load(&[out(1), exit(1)]), "a cached answer");
        assert!(!load(&[out(1), out(1), error(Some(1))]));
        assert!(load(&[out(1), out(1)]), "a stream still running");
        assert!(load(&[out(1), exit(1), out(2)]), "two requests");
        assert!(load(&[exit(1), exit(2)]));
        assert!(load(&[out(1), error(None), exit(1)]), "a frame of none");
    }

    #[tokio::test]
    async fn frames_keep_their_order_and_taking_them_frees_their_places() {
        let (tx, mut rx) = queue(2);
        tx.send(Outbound::AckPing(1)).await.expect("room");
        tx.send(Outbound::AckPing(2)).await.expect("room");
        // Full: a third waits for room.
        assert!(tx.try_send(Outbound::AckPing(3)).is_err());
        let third = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(Outbound::AckPing(3)).await.is_ok() }
        });
        // Taking the first takes both queued frames and frees both places.
        assert_eq!(id(rx.try_recv()), Some(1));
        assert!(third.await.expect("task"), "room was made");
        tx.send(Outbound::AckPing(4)).await.expect("room");
        assert_eq!(id(rx.try_recv()), Some(2));
        assert_eq!(id(rx.try_recv()), Some(3));
        assert_eq!(id(rx.try_recv()), Some(4));
        assert!(rx.try_recv().is_none());
        // Every sender gone: the writer learns it once the queue is empty.
        tx.send(Outbound::AckPing(5)).await.expect("room");
        drop(tx);
        assert_eq!(id(rx.recv().await), Some(5));
        assert!(rx.recv().await.is_none());
    }

    /// An `Exit` and the work its request left for after it, queued together
    /// (one batch): the work runs once the `Exit` is on the client's socket.
    #[tokio::test]
    async fn work_queued_after_a_frame_runs_once_the_frame_is_written() {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        client.set_nonblocking(true).expect("nonblocking");
        let server = tokio::net::TcpStream::from_std(server).expect("tokio socket");
        let ws = WebSocketStream::from_raw_socket(
            crate::security::tls::MaybeTls::Plain(server),
            Role::Server,
            None,
        )
        .await;
        let (sink, _stream) = futures_util::StreamExt::split(ws);
        let (tx, rx) = queue(8);
        let exit = exit(7);
        let seen = Arc::new(AtomicUsize::new(0));
        let (seen_by_work, peer) = (seen.clone(), client.try_clone().expect("clone"));
        tx.send(Outbound::Frame(exit)).await.expect("room");
        tx.send(Outbound::After(After::new(move || {
            let mut buf = [0u8; 64];
            let n = peer.peek(&mut buf).unwrap_or(0);
            seen_by_work.store(n, Ordering::Relaxed);
        })))
        .await
        .expect("room");
        drop(tx);
        let coalesce = Coalesce {
            enabled: true,
            max_bytes: 64 * 1024,
            delay: Duration::ZERO,
        };
        let codec = Codec::new(voxterm_protocol::CodecSettings::default());
        run(
            sink,
            rx,
            codec,
            Arc::new(Metrics::new()),
            coalesce,
            Arc::default(),
        )
        .await;
        assert!(
            seen.load(Ordering::Relaxed) > 0,
            "the work ran before the Exit reached the client's socket"
        );
        drop(client);
    }
}

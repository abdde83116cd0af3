//! What one connection's reader and its request tasks share: the writer's
//! queue, the requests in flight and the connection's own counters.
//!
//! The reader registers a request here before its task starts; the task
//! removes it when it queues the request's terminal frame. It is its own
//! module so that `request` can use it without depending on `connection`,
//! which starts the requests.

use super::replay::{Acks, Home, Route};
use super::writer::{Cancelled, Outbound, Tx};
use crate::exec::Feed;
use crate::output::SinkClosed;
use crate::security::Security;
use crate::session::Session;
use crate::sync::lock;
use crate::Cancel;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{Message, RequestId};

/// One request in flight.
pub(super) struct InFlight {
    /// Fires on `Cancel` (and when the connection ends).
    pub cancel: Cancel,
    /// A `Spawn`'s input; `None` for an `Exec` (its stdin is `/dev/null`).
    pub input: Option<InputPort>,
}

/// The reader's end of a `Spawn`'s input: where `Input` and `Resize` frames
/// go, and how much the client may still send.
pub(super) struct InputPort {
    /// To the command's input side (`exec::Feed`), in order.
    pub feed: mpsc::UnboundedSender<Feed>,
    /// Bytes the client may still send: the window granted, less what it
    /// sent, plus what the command consumed since (the request's sink adds
    /// those as it sends `InputCredit`). The feed never holds more than this.
    pub credit: Arc<AtomicU64>,
    /// The request has a terminal (`Resize` is allowed).
    pub pty: bool,
    /// `Input { end: true }` came: later input is refused.
    pub ended: bool,
}

/// What the reader and the connection's request tasks share.
pub(super) struct Shared {
    /// The writer's queue.
    pub out: Tx,
    /// Limits the request tasks apply (the tenant's output budget).
    pub security: Arc<Security>,
    /// Cancelled requests whose queued output the writer drops.
    pub cancelled: Arc<Cancelled>,
    /// Each request in flight: the token that cancels it and, for a
    /// `Spawn`, where its input goes.
    in_flight: Mutex<HashMap<RequestId, InFlight, crate::sync::NumHash>>,
    /// Set when the connection ends: every request in flight is cancelled
    /// then, and one registered after it starts cancelled. (Not a parent
    /// token of the requests' tokens: a child token takes the parent's lock
    /// when made and when dropped, twice per request on a lock every request
    /// of the connection shares; and a flag costs an idle connection nothing.)
    ended: AtomicBool,
    /// Signalled when `in_flight` becomes empty (the drain waits on it).
    emptied: Notify,
    /// When the connection started; `last_end_ms` counts from here.
    born: Instant,
    /// Milliseconds after `born` when the last request ended (for the idle
    /// timeout). An atomic rather than an `Instant` behind a lock: request
    /// tasks store it on every end, the reader reads it only when its idle
    /// timer fires.
    last_end_ms: AtomicU64,
    /// Requests this connection had accepted (a tenant's own `Stats`).
    requests: AtomicU64,
    /// Requests of this connection that ended with an `Error`, and `Error`
    /// frames about no request (a tenant's own `Stats`).
    errors: AtomicU64,
    /// Suggestions to send after each `Exec` (`Configure`, as granted); 0
    /// sends none. Read by the request tasks as they end.
    suggestions: AtomicU8,
    /// Set when re-attach is granted (`Configure.reattach`): requests then
    /// send through routes that keep their output until acknowledged.
    reattach: OnceLock<Reattach>,
}

/// A connection's re-attach state, made when it is granted: a connection
/// that never asks for it holds none of it (not even the acker's stop
/// token, ~112 bytes per idle connection; issue 17, part 7).
struct Reattach {
    acks: Arc<Acks>,
    /// Stops the acker when the connection ends.
    acker_stop: CancellationToken,
}

/// Where a request's frames go: straight to the writer, or through a route
/// that keeps them for re-attach.
#[derive(Clone)]
pub(super) enum Out {
    /// The connection's writer queue.
    Direct(Tx),
    /// A route (`replay`), when the connection asked for re-attach.
    Routed(Arc<Route>),
}

impl Out {
    /// Queues `msg`; fails when nobody will ever read it.
    pub async fn send(&self, msg: Message) -> Result<(), SinkClosed> {
        match self {
            Out::Direct(tx) => tx.send(Outbound::Frame(msg)).await.map_err(|_| SinkClosed),
            // Boxed: re-attach is opt-in, and inline its state (~450 bytes)
            // would be part of every request's future.
            Out::Routed(route) => Box::pin(route.send(msg)).await,
        }
    }
}

impl Shared {
    /// The state of a connection just opened, whose writer reads `out`.
    pub fn new(out: Tx, security: Arc<Security>, cancelled: Arc<Cancelled>) -> Self {
        Shared {
            out,
            security,
            cancelled,
            in_flight: Mutex::new(HashMap::default()),
            ended: AtomicBool::new(false),
            emptied: Notify::new(),
            born: Instant::now(),
            last_end_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            suggestions: AtomicU8::new(0),
            reattach: OnceLock::new(),
        }
    }

    /// The requests in flight. Hold the guard briefly: request tasks take it
    /// to finish.
    pub fn in_flight(&self) -> MutexGuard<'_, HashMap<RequestId, InFlight, crate::sync::NumHash>> {
        lock(&self.in_flight)
    }

    /// Registers an accepted request and gives the token that cancels it
    /// (which also fires when the connection ends). `input`: a `Spawn`'s.
    pub fn register(&self, request: RequestId, input: Option<InputPort>) -> Cancel {
        let token = Cancel::new();
        let entry = InFlight {
            cancel: token.clone(),
            input,
        };
        let mut map = self.in_flight();
        // Checked under the map's lock, which `cancel_all` takes after firing:
        // either this entry is in the map when it cancels them, or this sees it fired.
        if self.ended.load(Ordering::Acquire) {
            token.cancel();
        }
        map.insert(request, entry);
        drop(map);
        self.requests.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// Where `request` (running in `session`) sends its frames: through a
    /// route when re-attach is on, else straight to the writer (the session's
    /// key is only built for a route: nothing on the plain path).
    pub fn out_for(self: &Arc<Self>, request: RequestId, session: &Session) -> Out {
        match self.acks() {
            Some(acks) => Out::Routed(acks.route(
                request,
                (session.tenant().clone(), session.name().into()),
                Home {
                    shared: self.clone(),
                    acks: acks.clone(),
                },
            )),
            None => Out::Direct(self.out.clone()),
        }
    }

    /// Turns re-attach on (routes of `cap` bytes) and starts the acker, once.
    pub fn enable_reattach(&self, cap: usize) {
        let mut fresh = false;
        let reattach = self.reattach.get_or_init(|| {
            fresh = true;
            Reattach {
                acks: Acks::new(cap),
                acker_stop: CancellationToken::new(),
            }
        });
        if fresh {
            tokio::spawn(
                reattach
                    .acks
                    .clone()
                    .run(self.out.downgrade(), reattach.acker_stop.clone()),
            );
        }
    }

    /// The acknowledgement state, when re-attach is on.
    pub fn acks(&self) -> Option<&Arc<Acks>> {
        self.reattach.get().map(|r| &r.acks)
    }

    /// Stops the acker (the connection ended).
    pub fn stop_acker(&self) {
        if let Some(reattach) = self.reattach.get() {
            reattach.acker_stop.cancel();
        }
    }

    /// Makes a request taken over by `Attach` one of this connection's.
    pub fn adopt(&self, request: RequestId, entry: InFlight) {
        let mut map = self.in_flight();
        // As in `register`: a connection that already ended cancels it now.
        if self.ended.load(Ordering::Acquire) {
            entry.cancel.cancel();
        }
        map.insert(request, entry);
    }

    /// Takes a request's in-flight entry (its connection dropped).
    pub fn take_in_flight(&self, request: RequestId) -> Option<InFlight> {
        self.in_flight().remove(&request)
    }

    /// How many suggestions to send after each `Exec` (0: none).
    pub fn suggestions(&self) -> usize {
        usize::from(self.suggestions.load(Ordering::Relaxed))
    }

    /// Sets what `Configure` granted.
    pub fn set_suggestions(&self, n: u8) {
        self.suggestions.store(n, Ordering::Relaxed);
    }

    /// Counts an `Error` frame sent on this connection.
    pub fn errored(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a request that finished at `now` (the caller's clock read,
    /// which it times the request with too: one read per request, not two).
    pub fn forget(&self, request: RequestId, now: Instant) {
        let mut map = self.in_flight();
        map.remove(&request);
        if map.is_empty() {
            self.emptied.notify_one();
            let ms = now.saturating_duration_since(self.born).as_millis() as u64;
            self.last_end_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Notified each time the last request in flight ends (the drain waits
    /// on it).
    pub fn emptied(&self) -> &Notify {
        &self.emptied
    }

    /// When the last request ended (the connection's start if none has).
    pub fn last_end(&self) -> Instant {
        self.born + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed))
    }

    /// Requests accepted and `Error` frames sent so far (a tenant's own `Stats`).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// Cancels every request of the connection: it has ended. The map is
    /// walked too: a request taken over by `Attach` holds a token of the
    /// connection it came from.
    pub fn cancel_all(&self) {
        self.ended.store(true, Ordering::Release);
        for entry in self.in_flight().values() {
            entry.cancel.cancel();
        }
    }
}

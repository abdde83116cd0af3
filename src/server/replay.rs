//! Output that survives a dropped connection (`Configure.reattach`).
//!
//! A connection that asked for re-attach sends each request's frames through
//! a [`Route`] instead of straight to the writer. The route keeps a copy of
//! every frame until the client is known to have it, so that when the
//! connection drops, a new connection can `Attach` and get exactly what the
//! client is missing (the `Output`s after the `seq` it names, and the one
//! terminal frame), then the rest as it comes.
//!
//! "Known to have it" needs no acknowledgement frames: the writer sends a
//! WebSocket Ping carrying an epoch number after the frames, and the client's
//! WebSocket stack answers it with a Pong carrying the same number only after
//! it has received everything before it (TCP keeps the order; browsers and
//! tungstenite answer pings by themselves). Each kept frame is tagged with the
//! epoch read *after* it was queued for the writer, so a Pong for epoch `e`
//! releases every frame tagged below `e` (a frame queued just before a ping is
//! kept one ping longer, never released early).
//!
//! The copy is bounded per request (`[server] detach_buffer`): a request whose
//! kept output reaches it waits for acknowledgements (connected) or for a
//! re-attach (detached), so its command's pipe fills and it waits; nothing is
//! dropped. A terminal frame always fits, so a request can always end.

use super::shared::Shared;
use super::writer::Outbound;
use crate::output::SinkClosed;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{Message, RequestId};

/// Tag of a frame never sent on any connection (produced while detached).
const UNSENT: u64 = u64::MAX;

/// A connection's acknowledgement state, once re-attach is granted.
pub(super) struct Acks {
    /// The epoch of the latest ack ping queued.
    epoch: AtomicU64,
    /// The highest epoch the client's Pongs echoed.
    acked: watch::Sender<u64>,
    /// The connection's routes: in flight, or ended with frames not yet
    /// acknowledged.
    routes: std::sync::Mutex<HashMap<RequestId, Arc<Route>>>,
    /// Woken when an `Attach` resent kept frames (the acker pings then);
    /// a request's own frames ask for their ping themselves
    /// ([`Acks::ping_behind`]).
    kept: Notify,
    /// Bytes a route may keep.
    cap: usize,
}

impl Acks {
    /// Acknowledgement state with routes of `cap` bytes each.
    pub(super) fn new(cap: usize) -> Arc<Acks> {
        Arc::new(Acks {
            epoch: AtomicU64::new(0),
            acked: watch::channel(0).0,
            routes: std::sync::Mutex::new(HashMap::new()),
            kept: Notify::new(),
            cap: cap.max(1),
        })
    }

    /// A new route for `request` (running in `session`), whose frames go to
    /// `home`.
    pub(super) fn route(&self, request: RequestId, session: SessionKey, home: Home) -> Arc<Route> {
        let route = Arc::new(Route {
            request,
            session,
            state: Mutex::new(RouteState {
                home: Some(home),
                frames: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                released_seq: None,
                ended: false,
                closed: false,
            }),
            room: Notify::new(),
            cap: self.cap,
        });
        crate::sync::lock(&self.routes).insert(request, route.clone());
        route
    }

    /// Adds a route taken over by `Attach`.
    pub(super) fn adopt(&self, route: Arc<Route>) {
        crate::sync::lock(&self.routes).insert(route.request, route);
    }

    /// Takes every route (the connection dropped: they are detached).
    pub(super) fn take_all(&self) -> Vec<Arc<Route>> {
        crate::sync::lock(&self.routes)
            .drain()
            .map(|(_, r)| r)
            .collect()
    }

    /// A Pong echoed `payload`: when it is one of our epochs, everything
    /// queued before that ping has reached the client.
    pub(super) fn pong(&self, payload: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let epoch = u64::from_be_bytes(bytes);
        if epoch <= self.epoch.load(Ordering::Acquire) {
            self.acked.send_if_modified(|a| {
                let newer = epoch > *a;
                if newer {
                    *a = epoch;
                }
                newer
            });
        }
    }

    /// The acker: while any route keeps unacknowledged frames, queue an ack
    /// ping (one outstanding at a time), and when its Pong comes release what
    /// it acknowledges, dropping routes that ended and have nothing left.
    /// Ends with `stop` (the connection ended) or when the writer is gone;
    /// it holds the writer's queue only weakly, so it never keeps it open.
    pub(super) async fn run(self: Arc<Self>, out: super::writer::WeakTx, stop: CancellationToken) {
        let mut acked = self.acked.subscribe();
        loop {
            let routes: Vec<Arc<Route>> =
                crate::sync::lock(&self.routes).values().cloned().collect();
            let mut pending = false;
            let acked_now = *acked.borrow_and_update();
            for route in routes {
                let (left, ended) = route.release(acked_now).await;
                if left == 0 && ended {
                    let mut map = crate::sync::lock(&self.routes);
                    if map
                        .get(&route.request)
                        .is_some_and(|r| Arc::ptr_eq(r, &route))
                    {
                        map.remove(&route.request);
                    }
                }
                pending |= left > 0;
            }
            if pending && acked_now >= self.epoch.load(Ordering::Acquire) {
                let Some(tx) = out.upgrade() else { return };
                let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                if tx.send(Outbound::AckPing(epoch)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = acked.changed() => if changed.is_err() { return },
                _ = self.kept.notified(), if !pending => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Queues an ack ping behind what `out` holds, unless one is already
    /// on its way (its Pong wakes the acker, which pings again for whatever
    /// is still kept then).
    ///
    /// A route calls this itself for a request's terminal frame (and, while
    /// its command runs, from its second kept frame on), instead of waking
    /// the acker for every frame kept: that wake was a task to
    /// schedule (and often a parked worker to unpark) on the answer's own
    /// way out, and its ping went out in a write of its own after the
    /// answer's (issue 17, part 1: a cached answer's server span 10 µs
    /// longer at the median with re-attach than without).
    async fn ping_behind(&self, out: &super::writer::Tx) {
        let epoch = self.epoch();
        if *self.acked.borrow() < epoch {
            return;
        }
        let next = epoch + 1;
        if self
            .epoch
            .compare_exchange(epoch, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The writer gone: the connection dropped and nothing will be
            // acknowledged on it anyway.
            let _ = out.send(Outbound::AckPing(next)).await;
        }
    }
}

/// Where a route's frames go while its request has a connection.
#[derive(Clone)]
pub(super) struct Home {
    /// The connection's shared state (its writer queue, its requests).
    pub shared: Arc<Shared>,
    /// Its acknowledgement state.
    pub acks: Arc<Acks>,
}

/// A session by tenant and name (what an `Attach`'s session must match).
pub(super) type SessionKey = (Arc<str>, Box<str>);

/// One request's frames on their way out, kept until acknowledged.
pub(super) struct Route {
    request: RequestId,
    /// The session the request runs in.
    pub session: SessionKey,
    state: Mutex<RouteState>,
    /// Woken when acknowledgements make room.
    room: Notify,
    cap: usize,
}

struct RouteState {
    /// The connection the frames go to; none while detached.
    home: Option<Home>,
    /// Kept frames, oldest first, with the epoch they were sent in.
    frames: VecDeque<(u64, Message)>,
    /// Output bytes in `frames`.
    bytes: usize,
    /// The `seq` the next `Output` will have.
    next_seq: u32,
    /// The highest `Output.seq` released as acknowledged.
    released_seq: Option<u32>,
    /// The terminal frame went through.
    ended: bool,
    /// The grace ran out: nothing more is taken.
    closed: bool,
}

/// Why an `Attach` cannot take a route over.
#[derive(Debug)]
pub(super) enum Refusal {
    /// `after_seq` names output the request has not produced yet.
    Future { after: u32, produced: Option<u32> },
    /// The client says it lacks output it acknowledged having.
    Behind { after: Option<u32>, released: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Future { after, produced: None } => {
                write!(f, "after_seq {after} is in the future: the request has sent no output yet")
            }
            Refusal::Future { after, produced: Some(last) } => write!(
                f,
                "after_seq {after} is in the future: the request's last output is seq {last}"
            ),
            Refusal::Behind { after, released } => write!(
                f,
                "after_seq {} is behind what this client acknowledged (seq {released}, by answering a ping after it)",
                after.map_or_else(|| "none".to_owned(), |a| a.to_string())
            ),
        }
    }
}

fn output_len(msg: &Message) -> usize {
    match msg {
        Message::Output(o) => o.data.len() + 16,
        _ => 16,
    }
}

fn is_terminal(msg: &Message) -> bool {
    matches!(msg, Message::Exit(_) | Message::Error(_))
}

impl Route {
    /// The request's id.
    pub(super) fn request(&self) -> RequestId {
        self.request
    }

    /// Sends `msg` (a frame of this request) to its connection, keeping a
    /// copy until the client acknowledges it. Waits while the copy is full,
    /// except for the terminal frame, which always fits.
    pub(super) async fn send(&self, msg: Message) -> Result<(), SinkClosed> {
        let terminal = is_terminal(&msg);
        loop {
            // Registered before the check, so a release between the check and
            // the wait is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let mut st = self.state.lock().await;
            if st.closed {
                return Err(SinkClosed);
            }
            if st.bytes >= self.cap && !terminal {
                drop(st);
                room.await;
                continue;
            }
            if let Message::Output(o) = &msg {
                st.next_seq = o.seq.wrapping_add(1);
            }
            if terminal {
                st.ended = true;
                if let Some(home) = &st.home {
                    // Forget the id before the client can see the end, so it
                    // may reuse the id at once.
                    home.shared.forget(self.request, std::time::Instant::now());
                }
            }
            st.bytes += output_len(&msg);
            let tag = match st.home.clone() {
                Some(home) => {
                    let sent = home.shared.out.send(Outbound::Frame(msg.clone())).await;
                    match sent {
                        Ok(()) => {
                            // Read after the frame was queued: a ping queued
                            // before it never releases it.
                            let tag = home.acks.epoch();
                            // A ping behind the request's last frame releases
                            // everything; a command still running asks from
                            // its second kept frame on, so that what it streams
                            // is released as it goes (a Pong wakes the acker,
                            // which pings again while frames are kept). A
                            // cached answer (one `Output`, its `Exit`) so
                            // takes one ping, right behind the `Exit`.
                            if terminal || !st.frames.is_empty() {
                                home.acks.ping_behind(&home.shared.out).await;
                            }
                            tag
                        }
                        // The writer is gone: the connection dropped. Kept
                        // unsent until an `Attach`.
                        Err(_) => {
                            st.home = None;
                            UNSENT
                        }
                    }
                }
                None => UNSENT,
            };
            st.frames.push_back((tag, msg));
            return Ok(());
        }
    }

    /// Releases the frames acknowledged by `acked`. Returns the frames left
    /// and whether the request has ended.
    async fn release(&self, acked: u64) -> (usize, bool) {
        let mut st = self.state.lock().await;
        let mut freed = false;
        while st.frames.front().is_some_and(|(tag, _)| *tag < acked) {
            let Some((_, msg)) = st.frames.pop_front() else {
                break;
            };
            st.bytes = st.bytes.saturating_sub(output_len(&msg));
            if let Message::Output(o) = &msg {
                st.released_seq = Some(o.seq);
            }
            freed = true;
        }
        if freed {
            self.room.notify_one();
        }
        (st.frames.len(), st.ended)
    }

    /// The connection dropped: frames are kept, not sent, until an `Attach`.
    pub(super) async fn detach(&self) {
        self.state.lock().await.home = None;
    }

    /// The grace ran out: the request may take nothing more (its command is
    /// being killed) and what was kept goes.
    pub(super) async fn close(&self) {
        let mut st = self.state.lock().await;
        st.closed = true;
        st.home = None;
        st.frames.clear();
        st.bytes = 0;
        self.room.notify_one();
    }

    /// Checks that `after_seq` is a place this route can resume from.
    pub(super) async fn check(&self, after_seq: Option<u32>) -> Result<(), Refusal> {
        let st = self.state.lock().await;
        let produced = st.next_seq.checked_sub(1);
        if let Some(after) = after_seq {
            if produced.map_or(true, |last| after > last) {
                return Err(Refusal::Future { after, produced });
            }
        }
        if let Some(released) = st.released_seq {
            if after_seq.map_or(true, |a| a < released) {
                return Err(Refusal::Behind {
                    after: after_seq,
                    released,
                });
            }
        }
        Ok(())
    }

    /// Takes the route over for `home`: sends the kept `Output`s after
    /// `after_seq` and the terminal frame if it came, then lets the request
    /// send there. `in_flight`: the request's entry for `home`'s in-flight
    /// map, put there unless the request has ended meanwhile. Returns whether
    /// it had ended.
    pub(super) async fn attach(
        &self,
        home: Home,
        after_seq: Option<u32>,
        in_flight: Option<super::shared::InFlight>,
    ) -> bool {
        let mut st = self.state.lock().await;
        let ended = st.ended;
        if !ended {
            if let Some(entry) = in_flight {
                home.shared.adopt(self.request, entry);
            }
        }
        let mut kept = VecDeque::with_capacity(st.frames.len());
        for (_, msg) in std::mem::take(&mut st.frames) {
            let skip = match (&msg, after_seq) {
                (Message::Output(o), Some(after)) => seq_at_or_before(o.seq, after),
                _ => false,
            };
            if skip {
                st.bytes = st.bytes.saturating_sub(output_len(&msg));
                continue;
            }
            let tag = match home.shared.out.send(Outbound::Frame(msg.clone())).await {
                Ok(()) => home.acks.epoch(),
                Err(_) => UNSENT,
            };
            kept.push_back((tag, msg));
        }
        st.frames = kept;
        home.acks.kept.notify_one();
        st.home = Some(home);
        self.room.notify_one();
        ended
    }
}

/// Whether `seq` is at or before `after` (no wrapping within one request's
/// kept output, which is far below 2^31 frames).
fn seq_at_or_before(seq: u32, after: u32) -> bool {
    after.wrapping_sub(seq) < (1 << 31)
}

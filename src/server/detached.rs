//! Requests whose connection dropped, held for `[server] detach_grace` so a
//! new connection of the same tenant can take them over (`Attach`).
//!
//! A held request keeps running: its command is not signalled, its output is
//! kept by its [`Route`] (bounded; beyond the bound the command waits), and
//! its session stays attached. When the grace runs out it is killed (its
//! cancel token fires, as a `Cancel` would) and forgotten: a later `Attach`
//! gets `RequestLost`, as one for a request this engine never had does.
//!
//! Three things make an `Attach` find what the client means, not only what
//! the server happened to see first:
//!
//! - **A drop the server has not noticed yet.** A phone that moves from
//!   Wi-Fi to mobile data reconnects within a second; its old socket may look
//!   open here until the dead-peer timer fires. An `Attach` naming a
//!   connection of its tenant that is still *open* ends that connection as
//!   lost (its client has evidently left it), waits for its requests to be
//!   held, then takes the one it names.
//! - **A request that never arrived.** A request written just as the link
//!   died may be lost in a balancer or a socket buffer. The server remembers,
//!   for the grace, what each dropped connection had received and not yet
//!   finished; a request that is neither held nor among those never ran here,
//!   and the answer says so (`NotReceived`), so that the client sends it
//!   again rather than lose the command its user spoke.
//! - **A request taken over twice.** A request taken over by a connection
//!   that dropped in turn before its client learned of it (the `Reattached`
//!   notice was lost with it) is still named by its first connection; the
//!   first connection's record forwards the `Attach` to where the request
//!   went.

use super::replay::Route;
use super::shared::InFlight;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::RequestId;

/// A connection of the process, by its tenant and `Welcome.connection`.
type Conn = (Arc<str>, u64);

/// A held request is found by its connection and its id there.
type Key = (Arc<str>, u64, RequestId);

/// How long an `Attach` waits for a still-open connection it named to be
/// torn down (its writer aborted, its requests handed over): moments
/// normally; the bound only keeps a wedged connection from holding the new
/// one's reader.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// At most this many forwards are followed (a request taken over again and
/// again within one grace); beyond it the answer is `RequestLost`.
const MAX_HOPS: usize = 16;

/// One held request.
pub(super) struct Held {
    /// Its frames, kept while nobody is attached.
    pub route: Arc<Route>,
    /// Its cancel token and input port, while it runs.
    pub in_flight: Option<InFlight>,
    /// The connection it is held under.
    connection: u64,
    /// When the grace runs out.
    deadline: Instant,
}

/// What a dropped connection leaves behind for its grace.
#[derive(Default)]
struct Dropped {
    /// The requests it had received and not finished when it dropped (held,
    /// or admitted and not yet started): the ones that did reach the server.
    received: HashSet<RequestId>,
    /// Requests taken over from it since, and the connection that took each.
    moved: HashMap<RequestId, u64>,
}

/// What the server knows of requests of dropped connections.
#[derive(Default)]
struct State {
    held: HashMap<Key, Held>,
    /// Open connections with re-attach on: ending one as lost is how an
    /// `Attach` takes over from a connection whose drop is not seen yet.
    open: HashMap<Conn, CancellationToken>,
    dropped: HashMap<Conn, Dropped>,
}

/// Every held request of the process, and what it knows of the connections
/// they came on.
#[derive(Default)]
pub(super) struct Detached {
    state: Mutex<State>,
    /// Woken whenever a connection leaves `open` (dropped or closed).
    left: Notify,
}

/// The answer to an `Attach`.
pub(super) enum Found {
    /// The request, now the asking connection's to adopt.
    Held(Held),
    /// The connection it names dropped within the grace and never received
    /// the request: it did not run, and may be sent again.
    NotReceived,
    /// Nothing known: ended or killed more than the grace ago, another
    /// tenant's, or another engine's.
    Lost,
}

/// What one look at the state says to do next.
enum Step {
    Found(Found),
    /// Follow the record to the connection that took the request.
    Forward(u64),
    /// The named connection is still open: end it, then look again.
    TakeOver(CancellationToken),
}

impl Detached {
    /// Registers an open connection with re-attach on; `lost` ends it as if
    /// its socket had failed. It leaves with [`Detached::hold`] or
    /// [`Detached::closed`].
    pub(super) fn open(&self, tenant: Arc<str>, connection: u64, lost: CancellationToken) {
        crate::sync::lock(&self.state)
            .open
            .insert((tenant, connection), lost);
    }

    /// A registered connection ended and holds nothing (closed by its client,
    /// or by shutdown: what it ran is killed with it).
    pub(super) fn closed(&self, tenant: &Arc<str>, connection: u64) {
        let gone = crate::sync::lock(&self.state)
            .open
            .remove(&(tenant.clone(), connection));
        if gone.is_some() {
            self.left.notify_waiters();
        }
    }

    /// Holds the requests of a dropped connection for `grace`, with what it
    /// had received (`received`: ids it admitted and had not finished,
    /// `requests`' among them), then kills and forgets the ones nobody took
    /// over and the connection's record.
    pub(super) fn hold(
        self: &Arc<Self>,
        tenant: Arc<str>,
        connection: u64,
        requests: Vec<(Arc<Route>, Option<InFlight>)>,
        received: HashSet<RequestId>,
        grace: Duration,
    ) {
        let deadline = Instant::now() + grace;
        let mut keys = Vec::with_capacity(requests.len());
        {
            let mut state = crate::sync::lock(&self.state);
            let conn = (tenant.clone(), connection);
            state.open.remove(&conn);
            state.dropped.insert(
                conn,
                Dropped {
                    received,
                    moved: HashMap::new(),
                },
            );
            for (route, in_flight) in requests {
                let key = (tenant.clone(), connection, route.request());
                keys.push(key.clone());
                state.held.insert(
                    key,
                    Held {
                        route,
                        in_flight,
                        connection,
                        deadline,
                    },
                );
            }
        }
        self.left.notify_waiters();
        tracing::debug!(%tenant, connection, requests = keys.len(), "connection dropped: its requests are held for re-attach");
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            let expired: Vec<(Key, Held)> = {
                let mut state = crate::sync::lock(&me.state);
                state.dropped.remove(&(tenant, connection));
                keys.into_iter()
                    .filter_map(|key| state.held.remove(&key).map(|held| (key, held)))
                    .collect()
            };
            for (key, held) in expired {
                tracing::debug!(tenant = %key.0, connection = key.1, request = key.2, "detach grace over: killed");
                expire(held).await;
            }
        });
    }

    /// Finds what `tenant`'s `Attach` of `request` on `connection` means, for
    /// the connection `me` that asks: the request taken out of its hold,
    /// following it where it was taken over and taking it from a connection
    /// still open; or why there is none.
    pub(super) async fn find(
        &self,
        tenant: &Arc<str>,
        connection: u64,
        request: RequestId,
        me: u64,
    ) -> Found {
        let mut at = connection;
        let mut taken_over = false;
        for _ in 0..MAX_HOPS {
            match self.look(tenant, at, request, me, taken_over) {
                Step::Found(found) => return found,
                Step::Forward(next) => {
                    at = next;
                    taken_over = false;
                }
                Step::TakeOver(lost) => {
                    tracing::debug!(%tenant, connection = at, by = me, "attach names an open connection: ending it as lost");
                    lost.cancel();
                    self.wait_left(tenant, at).await;
                    taken_over = true;
                }
            }
        }
        Found::Lost
    }

    /// One look at the state for [`Detached::find`].
    fn look(
        &self,
        tenant: &Arc<str>,
        at: u64,
        request: RequestId,
        me: u64,
        taken_over: bool,
    ) -> Step {
        let mut state = crate::sync::lock(&self.state);
        let conn = (tenant.clone(), at);
        if let Some(held) = state.held.remove(&(tenant.clone(), at, request)) {
            if let Some(dropped) = state.dropped.get_mut(&conn) {
                dropped.moved.insert(request, me);
            }
            return Step::Found(Found::Held(held));
        }
        if let Some(dropped) = state.dropped.get(&conn) {
            return match dropped.moved.get(&request) {
                Some(&next) if next != me => Step::Forward(next),
                Some(_) => Step::Found(Found::Lost),
                None if dropped.received.contains(&request) => Step::Found(Found::Lost),
                None => Step::Found(Found::NotReceived),
            };
        }
        match state.open.get(&conn) {
            Some(lost) if at != me && !taken_over => Step::TakeOver(lost.clone()),
            _ => Step::Found(Found::Lost),
        }
    }

    /// Waits (bounded) until `connection` is no longer open.
    async fn wait_left(&self, tenant: &Arc<str>, connection: u64) {
        let conn = (tenant.clone(), connection);
        let until = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if !crate::sync::lock(&self.state).open.contains_key(&conn) {
                return;
            }
            if tokio::time::timeout_at(until, left).await.is_err() {
                tracing::warn!(%tenant, connection, "a connection ended for a take-over did not end in time");
                return;
            }
        }
    }

    /// Puts back a request an `Attach` took but could not use, where it was
    /// held; one whose grace ran out meanwhile is killed now instead.
    pub(super) async fn put_back(&self, tenant: &Arc<str>, held: Held) {
        if Instant::now() >= held.deadline {
            return expire(held).await;
        }
        let (connection, request) = (held.connection, held.route.request());
        let mut state = crate::sync::lock(&self.state);
        if let Some(dropped) = state.dropped.get_mut(&(tenant.clone(), connection)) {
            dropped.moved.remove(&request);
        }
        state
            .held
            .insert((tenant.clone(), connection, request), held);
    }
}

/// Kills a held request and drops what it kept.
async fn expire(held: Held) {
    if let Some(in_flight) = held.in_flight {
        in_flight.cancel.cancel();
    }
    held.route.close().await;
}

//! Requests whose connection dropped, held for `[server] detach_grace` so a
//! new connection of the same tenant can take them over (`Attach`).
//!
//! A held request keeps running: its command is not signalled, its output is
//! kept by its [`Route`] (bounded; beyond the bound the command waits), and
//! its session stays attached. When the grace runs out it is killed (its
//! cancel token fires, as a `Cancel` would) and forgotten: a later `Attach`
//! gets `RequestLost`, as one for a request this engine never had does.

use super::replay::Route;
use super::shared::InFlight;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxterm_protocol::RequestId;

/// A held request is found by its tenant, the connection it came on
/// (`Welcome.connection`) and its id there.
type Key = (Arc<str>, u64, RequestId);

/// One held request.
pub(super) struct Held {
    /// Its frames, kept while nobody is attached.
    pub route: Arc<Route>,
    /// Its cancel token and input port, while it runs.
    pub in_flight: Option<InFlight>,
    /// When the grace runs out.
    deadline: Instant,
}

/// Every held request of the process.
#[derive(Default)]
pub(super) struct Detached {
    held: Mutex<HashMap<Key, Held>>,
}

impl Detached {
    /// Holds the requests of a dropped connection for `grace`, then kills
    /// and forgets the ones nobody took over.
    pub(super) fn hold(
        self: &Arc<Self>,
        tenant: Arc<str>,
        connection: u64,
        requests: Vec<(Arc<Route>, Option<InFlight>)>,
        grace: Duration,
    ) {
        if requests.is_empty() {
            return;
        }
        let deadline = Instant::now() + grace;
        let mut keys = Vec::with_capacity(requests.len());
        {
            let mut held = crate::sync::lock(&self.held);
            for (route, in_flight) in requests {
                let key = (tenant.clone(), connection, route.request());
                keys.push(key.clone());
                held.insert(
                    key,
                    Held {
                        route,
                        in_flight,
                        deadline,
                    },
                );
            }
        }
        tracing::debug!(%tenant, connection, requests = keys.len(), "connection dropped: its requests are held for re-attach");
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            for key in keys {
                let expired = crate::sync::lock(&me.held).remove(&key);
                if let Some(held) = expired {
                    tracing::debug!(tenant = %key.0, connection = key.1, request = key.2, "detach grace over: killed");
                    expire(held).await;
                }
            }
        });
    }

    /// Takes the held request `request` of `tenant`'s `connection`, if any.
    pub(super) fn take(
        &self,
        tenant: &Arc<str>,
        connection: u64,
        request: RequestId,
    ) -> Option<Held> {
        crate::sync::lock(&self.held).remove(&(tenant.clone(), connection, request))
    }

    /// Puts back a request an `Attach` took but could not use; one whose
    /// grace ran out meanwhile is killed now instead.
    pub(super) async fn put_back(
        &self,
        tenant: &Arc<str>,
        connection: u64,
        request: RequestId,
        held: Held,
    ) {
        if Instant::now() >= held.deadline {
            return expire(held).await;
        }
        crate::sync::lock(&self.held).insert((tenant.clone(), connection, request), held);
    }
}

/// Kills a held request and drops what it kept.
async fn expire(held: Held) {
    if let Some(in_flight) = held.in_flight {
        in_flight.cancel.cancel();
    }
    held.route.close().await;
}

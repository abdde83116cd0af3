//! The reader's clocks: the `Hello` deadline, the token's expiry (1008), the
//! idle timeout (1000, only while no request is in flight) and keepalive (a
//! WebSocket Ping every `ping_interval`; a peer that sent nothing since the
//! last one is dropped).
//!
//! They are kept together because they share one trick: the idle and expiry
//! timers are re-armed lazily, when they fire, not on every message. Traffic
//! then costs one `Instant` store per message ([`Timers::heard`]), not a timer
//! update. [`Timers::next`] says which clock rang; [`Connection::on_timer`]
//! decides what that means for the connection.

use super::{Connection, Ending, Step};
use crate::config::ServerConfig;
use crate::metrics::Refusal;
use crate::server::writer::Outbound;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};
use tokio::time::{Interval, MissedTickBehavior, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voxterm_protocol::{ErrorCode, Subject};

/// How long a timer that is off sleeps. Its branch is never polled anyway;
/// this only gives the `Sleep` a deadline.
const FAR: Duration = Duration::from_secs(365 * 86_400);

/// A configured duration where 0 means off.
fn or_far(d: Duration) -> Duration {
    if d.is_zero() {
        FAR
    } else {
        d
    }
}

/// Which clock rang.
pub(super) enum Ring {
    /// No `Hello` within the handshake timeout.
    HelloLate,
    /// The token the connection authenticated with has expired.
    Expired,
    /// The idle timer fired: maybe idle, maybe only due to be re-armed.
    Idle,
    /// Time to ping (or to find the peer dead).
    Keepalive,
}

/// The clocks of one connection, and when the peer was last heard from.
pub(super) struct Timers {
    // The sleeps are boxed so that `Timers` can be an ordinary field-by-field
    // struct (a `Sleep` must be pinned to be polled); none per message. The
    // Hello deadline is dropped once Hello is done and the expiry exists only
    // while armed: an idle connection keeps the two it needs.
    hello: Option<Pin<Box<Sleep>>>,
    expiry: Option<Pin<Box<Sleep>>>,
    /// Whether `expiry` is set to the grant's expiry (else it is off).
    expiry_armed: bool,
    idle: Pin<Box<Sleep>>,
    /// `idle_timeout`; zero: off.
    idle_after: Duration,
    keepalive: Interval,
    /// `ping_interval`; zero: off.
    ping_every: Duration,
    /// Any message from the peer (pongs included) proves it alive...
    last_heard: Instant,
    /// ...but only data messages count against the idle timeout.
    last_active: Instant,
    /// When the last keepalive Ping was queued.
    last_ping: Option<Instant>,
}

impl Timers {
    /// The clocks of a connection that starts now.
    pub fn start(cfg: &ServerConfig) -> Timers {
        // A client must say Hello within the handshake timeout, or it only holds a socket.
        let hello = Some(Box::pin(tokio::time::sleep(cfg.handshake_timeout)));
        let idle_after = cfg.idle_timeout;
        let idle = Box::pin(tokio::time::sleep(or_far(idle_after)));
        let expiry = None;
        let ping_every = cfg.ping_interval;
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + or_far(ping_every),
            or_far(ping_every),
        );
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Timers {
            hello,
            expiry,
            expiry_armed: false,
            idle,
            idle_after,
            keepalive,
            ping_every,
            last_heard: Instant::now(),
            last_active: Instant::now(),
            last_ping: None,
        }
    }

    /// Waits for the next clock to ring. The `Hello` deadline counts only
    /// while `awaiting_hello`. With every clock off it never completes.
    pub async fn next(&mut self, awaiting_hello: bool) -> Ring {
        if !awaiting_hello {
            self.hello = None;
        }
        tokio::select! {
            _ = ring(&mut self.hello), if awaiting_hello => Ring::HelloLate,
            _ = ring(&mut self.expiry), if self.expiry_armed => Ring::Expired,
            _ = &mut self.idle, if !self.idle_after.is_zero() => Ring::Idle,
            _ = self.keepalive.tick(), if !self.ping_every.is_zero() => Ring::Keepalive,
            else => std::future::pending().await,
        }
    }

    /// Something came from the peer; `active` when it was a data message
    /// (binary or text), which also holds the idle timeout off.
    pub fn heard(&mut self, active: bool) {
        self.heard_at(active, Instant::now());
    }

    /// [`heard`](Self::heard) at `now`, a clock reading the caller already has.
    pub fn heard_at(&mut self, active: bool, now: Instant) {
        self.last_heard = now;
        if active {
            self.last_active = self.last_heard;
        }
    }

    /// Sets the expiry clock to `expires`, once: after that it stays as set
    /// until [`Timers::disarm_expiry`].
    pub fn arm_expiry(&mut self, expires: Option<SystemTime>) {
        if self.expiry_armed {
            return;
        }
        if let Some(at) = expires {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            self.expiry = Some(Box::pin(tokio::time::sleep(left)));
            self.expiry_armed = true;
        }
    }

    /// Turns the expiry clock off, to be armed again from the grant (after a
    /// tokens reload, which may have moved the expiry).
    pub fn disarm_expiry(&mut self) {
        self.expiry_armed = false;
        self.expiry = None;
    }

    /// The idle timer fired: whether the connection has now been idle for
    /// `idle_timeout`, counted from the last data message or the end of the
    /// last request, whichever is later. If not (or if `busy`: requests in
    /// flight), the timer is re-armed for when it might be.
    fn idle_expired(&mut self, last_end: Instant, busy: bool) -> bool {
        let now = Instant::now();
        let since = self.last_active.max(last_end);
        if busy {
            self.idle.as_mut().reset((now + self.idle_after).into());
        } else if since + self.idle_after > now {
            self.idle.as_mut().reset((since + self.idle_after).into());
        } else {
            return true;
        }
        false
    }

    /// Whether the peer has sent nothing since the last keepalive Ping.
    fn peer_silent(&self) -> bool {
        self.last_ping.is_some_and(|sent| self.last_heard < sent)
    }

    /// A keepalive Ping was just queued (or skipped on a full queue).
    fn pinged(&mut self) {
        self.last_ping = Some(Instant::now());
    }
}

/// Waits for `sleep`; never, when there is none.
async fn ring(sleep: &mut Option<Pin<Box<Sleep>>>) {
    match sleep {
        Some(s) => s.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// What a clock ringing means for the connection.
    pub(super) async fn on_timer(&mut self, ring: Ring, timers: &mut Timers) -> Step {
        let metrics = &self.engine.metrics;
        match ring {
            Ring::HelloLate => {
                metrics.refused(Refusal::HandshakeTimeout);
                self.close(CloseCode::Policy, "no Hello within the handshake timeout")
                    .await;
                Step::Break(Ending::Orderly)
            }
            Ring::Expired => {
                metrics.refused(Refusal::TokenExpired);
                tracing::info!(conn = self.id, peer = %self.peer, "token expired: closing");
                self.reject(
                    Subject::Connection,
                    0,
                    ErrorCode::Unauthorized,
                    "token expired",
                )
                .await;
                self.close(CloseCode::Policy, "token expired").await;
                Step::Break(Ending::Orderly)
            }
            Ring::Idle => {
                let last_end = self.shared.last_end();
                let busy = !self.shared.in_flight().is_empty();
                if !timers.idle_expired(last_end, busy) {
                    return Step::Continue(());
                }
                metrics.refused(Refusal::IdleTimeout);
                tracing::debug!(conn = self.id, peer = %self.peer, "idle timeout");
                self.close(CloseCode::Normal, "idle timeout").await;
                Step::Break(Ending::Orderly)
            }
            Ring::Keepalive => {
                if timers.peer_silent() {
                    metrics.refused(Refusal::DeadPeer);
                    tracing::info!(conn = self.id, peer = %self.peer, "peer stopped answering pings: dropped");
                    // Not `send`: a dead peer's queue may be full for good.
                    let _ = self
                        .shared
                        .out
                        .try_send(Outbound::Close(CloseCode::Away, "keepalive timeout"));
                    return Step::Break(Ending::DeadPeer);
                }
                // A full queue means the peer is not reading: the ping is skipped,
                // and the peer must still show life before the next tick.
                let _ = self.shared.out.try_send(Outbound::Ping);
                timers.pinged();
                Step::Continue(())
            }
        }
    }
}

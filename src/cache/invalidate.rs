//! Push invalidation: one task per instance subscribed to
//! [`GENERATION_CHANNEL`], on which every bump is published (`L3::bump`), so
//! that another instance's write is seen at once instead of at the next poll.
//!
//! Polling stays the backstop and runs as before: a message only ever raises
//! a generation, exactly as a poll's answer would, so a lost message or a
//! dropped subscription costs speed (back to `generation_refresh`), never an
//! answer. A message also counts as a poll made at `since`, the moment this
//! task last knew the subscription live (sent SUBSCRIBE or a PING whose answer
//! came before the message): everything it delivers after that answer was
//! published after that moment, so the tenant is known as fresh as a GET
//! sent then would have made it, and no fresher.
//!
//! The subscription is a plain connection (RESP2 SUBSCRIBE), to the server or,
//! on a cluster, to one seed node (PUBLISH reaches every node over the cluster
//! bus), the next seed after each failure. It reconnects with backoff, pings
//! to find a connection that died silently, and ends when [`Subscriber`] is
//! stopped or dropped (with the cache).

use super::{pushed, Gens, GENERATION_CHANNEL};
use crate::metrics::Metrics;
use futures_util::{FutureExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Deadline of connecting, subscribing and each PING.
const DEADLINE: Duration = Duration::from_secs(2);
/// How often a live subscription is checked (and `since` moved on).
const PING_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a subscription ended (then the task reconnects).
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {DEADLINE:?}")]
    Timeout(#[from] tokio::time::error::Elapsed),
    #[error("connection closed")]
    Closed,
}

/// The running subscriber; stops it when dropped.
pub(super) struct Subscriber {
    stop: CancellationToken,
    live: Arc<AtomicBool>,
}

impl Subscriber {
    /// Starts the task (needs a tokio runtime). `seeds`: the URLs to try in turn.
    pub(super) fn start(seeds: Vec<String>, gens: Arc<Gens>, metrics: Arc<Metrics>) -> Subscriber {
        let stop = CancellationToken::new();
        let live = Arc::new(AtomicBool::new(false));
        let task = run(seeds, gens, metrics.clone(), live.clone());
        let (token, ended) = (stop.clone(), live.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
            // The connection went with the task.
            ended.store(false, Ordering::Relaxed);
            metrics.cache.generation_subscribed(false);
        });
        Subscriber { stop, live }
    }

    /// True while subscribed.
    pub(super) fn live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Ends the task; polling alone applies from then on.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Subscribes, and again after every loss, until stopped.
async fn run(seeds: Vec<String>, gens: Arc<Gens>, metrics: Arc<Metrics>, live: Arc<AtomicBool>) {
    let mut backoff = BACKOFF_MIN;
    for url in seeds.iter().cycle() {
        let e = match listen(url, &gens, &metrics, &live).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let redis = super::redact(url);
        if live.swap(false, Ordering::Relaxed) {
            metrics.cache.generation_subscribed(false);
            tracing::warn!(
                %redis,
                error = %e,
                "generation pub/sub lost; polling alone until it is back"
            );
            backoff = BACKOFF_MIN;
        } else {
            tracing::debug!(%redis, error = %e, "generation pub/sub: not subscribed yet");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription, applying messages until it fails.
async fn listen(
    url: &str,
    gens: &Gens,
    metrics: &Metrics,
    live: &AtomicBool,
) -> Result<std::convert::Infallible, Lost> {
    let client = redis::Client::open(url)?;
    let mut since = Instant::now();
    let (mut sink, mut stream) = tokio::time::timeout(DEADLINE, client.get_async_pubsub())
        .await??
        .split();
    tokio::time::timeout(DEADLINE, sink.subscribe(GENERATION_CHANNEL)).await??;
    live.store(true, Ordering::Relaxed);
    metrics.cache.generation_subscribed(true);
    tracing::info!(
        redis = %super::redact(url),
        channel = GENERATION_CHANNEL,
        "generation pub/sub subscribed"
    );
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => apply(&msg.ok_or(Lost::Closed)?, gens, since, metrics),
            _ = ping.tick() => {
                let sent = Instant::now();
                tokio::time::timeout(DEADLINE, sink.ping::<redis::Value>()).await??;
                // What came before the answer may predate `sent`: applied as of
                // the old `since` (all of it is queued by now: one reader, in order).
                while let Some(msg) = stream.next().now_or_never() {
                    apply(&msg.ok_or(Lost::Closed)?, gens, since, metrics);
                }
                since = sent;
            }
        }
    }
}

/// Applies one `<generation>:<tenant>` message.
fn apply(msg: &redis::Msg, gens: &Gens, since: Instant, metrics: &Metrics) {
    let parsed = std::str::from_utf8(msg.get_payload_bytes())
        .ok()
        .and_then(|p| p.split_once(':'))
        .and_then(|(g, tenant)| Some((g.parse::<u64>().ok()?, tenant)));
    match parsed {
        Some((generation, tenant)) => {
            pushed(gens, tenant, generation, since);
            metrics.cache.generation_message();
        }
        None => tracing::debug!("generation pub/sub: message ignored (not <generation>:<tenant>)"),
    }
}

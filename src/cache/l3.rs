//! L3: Redis, shared by every instance.
//!
//! One server through `redis::aio::ConnectionManager`, which reconnects by
//! itself (a bare `MultiplexedConnection` never does); or a Redis Cluster
//! (`[cache] redis_cluster = true`, the URL naming one or more seed nodes)
//! through redis-rs's async cluster client, which routes each command to the
//! master of its key's slot, follows MOVED/ASK and re-reads the slot map when a
//! master fails over. The first connection is made in the background and
//! retried, so a server starts even while Redis is down.
//!
//! Every command here touches one key (GET, SET, the generation's bump script
//! run with EVAL, which the server must allow), so none can cross hash slots
//! and no key needs a hash tag; the cluster client refuses a pipeline that
//! would cross slots (`CrossSlot`), which the breaker counts as a failure,
//! never a request's error. Generations are polled (a GET at most once per
//! `generation_refresh`, see `Cache::generation`) and, with
//! `generation_pubsub`, also pushed: the bump script PUBLISHes the new number
//! on [`GENERATION_CHANNEL`] (a Lua `PUBLISH` is a keyless command, allowed on
//! a cluster, whose bus carries it to every node) and `invalidate` listens.
//!
//! Redis is an optimization, never a dependency: every call has a deadline
//! (default 5 ms for lookups) past which it counts as a miss, and a circuit
//! breaker stops calling after a few consecutive failures, probing again after a
//! cooldown. Keys live under `voxterm:v1:` and every key has a TTL.

use super::entry::Entry;
use super::error::CacheError;
use super::key::Key;
use crate::metrics::{L3Failure, Metrics};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Deadline of a kept value's read or write (a session, the predictor's
/// model): generous, since losing one is seen by the user, and rare.
const BLOB_DEADLINE: Duration = Duration::from_secs(2);

/// Namespace of every key; the version changes with the key recipe or value layout.
pub const NAMESPACE: &str = "voxterm:v1:";

/// How long a tenant's generation key outlives its last bump: far longer than
/// any fs-read entry, so a reset to 0 cannot revive an entry.
const GENERATION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How long a generation bump on a cluster waits for a replica to have it
/// (`WAIT 1`): a master that dies right after an INCR its replica never saw
/// would hand the promoted replica an older generation, and a later bump would
/// reuse a number other engines already keyed entries under. Short: a replica
/// that is down costs each bump this much, never an error.
const GENERATION_REPLICA_WAIT_MS: u64 = 10;

/// The channel every generation bump is published on, as `<generation>:<tenant>`.
/// Channels are not keys: it cannot clash with the `gen:` keys.
pub const GENERATION_CHANNEL: &str = "voxterm:v1:gen";

/// The generation bump: INCR from at least `ARGV[1]`, and the key's TTL, in
/// one step (a script runs atomically; its one key keeps it in one slot); then,
/// when `ARGV[3]` names a channel, the new number and the tenant (`ARGV[4]`)
/// are published in the same round trip. `pcall`: a Redis user refused
/// PUBLISH still bumps (the others then see it when they poll).
/// Lua numbers are doubles: exact for every count below 2^53.
const BUMP_SCRIPT: &str = "\
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[1])
if v < floor then v = floor end
v = v + 1
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
if ARGV[3] ~= '' then
  redis.pcall('PUBLISH', ARGV[3], string.format('%d', v) .. ':' .. ARGV[4])
end
return v";

/// Settings of the L3 client.
#[derive(Debug, Clone)]
pub struct L3Config {
    /// `redis://…` URL; with `cluster`, one or more seed nodes separated by commas.
    pub url: String,
    /// `url` names nodes of a Redis Cluster rather than one server.
    pub cluster: bool,
    /// Lookup deadline.
    pub deadline: Duration,
    /// Deadline of writes and generation bumps.
    pub write_timeout: Duration,
    /// Values at least this large are compressed.
    pub compress_at: usize,
    /// Largest entry accepted from Redis.
    pub max_entry: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// Publish each generation bump on [`GENERATION_CHANNEL`], so that other
    /// instances see it before their next poll.
    pub publish_generations: bool,
}

/// The seed nodes of a cluster URL: `redis://a:7000,redis://b:7000` (a single
/// URL is one seed). Several, because the client learns the cluster's nodes
/// from whichever seed answers first, at start and whenever it has lost every
/// connection: a single seed that happens to be down would keep L3 off.
pub fn seeds(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Checks a Redis URL (with `cluster`, a list of seed URLs) without connecting.
pub fn check_url(url: &str, cluster: bool) -> Result<(), CacheError> {
    let bad = |e: redis::RedisError| CacheError::RedisUrl(e.to_string());
    if !cluster {
        if url.contains(',') {
            return Err(CacheError::RedisUrl(
                "several URLs name a Redis Cluster's seed nodes: set redis_cluster = true".into(),
            ));
        }
        return redis::Client::open(url).map(|_| ()).map_err(bad);
    }
    let nodes = seeds(url);
    if nodes.is_empty() {
        return Err(CacheError::RedisUrl("no Redis Cluster seed node".into()));
    }
    redis::cluster::ClusterClient::new(nodes)
        .map(|_| ())
        .map_err(bad)
}

/// The URL (or each seed of a list) without its password, for logs.
pub fn redact(url: &str) -> String {
    let one = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    };
    url.split(',').map(one).collect::<Vec<_>>().join(",")
}

/// One handle on Redis, a single server or a cluster; cheap to clone (both
/// are multiplexed, reconnecting handles), so each call takes its own.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How a connection is made: the same retry loop serves both kinds.
#[derive(Clone)]
enum Connector {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient),
}

impl Connector {
    fn new(cfg: &L3Config) -> Result<Connector, CacheError> {
        let bad = |e: redis::RedisError| CacheError::RedisUrl(e.to_string());
        check_url(&cfg.url, cfg.cluster)?;
        if !cfg.cluster {
            let client = redis::Client::open(cfg.url.as_str()).map_err(bad)?;
            let mc = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_millis(500))
                .set_response_timeout(Duration::from_secs(1))
                .set_number_of_retries(2)
                .set_max_delay(500);
            return Ok(Connector::Single(client, mc));
        }
        // Retries are few and short: every call has its own deadline far below
        // them, so a retry only matters to a request nobody waits for any more;
        // what matters is that a failed call makes the client look again (a
        // dead master's connection is dropped and the slot map re-read, which
        // finds the promoted replica).
        let client = ClusterClientBuilder::new(seeds(&cfg.url))
            .connection_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_secs(1))
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(bad)?;
        Ok(Connector::Cluster(client))
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match self {
            Connector::Single(client, mc) => {
                ConnectionManager::new_with_config(client.clone(), mc.clone())
                    .await
                    .map(Conn::Single)
            }
            Connector::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

/// Stops calling Redis after `threshold` consecutive failures for `cooldown`.
struct Breaker {
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls are skipped.
    open_until: AtomicU64,
    epoch: Instant,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn allow(&self) -> bool {
        self.now_ms() >= self.open_until.load(Ordering::Relaxed)
    }

    fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            // Half-open after the cooldown: the next call is the probe; if it fails
            // too the count is still past the threshold and the breaker reopens.
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            if self.open_until.swap(until, Ordering::Relaxed) < self.now_ms() {
                tracing::warn!(
                    failures = n,
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "redis unavailable: L3 off for a while, serving from L1/L2 and exec"
                );
            }
        }
    }
}

/// The Redis tier.
pub struct L3 {
    conn: Arc<RwLock<Option<Conn>>>,
    cfg: L3Config,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

enum Outcome<T> {
    Done(T),
    Failed,
}

impl L3 {
    /// Starts connecting in the background (needs a tokio runtime).
    pub fn start(cfg: L3Config, metrics: Arc<Metrics>) -> Result<Arc<L3>, CacheError> {
        let connector = Connector::new(&cfg)?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| CacheError::RedisUrl("no tokio runtime to run the client on".into()))?;
        let l3 = Arc::new(L3 {
            conn: Arc::new(RwLock::new(None)),
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                epoch: Instant::now(),
                threshold: cfg.breaker_failures.max(1),
                cooldown: cfg.breaker_cooldown,
            },
            cfg,
            metrics,
        });
        let slot = l3.conn.clone();
        let url = redact(&l3.cfg.url);
        let cluster = l3.cfg.cluster;
        handle.spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                match connector.connect().await {
                    Ok(m) => {
                        tracing::info!(redis = %url, cluster, "L3 connected");
                        if let Ok(mut s) = slot.write() {
                            *s = Some(m);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(redis = %url, error = %e, "L3 not reachable yet; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
        Ok(l3)
    }

    fn conn(&self) -> Option<Conn> {
        self.conn.read().ok().and_then(|c| c.clone())
    }

    /// True once the first connection was made (for tests and health).
    pub fn connected(&self) -> bool {
        self.conn().is_some()
    }

    /// Runs one call outside the breaker (neither refused by it nor counted
    /// in it), for the rare reads and writes whose loss the user would see.
    async fn call_unguarded<T, F, Fut>(&self, deadline: Duration, f: F) -> Outcome<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.conn() else {
            return Outcome::Failed;
        };
        match tokio::time::timeout(deadline, f(conn)).await {
            Ok(Ok(v)) => Outcome::Done(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Redis: a kept session or prediction model could not be read or written");
                Outcome::Failed
            }
            Err(_) => {
                tracing::warn!(deadline = ?deadline, "Redis: reading or writing a kept session or prediction model timed out");
                Outcome::Failed
            }
        }
    }

    /// Runs one Redis call under the breaker and a deadline, recording latency
    /// and failures.
    async fn call<T, F, Fut>(&self, deadline: Duration, f: F) -> Outcome<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allow() {
            self.metrics.cache.l3_skipped();
            return Outcome::Failed;
        }
        let Some(conn) = self.conn() else {
            self.metrics.cache.l3_skipped();
            return Outcome::Failed;
        };
        let start = Instant::now();
        let r = tokio::time::timeout(deadline, f(conn)).await;
        self.metrics.cache.l3_latency(start.elapsed().as_secs_f64());
        match r {
            Ok(Ok(v)) => {
                self.breaker.success();
                Outcome::Done(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "L3 call failed");
                self.metrics.cache.l3_failed(L3Failure::Error);
                self.breaker.failure();
                Outcome::Failed
            }
            Err(_) => {
                self.metrics.cache.l3_failed(L3Failure::Timeout);
                self.breaker.failure();
                Outcome::Failed
            }
        }
    }

    fn entry_key(key: Key) -> String {
        format!("{NAMESPACE}e:{key:032x}")
    }

    fn gen_key(tenant: &str) -> String {
        format!("{NAMESPACE}gen:{tenant}")
    }

    /// The entry under `key`; a miss on any failure or past the deadline.
    pub async fn get(&self, key: Key) -> Option<Entry> {
        let k = Self::entry_key(key);
        let value: Option<Vec<u8>> = match self
            .call(self.cfg.deadline, |mut c| async move {
                redis::cmd("GET").arg(k).query_async(&mut c).await
            })
            .await
        {
            Outcome::Done(v) => v,
            Outcome::Failed => None,
        };
        match Entry::decode(&value?, self.cfg.max_entry) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::debug!(error = %e, "L3 value ignored");
                self.metrics.cache.l3_failed(L3Failure::BadValue);
                None
            }
        }
    }

    /// Stores `entry` with a TTL (its remaining life), in the background.
    pub fn put(self: &Arc<Self>, key: Key, entry: &Entry) {
        let ttl_ms = entry.remaining().as_millis() as u64;
        if ttl_ms == 0 || !self.breaker.allow() {
            return;
        }
        let value = entry.encode(self.cfg.compress_at);
        let k = Self::entry_key(key);
        let me = self.clone();
        tokio::spawn(async move {
            me.call(me.cfg.write_timeout, |mut c| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        });
    }

    /// A value another part of the engine keeps in Redis under `{NAMESPACE}{name}`
    /// (a kept session, the predictor's model). Not a cache lookup: a session
    /// that fails to load starts fresh in the home directory, which the user
    /// sees, so it gets [`BLOB_DEADLINE`] and is not refused by the breaker
    /// (measured: 100 users moved at once by an engine's death onto a loaded
    /// engine tripped the breaker with the lookups' deadline, and 70 of their
    /// sessions came back fresh; see `loadtest --scenario failover`).
    pub async fn get_blob(&self, name: &str) -> Option<Vec<u8>> {
        let k = format!("{NAMESPACE}{name}");
        match self
            .call_unguarded(BLOB_DEADLINE, |mut c| async move {
                redis::cmd("GET")
                    .arg(k)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
        {
            Outcome::Done(v) => v,
            Outcome::Failed => None,
        }
    }

    /// Stores `value` under `{NAMESPACE}{name}` for `ttl`; false when it
    /// failed. As [`L3::get_blob`]: its own deadline, not the breaker's.
    pub async fn put_blob(&self, name: &str, value: Vec<u8>, ttl: Duration) -> bool {
        let k = format!("{NAMESPACE}{name}");
        let ttl_ms = ttl.as_millis().max(1) as u64;
        matches!(
            self.call_unguarded(BLOB_DEADLINE, |mut c| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await,
            Outcome::Done(())
        )
    }

    /// The tenant's generation as Redis has it (None: unknown, e.g. Redis down).
    pub async fn generation(&self, tenant: &str) -> Option<u64> {
        let k = Self::gen_key(tenant);
        match self
            .call(self.cfg.deadline, |mut c| async move {
                redis::cmd("GET")
                    .arg(k)
                    .query_async::<Option<u64>>(&mut c)
                    .await
            })
            .await
        {
            Outcome::Done(v) => Some(v.unwrap_or(0)),
            Outcome::Failed => None,
        }
    }

    /// Increments the tenant's generation for every instance, to at least
    /// `floor + 1` (the highest number the caller saw Redis hand out): a Redis
    /// that lost the key (a restart without persistence, a master that died
    /// before its replica had the last bump) never hands out a number an
    /// instance already keyed entries under. Returns the new value, which
    /// is also published when `publish_generations` is on.
    pub async fn bump(&self, tenant: &str, floor: u64) -> Option<u64> {
        let k = Self::gen_key(tenant);
        let ttl = GENERATION_TTL.as_millis() as u64;
        let cluster = self.cfg.cluster;
        let channel = if self.cfg.publish_generations {
            GENERATION_CHANNEL
        } else {
            ""
        };
        match self
            .call(self.cfg.write_timeout, |mut c| async move {
                let mut p = redis::pipe();
                p.cmd("EVAL")
                    .arg(BUMP_SCRIPT)
                    .arg(1)
                    .arg(&k)
                    .arg(floor)
                    .arg(ttl)
                    .arg(channel)
                    .arg(tenant);
                if !cluster {
                    return p.query_async::<(u64,)>(&mut c).await.map(|(v,)| v);
                }
                // WAIT in the same pipeline: the cluster client sends a pipeline
                // to the node of its first keyed command (EVAL's key), where a
                // WAIT of its own, keyless, would go to every master.
                p.cmd("WAIT")
                    .arg(1)
                    .arg(GENERATION_REPLICA_WAIT_MS)
                    .ignore()
                    .query_async::<(u64,)>(&mut c)
                    .await
                    .map(|(v,)| v)
            })
            .await
        {
            Outcome::Done(v) => Some(v),
            Outcome::Failed => None,
        }
    }
}

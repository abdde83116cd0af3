//! Faults for the `chaos` scenario, on connections of their own so that the
//! measured users see only the side effects (which is the point): abrupt
//! disconnects in the middle of commands, malformed frames, slow readers that stop
//! reading, reconnect storms, and (with `--with-redis`) a crash and restart of
//! the server's Redis. The faults take the middle third of the hold: the users
//! run alone before it (the pre-storm level: connected, warm) and after it (the
//! same users, the faults gone), and the run judges whether the server's memory
//! came back to that level (see [`ChaosSummary::judge_memory`]).

use crate::conn::{connect_ws, handshake, Target};
use crate::redis::RedisServer;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use voxterm_protocol::{CacheMode, Exec, Message, OpenSession, Priority};

/// What the chaos agent did and saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosSummary {
    /// Connections dropped with commands in flight.
    pub abrupt_disconnects: u64,
    /// Malformed messages sent.
    pub malformed_sent: u64,
    /// … answered with an `Error` frame or a close code (not silence).
    pub malformed_answered: u64,
    /// Slow-reader connections (stopped reading with output pending).
    pub slow_readers: u64,
    /// Reconnect storms.
    pub reconnect_storms: u64,
    /// Connections opened by storms.
    pub storm_connections: u64,
    /// Storm connections that failed.
    pub storm_failures: u64,
    /// Faults that could not be injected, and why.
    pub skipped: Vec<String>,
    /// Times the server's Redis was killed (SIGKILL) and started again.
    #[serde(default)]
    pub redis_restarts: u64,
    /// Time Redis was down during its restart, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_down_ms: Option<u64>,
    /// Whether the server wrote to the restarted Redis (it reconnected by
    /// itself); None without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_reconnected: Option<bool>,
    /// When the faults started and stopped, seconds from the start of the run:
    /// the users run alone for a third of the hold before, and a third after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_window_s: Option<(f64, f64)>,
    /// Server RSS before any user connected, bytes (for reading only: the users'
    /// own sessions and cache entries come on top of it by design).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_idle_before_bytes: Option<u64>,
    /// Server RSS just before the faults started, users connected and warm
    /// (median of the last samples before the storm), bytes: the level memory
    /// must come back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_pre_storm_bytes: Option<u64>,
    /// Highest server RSS sampled from the storm's start to the end of the hold, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_peak_bytes: Option<u64>,
    /// Server RSS at the end of the hold, a third of the hold after the last
    /// fault, the same users still connected (median of the last samples), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_post_storm_bytes: Option<u64>,
    /// How far `post` is above `pre`, %; the chaos run fails above
    /// [`MAX_RSS_AFTER_PCT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_post_vs_pre_pct: Option<f64>,
    /// Share of the storm's growth (peak − pre) given back by `post`, %: 100 = all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_recovered_pct: Option<f64>,
    /// Server RSS once every user had left too and the server had settled, bytes
    /// (for reading only: sessions outlive their connections by
    /// `session.idle_ttl` and the cache tiers stay filled, by design).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_idle_after_bytes: Option<u64>,
    /// Server connections still open when `idle_after` was taken (the monitor's
    /// own one included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_after: Option<u64>,
    /// What the server keeps by design, before and after the storm: it explains
    /// most of `post − pre` when there is any (fault sessions outlive their
    /// connections by `session.idle_ttl`; cache tiers fill up to `l1_bytes` and
    /// `l2_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained: Option<Retained>,
}

/// Server state retained by design, before and after the storm (users connected).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retained {
    /// Live sessions just before the storm.
    pub sessions_before: u64,
    /// Live sessions at the end of the hold.
    pub sessions_after: u64,
    /// Bytes the cache tiers (L1 summed over threads, plus L2) reported holding before.
    pub cache_bytes_before: u64,
    /// … and after.
    pub cache_bytes_after: u64,
    /// The server's live heap bytes before the storm (jemalloc's `allocated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_allocated_before: Option<u64>,
    /// … and at the end of the hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_allocated_after: Option<u64>,
}

/// Largest acceptable server RSS after the storm, % above the RSS before it
/// (issue 6: "memory back within 10 % of its pre-storm level").
pub const MAX_RSS_AFTER_PCT: f64 = 10.0;

impl ChaosSummary {
    /// Fills in the judged memory figures from the RSS just before the storm,
    /// the peak from then on and the RSS a calm third of the hold after it.
    pub fn judge_memory(&mut self, pre: u64, peak: u64, post: u64) {
        let peak = peak.max(pre).max(post);
        self.rss_pre_storm_bytes = Some(pre);
        self.rss_peak_bytes = Some(peak);
        self.rss_post_storm_bytes = Some(post);
        self.rss_recovered_pct =
            (peak > pre).then(|| peak.saturating_sub(post) as f64 / (peak - pre) as f64 * 100.0);
        self.rss_post_vs_pre_pct =
            (pre > 0).then(|| (post as f64 - pre as f64) / pre as f64 * 100.0);
    }

    /// Why the memory did not come back, if it did not.
    pub fn memory_failure(&self) -> Option<String> {
        let pct = self.rss_post_vs_pre_pct?;
        (pct > MAX_RSS_AFTER_PCT).then(|| {
            format!(
                "server memory did not come back after the chaos storm: {:.1} MiB after vs {:.1} MiB before ({pct:+.1}%, limit +{MAX_RSS_AFTER_PCT}%; `chaos.retained` shows the sessions and cache bytes kept by design)",
                self.rss_post_storm_bytes.unwrap_or(0) as f64 / 1048576.0,
                self.rss_pre_storm_bytes.unwrap_or(0) as f64 / 1048576.0,
            )
        })
    }
}

/// The Redis the chaos agent may restart, shared with whoever started it.
pub type SharedRedis = Arc<tokio::sync::Mutex<RedisServer>>;

/// How long Redis stays down during its restart: long enough that commands run
/// by the users meanwhile meet a dead L3.
const REDIS_DOWN: Duration = Duration::from_secs(3);

fn exec(request: u32, session: u32, command: &str) -> Message {
    Message::Exec(Exec {
        request,
        session,
        command: command.to_owned(),
        priority: Priority::Normal,
        timeout_ms: 0,
        cache: CacheMode::Default,
    })
}

/// Injects faults in a loop from `from` until `until` or `stop`; with `redis`,
/// also kills and restarts it once, halfway through.
pub async fn run(
    t: Target,
    root: String,
    from: Instant,
    until: Instant,
    stop: Arc<AtomicBool>,
    redis: Option<SharedRedis>,
) -> ChaosSummary {
    let mut s = ChaosSummary::default();
    tokio::time::sleep_until(from).await;
    let restart = match redis {
        Some(r) => {
            let at = from + until.saturating_duration_since(from) / 2;
            Some(tokio::spawn(restart_redis(r, at, until)))
        }
        None => {
            s.skipped.push(
                "Redis restart: no Redis of the load tester's own (run with --with-redis to have it start one for the server and restart it mid-run)".into(),
            );
            None
        }
    };
    let mut round = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        match round % 4 {
            0 => abrupt(&t, &root, &mut s).await,
            1 => malformed(&t, &mut s).await,
            2 => slow_reader(&t, &root, &mut s).await,
            _ => storm(&t, &mut s).await,
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    if let Some(h) = restart {
        match h.await {
            Ok(r) => {
                s.redis_restarts = r.restarts;
                s.redis_down_ms = r.down_ms;
                s.redis_reconnected = r.reconnected;
                s.skipped.extend(r.problem);
            }
            Err(e) => s
                .skipped
                .push(format!("Redis restart: the task failed: {e}")),
        }
    }
    s
}

/// What [`restart_redis`] did.
#[derive(Default)]
struct RedisRestart {
    restarts: u64,
    down_ms: Option<u64>,
    reconnected: Option<bool>,
    problem: Option<String>,
}

/// At `at`: SIGKILL Redis, leave it down for [`REDIS_DOWN`], start it again on
/// the same port (empty), then watch until `until` (at least 10 s) for the
/// server to store entries in it again, which shows it reconnected by itself.
async fn restart_redis(redis: SharedRedis, at: Instant, until: Instant) -> RedisRestart {
    let mut out = RedisRestart::default();
    tokio::time::sleep_until(at).await;
    let down = Instant::now();
    {
        let mut r = redis.lock().await;
        if let Err(e) = r.kill().await {
            out.problem = Some(format!("Redis restart: {e:#}"));
            return out;
        }
    }
    tokio::time::sleep(REDIS_DOWN).await;
    {
        let mut r = redis.lock().await;
        if let Err(e) = r.restart().await {
            out.problem = Some(format!("Redis restart: could not start it again: {e:#}"));
            return out;
        }
    }
    out.restarts = 1;
    out.down_ms = Some(down.elapsed().as_millis() as u64);
    let deadline = until.max(Instant::now() + Duration::from_secs(10));
    let mut reconnected = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if redis.lock().await.dbsize().await.unwrap_or(0) > 0 {
            reconnected = true;
            break;
        }
    }
    out.reconnected = Some(reconnected);
    out
}

async fn abrupt(t: &Target, root: &str, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    let Ok(mut codec) = handshake(&mut ws, t, "lt-chaos").await else {
        return;
    };
    let mut buf = Vec::new();
    let cd = format!("cd {}", crate::profile::shell_quote(root));
    for (i, m) in [
        exec(1, 0, &cd),
        exec(2, 0, "sleep 5"),
        exec(3, 0, "cat logs/app.log"),
        exec(4, 0, "sleep 3; echo late"),
    ]
    .iter()
    .enumerate()
    {
        let _ = i;
        let _ = codec.encode(m, &mut buf);
    }
    let _ = ws.send(WsMessage::Binary(buf.into())).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Dropped without a close frame: the TCP connection just goes away.
    drop(ws);
    s.abrupt_disconnects += 1;
}

async fn malformed(t: &Target, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    if handshake(&mut ws, t, "lt-chaos").await.is_err() {
        return;
    }
    let garbage: [&[u8]; 3] = [
        &[0xff, 0x10, 0x00, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5],
        &[0x01, 0x10, 0x00, 0x00, 0x00, 0x40, 0xde, 0xad],
        &[0x01, 0x7e, 0x00, 0x00, 0x00, 0x01, 0x00],
    ];
    let pick = fastrand::usize(0..garbage.len());
    s.malformed_sent += 1;
    if ws
        .send(WsMessage::Binary(garbage[pick].to_vec().into()))
        .await
        .is_err()
    {
        return;
    }
    let answered = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    if matches!(
        answered,
        Ok(Some(Ok(WsMessage::Binary(_) | WsMessage::Close(_)))) | Ok(None)
    ) {
        s.malformed_answered += 1;
    }
}

async fn slow_reader(t: &Target, root: &str, s: &mut ChaosSummary) {
    let Ok(mut ws) = connect_ws(t, None).await else {
        return;
    };
    let Ok(mut codec) = handshake(&mut ws, t, "lt-chaos-slow").await else {
        return;
    };
    let mut buf = Vec::new();
    let cd = format!("cd {}", crate::profile::shell_quote(root));
    let _ = codec.encode(&exec(1, 0, &cd), &mut buf);
    for i in 0..20 {
        let _ = codec.encode(&exec(2 + i, 0, "cat logs/app.log"), &mut buf);
    }
    let _ = ws.send(WsMessage::Binary(buf.into())).await;
    s.slow_readers += 1;
    // Never read: the server's writer for this connection must back off alone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(ws);
}

async fn storm(t: &Target, s: &mut ChaosSummary) {
    s.reconnect_storms += 1;
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect_ws(&t, None).await.ok()?;
            let mut codec = handshake(&mut ws, &t, "lt-storm").await.ok()?;
            let mut buf = Vec::new();
            let open = Message::OpenSession(OpenSession {
                session: 1,
                name: format!("storm{i}"),
            });
            codec.encode(&open, &mut buf).ok()?;
            codec.encode(&exec(1, 1, "echo back"), &mut buf).ok()?;
            ws.send(WsMessage::Binary(buf.into())).await.ok()?;
            tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(m)) = ws.next().await {
                    if let WsMessage::Binary(b) = m {
                        if codec
                            .decode(&b)
                            .any(|f| matches!(f, Ok(Message::Exit(_)) | Ok(Message::Error(_))))
                        {
                            return Some(());
                        }
                    }
                }
                None
            })
            .await
            .ok()??;
            let _ = ws.close(None).await;
            Some(())
        }));
    }
    for task in tasks {
        s.storm_connections += 1;
        if !matches!(task.await, Ok(Some(()))) {
            s.storm_failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_back_within_ten_percent_passes_and_beyond_fails() {
        let mut s = ChaosSummary::default();
        s.judge_memory(100 << 20, 150 << 20, 108 << 20);
        assert_eq!(s.rss_recovered_pct.map(|p| p.round()), Some(84.0));
        assert_eq!(s.rss_post_vs_pre_pct.map(|p| p.round()), Some(8.0));
        assert!(s.memory_failure().is_none());

        s.judge_memory(100 << 20, 150 << 20, 120 << 20);
        let why = s.memory_failure().expect("20% above before fails");
        assert!(why.contains("+20.0%"), "{why}");
    }

    #[test]
    fn reports_without_the_new_fields_still_load() {
        let old = r#"{"abrupt_disconnects":4,"malformed_sent":4,"malformed_answered":4,
            "slow_readers":4,"reconnect_storms":3,"storm_connections":150,
            "storm_failures":0,"skipped":["Redis restart: none"]}"#;
        let s: ChaosSummary = serde_json::from_str(old).expect("old schema loads");
        assert_eq!(s.redis_restarts, 0);
        assert!(s.rss_post_storm_bytes.is_none() && s.memory_failure().is_none());
        let round = serde_json::to_string(&s).expect("serializes");
        assert!(!round.contains("rss_pre_storm_bytes"), "{round}");
    }
}

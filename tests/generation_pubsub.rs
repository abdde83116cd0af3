//! Push invalidation through Redis pub/sub (`[cache] generation_pubsub`),
//! against a real redis-server: a bump through one instance reaches another
//! at once, far inside `generation_refresh`; without pub/sub only the next
//! poll brings it; the subscriber comes back after a Redis restart. The last
//! test measures, and with `--nocapture` prints, how long a change through
//! one engine takes to show on another, pushed and polled.

mod cache_support;

use cache_support::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxterm::cache::Cache;
use voxterm::metrics::Metrics;

/// Long enough that polling cannot explain what arrives within [`PUSHED`].
const REFRESH: Duration = Duration::from_secs(5);
/// A generous bound on a push on a loaded machine.
const PUSHED: Duration = Duration::from_secs(2);

/// A cache on `redis` (no server around it), not waited for.
fn start_cache(redis: &Redis, pubsub: bool, refresh: Duration) -> (Cache, Arc<Metrics>) {
    let mut cfg = config(Path::new("/nonexistent")).cache;
    cfg.redis_url = Some(redis.url.clone());
    cfg.generation_refresh = refresh;
    cfg.generation_pubsub = pubsub;
    let metrics = Arc::new(Metrics::new());
    (Cache::new(&cfg, metrics.clone()).expect("cache"), metrics)
}

/// A cache on `redis`, connected and, with `pubsub`, subscribed.
async fn cache(redis: &Redis, pubsub: bool, refresh: Duration) -> (Cache, Arc<Metrics>) {
    let (cache, metrics) = start_cache(redis, pubsub, refresh);
    let l3 = cache.l3().cloned().expect("L3");
    wait(
        Duration::from_secs(10),
        "L3 connected and subscribed",
        || l3.connected() && cache.pubsub_live() == pubsub,
    )
    .await;
    (cache, metrics)
}

/// Polls `cond` every millisecond until it holds; panics after `limit`.
async fn wait(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

fn tenant() -> Arc<str> {
    format!("ps-{}", nonce()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_reaches_another_instance_at_once_through_pubsub() {
    let redis = Redis::start();
    let (a, _) = cache(&redis, true, REFRESH).await;
    let (b, on_b) = cache(&redis, true, REFRESH).await;
    let t = tenant();
    // B asks Redis once; from then on only `generation_now` is asked, which
    // never goes to Redis: whatever changes B's answer was pushed.
    let before = b.generation(&t).await;
    a.bump(&t).await;
    wait(PUSHED, "B sees A's bump", || {
        b.generation_now(&t).is_some_and(|g| g > before)
    })
    .await;
    let redis_has = a.l3().expect("L3").generation(&t).await;
    assert_eq!(b.generation_now(&t), redis_has, "B has what Redis has");
    assert!(on_b.cache.generation_messages() >= 1);
    assert_eq!(on_b.cache.generation_subscriptions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pubsub_a_bump_is_seen_at_the_next_poll_and_nothing_is_published() {
    let redis = Redis::start();
    let (a, _) = cache(&redis, false, REFRESH).await;
    let (b, _) = cache(&redis, false, REFRESH).await;
    // A listener of our own: with pub/sub off, a bump publishes nothing.
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut listener = client.get_async_pubsub().await.expect("pubsub");
    listener
        .subscribe(voxterm::cache::GENERATION_CHANNEL)
        .await
        .expect("subscribe");
    let t = tenant();
    let before = b.generation(&t).await;
    let asked = Instant::now();
    a.bump(&t).await;
    // Well inside the refresh, B still answers from its last poll.
    while asked.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            b.generation(&t).await,
            before,
            "B saw the bump before its poll"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The poll brings it.
    loop {
        if b.generation(&t).await > before {
            break;
        }
        assert!(
            asked.elapsed() < REFRESH + Duration::from_secs(3),
            "never polled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(asked.elapsed() >= REFRESH - Duration::from_millis(100));
    use futures_util::StreamExt;
    let mut messages = listener.into_on_message();
    let published = tokio::time::timeout(Duration::from_millis(200), messages.next());
    assert!(
        published.await.is_err(),
        "a bump was published with pub/sub off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_comes_back_after_a_redis_restart() {
    let mut redis = Redis::own();
    let (a, _) = cache(&redis, true, REFRESH).await;
    let (b, on_b) = cache(&redis, true, REFRESH).await;
    let t = tenant();
    b.generation(&t).await;
    a.bump(&t).await;
    wait(PUSHED, "B sees the first bump", || {
        b.generation_now(&t) == Some(1)
    })
    .await;

    redis.kill();
    wait(Duration::from_secs(10), "B notices", || !b.pubsub_live()).await;
    redis.restart();
    wait(Duration::from_secs(10), "B subscribes again", || {
        b.pubsub_live()
    })
    .await;
    assert_eq!(on_b.cache.generation_subscriptions(), 2);
    // A's bumps reach the new, empty Redis once A's breaker lets them (from
    // its floor: 2 and on); B, which never polls here, gets each pushed.
    let l3 = a.l3().cloned().expect("L3");
    let deadline = Instant::now() + Duration::from_secs(10);
    let now = loop {
        a.bump(&t).await;
        if let Some(g) = l3.generation(&t).await.filter(|&g| g > 1) {
            break g;
        }
        assert!(Instant::now() < deadline, "A's bump never reached Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait(PUSHED, "B sees the bump after the restart", || {
        b.generation_now(&t) == Some(now)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_starts_while_redis_is_down_and_subscribes_once_it_is_up() {
    let mut redis = Redis::own();
    redis.kill();
    let started = Instant::now();
    let (cache, _) = start_cache(&redis, true, REFRESH);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "start waited for Redis"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cache.pubsub_live());
    redis.restart();
    wait(
        Duration::from_secs(10),
        "subscribed once Redis is up",
        || cache.pubsub_live(),
    )
    .await;
}

/// The figure asked for in issue 16: from a change through engine A to engine
/// B serving the fresh answer, 20 tries each with pub/sub and with polling at
/// the default `generation_refresh` (100 ms). A change outside voxterm makes
/// B's blind entry wrong; the mutating line through A is what invalidates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_cross_engine_invalidation_pushed_and_polled() {
    const TRIES: usize = 20;
    let redis = Redis::start();
    for pubsub in [true, false] {
        let dir = TempDir::new("pubsub-measure");
        let mut cfg = short_fs_read_ttl(&dir, &redis, "10m");
        cfg.predict.enabled = false;
        cfg.cache.generation_pubsub = pubsub;
        assert_eq!(cfg.cache.generation_refresh, Duration::from_millis(100));
        let engine_a = TestServer::start(cfg.clone()).await;
        let engine_b = TestServer::start(cfg).await;
        let on = |s: &TestServer| s.engine.cache.clone().expect("cache");
        let (ca, cb) = (on(&engine_a), on(&engine_b));
        wait(Duration::from_secs(10), "subscribed", || {
            ca.pubsub_live() == pubsub && cb.pubsub_live() == pubsub
        })
        .await;
        let t = format!("m-{}", nonce());
        let (mut a, mut b) = (engine_a.client(&t).await, engine_b.client(&t).await);
        let t_gen: Arc<str> = t.as_str().into();
        // A random pause before each change: any phase against B's polls.
        let pause = || tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100)));
        let (mut window, mut moved, mut stale) = (Vec::new(), Vec::new(), 0);
        // A busy tenant on B: a lookup every millisecond keeps B polling every
        // `generation_refresh` whatever the test does in between.
        let busy = tokio::spawn({
            let (cb, t) = (cb.clone(), t_gen.clone());
            async move {
                loop {
                    cb.generation(&t).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        for i in 0..TRIES {
            // Every bump of the last round (`touch g` bumps before and after
            // it runs) has reached B: a late one would make the line below
            // miss again, as it should, and the check after it fail.
            let settled = ca.generation(&t_gen).await;
            let since = Instant::now();
            while cb.generation(&t_gen).await != settled {
                assert!(since.elapsed() < Duration::from_secs(3), "B never settled");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            run(&mut b, "cat f | cat").await;
            let cached = run(&mut b, "cat f | cat").await;
            assert_ne!(served(&cached), voxterm_protocol::ServedFrom::Exec);
            let want = format!("v{i}");
            std::fs::write(dir.path().join("f"), &want).expect("write f");
            pause().await;
            run(&mut a, "touch g").await;
            // From A's answer to the first request on B that got the fresh answer.
            let changed = Instant::now();
            window.push(loop {
                let asked = changed.elapsed();
                if out(&run(&mut b, "cat f | cat").await) == want {
                    break asked;
                }
                stale += 1;
                assert!(asked < Duration::from_secs(3), "B never saw A's change");
            });
            // The same at the cache's level: from A starting a bump to B's
            // generation (as a lookup there would ask it) moving.
            let before = cb.generation(&t_gen).await;
            pause().await;
            let start = Instant::now();
            ca.bump(&t_gen).await;
            while cb.generation(&t_gen).await == before {
                assert!(start.elapsed() < Duration::from_secs(3), "B never moved");
                tokio::task::yield_now().await;
            }
            moved.push(start.elapsed());
        }
        busy.abort();
        if pubsub {
            // Its pings kept one subscription up all along, and it shows.
            assert_eq!(engine_b.engine.metrics.cache.generation_subscriptions(), 1);
            let text = engine_b
                .engine
                .metrics
                .render_prometheus(engine_b.engine.sampled());
            assert!(
                text.contains("voxterm_cache_generation_subscribed 1"),
                "{text}"
            );
            assert!(text.contains("voxterm_cache_generation_messages_total"));
            assert!(text.contains("voxterm_cache_generation_subscriptions_total 1"));
        }
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
        let spread = |v: &mut Vec<Duration>| {
            v.sort();
            format!(
                "{} ms (median; {}–{})",
                ms(v[TRIES / 2]),
                ms(v[0]),
                ms(v[TRIES - 1])
            )
        };
        let how = if pubsub {
            "pub/sub"
        } else {
            "polling (100 ms)"
        };
        println!(
            "figure: {how}, {TRIES} tries: B's first fresh answer asked {} after A answered its write ({stale} stale answers served in all); B's generation moved {} after A's bump started",
            spread(&mut window),
            spread(&mut moved),
        );
        engine_a.shutdown().await;
        engine_b.shutdown().await;
        // Their subscribers ended with them.
        wait(Duration::from_secs(5), "subscribers ended", || {
            !ca.pubsub_live() && !cb.pubsub_live()
        })
        .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while subscribers(&redis).await > 0 {
            assert!(
                Instant::now() < deadline,
                "a subscription outlived its server"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Connections subscribed to the generation channel (`PUBSUB NUMSUB`).
async fn subscribers(redis: &Redis) -> i64 {
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(voxterm::cache::GENERATION_CHANNEL)
        .query_async(&mut c)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

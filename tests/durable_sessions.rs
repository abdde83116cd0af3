//! Sessions outlive the engine: a restart resumes them from files, and with
//! Redis a session moves between engines with its directory and variables.
//! Real servers, real processes, a real redis-server.

mod cache_support;

use cache_support::*;
use std::path::Path;
use std::time::{Duration, Instant};
use voxterm::client::Client;
use voxterm_protocol::{Message, OpenSession, SessionOpened};

/// Runs `cmd` in the default session; its stdout, which must be a success.
async fn sh(c: &mut Client, cmd: &str) -> String {
    let done = run(c, cmd).await;
    assert_eq!(
        done.exit.as_ref().and_then(|e| e.code),
        Some(0),
        "{cmd}: {done:?}"
    );
    out(&done)
}

async fn open(c: &mut Client, session: u32, name: &str) -> SessionOpened {
    c.send(&Message::OpenSession(OpenSession {
        session,
        name: name.into(),
    }))
    .await
    .unwrap();
    loop {
        match c.recv().await.unwrap() {
            Message::SessionOpened(s) if s.session == session => return s,
            Message::Error(e) => panic!("OpenSession {name}: {e:?}"),
            _ => {}
        }
    }
}

fn display(p: &Path) -> String {
    p.canonicalize().unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_sessions_from_files() {
    let dir = TempDir::new("durable-files");
    let cfg = config(dir.path());
    std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
    let root = display(dir.path());
    let sub = display(&dir.path().join("sub"));

    let srv = TestServer::start(cfg.clone()).await;
    let mut c = srv.client("t").await;
    sh(&mut c, "cd sub").await;
    sh(&mut c, "export GREETING=hello").await;
    let opened = open(&mut c, 3, "work").await;
    assert!(!opened.resumed);
    // A second session, whose directory goes away while the server is down.
    c.send(&Message::Exec(voxterm_protocol::Exec {
        request: 900,
        session: 3,
        command: "cd sub/deeper".into(),
        priority: voxterm_protocol::Priority::Normal,
        timeout_ms: 0,
        cache: voxterm_protocol::CacheMode::Default,
    }))
    .await
    .unwrap();
    loop {
        if let Message::Exit(e) = c.recv().await.unwrap() {
            assert_eq!((e.request, e.code), (900, Some(0)));
            break;
        }
    }
    drop(c);
    srv.shutdown().await;
    std::fs::remove_dir(dir.path().join("sub/deeper")).unwrap();

    let srv = TestServer::start(cfg).await;
    let mut c = srv.client("t").await;
    assert_eq!(sh(&mut c, "pwd").await, format!("{sub}\n"));
    assert_eq!(sh(&mut c, "sh -c 'echo $GREETING'").await, "hello\n");
    // `cd -` remembers where the session was before, across the restart.
    assert_eq!(sh(&mut c, "cd -").await, format!("{root}\n"));
    let work = open(&mut c, 3, "work").await;
    assert!(work.resumed, "a kept session is resumed");
    assert_eq!(work.cwd, root, "a directory that is gone is not entered");
    // Another tenant's session of the same name is its own.
    let mut other = srv.client("u").await;
    assert_eq!(sh(&mut other, "pwd").await, format!("{root}\n"));
    assert_eq!(sh(&mut other, "sh -c 'echo [$GREETING]'").await, "[]\n");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_engines_through_redis() {
    let redis = Redis::start();
    let dir = TempDir::new("durable-redis");
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    let root = display(dir.path());
    let sub = display(&dir.path().join("sub"));
    let tenant = format!("t{}", nonce());
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(redis.url.clone());
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;

    let mut on_a = a.client(&tenant).await;
    sh(&mut on_a, "cd sub").await;
    sh(&mut on_a, "export WHERE=a").await;
    // The write is off the request's way: wait for it to land.
    let key = format!("*session:{tenant}:default");
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.keys(&key).await.is_empty() {
        assert!(Instant::now() < deadline, "the session never reached Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = Instant::now();
    drop(on_a);

    let mut on_b = b.client(&tenant).await;
    assert_eq!(sh(&mut on_b, "pwd").await, format!("{sub}\n"));
    assert_eq!(sh(&mut on_b, "sh -c 'echo $WHERE'").await, "a\n");
    println!(
        "figure: session visible on engine B {} ms after the write",
        written.elapsed().as_millis()
    );
    // Changed on B, back on A: A's copy (still live there) gives way to B's.
    sh(&mut on_b, "cd ..").await;
    sh(&mut on_b, "export WHERE=b").await;
    drop(on_b);
    // B's writes land soon after; until then A may still answer from its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut back = loop {
        let mut back = a.client(&tenant).await;
        if sh(&mut back, "pwd").await == format!("{root}\n") {
            break back;
        }
        assert!(Instant::now() < deadline, "engine A kept its stale copy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sh(&mut back, "sh -c 'echo $WHERE'").await, "b\n");

    // Another tenant never sees it.
    let mut stranger = b.client(&format!("{tenant}x")).await;
    assert_eq!(sh(&mut stranger, "sh -c 'echo [$WHERE]'").await, "[]\n");
    a.shutdown().await;
    b.shutdown().await;
}

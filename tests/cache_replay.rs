//! The result cache as the protocol suite sees it: a hit replays byte-exact
//! output with a gapless seq, and hits follow cwd, referenced env and writes.
//! (tests/cache.rs, owned by the cache work, covers tiers, Redis and TTLs.)

mod common;

use common::*;
use voxterm_protocol::{CacheMode, Message, ServedFrom};

fn cached(from: ServedFrom) -> bool {
    matches!(from, ServedFrom::L1 | ServedFrom::L2 | ServedFrom::L3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_replays_the_same_bytes_with_gapless_seq() {
    let server = TestServer::start("cache-hit").await;
    let mut c = server.client("t1").await;
    let first = run(&mut c, 0, "seq 1 20000").await;
    assert_eq!(exit_of(&first).served_from, ServedFrom::Exec);
    let id = c.exec(0, "seq 1 20000", 0).await.unwrap();
    let g = gather(&mut c, id).await;
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("{:?}", g.end)
    };
    assert!(cached(exit.served_from), "second run not cached: {exit:?}");
    assert_eq!(exit.code, Some(0));
    assert!(g.stdout == first.stdout, "cached output differs");
    let want: Vec<u32> = (0..g.seqs.len() as u32).collect();
    assert_eq!(g.seqs, want);

    // Bypass runs it again.
    c.send(&Message::Exec(voxterm_protocol::Exec {
        cache: CacheMode::Bypass,
        ..exec(500, 0, "seq 1 20000", 0)
    }))
    .await
    .unwrap();
    let g = gather(&mut c, 500).await;
    assert!(matches!(g.end, Some(Message::Exit(ref e)) if e.served_from == ServedFrom::Exec));
    assert!(g.stdout == first.stdout);

    // Failures are never cached.
    let a = run(&mut c, 0, "seq 1 3; false").await;
    let b = run(&mut c, 0, "seq 1 3; false").await;
    assert_eq!(exit_of(&a).code, Some(1));
    assert_eq!(exit_of(&b).served_from, ServedFrom::Exec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_follow_cwd_env_and_writes() {
    let server = TestServer::start("cache-scope").await;
    std::fs::create_dir(server.root.join("sub")).unwrap();
    std::fs::write(server.root.join("a"), b"").unwrap();
    std::fs::write(server.root.join("sub/b"), b"").unwrap();
    let mut c = server.client("t1").await;

    // fs-read results are keyed by cwd.
    assert_eq!(run(&mut c, 0, "ls").await.stdout, b"a\nsub\n");
    assert_eq!(run(&mut c, 0, "ls").await.stdout, b"a\nsub\n");
    run(&mut c, 0, "cd sub").await;
    assert_eq!(run(&mut c, 0, "ls").await.stdout, b"b\n");
    // Mutating commands through the engine invalidate the tenant's listings.
    assert_eq!(exit_of(&run(&mut c, 0, "touch c").await).code, Some(0));
    assert_eq!(run(&mut c, 0, "ls").await.stdout, b"b\nc\n");
    assert_eq!(exit_of(&run(&mut c, 0, "rm c").await).code, Some(0));
    assert_eq!(run(&mut c, 0, "ls").await.stdout, b"b\n");
    assert_eq!(exit_of(&run(&mut c, 0, "echo hi > d").await).code, Some(0));
    assert_eq!(run(&mut c, 0, "cat d").await.stdout, b"hi\n");
    assert_eq!(exit_of(&run(&mut c, 0, "echo bye > d").await).code, Some(0));
    assert_eq!(run(&mut c, 0, "cat d").await.stdout, b"bye\n");

    // Pure commands are keyed by the env they reference.
    run(&mut c, 0, "export A=1").await;
    assert_eq!(run(&mut c, 0, "echo $A").await.stdout, b"1\n");
    assert_eq!(run(&mut c, 0, "echo $A").await.stdout, b"1\n");
    run(&mut c, 0, "export A=2").await;
    assert_eq!(run(&mut c, 0, "echo $A").await.stdout, b"2\n");
    run(&mut c, 0, "unset A").await;
    assert_eq!(run(&mut c, 0, "echo $A").await.stdout, b"\n");
}

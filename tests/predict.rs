//! Prediction and prefetch against a real server, real processes and the real
//! cache: what is prefetched is served as `prefetch`, nothing that writes or is
//! unknown is ever prefetched, a busy pool gets no prefetch, invalidation treats
//! prefetched entries like any other, and the model survives a restart.

mod common;

use common::*;
use std::time::{Duration, Instant};
use voxterm::client::Client;
use voxterm_protocol::ServedFrom;

/// Runs `lines` in order on the default session, each to its end.
async fn train(c: &mut Client, lines: &[&str], times: usize) {
    for _ in 0..times {
        for line in lines {
            let done = run(c, 0, line).await;
            exit_of(&done);
        }
    }
}

/// Waits until no worker is busy and no prefetch or renewal has started or
/// ended for a quarter of a second: the background work of what ran before is
/// over.
async fn quiesce(srv: &TestServer) {
    let start = Instant::now();
    let mut last = String::new();
    let mut calm = 0;
    while calm < 5 {
        assert!(start.elapsed() < STEP, "the server never went quiet");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _, body) = http_get(srv.addr, "/metrics").await;
        let now: String = body
            .lines()
            .filter(|l| {
                l.starts_with("voxterm_prefetch_")
                    || l.starts_with("voxterm_cache_renewals")
                    || l.starts_with("voxterm_pool_busy_workers")
            })
            .collect();
        let idle = metric(srv.addr, "voxterm_pool_busy_workers").await == 0.0;
        calm = if idle && now == last { calm + 1 } else { 0 };
        last = now;
    }
}

/// Waits until the `/metrics` sample reaches `at_least`.
async fn wait_metric(srv: &TestServer, sample: &str, at_least: f64) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(srv.addr, sample).await;
        if v >= at_least {
            return v;
        }
        assert!(
            start.elapsed() < STEP,
            "{sample} stayed at {v}, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicted_fs_read_is_prefetched_and_served_from_prefetch() {
    let srv = TestServer::start("predict-hit").await;
    let mut c = srv.client("p1").await;
    let file = srv.root.join("notes.txt");
    // `notes.txt` changes outside the engine before every `true`, so the
    // `cat notes.txt` that always follows is never answered by its earlier
    // entry (the stamp differs): only a prefetch made after `true` can have it
    // ready. Each change is older than the racy window when `true` runs, so the
    // prefetched answer can be validated (an answer of a file changed within it
    // is never stored: `cache::inputs::RACY`).
    let settle = voxterm::cache::inputs::RACY + Duration::from_millis(100);
    for round in 0..4 {
        std::fs::write(&file, format!("v{round}\n")).unwrap();
        tokio::time::sleep(settle).await;
        train(&mut c, &["true", "cat notes.txt"], 1).await;
    }
    // The last training prefetch may still be counting when its line returned
    // (a request that joined it is answered before the counter moves): wait until
    // every prefetch started has ended, so that the next one is ours.
    let start = Instant::now();
    let before = loop {
        let started = metric(srv.addr, "voxterm_prefetch_started_total").await;
        let stored = metric(srv.addr, "voxterm_prefetch_stored_total").await;
        if stored == started {
            break stored;
        }
        assert!(start.elapsed() < STEP, "started {started}, stored {stored}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        before >= 1.0,
        "the training itself prefetched `cat notes.txt`"
    );
    std::fs::write(&file, "v9\n").unwrap();
    tokio::time::sleep(settle).await;
    exit_of(&run(&mut c, 0, "true").await);
    wait_metric(&srv, "voxterm_prefetch_stored_total", before + 1.0).await;
    let cat = run(&mut c, 0, "cat notes.txt").await;
    assert_eq!(exit_of(&cat).served_from, ServedFrom::Prefetch);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "v9\n");
    assert!(metric(srv.addr, "voxterm_prefetch_hits_total").await >= 1.0);
    // The sequence is deterministic: once each transition was seen, every
    // prediction was right (the first three commands had none to check).
    let checked = metric(srv.addr, "voxterm_predict_checked_total").await;
    let top1 = metric(srv.addr, "voxterm_predict_top1_correct_total").await;
    assert!(
        checked >= 6.0 && top1 == checked,
        "checked {checked}, top1 {top1}"
    );
    // A prefetched answer obeys the cache's rule: once the file changed after
    // the prefetch, it is read again.
    std::fs::write(&file, "v8\n").unwrap();
    let cat = run(&mut c, 0, "cat notes.txt").await;
    assert_eq!(exit_of(&cat).served_from, ServedFrom::Exec);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "v8\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_never_runs_mutating_or_unknown_commands() {
    let srv = TestServer::start("predict-never").await;
    std::fs::write(srv.root.join("mark.sh"), "touch left-by-script\n").unwrap();
    let mut c = srv.client("p2").await;
    // Each step is certain after the one before: a prefetcher that ignored the
    // class would run `touch left-by-touch` or the script right after `echo`.
    let steps = [
        "echo one",
        "touch left-by-touch",
        "rm -f left-by-touch",
        "echo two",
        "sh mark.sh",
        "rm -f left-by-script",
        "echo three",
        "date",
    ];
    train(&mut c, &steps, 3).await;
    exit_of(&run(&mut c, 0, "echo one").await);
    exit_of(&run(&mut c, 0, "echo two").await);
    // The refusals were counted: prefetch considered those lines and said no.
    wait_metric(
        &srv,
        "voxterm_prefetch_skipped_total{reason=\"not_cacheable\"}",
        4.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!srv.root.join("left-by-touch").exists());
    assert!(!srv.root.join("left-by-script").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_gets_no_prefetch() {
    let srv = TestServer::start_with("predict-busy", |c| {
        c.exec.workers = 2;
        c.predict.idle_share = 0.5;
    })
    .await;
    let mut c = srv.client("p3").await;
    // `ls -l` shows the size the append changes. (Not `touch a`: `ls -l`
    // shows the time to the minute, and its entry is keyed by what it shows,
    // so within one minute a `touch` rightly leaves it cached; the test
    // failed whenever training's entry had settled.)
    train(&mut c, &["echo x >> a", "ls -l"], 3).await;
    // What training set going in the background (a prefetch of `ls -l`, a
    // renewal of its entry) ends first: run late on a loaded machine, after
    // the append below, it would store the answer the last `ls -l` asks
    // for, rightly, and this test would not see what the gate did.
    quiesce(&srv).await;
    let started = metric(srv.addr, "voxterm_prefetch_started_total").await;
    let busy_skips = metric(srv.addr, "voxterm_prefetch_skipped_total{reason=\"busy\"}").await;

    // Another tenant holds one of the two workers: the pool is at its idle share.
    let mut other = srv.client("p3-other").await;
    let req = other.next_request_id();
    other
        .send(&exec_msg(req, 0, "sleep 3", 0))
        .await
        .expect("send");
    let start = Instant::now();
    while metric(srv.addr, "voxterm_pool_busy_workers").await < 1.0 {
        assert!(start.elapsed() < STEP, "sleep never took a worker");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    exit_of(&run(&mut c, 0, "echo x >> a").await);
    wait_metric(
        &srv,
        "voxterm_prefetch_skipped_total{reason=\"busy\"}",
        busy_skips + 1.0,
    )
    .await;
    assert_eq!(
        metric(srv.addr, "voxterm_prefetch_started_total").await,
        started
    );
    let ls = run(&mut c, 0, "ls -l").await;
    assert_eq!(exit_of(&ls).served_from, ServedFrom::Exec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_entry_is_invalidated_like_any_other() {
    let srv = TestServer::start("predict-inval").await;
    let mut c = srv.client("p4").await;
    // `a` grows outside the engine before every `true`, and has settled when
    // `true` runs (a prefetch right after a change could not be stamped, and
    // is not run): the `ls -l` that always follows needs a new answer, which
    // only a prefetch after `true` can have ready.
    let file = srv.root.join("a");
    let settle = voxterm::cache::inputs::RACY + Duration::from_millis(100);
    let grow = |n: usize| {
        std::fs::write(&file, "x".repeat(n)).unwrap();
    };
    for round in 0..4 {
        grow(round + 1);
        tokio::time::sleep(settle).await;
        train(&mut c, &["true", "ls -l"], 1).await;
    }
    // Prefetch `ls -l`, then change the directory behind the entry.
    grow(10);
    tokio::time::sleep(settle).await;
    let before = metric(srv.addr, "voxterm_prefetch_stored_total").await;
    exit_of(&run(&mut c, 0, "true").await);
    wait_metric(&srv, "voxterm_prefetch_stored_total", before + 1.0).await;
    exit_of(&run(&mut c, 0, "mkdir newdir").await);
    let ls = run(&mut c, 0, "ls -l").await;
    exit_of(&ls);
    let out = String::from_utf8_lossy(&ls.stdout);
    // After `total N`, one line per entry ending in its name.
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    assert_eq!(names, ["a", "newdir"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_reloaded_after_a_restart() {
    let data = temp_root("predict-restart-data");
    let root = temp_root("predict-restart-root");
    let cfg = |c: &mut voxterm::config::Config| {
        c.predict.data_dir = Some(data.clone());
        c.session.root = root.clone();
    };
    let mut srv = TestServer::start_with("predict-restart-1", cfg).await;
    let mut c = srv.client("p5").await;
    train(&mut c, &["touch a", "ls"], 4).await;
    drop(c);
    srv.begin_shutdown();
    srv.join(STEP).await;
    assert!(data.join("predict-model.bin").exists(), "saved at shutdown");

    let srv = TestServer::start_with("predict-restart-2", cfg).await;
    let mut c = srv.client("p5").await;
    // A new session: only a reloaded model can predict `ls` after `touch a`.
    exit_of(&run(&mut c, 0, "touch a").await);
    exit_of(&run(&mut c, 0, "ls").await);
    assert_eq!(
        metric(srv.addr, "voxterm_predict_top1_correct_total").await,
        1.0
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&root);
}

/// A predicted line whose answer could be neither stored nor served (its
/// inputs cannot be stamped: a tree over the bound) is not run ahead: it
/// would be a spawn for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_cannot_be_stamped_is_not_prefetched() {
    let srv = TestServer::start("predict-unstampable").await;
    let big = srv.root.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..(voxterm::cache::inputs::MAX_TREE_ENTRIES + 10) {
        std::fs::write(big.join(i.to_string()), "").unwrap();
    }
    let mut c = srv.client("p-big").await;
    train(&mut c, &["echo before", "find big -name 7"], 3).await;
    let started = metric(srv.addr, "voxterm_prefetch_started_total").await;
    exit_of(&run(&mut c, 0, "echo before").await);
    wait_metric(
        &srv,
        "voxterm_prefetch_skipped_total{reason=\"unstampable\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(srv.addr, "voxterm_prefetch_started_total").await,
        started,
        "nothing was run ahead"
    );
    let find = run(&mut c, 0, "find big -name 7").await;
    assert_eq!(exit_of(&find).served_from, ServedFrom::Exec);
    assert_eq!(find.stdout, b"big/7\n");
}

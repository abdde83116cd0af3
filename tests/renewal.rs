//! Renewal against a real server: a cached line in use is run again shortly
//! before its entry expires, off the requests' way, so that people who keep
//! running it are answered from the cache across its TTL; a line nobody uses
//! expires as before.

mod common;

use common::*;
use std::time::{Duration, Instant};
use voxterm_protocol::{Message, ServedFrom, StatsRequest};

const RENEWALS: &str = "voxterm_cache_renewals_total{kind=\"stored\"}";
const SPAWNS: &str = "voxterm_processes_started_total{cause=\"renewal\",class=\"pure\"}";

/// A server whose pure lines live `ttl`.
async fn server(name: &str, ttl: &str) -> TestServer {
    server_with(name, ttl, |_| {}).await
}

/// The same, with more settings.
async fn server_with(
    name: &str,
    ttl: &str,
    more: impl FnOnce(&mut voxterm::config::Config),
) -> TestServer {
    let dir = temp_root(&format!("{name}-policy"));
    let policy = dir.join("policy.toml");
    let default = voxterm::cache::policy::DEFAULT_POLICY;
    let text = default.replace("pure = \"1h\"\n", &format!("pure = \"{ttl}\"\n"));
    assert_ne!(text, default, "the default policy names pure = \"1h\"");
    std::fs::write(&policy, text).unwrap();
    TestServer::start_with(name, |c| {
        c.cache.policy_file = Some(policy);
        more(c);
    })
    .await
}

/// Runs `line` every 100 ms for `secs`: how each was served.
async fn use_for(srv: &TestServer, line: &str, secs: u64) -> Vec<ServedFrom> {
    let mut c = srv.client("t").await;
    let mut served = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let done = run(&mut c, 0, line).await;
        served.push(exit_of(&done).served_from);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served
}

/// Renewal has its own switch and gate: on with prediction off, off with
/// `[cache] renew = false` (then the entry expires into misses, which is
/// also what shows the renewal test above can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_its_own_switch_not_predictions() {
    let srv = server_with("renewal-nopredict", "2s", |c| c.predict.enabled = false).await;
    let served = use_for(&srv, "echo renew-me", 5).await;
    let execs = served.iter().filter(|s| **s == ServedFrom::Exec).count();
    assert_eq!(execs, 1, "prediction off, renewal on: {served:?}");
    assert!(metric(srv.addr, RENEWALS).await >= 1.0);
    let srv = server_with("renewal-off", "2s", |c| c.cache.renew = false).await;
    let served = use_for(&srv, "echo renew-me", 5).await;
    let execs = served.iter().filter(|s| **s == ServedFrom::Exec).count();
    assert!(
        execs >= 2,
        "renewal off: the entry expires into misses: {served:?}"
    );
    assert_eq!(metric(srv.addr, RENEWALS).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_in_use_is_renewed_before_it_expires_and_never_misses_again() {
    let srv = server("renewal", "2s").await;
    let mut c = srv.client("t").await;
    // Run every 100 ms for three TTLs: without renewal the entry expires
    // (each lives 1.6 to 2 s) and a request runs it again, twice at least.
    let mut served = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        let done = run(&mut c, 0, "echo renew-me").await;
        let exit = exit_of(&done);
        assert_eq!(done.stdout, b"renew-me\n");
        served.push(exit.served_from);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let execs = served.iter().filter(|s| **s == ServedFrom::Exec).count();
    assert_eq!(
        execs, 1,
        "only the first request ran it; the rest were answered from the cache: {served:?}"
    );
    // It did run again, off the requests' way: once per TTL of use or so.
    let renewed = metric(srv.addr, RENEWALS).await;
    let spawned = metric(srv.addr, SPAWNS).await;
    assert!(
        (2.0..=5.0).contains(&renewed),
        "renewed {renewed} times in three TTLs"
    );
    assert_eq!(spawned, renewed, "each renewal is one process started");
    // The same count in the `Stats` frame (the load tester reads it there).
    c.send(&Message::StatsRequest(StatsRequest { nonce: 9 }))
        .await
        .unwrap();
    let stats = loop {
        if let Message::Stats(s) = recv(&mut c).await {
            break s;
        }
    };
    let counted = stats
        .counters
        .iter()
        .find(|k| k.name == "processes_started_renewal")
        .map(|k| k.value as f64);
    assert_eq!(counted, Some(renewed));
    println!(
        "figure: {} requests over 6 s of a 2 s TTL: 1 ran, {renewed} renewals",
        served.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_nobody_uses_expires_without_renewal() {
    let srv = server("renewal-idle", "1s").await;
    let mut c = srv.client("t").await;
    let first = run(&mut c, 0, "echo once").await;
    assert_eq!(exit_of(&first).served_from, ServedFrom::Exec);
    // Used again only well after it expired: no hit found it due, so
    // nothing renewed it; the request runs it.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = run(&mut c, 0, "echo once").await;
    assert_eq!(exit_of(&later).served_from, ServedFrom::Exec);
    assert_eq!(metric(srv.addr, RENEWALS).await, 0.0);
}

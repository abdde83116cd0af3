//! The counters that the scorecard, the load tester and the README rely on
//! move when they should, and only then (issue 17, part 2): requests by
//! `served_from` (with `joined` apart from `exec`), processes started by cause
//! and class, cache miss runs, single-flight joins, cacheable requests, hits,
//! errors by code. Each is read from `/metrics` of a real server around real
//! commands.

mod common;

use common::*;
use std::collections::HashMap;
use voxterm_protocol::{Input, Message, ServedFrom, Spawn};

/// The samples this test follows.
const SAMPLES: &[&str] = &[
    "voxterm_requests_total{served_from=\"exec\"}",
    "voxterm_requests_total{served_from=\"joined\"}",
    "voxterm_requests_total{served_from=\"L1\"}",
    "voxterm_requests_total{served_from=\"builtin\"}",
    "voxterm_processes_started_total{cause=\"request\",class=\"pure\"}",
    "voxterm_processes_started_total{cause=\"request\",class=\"unknown\"}",
    "voxterm_processes_started_total{cause=\"interactive\",class=\"fs-read\"}",
    "voxterm_cache_miss_runs_total",
    "voxterm_cache_single_flight_joins_total",
    "voxterm_cache_cacheable_requests_total",
    "voxterm_cache_hits_total{tier=\"L1\"}",
    "voxterm_cache_hits_total{tier=\"L2\"}",
    "voxterm_requests_total{served_from=\"L2\"}",
    "voxterm_errors_total{code=\"UnknownSession\"}",
];

async fn snapshot(s: &TestServer) -> HashMap<&'static str, f64> {
    let mut m = HashMap::new();
    for &name in SAMPLES {
        m.insert(name, metric(s.addr, name).await);
    }
    m
}

/// Asserts that exactly the named samples moved, by the given amounts.
fn moved(
    before: &HashMap<&str, f64>,
    after: &HashMap<&str, f64>,
    want: &[(&str, f64)],
    what: &str,
) {
    for &name in SAMPLES {
        let delta = after[name] - before[name];
        let expected = want
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, d)| *d);
        assert_eq!(delta, expected, "{what}: {name} moved by {delta}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_when_they_should_and_only_then() {
    let s = TestServer::start_with("counters", |c| c.predict.enabled = false).await;
    let mut client = s.client("default").await;
    // The default session exists before the first snapshot.
    run(&mut client, 0, "true").await;

    // Two identical cacheable misses at once: one process, one join.
    let line = "seq 1 300000";
    let before = snapshot(&s).await;
    client
        .send_all(&[exec_msg(1, 0, line, 0), exec_msg(2, 0, line, 0)])
        .await
        .unwrap();
    // Both at once: their frames interleave.
    let (mut out, mut ends) = ([Vec::new(), Vec::new()], Vec::new());
    while ends.len() < 2 {
        match recv(&mut client).await {
            Message::Output(o) => out[o.request as usize - 1].extend_from_slice(&o.data),
            Message::Exit(e) => ends.push(e.served_from),
            other => panic!("{other:?}"),
        }
    }
    ends.sort_by_key(|s| *s as u8);
    assert_eq!(
        ends,
        [ServedFrom::Exec, ServedFrom::Joined],
        "one ran, the other joined its run"
    );
    assert_eq!(out[0].len(), 1_988_895, "all of it");
    assert!(out[0] == out[1], "and both got the same output");
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[
            ("voxterm_requests_total{served_from=\"exec\"}", 1.0),
            ("voxterm_requests_total{served_from=\"joined\"}", 1.0),
            (
                "voxterm_processes_started_total{cause=\"request\",class=\"pure\"}",
                1.0,
            ),
            ("voxterm_cache_miss_runs_total", 1.0),
            ("voxterm_cache_single_flight_joins_total", 1.0),
            ("voxterm_cache_cacheable_requests_total", 2.0),
        ],
        "a miss and a join",
    );

    // (Its output is larger than the largest entry the cache stores.) A small
    // one, twice: a miss that runs, then an L1 hit that does not.
    let before = after;
    let done = run(&mut client, 0, "echo counted").await;
    assert_eq!(exit_of(&done).served_from, ServedFrom::Exec);
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[
            ("voxterm_requests_total{served_from=\"exec\"}", 1.0),
            (
                "voxterm_processes_started_total{cause=\"request\",class=\"pure\"}",
                1.0,
            ),
            ("voxterm_cache_miss_runs_total", 1.0),
            ("voxterm_cache_cacheable_requests_total", 1.0),
        ],
        "a miss",
    );
    let before = after;
    let done = run(&mut client, 0, "echo counted").await;
    // L1 is per worker thread: the hit is in L1 or, from another thread, L2.
    let tier = match exit_of(&done).served_from {
        ServedFrom::L1 => "L1",
        ServedFrom::L2 => "L2",
        other => panic!("a hit was expected, got {other:?}"),
    };
    let requests = format!("voxterm_requests_total{{served_from=\"{tier}\"}}");
    let hits = format!("voxterm_cache_hits_total{{tier=\"{tier}\"}}");
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[
            (requests.as_str(), 1.0),
            (hits.as_str(), 1.0),
            ("voxterm_cache_cacheable_requests_total", 1.0),
        ],
        "a hit",
    );

    // A program that does not exist: answered as sh would (127), no process.
    let before = after;
    let done = run(&mut client, 0, "no-such-program-voxterm").await;
    assert_eq!(exit_of(&done).code, Some(127));
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[("voxterm_requests_total{served_from=\"exec\"}", 1.0)],
        "a missing program",
    );

    // An unknown line that runs: a process of class unknown; a builtin: none.
    let before = after;
    run(&mut client, 0, "sh -c 'exit 0'").await;
    run(&mut client, 0, "cd /").await;
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[
            ("voxterm_requests_total{served_from=\"exec\"}", 1.0),
            ("voxterm_requests_total{served_from=\"builtin\"}", 1.0),
            (
                "voxterm_processes_started_total{cause=\"request\",class=\"unknown\"}",
                1.0,
            ),
        ],
        "an unknown line and a builtin",
    );

    // A Spawn: an interactive process, never a cache request.
    let before = after;
    client
        .send_all(&[
            Message::Spawn(Box::new(Spawn {
                request: 3,
                session: 0,
                command: "cat".into(),
                timeout_ms: 0,
                pty: None,
            })),
            Message::Input(Input {
                request: 3,
                data: b"x".to_vec(),
                end: true,
            }),
        ])
        .await
        .unwrap();
    let g = gather(&mut client, 3).await;
    assert_eq!(g.stdout, b"x");
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[
            ("voxterm_requests_total{served_from=\"exec\"}", 1.0),
            (
                "voxterm_processes_started_total{cause=\"interactive\",class=\"fs-read\"}",
                1.0,
            ),
        ],
        "a spawn",
    );

    // An error by code.
    let before = after;
    client.send(&exec_msg(4, 9, "true", 0)).await.unwrap();
    let g = gather(&mut client, 4).await;
    assert!(matches!(g.end, Some(Message::Error(_))));
    let after = snapshot(&s).await;
    moved(
        &before,
        &after,
        &[("voxterm_errors_total{code=\"UnknownSession\"}", 1.0)],
        "an error",
    );
}

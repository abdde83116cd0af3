//! Running commands end to end: exit statuses, streaming, timeouts, cancel,
//! disconnects, multiplexing, batches and every negotiated encoding.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use voxterm::client::ClientOptions;
use voxterm_protocol::{
    Batch, BatchMode, Cancel, Compression, Encoding, ErrorCode, KillReason, Message, ServedFrom,
    StreamKind,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_stderr_missing_program_and_signals() {
    let server = TestServer::start("exit-codes").await;
    let mut c = server.client("t1").await;

    let done = run(&mut c, 0, "echo out; echo err >&2; exit 3").await;
    let exit = exit_of(&done);
    assert_eq!(done.stdout, b"out\n");
    assert_eq!(done.stderr, b"err\n");
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.signal, None);
    assert_eq!(exit.served_from, ServedFrom::Exec);
    assert_eq!(exit.killed, KillReason::None);
    assert!(!exit.truncated);

    let done = run(&mut c, 0, "true").await;
    assert_eq!(exit_of(&done).code, Some(0));
    assert!(done.stdout.is_empty() && done.stderr.is_empty());

    let done = run(&mut c, 0, "nosuchprog_xyz --flag").await;
    assert_eq!(exit_of(&done).code, Some(127));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("nosuchprog_xyz") && stderr.contains("not found"),
        "stderr: {stderr:?}"
    );
    assert!(done.stdout.is_empty());

    // Through the shell too (sh's own message, same code).
    let done = run(&mut c, 0, "x=1; nosuchprog_xyz").await;
    assert_eq!(exit_of(&done).code, Some(127));
    assert!(!done.stderr.is_empty());

    let done = run(&mut c, 0, "kill -9 $$").await;
    let exit = exit_of(&done);
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.code, None);
    assert_eq!(exit.killed, KillReason::None, "the engine did not kill it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_is_byte_exact_with_gapless_seq() {
    let server = TestServer::start("large-output").await;
    let mut c = server.client("t1").await;

    let mut expected = Vec::new();
    for i in 1..=300_000u32 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let id = c.exec(0, "seq 1 300000", 0).await.unwrap();
    let g = gather(&mut c, id).await;
    assert!(g.others.is_empty(), "foreign frames: {:?}", g.others);
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("expected Exit, got {:?}", g.end)
    };
    assert_eq!(exit.code, Some(0));
    assert!(!exit.truncated);
    assert!(g.stderr.is_empty());
    assert_eq!(g.stdout.len(), expected.len());
    assert!(g.stdout == expected, "stdout differs from seq's output");
    assert!(g.seqs.len() > 1, "only {} chunk(s)", g.seqs.len());
    let want: Vec<u32> = (0..g.seqs.len() as u32).collect();
    assert_eq!(g.seqs, want, "Output.seq must count 0,1,2,... without gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_seq_counts_across_both_streams() {
    let server = TestServer::start("seq-streams").await;
    let mut c = server.client("t1").await;
    let id = c
        .exec(0, "echo a; echo b >&2; sleep 0.05; echo c; echo d >&2", 0)
        .await
        .unwrap();
    let mut seqs = Vec::new();
    let mut streams = Vec::new();
    loop {
        match recv(&mut c).await {
            Message::Output(o) if o.request == id => {
                seqs.push(o.seq);
                streams.push(o.stream);
            }
            Message::Exit(e) if e.request == id => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(streams.contains(&StreamKind::Stdout) && streams.contains(&StreamKind::Stderr));
    let want: Vec<u32> = (0..seqs.len() as u32).collect();
    assert_eq!(seqs, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_group() {
    let server = TestServer::start("timeout").await;
    let mut c = server.client("t1").await;
    let start = Instant::now();
    let done = run_t(&mut c, 0, "sleep 30 & echo $!; wait", 300).await;
    let elapsed = start.elapsed();
    let exit = exit_of(&done);
    assert_eq!(exit.killed, KillReason::Timeout);
    assert!(exit.signal.is_some(), "{exit:?}");
    assert_eq!(exit.code, None);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(250),
        "ended before its timeout: {elapsed:?}"
    );
    let grandchild = parse_pid(&done.stdout);
    assert_dies(grandchild, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_command_and_its_grandchildren() {
    let server = TestServer::start("cancel").await;
    let mut c = server.client("t1").await;

    // The direct child (the shell execs sleep, so $$ is sleep's pid).
    let start = Instant::now();
    let id = c.exec(0, "echo $$; exec sleep 30", 0).await.unwrap();
    let pid = parse_pid(&first_output(&mut c, id).await);
    assert!(alive(pid));
    c.send(&Message::Cancel(Cancel { request: id }))
        .await
        .unwrap();
    let g = gather(&mut c, id).await;
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("expected Exit, got {:?}", g.end)
    };
    assert_eq!(exit.killed, KillReason::Cancelled);
    assert!(exit.signal.is_some(), "{exit:?}");
    assert_dies(pid, Duration::from_secs(2)).await;

    // A grandchild in the background of the shell.
    let id = c.exec(0, "sleep 30 & echo $!; wait", 0).await.unwrap();
    let pid = parse_pid(&first_output(&mut c, id).await);
    assert!(alive(pid));
    c.send(&Message::Cancel(Cancel { request: id }))
        .await
        .unwrap();
    let g = gather(&mut c, id).await;
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("expected Exit, got {:?}", g.end)
    };
    assert_eq!(exit.killed, KillReason::Cancelled);
    assert_dies(pid, Duration::from_secs(2)).await;
    assert!(start.elapsed() < Duration::from_secs(10));

    // Cancelling an id that is not in flight is ignored; the connection works.
    c.send(&Message::Cancel(Cancel { request: 4242 }))
        .await
        .unwrap();
    let done = run(&mut c, 0, "echo ok").await;
    assert_eq!(done.stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_connection_kills_its_children() {
    let server = TestServer::start("disconnect").await;
    let mut c = server.client("t1").await;
    let id = c.exec(0, "echo $$; exec sleep 30", 0).await.unwrap();
    let pid = parse_pid(&first_output(&mut c, id).await);
    let id2 = c.exec(0, "sleep 30 & echo $!; wait", 0).await.unwrap();
    let pid2 = parse_pid(&first_output(&mut c, id2).await);
    assert!(alive(pid) && alive(pid2));
    drop(c); // TCP close without a close frame
    assert_dies(pid, Duration::from_secs(3)).await;
    assert_dies(pid2, Duration::from_secs(3)).await;

    // The server is fine afterwards.
    let mut c = server.client("t1").await;
    assert_eq!(run(&mut c, 0, "echo still").await.stdout, b"still\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_multiplexed_on_one_connection() {
    let server = TestServer::start("mux").await;
    let mut c = server.client("t1").await;
    const N: u32 = 200;
    let command = |i: u32| {
        if i % 2 == 0 {
            format!("echo {i}")
        } else {
            format!("printf {i}")
        }
    };
    let expected = |i: u32| {
        if i % 2 == 0 {
            format!("{i}\n").into_bytes()
        } else {
            i.to_string().into_bytes()
        }
    };
    // Ids 1000.. ; the first 50 in one WebSocket message, the next 50 in
    // messages of 10, the rest one per message.
    let ids: Vec<u32> = (1000..1000 + N).collect();
    let frames: Vec<Message> = ids
        .iter()
        .map(|&i| exec_msg(i, 0, &command(i), 0))
        .collect();
    c.send_all(&frames[..50]).await.unwrap();
    for chunk in frames[50..100].chunks(10) {
        c.send_all(chunk).await.unwrap();
    }
    for f in &frames[100..] {
        c.send(f).await.unwrap();
    }

    let mut out: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut exits: HashMap<u32, usize> = HashMap::new();
    let mut terminal = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while terminal < N {
        assert!(Instant::now() < deadline, "only {terminal} terminal frames");
        match recv(&mut c).await {
            Message::Output(o) => {
                assert!(ids.contains(&o.request), "unknown id {}", o.request);
                assert!(
                    !exits.contains_key(&o.request),
                    "output after exit of {}",
                    o.request
                );
                assert_eq!(o.stream, StreamKind::Stdout);
                out.entry(o.request).or_default().extend_from_slice(&o.data);
            }
            Message::Exit(e) => {
                assert!(ids.contains(&e.request), "unknown id {}", e.request);
                assert_eq!(e.code, Some(0), "{e:?}");
                *exits.entry(e.request).or_default() += 1;
                terminal += 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    for &i in &ids {
        assert_eq!(exits.get(&i), Some(&1), "request {i} must end exactly once");
        assert_eq!(
            out.get(&i).map(Vec::as_slice),
            Some(expected(i).as_slice()),
            "output of request {i}"
        );
    }
    // Nothing trails the terminal frames.
    c.send(&Message::Ping(voxterm_protocol::Ping { nonce: 7 }))
        .await
        .unwrap();
    match recv(&mut c).await {
        Message::Pong(p) => assert_eq!(p.nonce, 7),
        other => panic!("expected Pong, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_batch_stops_after_a_failure() {
    let server = TestServer::start("batch-seq").await;
    let mut c = server.client("t1").await;
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Sequential,
        execs: vec![
            exec(1, 0, "true", 0),
            exec(2, 0, "false", 0),
            exec(3, 0, "echo never", 0),
        ],
    }))
    .await
    .unwrap();
    let mut ends = HashMap::new();
    let mut order = Vec::new();
    while ends.len() < 3 {
        match recv(&mut c).await {
            Message::Output(o) => panic!("unexpected output {o:?}"),
            Message::Exit(e) => {
                order.push(e.request);
                ends.insert(e.request, Message::Exit(e));
            }
            Message::Error(e) => {
                let id = e.request.expect("batch errors name their request");
                order.push(id);
                ends.insert(id, Message::Error(e));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(order, vec![1, 2, 3], "sequential batches end in order");
    match &ends[&1] {
        Message::Exit(e) => assert_eq!(e.code, Some(0)),
        other => panic!("{other:?}"),
    }
    match &ends[&2] {
        Message::Exit(e) => assert_eq!(e.code, Some(1)),
        other => panic!("{other:?}"),
    }
    match &ends[&3] {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::Skipped),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_batch_runs_in_order_and_parallel_batch_runs_all() {
    let server = TestServer::start("batch-par").await;
    let mut c = server.client("t1").await;

    // Sequential: the second only starts after the first (it sees its file).
    let marker = server.root.join("marker");
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Sequential,
        execs: vec![
            exec(
                1,
                0,
                &format!("sleep 0.1; echo x > {}", marker.display()),
                0,
            ),
            exec(2, 0, &format!("cat {}", marker.display()), 0),
        ],
    }))
    .await
    .unwrap();
    let g = gather(&mut c, 2).await;
    assert!(
        matches!(&g.end, Some(Message::Exit(e)) if e.code == Some(0)),
        "{:?}",
        g.end
    );
    assert_eq!(g.stdout, b"x\n");

    let start = Instant::now();
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Parallel,
        execs: vec![
            exec(11, 0, "sleep 0.3; echo a", 0),
            exec(12, 0, "sleep 0.3; echo b", 0),
            exec(13, 0, "sleep 0.3; echo c", 0),
        ],
    }))
    .await
    .unwrap();
    let mut seen = HashMap::new();
    let mut outputs: HashMap<u32, Vec<u8>> = HashMap::new();
    while seen.len() < 3 {
        match recv(&mut c).await {
            Message::Output(o) => outputs.entry(o.request).or_default().extend(o.data),
            Message::Exit(e) => {
                assert_eq!(e.code, Some(0));
                assert!(seen.insert(e.request, ()).is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut ids: Vec<_> = seen.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, vec![11, 12, 13]);
    assert_eq!(outputs[&11], b"a\n");
    assert_eq!(outputs[&12], b"b\n");
    assert_eq!(outputs[&13], b"c\n");
    // Parallel means concurrent: three 0.3 s sleeps take well under 0.9 s.
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "parallel batch took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_and_compression_round_trips() {
    let server = TestServer::start("encodings").await;
    let mut expected = Vec::new();
    for i in 1..=20_000u32 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    for (encoding, compression) in [
        (Encoding::Json, Compression::None),
        (Encoding::Bincode, Compression::Deflate),
        (Encoding::Bincode, Compression::Brotli),
        (Encoding::Json, Compression::Brotli),
    ] {
        let mut c = server
            .client_with(ClientOptions {
                tenant: Some("t1".into()),
                encoding,
                compression,
                ..Default::default()
            })
            .await;
        assert_eq!(c.welcome().encoding, encoding);
        assert_eq!(c.welcome().compression, compression);
        assert_eq!(c.welcome().tenant, "t1");
        let done = run(&mut c, 0, "seq 1 20000").await;
        assert_eq!(exit_of(&done).code, Some(0), "{encoding:?}/{compression:?}");
        assert!(
            done.stdout == expected,
            "{encoding:?}/{compression:?}: {} bytes instead of {}",
            done.stdout.len(),
            expected.len()
        );
        // A command line above the compression threshold: the client's frame
        // is compressed on the way in.
        let arg = "z".repeat(3000);
        let done = run(&mut c, 0, &format!("printf %s {arg}")).await;
        assert_eq!(done.stdout, arg.as_bytes(), "{encoding:?}/{compression:?}");
        // Non-ASCII and binary-ish bytes survive too.
        let done = run(&mut c, 0, "printf 'h\\303\\251\\001\\377'").await;
        assert_eq!(
            done.stdout, b"h\xc3\xa9\x01\xff",
            "{encoding:?}/{compression:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cap_truncates_and_kills() {
    let server = TestServer::start_with("output-cap", |c| c.exec.output_cap = 10_000).await;
    let mut c = server.client("t1").await;
    assert_eq!(c.welcome().limits.output_cap_bytes, 10_000);
    let done = run(&mut c, 0, "seq 1 1000000").await;
    let exit = exit_of(&done);
    assert!(exit.truncated, "{exit:?}");
    assert_eq!(exit.killed, KillReason::OutputLimit);
    assert_eq!(done.stdout.len(), 10_000);
    let mut expected = Vec::new();
    for i in 1..=5000u32 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    assert_eq!(done.stdout[..], expected[..10_000]);
    // Under the cap nothing is cut.
    let done = run(&mut c, 0, "seq 1 100").await;
    assert!(!exit_of(&done).truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_timeout_applies_when_the_request_names_none() {
    let server = TestServer::start_with("default-timeout", |c| {
        c.exec.default_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = server.client("t1").await;
    assert_eq!(c.welcome().limits.default_timeout_ms, 300);
    let start = Instant::now();
    let done = run_t(&mut c, 0, "sleep 30", 0).await;
    assert_eq!(exit_of(&done).killed, KillReason::Timeout);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_cap_queues_one_tenant_without_starving_another() {
    let server = TestServer::start_with("tenant-cap", |c| c.exec.tenant_concurrency = 1).await;
    let mut a = server.client("a").await;
    let mut b = server.client("b").await;
    let long = a.exec(0, "echo $$; exec sleep 30", 0).await.unwrap();
    let pid = parse_pid(&first_output(&mut a, long).await);
    // Tenant a's next command waits for a's only slot...
    let queued = a.exec(0, "echo queued", 0).await.unwrap();
    // ...while tenant b runs at once.
    let start = Instant::now();
    assert_eq!(run(&mut b, 0, "echo b").await.stdout, b"b\n");
    assert!(start.elapsed() < Duration::from_secs(2));
    // Cancelling the queued request ends it without running it.
    a.send(&Message::Cancel(Cancel { request: queued }))
        .await
        .unwrap();
    let g = gather(&mut a, queued).await;
    assert!(g.stdout.is_empty(), "a cancelled queued command ran");
    match &g.end {
        Some(Message::Exit(e)) => {
            assert_eq!(e.killed, KillReason::Cancelled);
            assert_eq!((e.code, e.signal), (None, None));
        }
        other => panic!("{other:?}"),
    }
    assert!(alive(pid));
    a.send(&Message::Cancel(Cancel { request: long }))
        .await
        .unwrap();
    let g = gather(&mut a, long).await;
    assert!(matches!(g.end, Some(Message::Exit(ref e)) if e.killed == KillReason::Cancelled));
    assert_dies(pid, Duration::from_secs(2)).await;
    // The slot is free again.
    assert_eq!(run(&mut a, 0, "echo free").await.stdout, b"free\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_slows_only_itself() {
    let server = TestServer::start("slow-reader").await;
    let mut slow = server.client("t1").await;
    // Endless output that the slow client never reads.
    let id = slow
        .exec(0, "echo $$; exec cat /dev/zero", 3_000)
        .await
        .unwrap();
    let pid = parse_pid(&first_output(&mut slow, id).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fast = server.client("t1").await;
    for i in 0..5 {
        let start = Instant::now();
        let done = run(&mut fast, 0, &format!("echo {i}")).await;
        assert_eq!(done.stdout, format!("{i}\n").as_bytes());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    drop(slow);
    assert_dies(pid, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_batch_stops_when_a_step_is_refused() {
    let server = TestServer::start("batch-refused").await;
    let mut c = server.client("t1").await;
    // Step 1 names a session handle that is not open: it cannot run, so (like
    // `a && b`) step 2 must not run either.
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Sequential,
        execs: vec![exec(1, 9, "true", 0), exec(2, 0, "echo never", 0)],
    }))
    .await
    .unwrap();
    let mut ends = HashMap::new();
    let mut stdout = Vec::new();
    while ends.len() < 2 {
        match recv(&mut c).await {
            Message::Output(o) => stdout.extend(o.data),
            Message::Exit(e) => {
                ends.insert(e.request, format!("Exit {:?}", e.code));
            }
            Message::Error(e) => {
                ends.insert(
                    e.request.expect("names its request"),
                    format!("{:?}", e.code),
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ends[&1], "UnknownSession");
    assert!(
        stdout.is_empty(),
        "step 2 ran: {:?}",
        String::from_utf8_lossy(&stdout)
    );
    assert_eq!(ends[&2], "Skipped");
}

/// Load shedding: a request that cannot get a worker within `max_queue_wait` is
/// refused with a typed error instead of waiting behind the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_too_long_for_a_worker_is_refused() {
    let server = TestServer::start_with("queue-wait", |c| {
        c.exec.workers = 1;
        c.exec.max_queue_wait = Duration::from_millis(200);
        c.cache.enabled = false;
    })
    .await;
    let mut c = server.client("t1").await;
    let long = c.exec(0, "sleep 3", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let waiting = c.exec(0, "echo late", 0).await.unwrap();
    let g = gather(&mut c, waiting).await;
    match &g.end {
        Some(Message::Error(e)) => {
            assert_eq!(e.code, voxterm_protocol::ErrorCode::QuotaExceeded, "{e:?}");
            assert_eq!(e.request, Some(waiting));
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert!(g.stdout.is_empty(), "the refused command ran");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "refused only after {:?}",
        start.elapsed()
    );
    c.send(&Message::Cancel(Cancel { request: long }))
        .await
        .unwrap();
    let g = gather(&mut c, long).await;
    assert!(matches!(g.end, Some(Message::Exit(_))), "{:?}", g.end);
}

//! Graceful shutdown: in-flight commands drain, new work is refused, and the
//! connection closes with 1001; past the drain deadline commands are killed.

mod common;

use common::*;
use std::time::{Duration, Instant};
use voxterm::client::{Client, ClientError};
use voxterm_protocol::{ErrorCode, Exit, KillReason, Message, Ping};

/// Receives until the connection closes; returns the frames seen and the close.
async fn until_closed(c: &mut Client) -> (Vec<Message>, ClientError) {
    let mut frames = Vec::new();
    loop {
        match recv_result(c).await {
            Ok(m) => frames.push(m),
            Err(e) => return (frames, e),
        }
    }
}

fn close_code(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::Closed(Some((code, _))) => Some(*code),
        _ => None,
    }
}

/// Makes sure the reader has admitted everything sent so far.
async fn sync(c: &mut Client, nonce: u64) -> Vec<Message> {
    c.send(&Message::Ping(Ping { nonce })).await.unwrap();
    let mut before = Vec::new();
    loop {
        match recv(c).await {
            Message::Pong(p) if p.nonce == nonce => return before,
            other => before.push(other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_commands_and_refuses_new_ones() {
    let mut server = TestServer::start_with("drain", |c| {
        c.server.drain_timeout = Duration::from_secs(5);
    })
    .await;
    let mut c = server.client("t1").await;
    let mut idle = server.client("t2").await;
    c.send(&exec_msg(1, 0, "sleep 0.5; echo done", 0))
        .await
        .unwrap();
    assert!(sync(&mut c, 1).await.is_empty());

    let start = Instant::now();
    server.begin_shutdown();
    server.wait_listener_closed().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&exec_msg(2, 0, "echo late", 0)).await.unwrap();

    let (frames, end) = until_closed(&mut c).await;
    let mut stdout = Vec::new();
    let mut exit: Option<Exit> = None;
    let mut refused = None;
    for f in &frames {
        match f {
            Message::Output(o) => {
                assert_eq!(o.request, 1, "only request 1 runs: {o:?}");
                stdout.extend_from_slice(&o.data);
            }
            Message::Exit(e) => {
                assert!(exit.is_none(), "two Exits: {frames:?}");
                exit = Some(e.clone());
            }
            Message::Error(e) => refused = Some(e.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let refused = refused.expect("the late Exec is refused");
    assert_eq!(refused.code, ErrorCode::ShuttingDown);
    assert_eq!(refused.request, Some(2));
    let exit = exit.unwrap_or_else(|| panic!("request 1 lost its Exit: {frames:?}, {end:?}"));
    assert_eq!(exit.request, 1);
    assert_eq!(exit.code, Some(0));
    assert_eq!(exit.killed, KillReason::None);
    assert_eq!(stdout, b"done\n");
    assert_eq!(close_code(&end), Some(1001), "{end:?}");

    // The idle connection is closed too.
    let (frames, end) = until_closed(&mut idle).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(close_code(&end), Some(1001), "{end:?}");

    server.join(Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_drain_deadline_kills_commands() {
    let mut server = TestServer::start_with("drain-kill", |c| {
        c.server.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = server.client("t1").await;
    let id = c.exec(0, "echo $$; exec sleep 30", 0).await.unwrap();
    let pid = parse_pid(&first_output(&mut c, id).await);

    let start = Instant::now();
    server.begin_shutdown();
    let (frames, end) = until_closed(&mut c).await;
    let exits: Vec<&Exit> = frames
        .iter()
        .filter_map(|f| match f {
            Message::Exit(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(
        exits.len(),
        1,
        "exactly one Exit expected: {frames:?}, {end:?}"
    );
    assert_eq!(exits[0].request, id);
    assert_eq!(exits[0].killed, KillReason::Shutdown);
    assert!(exits[0].signal.is_some(), "{:?}", exits[0]);
    assert_eq!(close_code(&end), Some(1001), "{end:?}");
    assert_dies(pid, Duration::from_secs(2)).await;
    server.join(Duration::from_secs(5)).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "killed before the drain deadline: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_connections_completes_at_once() {
    let mut server = TestServer::start("drain-empty").await;
    let mut c = server.client("t1").await;
    assert_eq!(run(&mut c, 0, "echo x").await.stdout, b"x\n");
    c.close().await.unwrap();
    let start = Instant::now();
    server.begin_shutdown();
    server.join(Duration::from_secs(5)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delivers_the_exit_of_every_in_flight_request() {
    let mut server = TestServer::start_with("drain-many", |c| {
        c.server.drain_timeout = Duration::from_secs(5);
        c.exec.tenant_concurrency = 16;
    })
    .await;
    let mut c = server.client("t1").await;
    const N: u32 = 40;
    let frames: Vec<Message> = (1..=N)
        .map(|i| exec_msg(i, 0, &format!("sleep 0.3; echo {i}"), 0))
        .collect();
    c.send_all(&frames).await.unwrap();
    assert!(sync(&mut c, 0).await.is_empty());
    server.begin_shutdown();
    let (frames, end) = until_closed(&mut c).await;
    let mut exits: Vec<u32> = frames
        .iter()
        .filter_map(|f| match f {
            Message::Exit(e) if e.code == Some(0) => Some(e.request),
            _ => None,
        })
        .collect();
    exits.sort();
    assert_eq!(
        exits,
        (1..=N).collect::<Vec<_>>(),
        "every accepted request ends with Exit before the close ({end:?})"
    );
    assert_eq!(close_code(&end), Some(1001), "{end:?}");
    server.join(Duration::from_secs(5)).await;
}

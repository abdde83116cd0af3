//! `Configure`: the opt-in additions to version 1 against a real server.
//! Suggestions follow each command and never show another tenant's lines;
//! rejections name the call they answer; `Configured` announces the timers; a
//! client that never sends `Configure` sees none of it.

mod common;

use common::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use voxterm::client::Client;
use voxterm_protocol::{
    Batch, BatchMode, CloseSession, Configure, Configured, ErrorCode, Input, Message, OpenSession,
    Ping, Rejected, Subject, Suggestions, Welcome,
};

/// Sends `Configure` and returns the `Configured` that answers it.
async fn configure(c: &mut Client, suggestions: u8, rejections: bool) -> Configured {
    c.send(&Message::Configure(Configure {
        suggestions,
        rejections,
        reattach: false,
    }))
    .await
    .unwrap();
    match recv(c).await {
        Message::Configured(m) => *m,
        other => panic!("expected Configured, got {other:?}"),
    }
}

/// Runs `line` and returns the `Suggestions` that follow its `Exit`, or None
/// when the next frame after it is the answer to a `Ping` (nothing followed).
async fn run_and_suggestions(c: &mut Client, line: &str) -> Option<Suggestions> {
    let done = run(c, 0, line).await;
    let exit = exit_of(&done);
    c.send(&Message::Ping(Ping { nonce: 77 })).await.unwrap();
    let mut found = None;
    loop {
        match recv(c).await {
            Message::Suggestions(s) => {
                assert_eq!(s.after, exit.request, "{s:?}");
                assert_eq!(s.session, 0);
                assert!(found.is_none(), "two Suggestions for one request");
                found = Some(s);
            }
            Message::Pong(p) if p.nonce == 77 => return found,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next frame, which must be a `Rejected`.
async fn rejected(c: &mut Client) -> Rejected {
    match recv(c).await {
        Message::Rejected(r) => r,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_grants_what_the_server_can_and_announces_its_timers() {
    let srv = TestServer::start("configure-timers").await;
    let mut c = srv.client("t1").await;
    let got = configure(&mut c, 200, true).await;
    // Asked for 200, the server predicts its top 3.
    assert_eq!(got.suggestions, 3);
    assert!(got.rejections);
    let s = got.settings;
    // The values of the test server's config (development preset, with the
    // drain and kill grace shortened by the test harness).
    assert_eq!(s.handshake_ms, 10_000);
    assert_eq!(s.drain_ms, 5_000);
    assert_eq!(s.kill_grace_ms, 100);
    assert_eq!(s.compression_threshold, 1024);
    assert_eq!(s.max_output_data, 16 * 1024);
    assert!(s.idle_ms > 0 && s.keepalive_ms > 0, "{s:?}");
    assert!(s.coalesce_bytes >= s.max_output_data, "{s:?}");

    // Without prediction nothing can be suggested, and the answer says so.
    let srv = TestServer::start_with("configure-nopredict", |c| c.predict.enabled = false).await;
    let mut c = srv.client("t1").await;
    assert_eq!(configure(&mut c, 3, false).await.suggestions, 0);
    assert_eq!(run_and_suggestions(&mut c, "echo x").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_follow_each_command_with_only_the_tenants_own_lines() {
    let srv = TestServer::start("configure-suggest").await;
    // Another tenant teaches the global prior its own successor of `echo start`.
    let mut other = srv.client("other").await;
    for _ in 0..6 {
        for line in ["echo start", "echo other-tenant-secret"] {
            exit_of(&run(&mut other, 0, line).await);
        }
    }
    let mut c = srv.client("mine").await;
    assert_eq!(configure(&mut c, 3, false).await.suggestions, 3);
    for _ in 0..4 {
        run_and_suggestions(&mut c, "echo start").await;
        run_and_suggestions(&mut c, "echo mine-next").await;
    }
    let s = run_and_suggestions(&mut c, "echo start")
        .await
        .expect("Suggestions after the command");
    let lines: Vec<&str> = s.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines.first(), Some(&"echo mine-next"), "{s:?}");
    assert!(
        !lines.contains(&"echo other-tenant-secret"),
        "another tenant's line was suggested: {s:?}"
    );
    assert!(s.lines.len() <= 3);
    assert!(s.lines.iter().all(|l| l.score <= 1000));
    assert!(s.lines[0].score > 0, "{s:?}");

    // Asking for one gives at most one; asking for none stops them.
    configure(&mut c, 1, false).await;
    let s = run_and_suggestions(&mut c, "echo start").await.unwrap();
    assert_eq!(s.lines.len(), 1, "{s:?}");
    configure(&mut c, 0, false).await;
    assert_eq!(run_and_suggestions(&mut c, "echo start").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_configures_sees_no_new_frames() {
    let srv = TestServer::start("configure-none").await;
    let mut c = srv.client("t1").await;
    for _ in 0..4 {
        assert_eq!(run_and_suggestions(&mut c, "echo a").await, None);
        assert_eq!(run_and_suggestions(&mut c, "echo b").await, None);
    }
    // A request-less error is still the `Error` it always was.
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Parallel,
        execs: vec![],
    }))
    .await
    .unwrap();
    match recv(&mut c).await {
        Message::Error(e) => {
            assert_eq!(e.request, None);
            assert_eq!(e.code, ErrorCode::InvalidArgument);
        }
        other => panic!("expected Error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_name_the_call_they_answer() {
    let srv = TestServer::start("configure-reject").await;
    let mut c = srv.client("t1").await;
    configure(&mut c, 0, true).await;

    // A duplicate id: named, and the request in flight goes on to its Exit.
    c.send(&exec_msg(7, 0, "sleep 0.3; echo first", 0))
        .await
        .unwrap();
    c.send(&exec_msg(7, 0, "echo second", 0)).await.unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Request, 7, ErrorCode::DuplicateRequest)
    );
    let done = gather(&mut c, 7).await;
    assert_eq!(done.stdout, b"first\n");

    // Session calls: the handle.
    c.send(&Message::OpenSession(OpenSession {
        session: 5,
        name: "no spaces allowed".into(),
    }))
    .await
    .unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Session, 5, ErrorCode::InvalidCommand)
    );
    c.send(&Message::CloseSession(CloseSession { session: 9 }))
        .await
        .unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Session, 9, ErrorCode::UnknownSession)
    );

    // An empty batch has no id of its own: it is the subject.
    c.send(&Message::Batch(Batch {
        mode: BatchMode::Sequential,
        execs: vec![],
    }))
    .await
    .unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Batch, 0, ErrorCode::InvalidArgument)
    );

    // Input for a request that is not in flight.
    c.send(&Message::Input(Input {
        request: 42,
        data: b"x".to_vec(),
        end: false,
    }))
    .await
    .unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Request, 42, ErrorCode::UnknownRequest)
    );

    // Frames: the type byte of an unknown one, and of one sent the wrong way.
    c.send_raw(WsMessage::Binary(vec![1, 0x7f, 0, 0, 0, 0].into()))
        .await
        .unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Frame, 0x7f, ErrorCode::UnknownType)
    );
    let welcome: Welcome = c.welcome().clone();
    c.send(&Message::Welcome(Box::new(welcome))).await.unwrap();
    let r = rejected(&mut c).await;
    assert_eq!(
        (r.about, r.id, r.code),
        (Subject::Frame, 0x02, ErrorCode::UnexpectedMessage)
    );

    // The connection is still usable, and nothing else was sent meanwhile.
    let done = run(&mut c, 0, "echo ok").await;
    assert_eq!(done.stdout, b"ok\n");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// `Client::reattach`: the grace the server grants (zero where it keeps
/// nothing), and a command's frames that arrive while it waits are kept for
/// the caller, in order, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reattach_returns_the_grace_and_keeps_other_frames() {
    let srv = TestServer::start("configure-reattach").await;
    let mut c = srv.client("t1").await;
    let request = c.exec(0, "echo kept", 0).await.unwrap();
    // Its answer is in the socket before `Configure` is even sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grace = c.reattach().await.expect("re-attach");
    assert!(!grace.is_zero());
    // The command's frames, read while `reattach` waited for `Configured`.
    let mut stdout = Vec::new();
    loop {
        match recv(&mut c).await {
            Message::Output(o) if o.request == request => stdout.extend_from_slice(&o.data),
            Message::Exit(e) if e.request == request => break,
            _ => {}
        }
    }
    assert_eq!(stdout, b"kept\n");

    let srv = TestServer::start_with("configure-noreattach", |c| {
        c.server.detach_grace = Duration::ZERO;
    })
    .await;
    let mut c = srv.client("t1").await;
    assert_eq!(c.reattach().await.expect("answered"), Duration::ZERO);
}

//! Bad input gets a typed `Error` and the connection stays usable; only an
//! oversized message closes it. Also the small control messages.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use voxterm::client::{Client, ClientError};
use voxterm_protocol::{
    Codec, CodecSettings, ErrorCode, Hello, KillReason, Message, OpenSession, Ping, StatsRequest,
    PROTOCOL_VERSION,
};

/// Sends raw bytes and expects exactly one `Error` with `code`, then checks
/// that `echo ok` still runs on the same connection.
async fn bad_bytes_then_ok(c: &mut Client, bytes: Vec<u8>, code: ErrorCode) {
    c.send_raw(WsMessage::Binary(bytes.clone().into()))
        .await
        .unwrap();
    expect_error_then_ok(c, code, &format!("{bytes:02x?}")).await;
}

async fn expect_error_then_ok(c: &mut Client, code: ErrorCode, what: &str) {
    match recv(c).await {
        Message::Error(e) => {
            assert_eq!(e.code, code, "{what}: {e:?}");
            assert_eq!(e.request, None, "{what}: {e:?}");
            assert!(!e.message.is_empty());
        }
        other => panic!("{what}: expected Error {code:?}, got {other:?}"),
    }
    let done = run(c, 0, "echo ok").await;
    assert_eq!(done.stdout, b"ok\n", "{what}: {:?}", done.error);
    assert_eq!(exit_of(&done).code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_typed_errors_and_the_connection_survives() {
    let server = TestServer::start("bad-frames").await;
    let mut c = server.client("t1").await;

    // Garbage shorter than a header.
    bad_bytes_then_ok(&mut c, vec![0xde, 0xad], ErrorCode::Malformed).await;
    // A valid header whose length runs past the message.
    bad_bytes_then_ok(
        &mut c,
        vec![1, 0x10, 0, 0xff, 0, 0, 1, 2],
        ErrorCode::Malformed,
    )
    .await;
    // A complete frame whose body is not an Exec.
    bad_bytes_then_ok(
        &mut c,
        vec![1, 0x10, 0, 3, 0, 0, b'a', b'b', b'c'],
        ErrorCode::Malformed,
    )
    .await;
    // Unknown frame type 0x7f, empty body.
    bad_bytes_then_ok(&mut c, vec![1, 0x7f, 0, 0, 0, 0], ErrorCode::UnknownType).await;
    // Version 9.
    bad_bytes_then_ok(
        &mut c,
        vec![9, 0x30, 0, 1, 0, 0, 5],
        ErrorCode::UnsupportedVersion,
    )
    .await;
    // Reserved flag bits on an otherwise valid Ping (body: varint nonce 5).
    bad_bytes_then_ok(
        &mut c,
        vec![1, 0x30, 0x80, 1, 0, 0, 5],
        ErrorCode::Malformed,
    )
    .await;
    // Compression value 3 is reserved too.
    bad_bytes_then_ok(
        &mut c,
        vec![1, 0x30, 0x03, 1, 0, 0, 5],
        ErrorCode::Malformed,
    )
    .await;
    // "Deflate" flag on bytes that are not deflate.
    bad_bytes_then_ok(
        &mut c,
        vec![1, 0x30, 0x01, 4, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ErrorCode::Malformed,
    )
    .await;

    // A text WebSocket message.
    c.send_raw(WsMessage::Text("echo hi".into())).await.unwrap();
    expect_error_then_ok(&mut c, ErrorCode::TextFrame, "text message").await;

    // A server-to-client message sent by the client.
    c.send(&Message::Pong(voxterm_protocol::Pong { nonce: 1 }))
        .await
        .unwrap(); // Pong is allowed both ways: ignored
    c.send(&Message::Exit(voxterm_protocol::Exit {
        request: 1,
        code: Some(0),
        signal: None,
        served_from: voxterm_protocol::ServedFrom::Exec,
        backend_us: 0,
        truncated: false,
        killed: KillReason::None,
    }))
    .await
    .unwrap();
    expect_error_then_ok(&mut c, ErrorCode::UnexpectedMessage, "Exit from client").await;

    // A second Hello.
    c.send(&Message::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        client: "again".into(),
        encodings: vec![],
        compression: vec![],
        tenant: None,
        token: None,
    })))
    .await
    .unwrap();
    expect_error_then_ok(&mut c, ErrorCode::UnexpectedMessage, "second Hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_does_not_spoil_the_good_frames_of_its_message() {
    let server = TestServer::start("mixed-message").await;
    let mut c = server.client("t1").await;
    // good Exec, unknown type, good Exec — in one WebSocket message.
    let mut bytes = encode(&[exec_msg(1, 0, "echo one", 0)]);
    bytes.extend_from_slice(&[1, 0x7f, 0, 2, 0, 0, 0xaa, 0xbb]);
    bytes.extend(encode(&[exec_msg(2, 0, "echo two", 0)]));
    c.send_raw(WsMessage::Binary(bytes.into())).await.unwrap();

    let mut errors = 0;
    let mut outs = std::collections::HashMap::new();
    let mut exits = 0;
    while exits < 2 {
        match recv(&mut c).await {
            Message::Error(e) => {
                assert_eq!(e.code, ErrorCode::UnknownType);
                errors += 1;
            }
            Message::Output(o) => outs
                .entry(o.request)
                .or_insert_with(Vec::new)
                .extend(o.data),
            Message::Exit(e) => {
                assert_eq!(e.code, Some(0));
                exits += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 1);
    assert_eq!(outs[&1], b"one\n");
    assert_eq!(outs[&2], b"two\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_before_hello_is_refused_by_name() {
    let server = TestServer::start("no-hello").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    ws.send(WsMessage::Binary(
        encode(&[exec_msg(77, 0, "echo hi", 0)]).into(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("reply in time")
        .expect("stream open")
        .expect("no ws error");
    let WsMessage::Binary(bytes) = reply else {
        panic!("expected binary reply, got {reply:?}")
    };
    let mut codec = Codec::new(CodecSettings::default());
    let frames: Vec<_> = codec.decode(&bytes).collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    match &frames[0] {
        Ok(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::HelloRequired);
            assert_eq!(e.request, Some(77));
        }
        other => panic!("expected HelloRequired, got {other:?}"),
    }

    // Hello still works on that connection afterwards, and then Exec runs.
    ws.send(WsMessage::Binary(
        encode(&[raw_hello("t1"), exec_msg(78, 0, "echo hi", 0)]).into(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    while !got
        .iter()
        .any(|m| matches!(m, Message::Exit(e) if e.request == 78))
    {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .expect("ok");
        if let WsMessage::Binary(b) = msg {
            got.extend(codec.decode(&b).map(|f| f.expect("decodes")));
        }
    }
    assert!(matches!(got[0], Message::Welcome(_)), "{got:?}");
    assert!(got
        .iter()
        .any(|m| matches!(m, Message::Output(o) if o.request == 78 && o.data == b"hi\n")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_with_an_unknown_version_is_refused() {
    let server = TestServer::start("hello-version").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    ws.send(WsMessage::Binary(
        encode(&[Message::Hello(Box::new(Hello {
            version: 9,
            client: "future".into(),
            encodings: vec![],
            compression: vec![],
            tenant: None,
            token: None,
        }))])
        .into(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WsMessage::Binary(bytes) = reply else {
        panic!("{reply:?}")
    };
    let mut codec = Codec::new(CodecSettings::default());
    match codec.decode(&bytes).next() {
        Some(Ok(Message::Error(e))) => assert_eq!(e.code, ErrorCode::UnsupportedVersion),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_in_flight_id_is_refused_and_the_original_completes() {
    let server = TestServer::start("duplicate").await;
    let mut c = server.client("t1").await;
    c.send(&exec_msg(50, 0, "sleep 0.3; echo first", 0))
        .await
        .unwrap();
    c.send(&exec_msg(50, 0, "echo second", 0)).await.unwrap();
    let mut dup_errors = 0;
    let mut stdout = Vec::new();
    let exit = loop {
        match recv(&mut c).await {
            Message::Error(e) => {
                assert_eq!(e.code, ErrorCode::DuplicateRequest, "{e:?}");
                // It must not look like the end of the in-flight request 50.
                assert_ne!(e.request, Some(50), "{e:?}");
                dup_errors += 1;
            }
            Message::Output(o) => {
                assert_eq!(o.request, 50);
                stdout.extend(o.data);
            }
            Message::Exit(e) => break e,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(dup_errors, 1);
    assert_eq!(exit.request, 50);
    assert_eq!(exit.code, Some(0));
    assert_eq!(stdout, b"first\n");

    // Once ended, the id may be reused at once.
    c.send(&exec_msg(50, 0, "echo again", 0)).await.unwrap();
    let g = gather(&mut c, 50).await;
    assert_eq!(g.stdout, b"again\n");
    assert!(matches!(g.end, Some(Message::Exit(ref e)) if e.code == Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_session_handle_names_the_request() {
    let server = TestServer::start("unknown-session").await;
    let mut c = server.client("t1").await;
    c.send(&exec_msg(31, 9, "echo hi", 0)).await.unwrap();
    match recv(&mut c).await {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnknownSession);
            assert_eq!(e.request, Some(31));
        }
        other => panic!("expected UnknownSession, got {other:?}"),
    }
    // Closing a handle that is not open.
    c.send(&Message::CloseSession(voxterm_protocol::CloseSession {
        session: 9,
    }))
    .await
    .unwrap();
    match recv(&mut c).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::UnknownSession),
        other => panic!("{other:?}"),
    }
    // Open 9, use it, close it, and it is unknown again.
    c.send(&Message::OpenSession(OpenSession {
        session: 9,
        name: "nine".into(),
    }))
    .await
    .unwrap();
    assert!(matches!(recv(&mut c).await, Message::SessionOpened(s) if s.session == 9));
    assert_eq!(run(&mut c, 9, "echo nine").await.stdout, b"nine\n");
    c.send(&Message::CloseSession(voxterm_protocol::CloseSession {
        session: 9,
    }))
    .await
    .unwrap();
    assert!(matches!(recv(&mut c).await, Message::SessionClosed(s) if s.session == 9));
    let id = c.exec(9, "echo nine", 0).await.unwrap();
    let g = gather(&mut c, id).await;
    assert!(
        matches!(g.end, Some(Message::Error(ref e)) if e.code == ErrorCode::UnknownSession),
        "{:?}",
        g.end
    );
    assert!(g.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_command_is_invalid() {
    let server = TestServer::start("empty").await;
    let mut c = server.client("t1").await;
    let done = run(&mut c, 0, "   ").await;
    let e = done.error.expect("an Error ends an empty command");
    assert_eq!(e.code, ErrorCode::InvalidCommand);
    assert!(e.request.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_with_1009() {
    let server = TestServer::start_with("oversized", |c| {
        c.server.max_message_bytes = 64 << 10;
    })
    .await;
    let mut c = server.client("t1").await;
    assert_eq!(c.welcome().limits.max_message_bytes, 64 << 10);
    // Just under the limit is fine: a 56 KiB command line.
    let arg = "a".repeat(56 << 10);
    let done = run(&mut c, 0, &format!("printf %s {arg}")).await;
    assert_eq!(exit_of(&done).code, Some(0));
    assert_eq!(done.stdout, arg.as_bytes());

    c.send_raw(WsMessage::Binary(vec![0u8; 200 << 10].into()))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.recv().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("connection closed in time");
    match end {
        ClientError::Closed(Some((code, _))) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_stats() {
    let server = TestServer::start("ping-stats").await;
    let mut c = server.client("t1").await;
    c.send(&Message::Ping(Ping {
        nonce: 0xdead_beef_cafe,
    }))
    .await
    .unwrap();
    match recv(&mut c).await {
        Message::Pong(p) => assert_eq!(p.nonce, 0xdead_beef_cafe),
        other => panic!("expected Pong, got {other:?}"),
    }

    assert_eq!(run(&mut c, 0, "echo x").await.stdout, b"x\n");
    c.send(&Message::StatsRequest(StatsRequest { nonce: 99 }))
        .await
        .unwrap();
    match recv(&mut c).await {
        Message::Stats(s) => {
            assert_eq!(s.nonce, 99);
            assert!(s.requests > 0, "{s:?}");
            assert_eq!(s.connections, 1);
            assert!(s.sessions >= 1);
            assert_eq!(s.in_flight, 0);
            assert!(!s.backend_histogram.is_empty());
            assert!(s.bytes_in > 0 && s.bytes_out > 0);
        }
        other => panic!("expected Stats, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_refuses_the_excess_request() {
    let server = TestServer::start_with("in-flight", |c| c.server.max_in_flight = 2).await;
    let mut c = server.client("t1").await;
    assert_eq!(c.welcome().limits.max_in_flight, 2);
    c.send_all(&[
        exec_msg(1, 0, "sleep 0.3; echo 1", 0),
        exec_msg(2, 0, "sleep 0.3; echo 2", 0),
        exec_msg(3, 0, "echo 3", 0),
    ])
    .await
    .unwrap();
    let mut ended = std::collections::HashMap::new();
    while ended.len() < 3 {
        match recv(&mut c).await {
            Message::Output(o) => assert_ne!(o.request, 3, "refused request ran"),
            Message::Exit(e) => {
                assert_eq!(e.code, Some(0));
                ended.insert(e.request, None);
            }
            Message::Error(e) => {
                let id = e.request.expect("the refusal names its request");
                ended.insert(id, Some(e.code));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ended[&1], None);
    assert_eq!(ended[&2], None);
    assert_eq!(ended[&3], Some(ErrorCode::TooManyRequests));
    // Room again.
    assert_eq!(run(&mut c, 0, "echo 4").await.stdout, b"4\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_above_max_frame_bytes_are_refused_without_closing() {
    let server = TestServer::start_with("max-frame", |c| c.server.max_frame_bytes = 8 << 10).await;
    let mut c = server
        .client_with(voxterm::client::ClientOptions {
            tenant: Some("t1".into()),
            compression: voxterm_protocol::Compression::Deflate,
            ..Default::default()
        })
        .await;
    assert_eq!(c.welcome().limits.max_frame_bytes, 8 << 10);
    // 10 KiB of command line, compressed by the client to a small frame: the
    // limit applies after decompression.
    let big = format!("printf %s {}", "q".repeat(10 << 10));
    c.send(&exec_msg(1, 0, &big, 0)).await.unwrap();
    match recv(&mut c).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::FrameTooLarge, "{e:?}"),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(run(&mut c, 0, "echo ok").await.stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_split_to_fit_a_small_max_frame_bytes() {
    let server =
        TestServer::start_with("small-frames", |c| c.server.max_frame_bytes = 8 << 10).await;
    let mut c = server.client("t1").await;
    let mut expected = Vec::new();
    for i in 1..=20_000u32 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let id = c.exec(0, "seq 1 20000", 0).await.unwrap();
    let g = gather(&mut c, id).await;
    assert!(
        matches!(g.end, Some(Message::Exit(ref e)) if e.code == Some(0)),
        "{:?}",
        g.end
    );
    let want: Vec<u32> = (0..g.seqs.len() as u32).collect();
    assert_eq!(g.seqs, want, "Output frames were lost");
    assert_eq!(
        g.stdout.len(),
        expected.len(),
        "output bytes were lost ({} Output frames arrived)",
        g.seqs.len()
    );
    assert!(g.stdout == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_problems_are_errors_and_hello_can_be_retried() {
    let server = TestServer::start("hello-retry").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    let hello = |tenant: &str| {
        Message::Hello(Box::new(Hello {
            version: PROTOCOL_VERSION,
            client: "raw".into(),
            encodings: vec![voxterm_protocol::Encoding::Json],
            compression: vec![],
            tenant: Some(tenant.into()),
            token: None,
        }))
    };
    let mut codec = Codec::new(CodecSettings::default());
    // A bad tenant name.
    ws.send(WsMessage::Binary(encode(&[hello("no/slashes")]).into()))
        .await
        .unwrap();
    let WsMessage::Binary(b) = tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("binary expected")
    };
    match codec.decode(&b).next() {
        Some(Ok(Message::Error(e))) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("{other:?}"),
    }
    // A JSON-encoded Hello is understood too; the server then speaks JSON.
    let mut json = Codec::new(CodecSettings {
        encoding: voxterm_protocol::Encoding::Json,
        ..CodecSettings::default()
    });
    let mut buf = Vec::new();
    json.encode(&hello("good"), &mut buf).unwrap();
    ws.send(WsMessage::Binary(buf.into())).await.unwrap();
    let WsMessage::Binary(b) = tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("binary expected")
    };
    match codec.decode(&b).next() {
        Some(Ok(Message::Welcome(w))) => {
            assert_eq!(w.tenant, "good");
            assert_eq!(w.encoding, voxterm_protocol::Encoding::Json);
            // Welcome itself is in JSON: a JSON-only client can read it.
            assert_eq!(b[2] & 0x04, 0x04, "Welcome's flags say JSON");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    let server = TestServer::start_with("hello-timeout", |c| {
        c.server.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    // `server.handshake_timeout`: "Time a client has to finish the HTTP upgrade
    // and send `Hello`". Nothing is sent here.
    let next = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
    match next {
        Err(_) => {
            panic!("connection without Hello still open 3 s after a 300 ms handshake timeout")
        }
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(WsMessage::Close(_)))) => {}
        Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
    }
}

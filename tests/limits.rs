//! Connection and output limits over real sockets: the output bytes/s budget
//! (slower, nothing lost), connection caps per source address and per tenant
//! (429 before the upgrade, or QuotaExceeded + 1013 after Hello), the idle
//! timeout, keepalive pings that drop dead peers, and the handshake timeout.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxterm::client::ClientError;
use voxterm_protocol::{
    Codec, CodecSettings, Compression, Encoding, ErrorCode, Hello, Message, StatsRequest,
    PROTOCOL_VERSION,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ALICE: &str = "alice-token-0123456789abcdef";

fn hello(tenant: Option<&str>, token: Option<&str>) -> Message {
    Message::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        client: "limits-test".into(),
        encodings: vec![Encoding::Bincode],
        compression: vec![Compression::None],
        tenant: tenant.map(Into::into),
        token: token.map(Into::into),
    }))
}

/// A WebSocket with `headers` that has sent `hello`.
async fn raw_connect(server: &TestServer, headers: &[(&'static str, &str)], hello: Message) -> Ws {
    let mut req = server.url.as_str().into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
        .expect("upgrade");
    ws.send(WsMessage::Binary(encode(&[hello]).into()))
        .await
        .unwrap();
    ws
}

/// The next WebSocket message: a decoded frame, or the close code.
async fn next(ws: &mut Ws) -> Result<Message, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("message in time");
        match msg {
            Some(Ok(WsMessage::Binary(b))) => {
                let mut codec = Codec::new(CodecSettings::default());
                return Ok(codec.decode(&b).next().expect("a frame").expect("decodes"));
            }
            Some(Ok(WsMessage::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// A raw upgrade request: (status, whole response). Reads the head and, for
/// anything but 101, the body up to the server's close.
async fn upgrade(server: &TestServer, extra: &str) -> (u16, String) {
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        server.addr
    );
    let fut = async {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if n == 0 || (text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n")) {
                return buf;
            }
        }
    };
    let buf = tokio::time::timeout(STEP, fut)
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// The value of `voxterm_refusals_total{kind}` on /metrics.
async fn refusals(server: &TestServer, kind: &str) -> u64 {
    let (_, _, metrics) = http_get(server.addr, "/metrics").await;
    let prefix = format!("voxterm_refusals_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Polls `cond` until it holds, failing after [`STEP`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < STEP, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tokens_file(name: &str) -> PathBuf {
    let path = temp_root(name).join("tokens.toml");
    std::fs::write(&path, format!("[tokens]\n\"{ALICE}\" = \"alice\"\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_over_the_budget_is_slowed_down_not_dropped() {
    const RATE: u64 = 64 << 10;
    let server = TestServer::start_with("out-budget", |c| {
        c.limits.output_bytes_per_second = RATE;
        c.limits.output_burst = 16 << 10;
    })
    .await;
    let mut c = server.client("t1").await;
    // 160 KiB: 16 KiB of burst, then 144 KiB at 64 KiB/s = 2.25 s.
    let n = 160 << 10;
    let start = Instant::now();
    let done = run(&mut c, 0, &format!("head -c {n} /dev/zero")).await;
    let took = start.elapsed();
    assert_eq!(exit_of(&done).code, Some(0));
    assert_eq!(done.stdout.len(), n, "every byte arrives");
    assert!(!exit_of(&done).truncated);
    assert!(
        took >= Duration::from_millis(1900),
        "{n} bytes at {RATE} B/s took only {took:?}"
    );
    assert!(refusals(&server, "output_throttled").await > 0);
    // The budget is per tenant: another tenant starts with a full burst.
    let mut other = server.client("t2").await;
    let start = Instant::now();
    let done = run(&mut other, 0, "head -c 8192 /dev/zero").await;
    assert_eq!(done.stdout.len(), 8192);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_does_not_wait_out_its_output_debt() {
    let server = TestServer::start_with("out-budget-cancel", |c| {
        c.limits.output_bytes_per_second = 1024;
        c.limits.output_burst = 1024;
    })
    .await;
    let mut c = server.client("t1").await;
    let id = c.exec(0, "head -c 1000000 /dev/zero", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(&Message::Cancel(voxterm_protocol::Cancel { request: id }))
        .await
        .unwrap();
    let start = Instant::now();
    let g = gather(&mut c, id).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "cancel waited {:?}",
        start.elapsed()
    );
    match g.end {
        Some(Message::Exit(e)) => assert_eq!(e.killed, voxterm_protocol::KillReason::Cancelled),
        other => panic!("expected Exit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_over_the_cap_get_429() {
    let server = TestServer::start_with("ip-cap", |c| {
        c.limits.max_connections_per_ip = 2;
    })
    .await;
    let a = server.client("t1").await;
    let _b = server.client("t2").await;
    let (status, response) = upgrade(&server, "").await;
    assert_eq!(status, 429, "{response}");
    assert!(
        response.contains("too many connections from 127.0.0.1"),
        "{response}"
    );
    // Plain HTTP is not a WebSocket connection: not capped.
    let (status, _, _) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(refusals(&server, "connections_per_ip").await, 1);
    // A closed connection gives its slot back.
    a.close().await.unwrap();
    eventually("slot freed", || async {
        upgrade(&server, "").await.0 == 101
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_tenant_over_the_cap_are_refused_before_or_at_hello() {
    let tokens = tokens_file("tenant-cap-tokens");
    let server = TestServer::start_with("tenant-cap", move |c| {
        c.auth.tokens_file = Some(tokens);
        c.limits.max_connections_per_tenant = 1;
    })
    .await;
    let auth = format!("Bearer {ALICE}");
    let mut first = raw_connect(&server, &[("authorization", &auth)], hello(None, None)).await;
    assert!(matches!(next(&mut first).await, Ok(Message::Welcome(_))));
    // Header token: refused before the upgrade.
    let (status, response) = upgrade(&server, &format!("Authorization: {auth}\r\n")).await;
    assert_eq!(status, 429, "{response}");
    assert!(
        response.contains("tenant alice already has its maximum of 1 connections"),
        "{response}"
    );
    // Token in Hello only: the tenant is known after the upgrade.
    let mut late = raw_connect(&server, &[], hello(None, Some(ALICE))).await;
    match next(&mut late).await {
        Ok(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
            assert!(e.message.contains("maximum of 1 connections"), "{e:?}");
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(next(&mut late).await.unwrap_err(), Some(1013));
    assert_eq!(refusals(&server, "connections_per_tenant").await, 2);
    // The Stats frame carries the same counter.
    first
        .send(WsMessage::Binary(
            encode(&[Message::StatsRequest(StatsRequest { nonce: 7 })]).into(),
        ))
        .await
        .unwrap();
    match next(&mut first).await {
        Ok(Message::Stats(stats)) => {
            let counter = stats
                .counters
                .iter()
                .find(|c| c.name == "refused_connections_per_tenant")
                .expect("counter in Stats");
            assert_eq!(counter.value, 2);
        }
        other => panic!("expected Stats, got {other:?}"),
    }
    // Once the first one is gone, alice may connect again.
    first.close(None).await.unwrap();
    drop(first);
    eventually("tenant slot freed", || async {
        upgrade(&server, &format!("Authorization: {auth}\r\n"))
            .await
            .0
            == 101
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_but_not_while_a_request_runs() {
    let server = TestServer::start_with("idle", |c| {
        c.server.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut c = server.client("t1").await;
    // A request longer than the idle timeout keeps the connection.
    let done = run(&mut c, 0, "sleep 0.9; echo done").await;
    assert_eq!(done.stdout, b"done\n");
    // Then, with nothing to do, it is closed with 1000.
    let start = Instant::now();
    let end = loop {
        match recv_result(&mut c).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    let waited = start.elapsed();
    match end {
        ClientError::Closed(Some((code, reason))) => {
            assert_eq!(code, 1000);
            assert_eq!(reason, "idle timeout");
        }
        other => panic!("expected close 1000, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(refusals(&server, "idle_timeout").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_a_peer_that_stops_answering_pings() {
    let interval = Duration::from_millis(250);
    let server = TestServer::start_with("keepalive", |c| {
        c.server.ping_interval = interval;
    })
    .await;
    // A live peer: tungstenite answers the pings as long as it keeps reading,
    // so a task reads it all along and hands over what is not a ping.
    let mut live = raw_connect(&server, &[], hello(Some("t1"), None)).await;
    assert!(matches!(next(&mut live).await, Ok(Message::Welcome(_))));
    let (mut live_tx, mut live_rx) = live.split();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pings2 = pings.clone();
    tokio::spawn(async move {
        while let Some(msg) = live_rx.next().await {
            match msg {
                Ok(WsMessage::Ping(_)) => {
                    pings2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                other => {
                    if seen_tx.send(other).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let quiet = tokio::time::timeout(interval * 6, seen.recv()).await;
    assert!(quiet.is_err(), "a live peer was closed: {quiet:?}");
    let pinged = pings.load(std::sync::atomic::Ordering::Relaxed);
    assert!(pinged >= 3, "{pinged} pings in {:?}", interval * 6);
    assert_eq!(refusals(&server, "keepalive_timeout").await, 0);

    // A dead peer: handshakes, then never reads again (so never answers).
    let mut dead = raw_connect(&server, &[], hello(Some("t2"), None)).await;
    assert!(matches!(next(&mut dead).await, Ok(Message::Welcome(_))));
    let start = Instant::now();
    eventually("dead peer dropped", || async {
        refusals(&server, "keepalive_timeout").await >= 1
    })
    .await;
    let took = start.elapsed();
    assert!(
        took <= interval * 3 + Duration::from_millis(200),
        "dropped after {took:?}, interval {interval:?}"
    );
    // The server let go of it: the stream ends.
    let end = tokio::time::timeout(STEP, async {
        while let Some(Ok(msg)) = dead.next().await {
            if matches!(msg, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the dead peer's connection is still open");
    // The live one is still served, and was never counted as dead.
    live_tx
        .send(WsMessage::Binary(
            encode(&[exec_msg(1, 0, "echo alive", 0)]).into(),
        ))
        .await
        .unwrap();
    let mut codec = Codec::new(CodecSettings::default());
    loop {
        let msg = tokio::time::timeout(STEP, seen.recv())
            .await
            .expect("answer in time");
        let Some(Ok(WsMessage::Binary(b))) = msg else {
            panic!("live peer closed: {msg:?}");
        };
        let frames: Vec<_> = codec.decode(&b).collect();
        if frames
            .iter()
            .any(|f| matches!(f, Ok(Message::Exit(e)) if e.code == Some(0)))
        {
            break;
        }
    }
    assert_eq!(refusals(&server, "keepalive_timeout").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_silent_handshake_is_cut_off() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::start_with("slow-handshake", |c| {
        c.server.handshake_timeout = timeout;
    })
    .await;
    // Connects and sends nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Trickles a valid head one byte every 50 ms (it would take ~5 s).
    let trickle = async {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        );
        let start = Instant::now();
        for b in head.bytes() {
            if s.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The server closing shows as a failed write or a readable EOF.
            let mut probe = [0u8; 64];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                break;
            }
        }
        start.elapsed()
    };
    let start = Instant::now();
    let mut buf = Vec::new();
    let silent_read = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut buf));
    let (silent_read, trickled) = tokio::join!(silent_read, trickle);
    assert!(silent_read.is_ok(), "a silent client was not cut off");
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    assert!(start.elapsed() >= timeout - Duration::from_millis(50));
    assert!(
        trickled < Duration::from_secs(2),
        "a trickling client was kept for {trickled:?}"
    );
    assert_eq!(refusals(&server, "handshake_timeout").await, 2);
}

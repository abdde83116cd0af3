//! Connection and output limits over real sockets: the output bytes/s budget
//! (slower, nothing lost), connection caps per source address and per tenant
//! (429 before the upgrade, or QuotaExceeded + 1013 after Hello), the idle
//! timeout, keepalive pings that drop dead peers, and the handshake timeout;
//! and the limits that are on by default (issue 19): half-open connections
//! counted per address from `accept`, the open-files budget under a 1,024
//! descriptor limit, the command-length bound, the per-tenant session quota,
//! failed-authentication back-off, the `Host` check of `/healthz` and
//! `/metrics`, and `Stats` scoped to the tenant.

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

/// The first frame of the next WebSocket message, or the close code (for
/// replies that come alone: `Welcome`, an `Error` before anything else).
async fn next(ws: &mut Ws) -> Result<Message, Option<u16>> {
    next_all(ws).await.map(|mut frames| frames.remove(0))
}

/// Every frame of the next WebSocket message (the writer coalesces frames that
/// are ready together, such as a command's last `Output` and its `Exit`), or
/// the close code.
async fn next_all(ws: &mut Ws) -> Result<Vec<Message>, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("message in time");
        match msg {
            Some(Ok(WsMessage::Binary(b))) => {
                let mut codec = Codec::new(CodecSettings::default());
                let frames: Vec<Message> = codec.decode(&b).map(|f| f.expect("decodes")).collect();
                assert!(!frames.is_empty(), "a message without frames");
                return Ok(frames);
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

/// alice's token is an admin's here (her `Stats` are server-wide).
fn tokens_file(name: &str) -> PathBuf {
    let path = temp_root(name).join("tokens.toml");
    std::fs::write(
        &path,
        format!("[tokens]\n\"{ALICE}\" = {{ tenant = \"alice\", admin = true }}\n"),
    )
    .unwrap();
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

/// The ping interval of the keepalive tests' servers.
const KEEPALIVE: Duration = Duration::from_millis(250);

/// A server that pings every [`KEEPALIVE`].
async fn keepalive_server(name: &str) -> TestServer {
    TestServer::start_with(name, |c| c.server.ping_interval = KEEPALIVE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_a_peer_that_stops_answering_pings() {
    let interval = KEEPALIVE;
    let server = keepalive_server("keepalive").await;
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

/// `Client::idle` is how a library user pauses between requests: it reads
/// meanwhile, so the keepalive pings are answered and the connection lives
/// on; the same client sleeping instead is dropped as a dead peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pausing_in_idle_answers_the_pings_and_one_sleeping_is_dropped() {
    let interval = KEEPALIVE;
    let server = keepalive_server("keepalive-idle").await;
    let mut idler = server.client("t1").await;
    idler
        .idle(interval * 6)
        .await
        .expect("idle on a live connection");
    assert_eq!(refusals(&server, "keepalive_timeout").await, 0);
    let done = run(&mut idler, 0, "echo after-the-pause").await;
    assert_eq!(String::from_utf8_lossy(&done.stdout), "after-the-pause\n");
    idler.close().await.expect("close");

    let mut sleeper = server.client("t2").await;
    tokio::time::sleep(interval * 6).await;
    assert_eq!(refusals(&server, "keepalive_timeout").await, 1);
    match tokio::time::timeout(STEP, sleeper.idle(STEP)).await {
        Ok(Err(ClientError::Closed(_) | ClientError::Ws(_))) => {}
        other => panic!("the sleeping client was not dropped: {other:?}"),
    }
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

/// A TCP connection from `source` (any 127.0.0.0/8 address) that sends the
/// first line of a request head and nothing more.
async fn half_open(server: std::net::SocketAddr, source: &str) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("address"))?;
    let mut s = socket.connect(server).await?;
    s.write_all(b"GET /ws HTTP/1.1\r\n").await?;
    Ok(s)
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_count_per_address_from_accept() {
    let server = TestServer::start_with("half-open", |c| {
        c.limits.max_pending_per_ip = 5;
        c.limits.max_connections_per_ip = 3;
    })
    .await;
    // Five half-sent heads from 127.0.0.2 are kept (until the handshake timeout)...
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(half_open(server.addr, "127.0.0.2").await.unwrap());
    }
    for s in &mut held {
        assert!(!closed_within(s, Duration::from_millis(50)).await);
    }
    // ...a sixth is closed at once, without waiting for its head.
    let mut sixth = half_open(server.addr, "127.0.0.2").await.unwrap();
    assert!(
        closed_within(&mut sixth, Duration::from_secs(2)).await,
        "a sixth half-open connection from one address was kept"
    );
    assert_eq!(refusals(&server, "pending_per_ip").await, 1);
    // Other addresses are not affected.
    let (status, _, _) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);

    // Half-open connections hold the address's connection slots from accept:
    // with three of them open, a complete upgrade from that address gets 429.
    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(half_open(server.addr, "127.0.0.3").await.unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut response))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.contains("too many connections from 127.0.0.3: at most 3"),
        "{response}"
    );
    drop(three);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_1024_descriptor_limit_a_half_open_flood_leaves_healthz_and_clients_served() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let root = temp_root("fd-flood-root");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxterm"));
    cmd.args(["serve", "--preset", "development", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("VOXTERM_CONFIG")
        .env_remove("VOXTERM_TOKENS")
        .env("HOME", &root)
        .env("XDG_DATA_HOME", &root)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Soft and hard limit 1,024, so that raising the soft limit to the hard
    // one (which the server does) gains nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, 1024)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().expect("voxterm serve starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().expect("stderr");
    let mut child = Kill(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            log2.lock().unwrap().push(line);
        }
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("server up", || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(nofile.split_whitespace().any(|w| w == "1024"), "{nofile}");

    // 1,500 half-sent heads from 50 addresses (30 each, under the per-address
    // bound of 64): more than the server has descriptors.
    let mut flood = Vec::new();
    for i in 0..1500 {
        let source = format!("127.0.0.{}", 10 + i % 50);
        if let Ok(s) = half_open(addr, &source).await {
            flood.push(s);
        }
    }
    assert!(flood.len() > 1024, "only {} connections made", flood.len());
    // /healthz answers, and a real client gets in and runs a command.
    for _ in 0..3 {
        let (status, _, body) = http_get(addr, "/healthz").await;
        assert_eq!(status, 200, "{body}");
    }
    let mut client = tokio::time::timeout(
        STEP,
        voxterm::client::Client::connect(&format!("ws://{addr}/ws"), Default::default()),
    )
    .await
    .expect("connect in time")
    .expect("a client gets in during the flood");
    let done = run(&mut client, 0, "echo ok").await;
    assert_eq!(done.stdout, b"ok\n");
    // The budget did the work (half-open connections were closed for newer
    // ones), and accept errors, if any, were not logged in a loop.
    let (_, _, metrics) = http_get(addr, "/metrics").await;
    let evicted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("voxterm_refusals_total{kind=\"fd_reserve\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(evicted > 100, "fd_reserve refusals: {evicted}");
    eprintln!(
        "flood: {} connections made, {evicted} closed by the open-files budget, /healthz and a client served",
        flood.len()
    );
    drop(flood);
    let _ = child.0.kill();
    let _ = child.0.wait();
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap();
    let accept_failures = log.iter().filter(|l| l.contains("accept failed")).count();
    assert!(
        accept_failures <= 3,
        "{accept_failures} accept failures logged:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("open-files budget")),
        "{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_command_line_is_refused_before_it_is_parsed() {
    // With a deny list every line is parsed by the policy: a refusal as
    // InvalidCommand (not PolicyDenied) shows the policy never saw it.
    let server = TestServer::start_with("long-line", |c| {
        c.policy.deny = vec!["echo".into()];
    })
    .await;
    let mut c = server.client("t1").await;
    let long = format!("echo {}", "a".repeat(200 << 10));
    let start = Instant::now();
    let done = run(&mut c, 0, &long).await;
    let took = start.elapsed();
    let e = done.error.as_ref().expect("refused");
    assert_eq!(e.code, ErrorCode::InvalidCommand, "{e:?}");
    assert!(
        e.message.contains("204805 bytes") && e.message.contains("max_command_bytes"),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(refusals(&server, "command_too_long").await, 1);
    assert_eq!(refusals(&server, "policy_denied").await, 0);
    // Under the bound, the policy decides as before; and a long line it admits runs.
    let done = run(&mut c, 0, "echo hi").await;
    assert_eq!(
        done.error.as_ref().map(|e| e.code),
        Some(ErrorCode::PolicyDenied)
    );
    let fine = format!(": {}", "a".repeat(100 << 10));
    let done = run(&mut c, 0, &fine).await;
    assert_eq!(exit_of(&done).code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_has_at_most_64_sessions_by_default() {
    let server = TestServer::start("session-quota").await;
    let mut a = server.client("t1").await;
    let mut b = server.client("t1").await;
    let open = |session: voxterm_protocol::SessionId, name: String| {
        Message::OpenSession(voxterm_protocol::OpenSession { session, name })
    };
    for i in 0..40 {
        a.send(&open(i + 1, format!("s{i}"))).await.unwrap();
        assert!(matches!(recv(&mut a).await, Message::SessionOpened(_)));
    }
    for i in 40..64 {
        b.send(&open(i + 1, format!("s{i}"))).await.unwrap();
        assert!(matches!(recv(&mut b).await, Message::SessionOpened(_)));
    }
    b.send(&open(100, "one-too-many".into())).await.unwrap();
    match recv(&mut b).await {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
            assert!(e.message.contains("maximum of 64 sessions"), "{e:?}");
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    // Another tenant is not affected; resuming an existing name is not new.
    let mut other = server.client("t2").await;
    other.send(&open(1, "s1".into())).await.unwrap();
    assert!(matches!(recv(&mut other).await, Message::SessionOpened(_)));
    b.send(&open(101, "s0".into())).await.unwrap();
    assert!(matches!(recv(&mut b).await, Message::SessionOpened(o) if o.resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_make_the_address_wait_and_are_counted() {
    let tokens = tokens_file("auth-throttle-tokens");
    let server = TestServer::start_with("auth-throttle", move |c| {
        c.auth.tokens_file = Some(tokens);
        c.limits.auth_failures_per_ip = 3;
    })
    .await;
    let wrong = "Authorization: Bearer wrong-token-0123456789abcdef\r\n";
    let right = format!("Authorization: Bearer {ALICE}\r\n");
    // Upgraded before the failures; says Hello after them.
    let (mut early, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .expect("upgrade");
    // An unknown token in Hello counts like one in the headers.
    let mut ws = raw_connect(
        &server,
        &[],
        hello(None, Some("wrong-token-0123456789abcdef")),
    )
    .await;
    match next(&mut ws).await {
        Ok(Message::Error(e)) => assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    for _ in 0..3 {
        assert_eq!(upgrade(&server, wrong).await.0, 401);
    }
    // The fourth failure made 127.0.0.1 wait 1 s: even the right token is
    // refused unchecked meanwhile, in the headers or in Hello.
    let (status, response) = upgrade(&server, &right).await;
    assert_eq!(status, 429, "{response}");
    assert!(response.contains("Retry-After: 1"), "{response}");
    assert!(
        response.contains("too many failed authentications from 127.0.0.1"),
        "{response}"
    );
    let (status, _) = upgrade(&server, "").await;
    assert_eq!(status, 429, "no token: refused too");
    early
        .send(WsMessage::Binary(
            encode(&[hello(None, Some(ALICE))]).into(),
        ))
        .await
        .unwrap();
    match next(&mut early).await {
        Ok(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
            assert!(
                e.message.contains("too many failed authentications"),
                "{e:?}"
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(next(&mut early).await.unwrap_err(), Some(1008));
    assert_eq!(
        metric(server.addr, "voxterm_auth_failures_total").await,
        4.0
    );
    assert_eq!(refusals(&server, "auth_throttled").await, 3);
    // The wait served, the right token works; the next wrong one doubles it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(upgrade(&server, &right).await.0, 101);
    assert_eq!(upgrade(&server, wrong).await.0, 401);
    let (status, response) = upgrade(&server, &right).await;
    assert_eq!(status, 429);
    assert!(response.contains("Retry-After: 2"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_refuse_foreign_hosts() {
    let server = TestServer::start_with("host-check", |c| {
        c.server.allowed_hosts = vec!["voxterm.internal".into()];
    })
    .await;
    for path in ["/healthz", "/metrics"] {
        let (status, _, body) = http_raw(
            server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 421, "{path}: {body}");
        assert!(
            body.contains("evil.example") && body.contains("allowed_hosts = [\"evil.example\"]"),
            "{body}"
        );
        for host in [
            "localhost",
            "localhost:7878",
            "127.0.0.1:1",
            "[::1]:7878",
            "voxterm.internal:7878",
        ] {
            let (status, _, body) = http_raw(
                server.addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert_eq!(status, 200, "{path} {host}: {body}");
        }
    }
    assert_eq!(refusals(&server, "host").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_a_tenant_its_own_figures_and_an_admin_everything() {
    const BOB: &str = "bob-token-0123456789abcdef0123";
    let path = temp_root("stats-scope-tokens").join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[tokens]\n\"{ALICE}\" = {{ tenant = \"alice\", admin = true }}\n\"{BOB}\" = \"bob\"\n"
        ),
    )
    .unwrap();
    let server = TestServer::start_with("stats-scope", move |c| {
        c.auth.tokens_file = Some(path);
    })
    .await;
    let mut alice = raw_connect(&server, &[], hello(None, Some(ALICE))).await;
    assert!(matches!(next(&mut alice).await, Ok(Message::Welcome(_))));
    let mut bob = raw_connect(&server, &[], hello(None, Some(BOB))).await;
    assert!(matches!(next(&mut bob).await, Ok(Message::Welcome(_))));
    // alice runs something, so that server-wide figures differ from bob's.
    alice
        .send(WsMessage::Binary(
            encode(&[exec_msg(1, 0, "echo a", 0)]).into(),
        ))
        .await
        .unwrap();
    loop {
        let frames = next_all(&mut alice)
            .await
            .expect("alice's connection stays");
        if frames.iter().any(|f| matches!(f, Message::Exit(_))) {
            break;
        }
        if let Some(e) = frames.iter().find(|f| matches!(f, Message::Error(_))) {
            panic!("`echo a` failed: {e:?}");
        }
    }
    let own = stats_of(&mut bob).await;
    assert!(
        own.counters.iter().any(|c| c.name == "scope_tenant"),
        "{own:?}"
    );
    assert_eq!((own.connections, own.sessions, own.requests), (1, 0, 0));
    assert_eq!((own.rss_bytes, own.cpu_us, own.queue_depth), (0, 0, 0));
    assert!(own.backend_histogram.is_empty());
    assert!(!own.counters.iter().any(|c| c.name.starts_with("refused_")));
    let all = stats_of(&mut alice).await;
    assert!(!all.counters.iter().any(|c| c.name == "scope_tenant"));
    assert!(
        all.rss_bytes > 0 && all.connections >= 2 && all.requests >= 1,
        "{all:?}"
    );
    assert!(all
        .counters
        .iter()
        .any(|c| c.name == "refused_unauthorized"));
}

/// Sends a `StatsRequest` and returns the `Stats`.
async fn stats_of(ws: &mut Ws) -> Box<voxterm_protocol::Stats> {
    ws.send(WsMessage::Binary(
        encode(&[Message::StatsRequest(StatsRequest { nonce: 1 })]).into(),
    ))
    .await
    .unwrap();
    loop {
        let frames = next_all(ws).await.expect("the connection stays");
        if let Some(Message::Stats(s)) = frames.into_iter().find(|f| matches!(f, Message::Stats(_)))
        {
            return s;
        }
    }
}

/// Issue 19 item 7: the server is non-dumpable, so the commands it runs (as
/// its own user) cannot read its `/proc/<pid>/environ` or `maps`. Root reads
/// any process regardless (CAP_SYS_PTRACE), so when the tests run as root the
/// server binary is started as `nobody` and its commands run as `nobody` too:
/// the same-user case the flag is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_read_the_servers_environ_or_memory_maps() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root_user = unsafe { nix::libc::geteuid() } == 0;
    let mut _in_process = None;
    let mut _child = None;
    let (url, server_pid) = if root_user {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let home = temp_root("nondumpable-home");
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxterm"));
        cmd.args(["serve", "--preset", "development", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("VOXTERM_CONFIG")
            .env_remove("VOXTERM_TOKENS")
            .env("HOME", &home)
            .env("XDG_DATA_HOME", &home)
            .env("VOXTERM_TEST_SECRET", "s3cr3t-in-the-servers-environment")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .uid(NOBODY)
            .gid(NOBODY);
        let child = cmd.spawn().expect("voxterm serve starts as nobody");
        let pid = child.id();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        _child = Some(Kill(child));
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually("server up", || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        (format!("ws://{addr}/ws"), pid)
    } else {
        let server = TestServer::start("nondumpable").await;
        assert!(
            !nix::sys::prctl::get_dumpable().unwrap(),
            "the server process is non-dumpable"
        );
        let url = server.url.clone();
        _in_process = Some(server);
        (url, std::process::id())
    };
    let mut c = tokio::time::timeout(
        STEP,
        voxterm::client::Client::connect(&url, Default::default()),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    // Control: the command can read its own shell's environment, and the
    // server is its parent.
    let done = run(&mut c, 0, "cat /proc/$$/environ >/dev/null && echo $PPID").await;
    assert_eq!(exit_of(&done).code, Some(0), "{done:?}");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        server_pid.to_string()
    );
    for file in ["environ", "maps", "mem"] {
        for line in [
            format!("cat /proc/{server_pid}/{file}"),
            format!("cat /proc/$PPID/{file}"),
        ] {
            let done = run(&mut c, 0, &line).await;
            let exit = exit_of(&done);
            assert_ne!(exit.code, Some(0), "`{line}` succeeded");
            assert!(
                String::from_utf8_lossy(&done.stderr).contains("Permission denied"),
                "`{line}`: {:?}",
                String::from_utf8_lossy(&done.stderr)
            );
            assert!(!String::from_utf8_lossy(&done.stdout).contains("s3cr3t"));
        }
    }
}

/// The log lines a `voxterm serve` with `args` writes up to "voxterm listening".
fn startup_log(args: &[&str]) -> String {
    use std::io::BufRead;
    let home = temp_root("startup-log-home");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args([
            "serve",
            "--preset",
            "development",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("VOXTERM_CONFIG")
        .env_remove("VOXTERM_TOKENS")
        .env_remove("VOXTERM_REDIS_URL")
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("voxterm serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            log.push_str(&line);
            log.push('\n');
            if line.contains("voxterm listening") {
                break;
            }
        }
        let _ = tx.send(log);
    });
    let log = rx.recv_timeout(STEP).expect("the server starts in time");
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn startup_warns_about_weak_tokens_readable_secrets_and_a_redis_password_in_argv() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_root("startup-secrets");
    let weak = dir.join("weak.toml");
    std::fs::write(
        &weak,
        format!("[tokens]\n\"{ALICE}\" = \"alice\"\n\"9f2c0d4e6a8b1c3d5e7f\" = \"bob\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&weak, std::fs::Permissions::from_mode(0o644)).unwrap();
    let weak_s = weak.display().to_string();
    let log = startup_log(&[
        "--tokens",
        &weak_s,
        "--redis-url",
        "redis://:hunter2hunter2@127.0.0.1:1/",
    ]);
    assert!(
        log.contains("a token of tenant bob has about 80 bits of entropy"),
        "{log}"
    );
    assert!(!log.contains("tenant alice has"), "{log}");
    assert!(
        !log.contains("9f2c0d4e6a8b1c3d5e7f"),
        "a token in the log: {log}"
    );
    assert!(log.contains("readable by other users: chmod 600"), "{log}");
    assert!(log.contains("can read the tokens file"), "{log}");
    assert!(
        log.contains("--redis-url carries a password on the command line"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "the password in the log: {log}");

    // The same URL from a file: no warning about the command line, L3 on.
    let url_file = dir.join("redis-url");
    std::fs::write(&url_file, "redis://:hunter2hunter2@127.0.0.1:1/\n").unwrap();
    std::fs::set_permissions(&weak, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url_file_s = url_file.display().to_string();
    let log = startup_log(&["--tokens", &weak_s, "--redis-url-file", &url_file_s]);
    assert!(!log.contains("carries a password"), "{log}");
    assert!(!log.contains("readable by other users"), "{log}");
    assert!(log.contains("L3 (Redis)"), "{log}");
    assert!(!log.contains("hunter2"), "the password in the log: {log}");
}

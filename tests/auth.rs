//! Authentication and origin checks over real sockets: 401 before the upgrade,
//! tokens from headers, subprotocols and Hello, 1008 on a bad Hello token, 403 on
//! a foreign Origin, and the refusal to bind beyond loopback without tokens.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxterm::client::{Client, ClientError, ClientOptions};
use voxterm::config::{Config, Preset};
use voxterm::server::Server;
use voxterm_protocol::{
    Codec, CodecSettings, Compression, Encoding, ErrorCode, Hello, Message, PROTOCOL_VERSION,
};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn tokens_file(name: &str) -> PathBuf {
    let dir = temp_root(name);
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!("[tokens]\n\"{ALICE}\" = \"alice\"\n\"{BOB}\" = \"bob\"\n"),
    )
    .unwrap();
    path
}

async fn server(name: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let tokens = tokens_file(&format!("{name}-tokens"));
    TestServer::start_with(name, move |c| {
        c.auth.tokens_file = Some(tokens);
        tweak(c);
    })
    .await
}

/// A raw upgrade request with `extra` header lines: (status, head). Reads only
/// the response head (after a 101 the server keeps the socket open).
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
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the response head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
        buf
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

fn hello(tenant: Option<&str>, token: Option<&str>) -> Message {
    Message::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        client: "auth-test".into(),
        encodings: vec![Encoding::Bincode],
        compression: vec![Compression::None],
        tenant: tenant.map(Into::into),
        token: token.map(Into::into),
    }))
}

/// Opens a WebSocket with `headers` and sends `hello`.
async fn raw_connect(server: &TestServer, headers: &[(&'static str, &str)], hello: Message) -> Ws {
    let mut req = server.url.as_str().into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().expect("header value"));
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
                let frame = codec.decode(&b).next().expect("one frame");
                return Ok(frame.expect("decodes"));
            }
            Some(Ok(WsMessage::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

fn tenant_of(msg: Result<Message, Option<u16>>) -> String {
    match msg {
        Ok(Message::Welcome(w)) => w.tenant,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_header_token_is_401_before_upgrade() {
    let s = server("auth-401", |c| c.auth.hello_token = false).await;
    for extra in [
        String::new(),
        "Authorization: Bearer wrong-token-0123456789\r\n".into(),
        "Authorization: Bearer \r\n".into(),
        format!("Authorization: Basic {ALICE}\r\n"),
        "Sec-WebSocket-Protocol: voxterm, bearer.wrong-token-0123456789\r\n".into(),
        // One good and one bad token: still refused.
        format!("Authorization: Bearer {ALICE}\r\nSec-WebSocket-Protocol: bearer.nope-0123456789abc\r\n"),
        // Tokens of two tenants.
        format!("Authorization: Bearer {ALICE}\r\nSec-WebSocket-Protocol: bearer.{BOB}\r\n"),
    ] {
        let (status, head) = upgrade(&s, &extra).await;
        assert_eq!(status, 401, "{extra:?}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    let (status, head) = upgrade(&s, &format!("Authorization: Bearer {ALICE}\r\n")).await;
    assert_eq!(status, 101, "{head}");
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"unauthorized\"} 7"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_header_token_is_401_even_when_hello_tokens_are_allowed() {
    let s = server("auth-401b", |_| {}).await;
    let (status, _) = upgrade(&s, "Authorization: Bearer wrong-token-0123456789\r\n").await;
    assert_eq!(status, 401);
    // Without any header token the upgrade goes through (the token may come in Hello).
    let (status, _) = upgrade(&s, "").await;
    assert_eq!(status, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_decides_the_tenant() {
    let s = server("auth-bearer", |_| {}).await;
    // Header only; the Hello names no tenant and carries no token.
    let mut ws = raw_connect(
        &s,
        &[("authorization", &format!("Bearer {ALICE}"))],
        hello(None, None),
    )
    .await;
    assert_eq!(tenant_of(next(&mut ws).await), "alice");

    // The client sends the token as a header and in Hello; commands run as alice.
    let mut c = s
        .client_with(ClientOptions {
            token: Some(BOB.into()),
            ..Default::default()
        })
        .await;
    assert_eq!(c.welcome().tenant, "bob");
    let done = run(&mut c, 0, "echo hi").await;
    assert_eq!(exit_of(&done).code, Some(0));

    // A Hello naming another tenant than the token's is refused.
    let mut ws = raw_connect(
        &s,
        &[("authorization", &format!("Bearer {ALICE}"))],
        hello(Some("bob"), None),
    )
    .await;
    match next(&mut ws).await {
        Ok(Message::Error(e)) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("{other:?}"),
    }
    assert_eq!(next(&mut ws).await.unwrap_err(), Some(1008));

    // A wrong token through the client: 401 at the upgrade.
    let err = Client::connect(
        &s.url,
        ClientOptions {
            token: Some("wrong-token-0123456789".into()),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(&err, ClientError::Ws(_)), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_token_is_accepted_and_echoed() {
    let s = server("auth-proto", |_| {}).await;
    let mut req = s.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("voxterm, bearer.{ALICE}").parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("voxterm")
    );
    ws.send(WsMessage::Binary(encode(&[hello(None, None)]).into()))
        .await
        .unwrap();
    assert_eq!(tenant_of(next(&mut ws).await), "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_token_authenticates() {
    let s = server("auth-hello", |_| {}).await;
    let mut ws = raw_connect(&s, &[], hello(None, Some(BOB))).await;
    assert_eq!(tenant_of(next(&mut ws).await), "bob");
    // Hello.tenant may repeat the token's tenant.
    let mut ws = raw_connect(&s, &[], hello(Some("alice"), Some(ALICE))).await;
    assert_eq!(tenant_of(next(&mut ws).await), "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_hello_token_is_unauthorized_and_closed_1008() {
    let s = server("auth-1008", |_| {}).await;
    for h in [
        hello(None, Some("wrong-token-0123456789")),
        hello(Some("alice"), None),
        hello(None, None),
    ] {
        let mut ws = raw_connect(&s, &[], h).await;
        match next(&mut ws).await {
            Ok(Message::Error(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
                assert!(!e.message.contains("wrong-token"), "{e:?}");
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        assert_eq!(next(&mut ws).await.unwrap_err(), Some(1008));
    }
    // A header token for alice and a Hello token for bob disagree.
    let mut ws = raw_connect(
        &s,
        &[("authorization", &format!("Bearer {ALICE}"))],
        hello(None, Some(BOB)),
    )
    .await;
    assert!(
        matches!(next(&mut ws).await, Ok(Message::Error(e)) if e.code == ErrorCode::Unauthorized)
    );
    assert_eq!(next(&mut ws).await.unwrap_err(), Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_is_403() {
    let s = TestServer::start_with("auth-origin", |c| {
        c.server.allowed_origins = vec!["https://term.example.com".into()];
    })
    .await;
    let (status, _) = upgrade(&s, "Origin: https://evil.example.com\r\n").await;
    assert_eq!(status, 403);
    let (status, _) = upgrade(&s, "Origin: null\r\n").await;
    assert_eq!(status, 403);
    let (status, _) = upgrade(&s, "Origin: https://term.example.com\r\n").await;
    assert_eq!(status, 101);
    // Non-browser clients send no Origin.
    let (status, _) = upgrade(&s, "").await;
    assert_eq!(status, 101);
    // Default: no origin is listed, so every browser origin is refused.
    let d = TestServer::start("auth-origin-default").await;
    let (status, _) = upgrade(&d, "Origin: http://localhost:3000\r\n").await;
    assert_eq!(status, 403);
    let (_, _, metrics) = http_get(d.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"origin\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_bind_without_tokens_refuses_to_start() {
    let mut config = Preset::Development.config();
    config.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = Server::bind(config.clone()).await.err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--tokens"), "{err}");
    config.auth.insecure_no_auth = true;
    assert!(Server::bind(config.clone()).await.is_ok());
    config.auth.insecure_no_auth = false;
    config.auth.tokens_file = Some(tokens_file("auth-bind"));
    assert!(Server::bind(config).await.is_ok());

    // The binary exits 2 before binding.
    let out = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
            .args(["serve", "--listen", "0.0.0.0:0"])
            .env_remove("VOXTERM_TOKENS")
            .env_remove("VOXTERM_CONFIG")
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
}

const EXPIRED: &str = "expired-token-0123456789abcdef";
const LATER: &str = "later-token-0123456789abcdef";

/// A tokens file with alice's plain token, an expired one, one valid until
/// 2999 and (when given) one that expires at `soon`.
fn expiring_tokens_file(name: &str, soon: Option<(&str, std::time::SystemTime)>) -> PathBuf {
    let dir = temp_root(name);
    let path = dir.join("tokens.toml");
    let mut text = format!(
        "[tokens]\n\"{ALICE}\" = \"alice\"\n\
         \"{EXPIRED}\" = {{ tenant = \"bob\", expires = 2001-02-03T04:05:06Z }}\n\
         [tokens.\"{LATER}\"]\ntenant = \"carol\"\nexpires = 2999-01-01\n"
    );
    if let Some((token, at)) = soon {
        text.push_str(&format!(
            "[tokens.\"{token}\"]\ntenant = \"dave\"\nexpires = {}\n",
            humantime::format_rfc3339_seconds(at)
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wrong_or_expired_token_is_401_and_expiry_is_counted_apart() {
    let tokens = expiring_tokens_file("auth-expiry-tokens", None);
    let s = TestServer::start_with("auth-expiry", move |c| {
        c.auth.tokens_file = Some(tokens);
        c.auth.hello_token = false;
    })
    .await;
    for extra in [
        String::new(),
        "Authorization: Bearer wrong-token-0123456789\r\n".into(),
    ] {
        let (status, head) = upgrade(&s, &extra).await;
        assert_eq!(status, 401, "{extra:?}: {head}");
        assert!(!head.contains("invalid_token"), "{head}");
    }
    for extra in [
        format!("Authorization: Bearer {EXPIRED}\r\n"),
        format!("Sec-WebSocket-Protocol: voxterm, bearer.{EXPIRED}\r\n"),
    ] {
        let (status, head) = upgrade(&s, &extra).await;
        assert_eq!(status, 401, "{extra:?}: {head}");
        assert!(
            head.contains("error=\"invalid_token\"") && head.contains("token expired"),
            "an expired token is said so: {head}"
        );
    }
    // A token with an expiry in the future is as good as one without.
    let (status, head) = upgrade(&s, &format!("Authorization: Bearer {LATER}\r\n")).await;
    assert_eq!(status, 101, "{head}");
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"unauthorized\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"token_expired\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_hello_token_is_unauthorized_and_closed_1008() {
    let tokens = expiring_tokens_file("auth-expiry-hello-tokens", None);
    let s = TestServer::start_with("auth-expiry-hello", move |c| {
        c.auth.tokens_file = Some(tokens);
    })
    .await;
    let mut ws = raw_connect(&s, &[], hello(None, Some(EXPIRED))).await;
    match next(&mut ws).await {
        Ok(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
            assert!(e.message.contains("expired"), "{e:?}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(next(&mut ws).await.unwrap_err(), Some(1008));
    let mut ws = raw_connect(&s, &[], hello(None, Some(LATER))).await;
    assert_eq!(tenant_of(next(&mut ws).await), "carol");
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"token_expired\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("voxterm_refusals_total{kind=\"unauthorized\"} 1"),
        "an expired token is not counted as unknown: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_when_its_token_expires() {
    use std::time::{Duration, SystemTime};
    const SOON: &str = "soon-token-0123456789abcdef";
    // Whole seconds in the file: 2-3 s from now.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 3);
    let tokens = expiring_tokens_file("auth-expiry-live-tokens", Some((SOON, at)));
    let s = TestServer::start_with("auth-expiry-live", move |c| {
        c.auth.tokens_file = Some(tokens);
    })
    .await;
    let mut ws = raw_connect(
        &s,
        &[("authorization", &format!("Bearer {SOON}"))],
        hello(None, None),
    )
    .await;
    assert_eq!(tenant_of(next(&mut ws).await), "dave");
    // Quiet until the expiry, then Error{Unauthorized} and 1008.
    let end = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Binary(b))) => {
                    let mut codec = Codec::new(CodecSettings::default());
                    let frame = codec
                        .decode(&b)
                        .next()
                        .expect("one frame")
                        .expect("decodes");
                    match frame {
                        Message::Error(e) => {
                            assert_eq!(e.code, ErrorCode::Unauthorized);
                            assert!(e.message.contains("expired"), "{e:?}");
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                Some(Ok(WsMessage::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("closed at the token's expiry");
    assert_eq!(end, Some(1008));
    assert!(
        SystemTime::now() + Duration::from_millis(50) >= at,
        "closed before the expiry"
    );
}

const CAROL: &str = "carol-token-0123456789abcdef";

/// A client authenticating with `token` (header and Hello).
async fn token_client(s: &TestServer, token: &str) -> Client {
    s.client_with(ClientOptions {
        token: Some(token.into()),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_reload_admits_new_tokens_and_ends_the_connections_of_revoked_ones() {
    let path = tokens_file("auth-reload-tokens");
    let file = path.clone();
    let s = TestServer::start_with("auth-reload", move |c| c.auth.tokens_file = Some(file)).await;
    let store = s.security.tokens.as_ref().expect("tokens configured");
    let mut alice = token_client(&s, ALICE).await;
    let mut bob = raw_connect(&s, &[], hello(None, Some(BOB))).await;
    assert_eq!(tenant_of(next(&mut bob).await), "bob");

    // A file that does not parse changes nothing.
    std::fs::write(&path, "[tokens]\nshort = \"x\"\n").unwrap();
    assert!(store.reload().is_err());
    let (status, _) = upgrade(&s, &format!("Authorization: Bearer {BOB}\r\n")).await;
    assert_eq!(status, 101, "bob's token still in force");

    // bob's token goes, alice's stays (now with an expiry), carol's comes.
    std::fs::write(
        &path,
        format!(
            "[tokens]\n\"{ALICE}\" = {{ tenant = \"alice\", expires = 2999-01-01 }}\n\"{CAROL}\" = \"carol\"\n"
        ),
    )
    .unwrap();
    assert_eq!(store.reload().expect("valid file"), 2);
    match next(&mut bob).await {
        Ok(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
            assert!(e.message.contains("revoked"), "{e:?}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(next(&mut bob).await.unwrap_err(), Some(1008));
    // alice's connection is untouched and still runs commands.
    let done = run(&mut alice, 0, "echo still-here").await;
    assert_eq!(exit_of(&done).code, Some(0));
    assert_eq!(done.stdout, b"still-here\n");
    let (status, _) = upgrade(&s, &format!("Authorization: Bearer {BOB}\r\n")).await;
    assert_eq!(status, 401, "bob's token is gone for new connections too");
    assert_eq!(token_client(&s, CAROL).await.welcome().tenant, "carol");
    let (_, _, metrics) = http_get(s.addr, "/metrics").await;
    assert!(
        metrics.contains("voxterm_refusals_total{kind=\"token_revoked\"} 1"),
        "{metrics}"
    );
}

/// `voxterm serve --tokens FILE` reloads the file on SIGHUP (the real binary,
/// the real signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_its_tokens_on_sighup() {
    use std::time::{Duration, Instant};
    let path = tokens_file("auth-sighup-tokens");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let root = temp_root("auth-sighup-root");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args(["serve", "--preset", "development", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tokens")
        .arg(&path)
        .env_remove("VOXTERM_TOKENS")
        .env_remove("VOXTERM_CONFIG")
        .env("HOME", &root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("voxterm serve starts");
    let url = format!("ws://127.0.0.1:{port}/ws");
    let connect = |token: &'static str| {
        let url = url.clone();
        async move {
            Client::connect(
                &url,
                ClientOptions {
                    token: Some(token.into()),
                    ..Default::default()
                },
            )
            .await
        }
    };
    let started = Instant::now();
    let bob = loop {
        match connect(BOB).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(started.elapsed() < STEP, "server did not come up: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(bob.welcome().tenant, "bob");
    std::fs::write(&path, format!("[tokens]\n\"{CAROL}\" = \"carol\"\n")).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    // The reload is asynchronous: wait for carol to get in.
    let started = Instant::now();
    let carol = loop {
        match connect(CAROL).await {
            Ok(c) => break c,
            Err(_) => {
                assert!(started.elapsed() < STEP, "carol's token never took effect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(carol.welcome().tenant, "carol");
    assert!(connect(BOB).await.is_err(), "bob's token was revoked");
    assert!(
        child.try_wait().expect("status").is_none(),
        "SIGHUP reloads, it does not stop the server"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_own_origin_is_accepted_and_a_refusal_says_how() {
    let s = TestServer::start("auth-own-origin").await;
    // The page served at / connects from its own origin: same scheme, host, port.
    let own = format!("Origin: http://{}\r\n", s.addr);
    let (status, _) = upgrade(&s, &own).await;
    assert_eq!(status, 101);
    // Another port on the same host is another origin.
    let (status, head) = upgrade(&s, "Origin: http://127.0.0.1:1\r\n").await;
    assert_eq!(status, 403);
    // The body names the origin and the line that allows it.
    let (status, _, body) = http_raw(
        s.addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://app.example.com\r\n\r\n",
            s.addr
        ),
    )
    .await;
    assert_eq!(status, 403, "{head}");
    assert!(body.contains("\"https://app.example.com\""), "{body}");
    assert!(
        body.contains("allowed_origins = [\"https://app.example.com\"]"),
        "{body}"
    );
    // A DNS-rebinding page: its origin matches its Host, but the Host is no
    // allowed one.
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: evil.example:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example:{port}\r\n\r\n",
        port = s.addr.port()
    );
    let (status, _, _) = http_raw(s.addr, &req).await;
    assert_eq!(status, 403);
}

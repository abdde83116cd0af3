//! Shared harness of the integration tests: a real server on an ephemeral
//! loopback port, real WebSocket clients, a raw HTTP GET, and helpers to watch
//! child processes through `/proc`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use voxterm::client::{Client, ClientError, ClientOptions, Completed};
use voxterm::config::{Config, Preset};
use voxterm::server::Server;
use voxterm_protocol::{
    CacheMode, Codec, CodecSettings, Exec, Exit, Message, Priority, RequestId, SessionId,
    StreamKind,
};

/// How long any single wait on the server may take before the test fails
/// instead of hanging.
pub const STEP: Duration = Duration::from_secs(10);

/// A server running in-process on `127.0.0.1:<ephemeral>`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    /// The session root (each test has its own, canonicalized).
    pub root: PathBuf,
    /// The server's security state (tokens reload, limits).
    pub security: std::sync::Arc<voxterm::security::Security>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty, canonical temp directory for one test.
pub fn temp_root(name: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("voxterm-it-{}-{}-{}", std::process::id(), name, n));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp root");
    std::fs::canonicalize(&dir).expect("canonicalize temp root")
}

impl TestServer {
    /// A development-preset server with test-friendly timings.
    pub async fn start(name: &str) -> TestServer {
        Self::start_with(name, |_| {}).await
    }

    /// Like [`TestServer::start`], with `tweak` applied to the config last.
    pub async fn start_with(name: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let root = temp_root(name);
        let mut config = Preset::Development.config();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.drain_timeout = Duration::from_secs(5);
        config.exec.kill_grace = Duration::from_millis(100);
        config.session.root = root.clone();
        // The prediction model is saved under the data directory: never the
        // user's own ~/.local/share in tests.
        config.predict.data_dir = Some(temp_root(&format!("{name}-data")));
        tweak(&mut config);
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("local_addr");
        let security = server.security().clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        TestServer {
            addr,
            url: format!("ws://{addr}/ws"),
            root,
            security,
            stop: Some(stop_tx),
            handle: Some(handle),
        }
    }

    /// A connected client acting as `tenant`.
    pub async fn client(&self, tenant: &str) -> Client {
        self.client_with(ClientOptions {
            tenant: Some(tenant.into()),
            ..Default::default()
        })
        .await
    }

    pub async fn client_with(&self, opts: ClientOptions) -> Client {
        tokio::time::timeout(STEP, Client::connect(&self.url, opts))
            .await
            .expect("connect timed out")
            .expect("connect")
    }

    /// Triggers the shutdown signal (idempotent).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return, failing after `within`.
    pub async fn join(&mut self, within: Duration) {
        let handle = self.handle.take().expect("already joined");
        tokio::time::timeout(within, handle)
            .await
            .expect("server run future did not complete in time")
            .expect("server task panicked");
    }

    /// Waits until the listener is gone (a connect is refused): the server's
    /// run loop has then observed the signal and begun the drain.
    pub async fn wait_listener_closed(&self) {
        let start = Instant::now();
        while TcpStream::connect(self.addr).await.is_ok() {
            assert!(start.elapsed() < STEP, "listener still accepting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `Hello` of a raw WebSocket client in `tenant` (bincode, no
/// compression, no token).
pub fn raw_hello(tenant: &str) -> Message {
    Message::Hello(Box::new(voxterm_protocol::Hello {
        version: voxterm_protocol::PROTOCOL_VERSION,
        client: "raw".into(),
        encodings: vec![],
        compression: vec![],
        tenant: Some(tenant.into()),
        token: None,
    }))
}

/// An `Exec` frame with default priority and cache mode.
pub fn exec_msg(request: RequestId, session: SessionId, command: &str, timeout_ms: u32) -> Message {
    Message::Exec(exec(request, session, command, timeout_ms))
}

pub fn exec(request: RequestId, session: SessionId, command: &str, timeout_ms: u32) -> Exec {
    Exec {
        request,
        session,
        command: command.to_owned(),
        priority: Priority::Normal,
        timeout_ms,
        cache: CacheMode::Default,
    }
}

/// The next frame, failing the test after [`STEP`].
pub async fn recv(client: &mut Client) -> Message {
    recv_result(client).await.expect("recv")
}

/// The next frame or the client error, failing the test after [`STEP`].
pub async fn recv_result(client: &mut Client) -> Result<Message, ClientError> {
    tokio::time::timeout(STEP, client.recv())
        .await
        .expect("no frame from the server in time")
}

/// `Client::run` with a deadline.
pub async fn run(client: &mut Client, session: SessionId, command: &str) -> Completed {
    run_t(client, session, command, 0).await
}

pub async fn run_t(
    client: &mut Client,
    session: SessionId,
    command: &str,
    timeout_ms: u32,
) -> Completed {
    tokio::time::timeout(STEP, client.run(session, command, timeout_ms))
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not finish in time"))
        .unwrap_or_else(|e| panic!("`{command}`: {e}"))
}

/// The `Exit` of a completed run, with a readable failure otherwise.
pub fn exit_of(done: &Completed) -> &Exit {
    done.exit.as_ref().unwrap_or_else(|| {
        panic!(
            "expected an Exit, got error {:?} (stdout {:?}, stderr {:?})",
            done.error,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        )
    })
}

/// Everything one request produced, gathered with `recv` (frames of other
/// requests are returned in `others`).
#[derive(Debug, Default)]
pub struct Gathered {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub seqs: Vec<u32>,
    pub end: Option<Message>,
    pub others: Vec<Message>,
}

/// Receives until `request`'s terminal frame (`Exit`, or `Error` naming it).
pub async fn gather(client: &mut Client, request: RequestId) -> Gathered {
    let mut g = Gathered::default();
    loop {
        match recv(client).await {
            Message::Output(o) if o.request == request => {
                g.seqs.push(o.seq);
                match o.stream {
                    StreamKind::Stdout => g.stdout.extend_from_slice(&o.data),
                    StreamKind::Stderr => g.stderr.extend_from_slice(&o.data),
                }
            }
            Message::Exit(e) if e.request == request => {
                g.end = Some(Message::Exit(e));
                return g;
            }
            Message::Error(e) if e.request == Some(request) => {
                g.end = Some(Message::Error(e));
                return g;
            }
            other => g.others.push(other),
        }
    }
}

/// Receives until the first `Output` of `request` and returns its bytes.
pub async fn first_output(client: &mut Client, request: RequestId) -> Vec<u8> {
    loop {
        match recv(client).await {
            Message::Output(o) if o.request == request => return o.data,
            Message::Exit(e) if e.request == request => panic!("ended before output: {e:?}"),
            Message::Error(e) => panic!("unexpected error: {e:?}"),
            _ => {}
        }
    }
}

/// The first line of `bytes` parsed as a pid.
pub fn parse_pid(bytes: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// True while `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Polls until `pid` is dead (gone or a zombie), failing after `within`.
pub async fn assert_dies(pid: i32, within: Duration) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < within,
            "process {pid} still alive after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Encodes `msgs` as bincode frames, as a client would before `Welcome`.
pub fn encode(msgs: &[Message]) -> Vec<u8> {
    let mut codec = Codec::new(CodecSettings::default());
    let mut buf = Vec::new();
    for m in msgs {
        codec.encode(m, &mut buf).expect("encode");
    }
    buf
}

/// A plain HTTP/1.1 GET over raw TCP: (status, head, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request` verbatim and reads the response until the server closes.
pub async fn http_raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        buf
    };
    let buf = tokio::time::timeout(STEP, fut)
        .await
        .expect("HTTP response in time");
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head/body split in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// `path` as a `String`, for comparisons with protocol fields.
pub fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The value of a `/metrics` sample (`name` with its labels, as printed), or 0
/// when the server has not printed it.
pub async fn metric(addr: SocketAddr, sample: &str) -> f64 {
    let (status, _, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}");
    body.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

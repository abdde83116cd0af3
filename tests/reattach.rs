//! Re-attach after a dropped connection, against a real server through a TCP
//! proxy inside the test that cuts every connection mid-stream: the output
//! arrives byte-exact and complete, exactly once; the grace kills what nobody
//! took over; another tenant cannot take a request over; a bad `after_seq`
//! is refused and the request stays held; `Cancel` reaches a request taken
//! over; a request that ended while detached still gives its end; a request
//! that never arrived is answered `NotReceived` and runs once sent again; an
//! `Attach` takes over from a connection whose drop the server has not seen;
//! a request taken over twice is found by its first connection; each answer
//! is followed by one acknowledging ping, and a running command's output is
//! acknowledged as it streams.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use voxterm::client::{Client, ClientOptions};
use voxterm_protocol::{
    Attach, Cancel, Configure, ErrorCode, KillReason, Message, NoticeKind, StreamKind,
};

/// A TCP proxy to the server whose connections can all be cut at once.
struct Proxy {
    addr: SocketAddr,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let p2 = pipes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                p2.lock().unwrap().push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            pipes,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Cuts every connection (both sockets close, whatever was in flight in
    /// the proxy is gone).
    fn cut(&self) {
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A proxy whose first connection loses every client frame after the first
/// `keep` (the link died as the command was written) and then drops; later
/// connections pass everything.
async fn swallowing_proxy(upstream: SocketAddr, keep: usize) -> (String, AbortHandle) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let accept = tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut down, _)) = listener.accept().await {
            let Ok(mut up) = TcpStream::connect(upstream).await else {
                continue;
            };
            if !std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                continue;
            }
            tokio::spawn(async move {
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut dw).await;
                });
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                let (mut upgraded, mut frames) = (false, 0);
                while let Ok(n @ 1..) = dr.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    if !upgraded {
                        let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        uw.write_all(&buf[..i + 4]).await.unwrap();
                        buf.drain(..i + 4);
                        upgraded = true;
                    }
                    while let Some(len) = ws_frame_len(&buf) {
                        if frames < keep {
                            uw.write_all(&buf[..len]).await.unwrap();
                        }
                        buf.drain(..len);
                        frames += 1;
                    }
                    if frames > keep {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
                back.abort();
            });
        }
    })
    .abort_handle();
    (url, accept)
}

/// The length of the first whole WebSocket frame (client to server:
/// masked) in `buf`, if it is all there.
fn ws_frame_len(buf: &[u8]) -> Option<usize> {
    let b1 = *buf.get(1)?;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if b1 & 0x80 != 0 {
        at += 4;
    }
    (buf.len() >= at + len).then_some(at + len)
}

async fn connect(url: &str, tenant: &str) -> Client {
    tokio::time::timeout(
        STEP,
        Client::connect(
            url,
            ClientOptions {
                tenant: Some(tenant.into()),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// A connection of `tenant` to `url` with re-attach on, running `command`
/// (which prints its pid first) as `request`: the client, its
/// `Welcome.connection`, the pid, and the grace granted (ms).
async fn running(url: &str, tenant: &str, request: u32, command: &str) -> (Client, u64, i32, u32) {
    let mut c = connect(url, tenant).await;
    let grace = reattach_on(&mut c).await;
    let connection = c.welcome().connection;
    c.send(&exec_msg(request, 0, command, 0)).await.unwrap();
    let pid = parse_pid(&first_output(&mut c, request).await);
    (c, connection, pid, grace)
}

/// Asks for re-attach; returns the grace granted, in ms.
async fn reattach_on(c: &mut Client) -> u32 {
    c.send(&Message::Configure(Configure {
        suggestions: 0,
        rejections: true,
        reattach: true,
    }))
    .await
    .unwrap();
    loop {
        if let Message::Configured(m) = recv(c).await {
            return m.reattach_ms;
        }
    }
}

fn attach(request: u32, connection: u64, after_seq: Option<u32>) -> Message {
    Message::Attach(Attach {
        request,
        connection,
        session: 0,
        after_seq,
    })
}

/// What one request delivered on one connection.
#[derive(Default)]
struct Got {
    stdout: Vec<u8>,
    seqs: Vec<u32>,
    end: Option<Message>,
    reattached: bool,
}

/// Receives `request`'s frames until its end or until the connection fails.
async fn take(c: &mut Client, request: u32, got: &mut Got, cut_after: Option<(&Proxy, usize)>) {
    let mut cut_done = false;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("a frame in time");
        let Ok(msg) = frame else { return };
        match msg {
            Message::Output(o) if o.request == request => {
                assert_eq!(o.stream, StreamKind::Stdout);
                got.seqs.push(o.seq);
                got.stdout.extend_from_slice(&o.data);
                if let Some((proxy, at)) = cut_after {
                    if !cut_done && got.stdout.len() >= at {
                        proxy.cut();
                        cut_done = true;
                    }
                }
            }
            Message::Notice(n) if n.request == request && n.kind == NoticeKind::Reattached => {
                got.reattached = true;
            }
            m @ Message::Exit(_) => {
                got.end = Some(m);
                return;
            }
            Message::Error(e) if e.request == Some(request) => {
                got.end = Some(Message::Error(e));
                return;
            }
            _ => {}
        }
    }
}

fn expected_seq(n: u32) -> Vec<u8> {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cut_mid_stream_arrives_complete_and_exactly_once_after_attach() {
    let srv = TestServer::start_with("reattach-seq", |c| c.cache.enabled = false).await;
    let proxy = Proxy::start(srv.addr).await;
    let mut c = connect(&proxy.url(), "t").await;
    assert_eq!(reattach_on(&mut c).await, 30_000);
    let old = c.welcome().connection;
    c.send(&exec_msg(1, 0, "seq 1 500000", 0)).await.unwrap();
    let mut got = Got::default();
    // Past the 1 MiB kept per request: acknowledgements must be releasing it.
    take(&mut c, 1, &mut got, Some((&proxy, 2_000_000))).await;
    assert!(got.end.is_none(), "the cut came before the end");
    let before = got.stdout.len();
    let last = got.seqs.last().copied();

    let mut c2 = connect(&proxy.url(), "t").await;
    reattach_on(&mut c2).await;
    c2.send(&attach(1, old, last)).await.unwrap();
    let mut rest = Got::default();
    take(&mut c2, 1, &mut rest, None).await;
    assert!(rest.reattached, "a Notice says the request was taken over");
    match &rest.end {
        Some(Message::Exit(e)) => assert_eq!((e.request, e.code), (1, Some(0)), "{e:?}"),
        other => panic!("expected the Exit, got {other:?}"),
    }
    let mut all = got.stdout;
    all.extend_from_slice(&rest.stdout);
    let want = expected_seq(500_000);
    assert_eq!(all.len(), want.len(), "{before} bytes before the cut");
    assert!(all == want, "the output is byte-exact");
    // Exactly once: the seqs run on without a gap or a repeat.
    let mut seqs = got.seqs;
    seqs.extend(rest.seqs);
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s as usize, i, "seq {s} at position {i}");
    }
    println!(
        "figure: {before} of {} bytes before the cut; the rest after Attach",
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_kills_what_nobody_takes_over_and_attach_then_says_lost() {
    let srv = TestServer::start_with("reattach-grace", |c| {
        c.server.detach_grace = Duration::from_millis(300);
    })
    .await;
    let proxy = Proxy::start(srv.addr).await;
    let (_c, old, pid, grace) =
        running(&proxy.url(), "t", 1, "sh -c 'echo $$; exec sleep 30'").await;
    assert_eq!(grace, 300);
    proxy.cut();
    // Held, not killed, within the grace.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(alive(pid), "a detached command runs on within the grace");
    assert_dies(pid, Duration::from_secs(3)).await;
    let mut c2 = connect(&srv.url, "t").await;
    reattach_on(&mut c2).await;
    c2.send(&attach(1, old, Some(0))).await.unwrap();
    match recv(&mut c2).await {
        Message::Error(e) => {
            assert_eq!(
                (e.request, e.code),
                (Some(1), ErrorCode::RequestLost),
                "{e:?}"
            )
        }
        other => panic!("expected RequestLost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_tenant_takes_over_and_cancel_reaches_a_request_taken_over() {
    let srv = TestServer::start("reattach-tenant").await;
    let proxy = Proxy::start(srv.addr).await;
    let (_c, old, pid, _) =
        running(&proxy.url(), "alice", 7, "sh -c 'echo $$; exec sleep 30'").await;
    proxy.cut();

    // Before Configure { reattach }: refused, and the request stays held.
    let mut early = connect(&srv.url, "alice").await;
    early.send(&attach(7, old, Some(0))).await.unwrap();
    match recv(&mut early).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}"),
        other => panic!("{other:?}"),
    }
    // Another tenant: the same answer as for a request that does not exist.
    let mut mallory = connect(&srv.url, "mallory").await;
    reattach_on(&mut mallory).await;
    mallory.send(&attach(7, old, Some(0))).await.unwrap();
    match recv(&mut mallory).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::RequestLost, "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(alive(pid), "a refused Attach leaves the request running");

    // A seq in the future is refused, naming the request; it stays held.
    let mut back = connect(&srv.url, "alice").await;
    reattach_on(&mut back).await;
    back.send(&attach(7, old, Some(5))).await.unwrap();
    match recv(&mut back).await {
        Message::Rejected(r) => {
            assert_eq!((r.id, r.code), (7, ErrorCode::InvalidArgument), "{r:?}");
            assert!(r.message.contains("future"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    back.send(&attach(7, old, Some(0))).await.unwrap();
    match recv(&mut back).await {
        Message::Notice(n) => assert_eq!(n.kind, NoticeKind::Reattached),
        other => panic!("{other:?}"),
    }
    // It is this connection's request now: Cancel reaches it.
    let t0 = Instant::now();
    back.send(&Message::Cancel(Cancel { request: 7 }))
        .await
        .unwrap();
    let done = gather(&mut back, 7).await;
    match done.end {
        Some(Message::Exit(e)) => assert_eq!(e.killed, KillReason::Cancelled, "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_dies(pid, Duration::from_secs(3)).await;
    println!(
        "figure: Cancel of a request taken over ended it in {} ms",
        t0.elapsed().as_millis()
    );
    // Taken over once: a second Attach finds nothing.
    back.send(&attach(7, old, Some(0))).await.unwrap();
    match recv(&mut back).await {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::RequestLost, "{e:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_ends_while_detached_gives_its_output_and_end() {
    let srv = TestServer::start_with("reattach-ended", |c| c.cache.enabled = false).await;
    let proxy = Proxy::start(srv.addr).await;
    let mut c = connect(&proxy.url(), "t").await;
    reattach_on(&mut c).await;
    let old = c.welcome().connection;
    c.send(&exec_msg(3, 0, "sh -c 'sleep 0.3; echo done late'", 0))
        .await
        .unwrap();
    // Sent: let the server take it, then cut before it prints.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut c2 = connect(&srv.url, "t").await;
    reattach_on(&mut c2).await;
    c2.send(&attach(3, old, None)).await.unwrap();
    let mut got = Got::default();
    take(&mut c2, 3, &mut got, None).await;
    assert!(got.reattached);
    assert_eq!(got.stdout, b"done late\n");
    assert_eq!(got.seqs, vec![0]);
    match got.end {
        Some(Message::Exit(e)) => assert_eq!((e.request, e.code), (3, Some(0))),
        other => panic!("{other:?}"),
    }
}

/// The next `Error` naming `request` (other frames are passed over).
async fn error_for(c: &mut Client, request: u32) -> voxterm_protocol::Error {
    loop {
        match recv(c).await {
            Message::Error(e) if e.request == Some(request) => return e,
            Message::Exit(e) if e.request == request => panic!("ended: {e:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_arrived_is_not_received_and_runs_once_sent_again() {
    let srv = TestServer::start_with("reattach-unreceived", |c| c.cache.enabled = false).await;
    let proxy = Proxy::start(srv.addr).await;
    let (_c, old, pid, _) = running(&proxy.url(), "t", 1, "sh -c 'echo $$; exec sleep 30'").await;
    // Request 2 is "written as the link died": it never reaches the server.
    proxy.cut();
    let mut c2 = connect(&srv.url, "t").await;
    reattach_on(&mut c2).await;
    // Another tenant learns nothing of the connection: the answer for
    // anything it names is the same `RequestLost`.
    let mut mallory = connect(&srv.url, "mallory").await;
    reattach_on(&mut mallory).await;
    mallory.send(&attach(2, old, None)).await.unwrap();
    assert_eq!(
        error_for(&mut mallory, 2).await.code,
        ErrorCode::RequestLost
    );
    // The one that was received is held; the one that was not says so.
    c2.send(&attach(1, old, Some(0))).await.unwrap();
    c2.send(&attach(2, old, None)).await.unwrap();
    let e = error_for(&mut c2, 2).await;
    assert_eq!(e.code, ErrorCode::NotReceived, "{e:?}");
    assert!(e.message.contains("did not run"), "{}", e.message);
    assert!(alive(pid), "the request that did arrive runs on");
    // Sent again, it runs, once.
    c2.send(&exec_msg(2, 0, "echo spoken once", 0))
        .await
        .unwrap();
    let done = gather(&mut c2, 2).await;
    assert_eq!(done.stdout, b"spoken once\n");
    match done.end {
        Some(Message::Exit(e)) => assert_eq!(e.code, Some(0), "{e:?}"),
        other => panic!("{other:?}"),
    }
    c2.send(&Message::Cancel(Cancel { request: 1 }))
        .await
        .unwrap();
    assert_dies(pid, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_naming_a_connection_still_open_here_takes_its_request_over() {
    let srv = TestServer::start_with("reattach-open", |c| c.cache.enabled = false).await;
    // The old connection stays open on the server: its client moved to
    // another network and reconnected before any timer saw the drop.
    let (mut c, old, pid, _) =
        running(&srv.url, "t", 4, "sh -c 'echo $$; sleep 1; echo after'").await;
    let mut c2 = connect(&srv.url, "t").await;
    reattach_on(&mut c2).await;
    c2.send(&attach(4, old, Some(0))).await.unwrap();
    let mut got = Got::default();
    take(&mut c2, 4, &mut got, None).await;
    assert!(got.reattached, "taken over from the open connection");
    assert_eq!(got.stdout, b"after\n");
    match got.end {
        Some(Message::Exit(e)) => assert_eq!((e.request, e.code), (4, Some(0)), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!alive(pid), "it ran to its end");
    // The old connection was ended by the take-over.
    let ended = tokio::time::timeout(STEP, async {
        loop {
            if c.recv().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection taken over was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_taken_over_twice_is_still_found_by_its_first_connection() {
    let srv = TestServer::start_with("reattach-forward", |c| c.cache.enabled = false).await;
    let proxy = Proxy::start(srv.addr).await;
    let (_c, first, pid, _) =
        running(&proxy.url(), "t", 5, "sh -c 'echo $$; sleep 1; echo late'").await;
    proxy.cut();
    // Taken over on a second connection, which drops before its client
    // reads the `Reattached` notice.
    let mut c2 = connect(&proxy.url(), "t").await;
    reattach_on(&mut c2).await;
    c2.send(&attach(5, first, Some(0))).await.unwrap();
    loop {
        if let Message::Notice(n) = recv(&mut c2).await {
            assert_eq!(n.kind, NoticeKind::Reattached);
            break;
        }
    }
    proxy.cut();
    // The client still names the first connection: the server follows it.
    let mut c3 = connect(&srv.url, "t").await;
    reattach_on(&mut c3).await;
    c3.send(&attach(5, first, Some(0))).await.unwrap();
    let mut got = Got::default();
    take(&mut c3, 5, &mut got, None).await;
    assert!(got.reattached);
    assert_eq!(got.stdout, b"late\n");
    match got.end {
        Some(Message::Exit(e)) => assert_eq!((e.request, e.code), (5, Some(0)), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!alive(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxterm_exec_reconnects_and_its_output_continues_where_it_stopped() {
    use tokio::io::AsyncReadExt;
    let srv = TestServer::start_with("reattach-cli", |c| c.cache.enabled = false).await;
    let proxy = Proxy::start(srv.addr).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args([
            "exec",
            "--url",
            &proxy.url(),
            "--tenant",
            "t",
            "--",
            "seq 1 300000",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut cut = false;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), out.read(&mut buf))
            .await
            .expect("output in time")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if !cut && got.len() > 500_000 {
            proxy.cut();
            cut = true;
        }
    }
    let status = child.wait().await.unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(cut, "the cut happened mid-stream");
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        got == expected_seq(300_000),
        "byte-exact after the reconnect ({} bytes)",
        got.len()
    );
    assert!(err.contains("was lost"), "{err}");
    assert!(err.contains("reconnected after"), "{err}");
    print!("{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_taken_over_dies_with_the_connection_that_took_it() {
    let srv = TestServer::start("reattach-adopted").await;
    let proxy = Proxy::start(srv.addr).await;
    let (_c, old, pid, _) = running(&proxy.url(), "t", 9, "sh -c 'echo $$; exec sleep 30'").await;
    proxy.cut();
    let mut c2 = connect(&srv.url, "t").await;
    c2.send(&Message::Configure(Configure {
        suggestions: 0,
        rejections: true,
        reattach: false,
    }))
    .await
    .unwrap();
    // Without re-attach on this connection, Attach is refused.
    c2.send(&attach(9, old, Some(0))).await.unwrap();
    loop {
        match recv(&mut c2).await {
            Message::Error(e) => {
                assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
                break;
            }
            _ => continue,
        }
    }
    reattach_on(&mut c2).await;
    c2.send(&attach(9, old, Some(0))).await.unwrap();
    match recv(&mut c2).await {
        Message::Notice(n) => assert_eq!(n.kind, NoticeKind::Reattached),
        other => panic!("{other:?}"),
    }
    // Closed by its client (not lost): what it runs is killed, taken over or not.
    c2.close().await.unwrap();
    assert_dies(pid, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxterm_exec_sends_again_a_command_the_dying_link_swallowed() {
    let srv = TestServer::start_with("reattach-cli-resend", |c| c.cache.enabled = false).await;
    // `Hello` and `Configure` arrive; the `Exec` is lost with the link.
    let (url, proxy) = swallowing_proxy(srv.addr, 2).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args([
            "exec",
            "--url",
            &url,
            "--tenant",
            "t",
            "--",
            "echo spoken once",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("voxterm exec ends in time")
        .unwrap();
    proxy.abort();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert_eq!(out.stdout, b"spoken once\n", "ran once: {err}");
    assert!(err.contains("was lost"), "{err}");
    assert!(err.contains("sent again"), "{err}");
    print!("{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_voxterm_exec_still_stops_the_command_at_once() {
    use tokio::io::AsyncBufReadExt;
    // `voxterm exec` asks for re-attach; leaving on purpose must not leave the
    // command held for the grace.
    let srv = TestServer::start("reattach-ctrl-c").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args(["exec", "--url", &srv.url, "--tenant", "t", "--"])
        .arg("sh -c 'echo $$; exec sleep 30'")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("the pid in time")
        .unwrap()
        .expect("a line");
    let pid: i32 = first.trim().parse().expect("a pid");
    let cli = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(cli, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    // Well within the 30 s grace: it was cancelled, not held.
    assert_dies(pid, Duration::from_secs(3)).await;
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message on a raw WebSocket, within 10 s.
async fn next_ws(ws: &mut RawWs) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("no error")
}

/// A raw WebSocket to `server`, after `Hello` (tenant t1) and a granted
/// re-attach, with the codec to read its frames.
async fn raw_reattached(server: &TestServer) -> (RawWs, voxterm_protocol::Codec) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use voxterm_protocol::{Codec, CodecSettings};
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    let configure = Message::Configure(Configure {
        suggestions: 0,
        rejections: false,
        reattach: true,
    });
    ws.send(WsMessage::Binary(
        encode(&[raw_hello("t1"), configure]).into(),
    ))
    .await
    .unwrap();
    let mut codec = Codec::new(CodecSettings::default());
    loop {
        let msg = next_ws(&mut ws).await;
        if let WsMessage::Binary(b) = msg {
            let frames: Vec<_> = codec.decode(&b).map(|f| f.expect("decodes")).collect();
            if let Some(Message::Configured(c)) = frames.last() {
                assert!(c.reattach_ms > 0, "{c:?}");
                return (ws, codec);
            }
        }
    }
}

/// With re-attach on, a request's frames are kept until the client's
/// WebSocket answers a ping sent behind them. The route asks for that ping
/// itself with its terminal frame, so each answer is followed by exactly one
/// ping, carrying an epoch, with nothing of the request after it; and the
/// client's Pong to it is what lets the next answer ask for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_is_followed_by_one_ack_ping() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let server = TestServer::start("ackping").await;
    let (mut ws, mut codec) = raw_reattached(&server).await;
    let mut epochs = Vec::new();
    for request in 1..=5u32 {
        // The Pong to the last ping (queued by the read that took it) goes
        // out first, then the request.
        ws.send(WsMessage::Binary(
            encode(&[exec_msg(request, 0, "echo hi", 0)]).into(),
        ))
        .await
        .unwrap();
        let mut ended = false;
        loop {
            let msg = next_ws(&mut ws).await;
            match msg {
                WsMessage::Binary(b) => {
                    assert!(!ended, "request {request}: a frame after its Exit");
                    ended = codec
                        .decode(&b)
                        .map(|f| f.expect("decodes"))
                        .any(|m| matches!(m, Message::Exit(e) if e.request == request));
                }
                WsMessage::Ping(payload) => {
                    assert!(ended, "request {request}: a ping before its Exit");
                    let epoch = <[u8; 8]>::try_from(&payload[..]).expect("an epoch");
                    epochs.push(u64::from_be_bytes(epoch));
                    break;
                }
                other => panic!("request {request}: {other:?}"),
            }
        }
    }
    // One ping per answer, each a new epoch.
    assert_eq!(epochs, (1..=5).collect::<Vec<_>>());
}

/// A command still running has what it streamed acknowledged as it goes
/// (from its second kept frame on), not only once it ends: its kept copy
/// does not grow with everything it prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_command_is_acknowledged_as_it_streams() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let server = TestServer::start("ackstream").await;
    let (mut ws, mut codec) = raw_reattached(&server).await;
    let line = "for i in 1 2 3 4; do echo $i; sleep 0.2; done";
    ws.send(WsMessage::Binary(encode(&[exec_msg(9, 0, line, 0)]).into()))
        .await
        .unwrap();
    let (mut outputs, mut pings_while_running) = (0, 0);
    loop {
        let msg = next_ws(&mut ws).await;
        match msg {
            WsMessage::Binary(b) => {
                let frames: Vec<_> = codec.decode(&b).map(|f| f.expect("decodes")).collect();
                outputs += frames
                    .iter()
                    .filter(|m| matches!(m, Message::Output(o) if o.request == 9))
                    .count();
                if frames
                    .iter()
                    .any(|m| matches!(m, Message::Exit(e) if e.request == 9))
                {
                    break;
                }
            }
            WsMessage::Ping(_) => pings_while_running += 1,
            _ => {}
        }
    }
    assert_eq!(outputs, 4, "one Output per line, 0.2 s apart");
    assert!(
        pings_while_running >= 1,
        "no ack ping before the command ended: its output was kept whole"
    );
}

//! The cached hot path under load: many connections, several requests in
//! flight on each, every request a cached `echo hello` (issue 17, part 6).
//!
//! A lean closed-loop client (raw TCP on a current-thread runtime, its own
//! WebSocket framing, each `Exec` encoded into a reused buffer, the answers
//! to everything one read brought sent back in one write) keeps `VOXTERM_HOT_CONNECTIONS` (100) connections with
//! `VOXTERM_HOT_IN_FLIGHT` (4) requests each against real server processes
//! on loopback, and reports per run: commands/s, the server's CPU per command
//! (utime + stime from `/proc/<pid>/stat`, every thread), the client's own
//! CPU per command, and the round trip's p50 / p99 (send → terminal frame).
//!
//! The servers, alternated run by run so that a noisy machine hurts them
//! alike (`VOXTERM_HOT_ROUNDS` rounds of `VOXTERM_HOT_SECS` seconds each,
//! after one warm-up second):
//! - `voxterm`: this build's `voxterm serve` (development preset, plus
//!   `VOXTERM_HOT_SERVER_ARGS`, split on spaces);
//! - `canned`: the floor. This bench binary re-executed as a server on the
//!   same stack (tokio, tokio-tungstenite, the protocol's codec) that answers
//!   `Hello` with a `Welcome` and every `Exec` with the same `Output` and
//!   `Exit` a cached `echo hello` gets, without an engine;
//! - more, to compare builds in one run: `VOXTERM_HOT_SERVERS=base=/path/to/old/voxterm;new=/path/to/voxterm`
//!   (`canned` may be named in the list too);
//! - `node` (as in `voxterm=target/release/voxterm;node=node;canned=canned`): the Node
//!   reference stack, `benches/node-reference/server.mjs` (after `npm ci --prefix benches/node-reference`).
//!
//! After the runs, a summary: each server's medians and their ratio to the
//! first server's and to the floor's.
//!
//! Spawn mode (issue 17, part 8), `VOXTERM_HOT_MODE=spawn`: every `Exec`
//! bypasses the cache (`CacheMode::Bypass`), so each starts `echo hello`;
//! 4 connections x 1 in flight by default; the server's CPU counts the
//! children it reaped (cutime + cstime). The floor is `bare`: as many threads
//! of this process as requests in flight, each spawning `/usr/bin/echo hello`
//! with std's `Command` (`posix_spawn`, stdout a pipe) and waiting, CPU from
//! `getrusage` (self + children).
//!
//! Re-attach, `VOXTERM_HOT_REATTACH=1`: every connection asks for it
//! (`Configure.reattach`, as the page and `voxterm exec` do) and answers the
//! server's ack pings, so the cost of keeping each answer until acknowledged
//! is in the figures. Servers that do not know `Configure` ignore it.
//!
//! `cargo bench --bench hot_path` (release build; the client gets
//! `VOXTERM_HOT_CLIENT_THREADS` (1) threads).
//!
//! Server threads: the client runs beside the servers, so by default every
//! Rust server gets the cores the client leaves (cores − client threads, at
//! least 1: `voxterm --threads`, the canned floor's runtime alike), as the
//! Node stack has its one thread. More runtime threads than free cores make
//! a worker that holds connections lose its core to the client for whole
//! time slices (see `server::runtime`). `VOXTERM_HOT_THREADS=N` sets them
//! (0: tokio's default, one per core).

use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxterm_protocol::{
    CacheMode, Codec, CodecSettings, Compression, Configure, Encoding, Exec, Exit, Hello,
    KillReason, Limits, Message, Output, Priority, ServedFrom, StreamKind, Welcome,
    PROTOCOL_VERSION,
};

/// The command every request runs.
const COMMAND: &str = "echo hello";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in microseconds; with `children`, also the
/// CPU of the children it has reaped (cutime + cstime).
fn cpu_us(pid: u32) -> u64 {
    proc_cpu_us(pid, false)
}

fn proc_cpu_us(pid: u32, children: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    let hz = 100; // USER_HZ on Linux
    let reaped = if children { ticks(13) + ticks(14) } else { 0 };
    (ticks(11) + ticks(12) + reaped) * 1_000_000 / hz
}

/// This process's CPU and that of the children it reaped, in microseconds.
fn own_cpu_with_children_us() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let us = |who| {
        getrusage(who).map_or(0, |u| {
            let t =
                |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
            t(u.user_time()) + t(u.system_time())
        })
    };
    us(UsageWho::RUSAGE_SELF) + us(UsageWho::RUSAGE_CHILDREN)
}

/// Spawn mode: requests bypass the cache, so every one starts a process.
fn spawn_mode() -> bool {
    std::env::var("VOXTERM_HOT_MODE").is_ok_and(|m| m == "spawn")
}

/// Re-attach mode (`VOXTERM_HOT_REATTACH=1`): every connection asks for
/// re-attach, as the page and `voxterm exec` do, and answers the server's
/// ack pings; a server that does not know `Configure` ignores it.
fn reattach_mode() -> bool {
    std::env::var("VOXTERM_HOT_REATTACH").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ---------------------------------------------------------------- client side

/// A masked client WebSocket binary frame around `payload` (mask key 0, so
/// the payload goes as it is: a valid masked frame).
fn ws_frame(payload: &[u8], out: &mut Vec<u8>) {
    ws_frame_of(2, payload, out);
}

/// The same with opcode `op` (a Pong is 0xA).
fn ws_frame_of(op: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | op);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// One server WebSocket frame at the start of `buf`: (opcode, payload range,
/// total length), or None when incomplete.
fn parse_ws(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    let (&b0, rest) = buf.split_first()?;
    let &b1 = rest.first()?;
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let at = if b1 & 0x80 != 0 { at + 4 } else { at };
    (buf.len() >= at + len).then_some((b0 & 0x0f, at..at + len))
}

/// The shared state of one run.
struct Run {
    /// 0 warm-up, 1 measuring, 2 stopping.
    phase: AtomicU8,
    done: AtomicU64,
    errors: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    failed: AtomicBool,
}

struct Conn {
    tcp: TcpStream,
    codec: Codec,
    next_id: u32,
    /// Request ids in flight and when they were sent.
    sent: Vec<(u32, Instant)>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    body: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr, tenant: &str) -> std::io::Result<Conn> {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        write!(
            tcp,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
        let mut c = Conn {
            tcp,
            codec: Codec::new(CodecSettings {
                max_frame_bytes: (1 << 24) - 1,
                ..CodecSettings::default()
            }),
            next_id: 1,
            sent: Vec::new(),
            rbuf: Vec::with_capacity(64 << 10),
            wbuf: Vec::new(),
            body: Vec::new(),
        };
        let hello = Message::Hello(Box::new(Hello {
            version: PROTOCOL_VERSION,
            client: "hot_path".into(),
            encodings: vec![Encoding::Bincode],
            compression: vec![Compression::None],
            tenant: Some(tenant.into()),
            token: None,
        }));
        c.push(&hello);
        if reattach_mode() {
            // Taken before the first `Exec`; its `Configured` is read past.
            c.push(&Message::Configure(Configure {
                suggestions: 0,
                rejections: false,
                reattach: true,
            }));
        }
        c.flush()?;
        // The first frame back must be the Welcome (a read may end before it).
        loop {
            match c.read_messages()?.into_iter().next() {
                None => continue,
                Some(Message::Welcome(_)) => return Ok(c),
                Some(other) => {
                    return Err(std::io::Error::other(format!(
                        "expected Welcome, got {other:?}"
                    )))
                }
            }
        }
    }

    fn push(&mut self, msg: &Message) {
        self.body.clear();
        self.codec.encode(msg, &mut self.body).expect("encode");
        ws_frame(&self.body, &mut self.wbuf);
    }

    fn send_exec(&mut self) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let exec = Message::Exec(Exec {
            request: id,
            session: 0,
            command: COMMAND.into(),
            priority: Priority::Normal,
            timeout_ms: 0,
            cache: if spawn_mode() {
                CacheMode::Bypass
            } else {
                CacheMode::Default
            },
        });
        self.push(&exec);
        self.sent.push((id, Instant::now()));
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.tcp.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads once (blocking) and decodes every complete message.
    fn read_messages(&mut self) -> std::io::Result<Vec<Message>> {
        let mut chunk = [0u8; 64 << 10];
        let n = self.tcp.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("server closed"));
        }
        self.rbuf.extend_from_slice(&chunk[..n]);
        self.take_messages()
    }

    /// Decodes every complete message read so far.
    fn take_messages(&mut self) -> std::io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((op, range)) = parse_ws(&self.rbuf[at..]) {
            let end = at + range.end;
            match op {
                2 => {
                    for m in self.codec.decode(&self.rbuf[at + range.start..end]) {
                        out.push(m.map_err(std::io::Error::other)?);
                    }
                }
                8 => return Err(std::io::Error::other("server sent close")),
                // A ping (re-attach's acknowledgement): its Pong goes out
                // with the next write, as a WebSocket stack answers it.
                9 => {
                    let payload = self.rbuf[at + range.start..end].to_vec();
                    ws_frame_of(0xA, &payload, &mut self.wbuf);
                }
                _ => {}
            }
            at = end;
        }
        self.rbuf.drain(..at);
        Ok(out)
    }
}

/// Drives `conns` on one thread (a current-thread runtime: epoll, one task
/// per connection) until the run stops; every terminal frame is answered
/// with a new `Exec` while the run is not stopping.
fn drive(conns: Vec<Conn>, in_flight: usize, run: &Run) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let hists = rt.block_on(futures_util::future::join_all(
        conns.into_iter().map(|c| drive_one(c, in_flight, run)),
    ));
    let mut all = lock(&run.hist);
    for h in hists {
        all.add(&h).expect("same bounds");
    }
}

async fn drive_one(mut c: Conn, in_flight: usize, run: &Run) -> Histogram<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let fail = |run: &Run| run.failed.store(true, Ordering::Relaxed);
    let Ok(std) = c.tcp.try_clone() else {
        fail(run);
        return hist;
    };
    let Ok(mut tcp) = std
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(std))
    else {
        fail(run);
        return hist;
    };
    for _ in 0..in_flight {
        c.send_exec();
    }
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if !c.wbuf.is_empty() {
            if tcp.write_all(&c.wbuf).await.is_err() {
                fail(run);
                return hist;
            }
            c.wbuf.clear();
        }
        if run.phase.load(Ordering::Relaxed) == 2 && c.sent.is_empty() {
            return hist;
        }
        let n = match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                fail(run);
                return hist;
            }
            Ok(n) => n,
        };
        c.rbuf.extend_from_slice(&chunk[..n]);
        let msgs = match c.take_messages() {
            Ok(m) => m,
            Err(_) => {
                fail(run);
                return hist;
            }
        };
        let phase = run.phase.load(Ordering::Relaxed);
        let now = Instant::now();
        for m in msgs {
            let (id, error) = match m {
                Message::Exit(e) => (e.request, false),
                Message::Error(e) => (e.request.unwrap_or(0), true),
                _ => continue,
            };
            let Some(pos) = c.sent.iter().position(|(r, _)| *r == id) else {
                continue;
            };
            let (_, at) = c.sent.swap_remove(pos);
            if phase == 1 {
                let _ = hist.record((now - at).as_micros().max(1) as u64);
                run.done.fetch_add(1, Ordering::Relaxed);
                if error {
                    run.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if phase < 2 {
                c.send_exec();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One measured run against the server at `addr` (process `pid`).
struct Figures {
    cmds_per_s: f64,
    server_us: f64,
    client_us: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// Connections and requests in flight on each: 100 x 4 on the cached path,
/// 4 x 1 in spawn mode (about two children per core).
fn load() -> (usize, usize) {
    let (c, f) = if spawn_mode() { (4, 1) } else { (100, 4) };
    (
        env_or("VOXTERM_HOT_CONNECTIONS", c),
        env_or("VOXTERM_HOT_IN_FLIGHT", f),
    )
}

/// The client's threads.
fn client_threads() -> usize {
    env_or::<usize>("VOXTERM_HOT_CLIENT_THREADS", 1).max(1)
}

/// Runtime threads for the Rust servers: `VOXTERM_HOT_THREADS`, else the
/// cores the client leaves (0: the runtime's default).
fn server_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    env_or(
        "VOXTERM_HOT_THREADS",
        cores.saturating_sub(client_threads()).max(1),
    )
}

fn measure(addr: SocketAddr, pid: u32, secs: f64) -> Figures {
    let (connections, in_flight) = load();
    let threads = client_threads();
    let mut conns: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..connections {
        let c = Conn::open(addr, &format!("t{}", i % 1000)).expect("connect");
        conns[i % threads].push(c);
    }
    let run = Arc::new(Run {
        phase: AtomicU8::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")),
        failed: AtomicBool::new(false),
    });
    let handles: Vec<_> = conns
        .into_iter()
        .map(|cs| {
            let run = run.clone();
            std::thread::spawn(move || drive(cs, in_flight, &run))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let children = spawn_mode();
    let (s0, c0, t0) = (
        proc_cpu_us(pid, children),
        cpu_us(std::process::id()),
        Instant::now(),
    );
    run.phase.store(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    run.phase.store(2, Ordering::Relaxed);
    let (s1, c1, t1) = (
        proc_cpu_us(pid, children),
        cpu_us(std::process::id()),
        Instant::now(),
    );
    for h in handles {
        let _ = h.join();
    }
    assert!(
        !run.failed.load(Ordering::Relaxed),
        "a connection failed during the run"
    );
    let done = run.done.load(Ordering::Relaxed).max(1);
    let hist = lock(&run.hist);
    Figures {
        cmds_per_s: done as f64 / (t1 - t0).as_secs_f64(),
        server_us: (s1 - s0) as f64 / done as f64,
        client_us: (c1 - c0) as f64 / done as f64,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        errors: run.errors.load(Ordering::Relaxed),
    }
}

/// The bare spawn of the same program in this process: as many threads as
/// the server has requests in flight, each `posix_spawn` (std's `Command`,
/// stdout a pipe, stdin `/dev/null`) and wait, over and over; CPU is this
/// process's and its children's.
fn measure_bare(secs: f64) -> Figures {
    let (connections, in_flight) = load();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let program = std::env::var("VOXTERM_HOT_BARE").unwrap_or_else(|_| "/usr/bin/echo".into());
    let handles: Vec<_> = (0..connections * in_flight)
        .map(|_| {
            let (stop, done, measuring, hist, program) = (
                stop.clone(),
                done.clone(),
                measuring.clone(),
                hist.clone(),
                program.clone(),
            );
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let out = Command::new(&program)
                        .arg("hello")
                        .stdin(Stdio::null())
                        .output()
                        .expect("spawn");
                    assert_eq!(out.stdout, b"hello\n");
                    if measuring.load(Ordering::Relaxed) {
                        let _ = h.record(at.elapsed().as_micros().max(1) as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lock(&hist).add(&h).expect("same bounds");
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let (c0, t0) = (own_cpu_with_children_us(), Instant::now());
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    measuring.store(false, Ordering::Relaxed);
    let (c1, t1) = (own_cpu_with_children_us(), Instant::now());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let n = done.load(Ordering::Relaxed).max(1);
    let hist = lock(&hist);
    Figures {
        cmds_per_s: n as f64 / (t1 - t0).as_secs_f64(),
        server_us: (c1 - c0) as f64 / n as f64,
        client_us: 0.0,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        errors: 0,
    }
}

// ---------------------------------------------------------------- canned floor

/// The floor: the protocol's stack without an engine. Every `Exec` gets the
/// `Output` + `Exit` of a cached `echo hello`; replies to every message
/// already readable go out in one flush.
fn canned_server(port: u16) {
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    // Sized like the servers it is the floor of: `TOKIO_WORKER_THREADS`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut codec = Codec::new(CodecSettings::default());
                let answer = |codec: &mut Codec, bytes: &[u8], out: &mut Vec<u8>| {
                    let replies: Vec<Message> = codec
                        .decode(bytes)
                        .filter_map(Result::ok)
                        .filter_map(|m| match m {
                            Message::Hello(_) => Some(vec![Message::Welcome(Box::new(Welcome {
                                version: PROTOCOL_VERSION,
                                server: "canned".into(),
                                encoding: Encoding::Bincode,
                                compression: Compression::None,
                                limits: Limits {
                                    max_message_bytes: 1 << 20,
                                    max_frame_bytes: 1 << 20,
                                    max_in_flight: 256,
                                    max_sessions: 16,
                                    default_timeout_ms: 30_000,
                                    output_cap_bytes: 1 << 20,
                                },
                                tenant: "t".into(),
                                connection: 1,
                            }))]),
                            Message::Exec(e) => Some(vec![
                                Message::Output(Output {
                                    request: e.request,
                                    stream: StreamKind::Stdout,
                                    seq: 0,
                                    data: b"hello\n".to_vec(),
                                }),
                                Message::Exit(Exit {
                                    request: e.request,
                                    code: Some(0),
                                    signal: None,
                                    served_from: ServedFrom::L1,
                                    backend_us: 1,
                                    truncated: false,
                                    killed: KillReason::None,
                                }),
                            ]),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    for r in &replies {
                        let _ = codec.encode(r, out);
                    }
                };
                while let Some(Ok(first)) = ws.next().await {
                    let mut out = Vec::new();
                    if let Ws::Binary(b) = &first {
                        answer(&mut codec, b, &mut out);
                    }
                    // Everything already readable, answered in the same flush.
                    while let Some(Some(Ok(more))) = ws.next().now_or_never() {
                        if let Ws::Binary(b) = &more {
                            answer(&mut codec, b, &mut out);
                        }
                    }
                    if !out.is_empty() && ws.send(Ws::Binary(out.into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

// ---------------------------------------------------------------- the runs

struct Server {
    name: String,
    /// None for `bare` (spawns in this process, no server).
    child: Option<Child>,
    addr: SocketAddr,
}

fn start(name: &str, program: &str) -> Server {
    let port = free_port();
    if program == "bare" {
        return Server {
            name: name.into(),
            child: None,
            addr: ([127, 0, 0, 1], port).into(),
        };
    }
    let mut cmd = if program == "canned" {
        let mut c = Command::new(std::env::current_exe().expect("own path"));
        c.args(["__canned", &port.to_string()]);
        c
    } else if program == "node" {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node-reference");
        assert!(
            std::path::Path::new(dir).join("node_modules").is_dir(),
            "{dir}/node_modules is missing: run `npm ci --prefix benches/node-reference` first"
        );
        let mut c = Command::new("node");
        c.args([format!("{dir}/server.mjs"), port.to_string()]);
        c
    } else {
        let mut c = Command::new(program);
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        let extra = std::env::var("VOXTERM_HOT_SERVER_ARGS").unwrap_or_default();
        c.args(extra.split_whitespace());
        c
    };
    // tokio's own variable: `voxterm serve` (its `--threads` unset), older
    // builds and the canned floor all size their runtime by it.
    match server_threads() {
        0 => cmd.env_remove("TOKIO_WORKER_THREADS"),
        n => cmd.env("TOKIO_WORKER_THREADS", n.to_string()),
    };
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start server");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Ready when a connection completes Hello and one command is answered (the
    // cache's first `echo hello` is a spawn; later ones are hits).
    loop {
        if let Ok(mut c) = Conn::open(addr, "t0") {
            c.send_exec();
            if c.flush().is_ok() {
                let _ = c.read_messages();
            }
            break;
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        name: name.into(),
        child: Some(child),
        addr,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // criterion discovery / `cargo test --benches`: nothing to list.
    }
    if args.get(1).map(String::as_str) == Some("__canned") {
        let port = args.get(2).and_then(|p| p.parse().ok()).expect("port");
        return canned_server(port);
    }
    let rounds: usize = env_or("VOXTERM_HOT_ROUNDS", 3);
    let secs: f64 = env_or("VOXTERM_HOT_SECS", 3.0);
    let list = std::env::var("VOXTERM_HOT_SERVERS").unwrap_or_else(|_| {
        let other = if spawn_mode() {
            "bare=bare"
        } else {
            "canned=canned"
        };
        format!("voxterm={};{other}", env!("CARGO_BIN_EXE_voxterm"))
    });
    let mut servers: Vec<Server> = list
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (name, program) = s.split_once('=').unwrap_or((s, s));
            start(name, program)
        })
        .collect();
    let mut results: Vec<Vec<Figures>> = servers.iter().map(|_| Vec::new()).collect();
    let (connections, in_flight) = load();
    println!(
        "hot path: `{COMMAND}` {}{}, {connections} connections x {in_flight} in flight, {rounds} rounds of {secs} s, server threads {} (VOXTERM_HOT_THREADS; 0: one per core), client threads {}{}",
        if spawn_mode() { "uncached (a spawn each)" } else { "cached" },
        if reattach_mode() { ", re-attach on" } else { "" },
        server_threads(),
        client_threads(),
        if spawn_mode() { "; CPU counts the children (server: cutime + cstime; bare: this process's children)" } else { "" },
    );
    for round in 0..rounds {
        for (i, s) in servers.iter().enumerate() {
            let f = match &s.child {
                Some(child) => measure(s.addr, child.id(), secs),
                None => measure_bare(secs),
            };
            println!(
                "round {round} {:>8}: {:>9.0} cmds/s  server {:>5.2} us/cmd  client {:>5.2} us/cmd  p50 {:>6} us  p99 {:>6} us  errors {}",
                s.name, f.cmds_per_s, f.server_us, f.client_us, f.p50_us, f.p99_us, f.errors
            );
            results[i].push(f);
        }
    }
    println!("medians:");
    let med = |i: usize, get: &dyn Fn(&Figures) -> f64| {
        let mut v: Vec<f64> = results[i].iter().map(get).collect();
        median(&mut v)
    };
    let floor = servers
        .iter()
        .position(|s| s.name == "canned" || s.name == "bare");
    for (i, s) in servers.iter().enumerate() {
        let rate = med(i, &|f| f.cmds_per_s);
        let cpu = med(i, &|f| f.server_us);
        let mut line = format!(
            "{:>8}: {:>9.0} cmds/s  server {:>5.2} us/cmd  client {:>5.2} us/cmd  p50 {:>6.0} us  p99 {:>6.0} us",
            s.name,
            rate,
            cpu,
            med(i, &|f| f.client_us),
            med(i, &|f| f.p50_us as f64),
            med(i, &|f| f.p99_us as f64),
        );
        if i > 0 {
            line += &format!(
                "  | vs {}: x{:.2} rate, x{:.2} cpu",
                servers[0].name,
                rate / med(0, &|f| f.cmds_per_s),
                cpu / med(0, &|f| f.server_us)
            );
        }
        if let Some(fl) = floor.filter(|&fl| fl != i) {
            line += &format!(
                "  | vs {}: x{:.2} rate, x{:.2} cpu",
                servers[fl].name,
                rate / med(fl, &|f| f.cmds_per_s),
                cpu / med(fl, &|f| f.server_us)
            );
        }
        println!("{line}");
    }
    for s in &mut servers {
        if let Some(child) = &mut s.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

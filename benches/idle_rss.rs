//! Server memory per idle connection: starts the real `voxterm` binary (a separate
//! process, as in production), reads its RSS, opens N WebSocket connections that
//! each complete Hello/Welcome and run one builtin (so each holds a session), reads
//! the RSS again, and prints the difference per connection.
//!
//! `cargo bench --bench idle_rss` (N = 1000; set VOXTERM_IDLE_CONNECTIONS to change,
//! and VOXTERM_IDLE_COMMAND to run something other than `pwd` on each connection
//! first, e.g. a command with a large output to see what activity leaves behind).

use std::process::{Command, Stdio};
use std::time::Duration;
use voxterm::client::{Client, ClientOptions};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` / criterion discovery: nothing to list.
    }
    let n: usize = std::env::var("VOXTERM_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_voxterm"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start voxterm");
    let pid = server.id();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let command = std::env::var("VOXTERM_IDLE_COMMAND").unwrap_or_else(|_| "pwd".into());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // Wait until it answers, and warm it up with one connection.
        let mut warm = loop {
            match Client::connect(&url, ClientOptions::default()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        warm.run(0, "pwd", 0).await.expect("warm-up");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_kib(pid);
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let opts = ClientOptions {
                tenant: Some(format!("tenant{i}")),
                ..ClientOptions::default()
            };
            let mut c = Client::connect(&url, opts).await.expect("connect");
            c.run(0, &command, 0).await.expect("command");
            clients.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        let per = (after.saturating_sub(before) as f64) / n as f64;
        eprintln!(
            "idle connections: {n} (each ran `{command}`), server RSS before {before} KiB, after {after} KiB, {per:.1} KiB per connection (with its session)"
        );
        drop(clients);
    });
    let _ = server.kill();
    let _ = server.wait();
}

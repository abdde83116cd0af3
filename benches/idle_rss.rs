//! Server memory per idle connection: starts the real `voxterm` binary (a separate
//! process, as in production), opens N WebSocket connections in five steps
//! (0, N/4, N/2, 3N/4, N) and after each reads the server's RSS and its live
//! heap (jemalloc's `allocated`, from `/metrics`); the figure per connection is
//! the least-squares slope over the steps, so the server's fixed growth (its
//! first connections warm thread-local caches, tables grow) is not charged to
//! them.
//!
//! By default a connection completes Hello/Welcome and nothing else (the
//! issue's "idle connection"). `VOXTERM_IDLE_COMMAND=pwd` runs one command on
//! each first (so each holds a session too; a command with a large output shows
//! what activity leaves behind). `VOXTERM_IDLE_CONNECTIONS` sets N (1000),
//! `VOXTERM_IDLE_SERVER` another `voxterm` binary to measure (to compare builds),
//! `VOXTERM_IDLE_EXTERNAL=PORT:PID` a server already running (e.g. under
//! `heaptrack`, for the breakdown by allocation site).
//!
//! `cargo bench --bench idle_rss`

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

/// The server's live heap (jemalloc `allocated`), from `/metrics`.
async fn heap_bytes(url: &str) -> u64 {
    let Ok(reply) = voxterm::client::http_get(url, "/metrics", None).await else {
        return 0;
    };
    reply
        .body
        .lines()
        .find(|l| l.starts_with("voxterm_heap_allocated_bytes "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` / criterion discovery: nothing to list.
    }
    let n: usize = std::env::var("VOXTERM_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // A server started elsewhere (under heaptrack, say): its port and pid.
    let external: Option<(u16, u32)> = std::env::var("VOXTERM_IDLE_EXTERNAL").ok().and_then(|v| {
        let (port, pid) = v.split_once(':')?;
        Some((port.parse().ok()?, pid.parse().ok()?))
    });
    let port = external.map_or_else(
        || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        },
        |(port, _)| port,
    );
    let program = std::env::var("VOXTERM_IDLE_SERVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_voxterm").to_owned());
    let mut server = match external {
        Some(_) => None,
        None => Some(
            Command::new(&program)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start voxterm"),
        ),
    };
    let pid = external.map_or_else(|| server.as_ref().map_or(0, |s| s.id()), |(_, pid)| pid);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let http = format!("http://127.0.0.1:{port}");
    let command = std::env::var("VOXTERM_IDLE_COMMAND")
        .ok()
        .filter(|c| !c.is_empty() && c != "none");
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
        let mut clients = Vec::with_capacity(n);
        let mut rss = Vec::new();
        let mut heap = Vec::new();
        for step in 0..=4 {
            let target = n * step / 4;
            while clients.len() < target {
                let opts = ClientOptions {
                    tenant: Some(format!("tenant{}", clients.len())),
                    ..ClientOptions::default()
                };
                let mut c = Client::connect(&url, opts).await.expect("connect");
                if let Some(command) = &command {
                    c.run(0, command, 0).await.expect("command");
                }
                clients.push(c);
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            let (r, h) = (rss_kib(pid), heap_bytes(&http).await);
            eprintln!("  {target:>6} connections: RSS {r} KiB, live heap {} KiB", h / 1024);
            rss.push((target as f64, r as f64));
            heap.push((target as f64, h as f64 / 1024.0));
        }
        let what = match &command {
            Some(c) => format!("each ran `{c}`"),
            None => "Hello only".to_owned(),
        };
        eprintln!(
            "idle connections: {n} ({what}): {:.2} KiB RSS and {:.2} KiB live heap per connection (least-squares slopes over 5 steps); RSS {:.0} -> {:.0} KiB",
            slope(&rss),
            slope(&heap),
            rss[0].1,
            rss[4].1
        );
        drop(clients);
    });
    if let Some(server) = &mut server {
        let _ = server.kill();
        let _ = server.wait();
    }
}

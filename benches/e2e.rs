//! End to end over a real WebSocket on loopback: one request's round trip through an
//! in-process server, for a builtin (no spawn), `echo hi` from the cache, and
//! `echo hi` uncached (`CacheMode::Bypass`: a spawn), next to a bare
//! `Command::output()` of the same program in the same run.
//! After the criterion groups, the server's own backend latency percentiles for
//! the uncached `echo hi` are printed from its `Stats` HDR histogram.

use criterion::{criterion_group, criterion_main, Criterion};
use hdrhistogram::serialization::Deserializer;
use std::time::Duration;
use tokio::runtime::Runtime;
use voxterm::client::{Client, ClientOptions};
use voxterm::config::Preset;
use voxterm::server::Server;
use voxterm_protocol::{CacheMode, Exec, Message, Priority, StatsRequest};

/// `echo hi` that must run: the cache is bypassed.
fn uncached_echo(client: &mut Client) -> Exec {
    Exec {
        request: client.next_request_id(),
        session: 0,
        command: "echo hi".into(),
        priority: Priority::Normal,
        timeout_ms: 0,
        cache: CacheMode::Bypass,
    }
}

fn start(rt: &Runtime) -> String {
    rt.block_on(async {
        let mut config = Preset::Development.config();
        config.server.listen = "127.0.0.1:0".parse().expect("static address");
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(server.run(std::future::pending()));
        format!("ws://{addr}/ws")
    })
}

fn e2e(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = start(&rt);
    let mut client = rt
        .block_on(Client::connect(&url, ClientOptions::default()))
        .expect("connect");

    let mut g = c.benchmark_group("e2e");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("builtin_pwd", |b| {
        b.iter(|| rt.block_on(client.run(0, "pwd", 0)).expect("run"))
    });
    g.bench_function("cached_echo_hi", |b| {
        b.iter(|| rt.block_on(client.run(0, "echo hi", 0)).expect("run"))
    });
    g.bench_function("exec_echo_hi", |b| {
        b.iter(|| {
            let exec = uncached_echo(&mut client);
            rt.block_on(client.run_exec(exec)).expect("run")
        })
    });
    g.bench_function("bare_command_output_echo_hi", |b| {
        b.iter(|| {
            std::process::Command::new("echo")
                .arg("hi")
                .output()
                .expect("spawn")
        })
    });
    g.finish();

    // Backend latency of uncached `echo hi` alone, from the server's own histogram.
    let url2 = start(&rt);
    rt.block_on(async {
        let mut client = Client::connect(&url2, ClientOptions::default())
            .await
            .expect("connect");
        for _ in 0..2000 {
            let exec = uncached_echo(&mut client);
            client.run_exec(exec).await.expect("run");
        }
        client
            .send(&Message::StatsRequest(StatsRequest { nonce: 1 }))
            .await
            .expect("send");
        loop {
            if let Message::Stats(s) = client.recv().await.expect("recv") {
                let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut s.backend_histogram.as_slice())
                    .expect("histogram");
                eprintln!(
                    "backend latency, uncached `echo hi` x{}: p50 {} us, p90 {} us, p99 {} us, max {} us",
                    h.len(),
                    h.value_at_quantile(0.50),
                    h.value_at_quantile(0.90),
                    h.value_at_quantile(0.99),
                    h.max()
                );
                break;
            }
        }
    });
}

criterion_group!(benches, e2e);
criterion_main!(benches);

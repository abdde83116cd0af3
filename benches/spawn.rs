//! Spawn overhead of the exec path (`Pool::acquire` + `exec::run`) next to a bare
//! `std` and a bare `tokio` spawn of the same program, in the same run.
//!
//! Run: `cargo bench --bench spawn -- --warm-up-time 1 --measurement-time 5`

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use voxterm::exec::{run, Job, OutputSink, Pool, PoolConfig, SinkClosed, Stop};
use voxterm_protocol::{Priority, StreamKind};

/// Drops output: we measure spawn/stream/reap, not a client.
struct Discard;

impl OutputSink for Discard {
    fn chunk(
        &mut self,
        _: StreamKind,
        _: &[u8],
    ) -> impl Future<Output = Result<(), SinkClosed>> + Send {
        std::future::ready(Ok(()))
    }
}

fn job(command: &str) -> Job {
    Job {
        command: command.to_owned(),
        cwd: PathBuf::from("/tmp"),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        timeout: Duration::from_secs(10),
        kill_grace: Duration::from_millis(100),
        output_cap: 1 << 20,
    }
}

fn spawn(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pool = Pool::new(PoolConfig {
        workers: 4,
        tenant_concurrency: 4,
        queue_capacity: 64,
    });
    let stop = Stop::default();
    let mut g = c.benchmark_group("spawn");

    g.bench_function("std_output_bin_true", |b| {
        b.iter(|| {
            std::process::Command::new("/bin/true")
                .output()
                .expect("spawn")
        })
    });
    g.bench_function("tokio_output_bin_true", |b| {
        b.to_async(&rt).iter(|| async {
            tokio::process::Command::new("/bin/true")
                .output()
                .await
                .expect("spawn")
        })
    });
    for (name, line) in [
        ("exec_run_bin_true_direct", "/bin/true"),
        ("exec_run_echo_hi_direct", "echo hi"),
        ("exec_run_echo_hi_shell", "echo hi;"),
    ] {
        let j = job(line);
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let _slot = pool.acquire("bench", Priority::Normal).await.expect("slot");
                run(&j, &mut Discard, &stop).await.expect("run")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);

//! Spawn overhead of the exec path (`Pool::acquire` + `exec::run`) next to a bare
//! `std` and a bare `tokio` spawn of the same program, in the same run; and the
//! cost of containment: the same runs with rlimits (prlimit after spawn), with a
//! per-command cgroup (pids + memory, cells reused), and with both.
//!
//! As root, the `+run_as` rows run the same lines as `nobody` (`[exec] run_as`:
//! `setpriv` in front, and `prlimit` with rlimits). The `+stdin` and `+pty`
//! rows run them as a `Spawn` does: stdin a pipe the engine feeds, or a
//! pseudo-terminal (`setsid --ctty` in front, the output read from the master).
//!
//! Run: `cargo bench --bench spawn -- --warm-up-time 1 --measurement-time 5`
//! (the cgroup rows need a writable cgroup v1 `pids` and `memory`, e.g. root;
//! elsewhere they are skipped with a note).
//!
//! On a busy machine sequential criterion rows drift with the load; set
//! `VOXTERM_SPAWN_INTERLEAVED=N` to also run N rounds in which every variant
//! runs once per round, round-robin, and print medians and ratios to the bare run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use voxterm::config::{ExecConfig, Preset};
use voxterm::exec::{
    run, run_interactive, CgroupMode, Containment, Feed, Identity, Interactive, Job, Pool,
    PoolConfig, PtySize, RunAs, Stop,
};
use voxterm_protocol::Priority;

mod support;
use support::Discard;

fn job(command: &str) -> Job {
    job_in(command, Arc::new(Containment::none()))
}

/// A variant: its containment, the user its commands run as (`run_as`), and
/// how its stdin is given.
type Variant = (String, Arc<Containment>, Option<Arc<Identity>>, Io);

/// How a command's stdin (and output) is set up.
#[derive(Clone, Copy)]
enum Io {
    /// `/dev/null`, pipes out: an `Exec`.
    Null,
    /// A pipe the engine feeds: a `Spawn` without a terminal.
    Stdin,
    /// A pseudo-terminal: a `Spawn` with one.
    Pty,
}

/// Runs `j` the way `io` says; the input, if any, ends at once.
async fn run_io(j: &Job, io: Io, stop: &Stop) {
    let interactive = |pty| {
        let (tx, feed) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(Feed::End);
        Interactive { feed, pty }
    };
    let outcome = match io {
        Io::Null => run(j, &mut Discard, stop).await,
        Io::Stdin => run_interactive(j, interactive(None), &mut Discard, stop).await,
        Io::Pty => {
            let size = PtySize { rows: 24, cols: 80 };
            run_interactive(j, interactive(Some(size)), &mut Discard, stop).await
        }
    };
    outcome.expect("run");
}

fn job_in(command: &str, containment: Arc<Containment>) -> Job {
    Job {
        line: Arc::new(voxterm::shell::Line::parse(command)),
        cwd: PathBuf::from("/tmp"),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())].into(),
        timeout: Duration::from_secs(10),
        kill_grace: Duration::from_millis(100),
        output_cap: 1 << 20,
        containment,
        dir: None,
        user: None,
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

    // Containment variants, same lines, same run.
    let mut base = Preset::Production.config().exec;
    base.rlimit_cpu = 600;
    base.rlimit_as_bytes = 0;
    base.rlimit_fsize_bytes = 1 << 30;
    base.rlimit_nofile = 1024;
    base.rlimit_nproc = 0;
    base.cgroup_pids_max = 512;
    base.cgroup_memory_max_bytes = 1 << 30;
    let rlimits_only = {
        let mut c = base.clone();
        c.cgroup = CgroupMode::Off;
        c
    };
    let rlimits_for_run_as = rlimits_only.clone();
    let strip = |c: &mut ExecConfig| {
        c.rlimit_cpu = 0;
        c.rlimit_fsize_bytes = 0;
        c.rlimit_nofile = 0;
    };
    let cgroup_pids = {
        let mut c = base.clone();
        c.cgroup = CgroupMode::Required;
        c.cgroup_memory_max_bytes = 0;
        strip(&mut c);
        c
    };
    let cgroup_pids_mem = {
        let mut c = base.clone();
        c.cgroup = CgroupMode::Required;
        strip(&mut c);
        c
    };
    let both = {
        let mut c = base.clone();
        c.cgroup = CgroupMode::Required;
        c
    };
    let mut variants: Vec<Variant> = vec![
        ("none".into(), Arc::new(Containment::none()), None, Io::Null),
        (
            "stdin".into(),
            Arc::new(Containment::none()),
            None,
            Io::Stdin,
        ),
        ("pty".into(), Arc::new(Containment::none()), None, Io::Pty),
    ];
    for (tag, io) in [("stdin", Io::Stdin), ("pty", Io::Pty)] {
        for (name, line) in [
            ("exec_run_bin_true_direct", "/bin/true"),
            ("exec_run_echo_hi_shell", "echo hi;"),
        ] {
            let j = job(line);
            g.bench_function(format!("{name}+{tag}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let _slot = pool.acquire("bench", Priority::Normal).await.expect("slot");
                    run_io(&j, io, &stop).await
                })
            });
        }
    }
    for (tag, cfg) in [
        ("rlimits", rlimits_only),
        ("cgroup_pids", cgroup_pids),
        ("cgroup_pids_mem", cgroup_pids_mem),
        ("rlimits_cgroup_pids_mem", both),
    ] {
        if let Err(e) = Containment::check(&cfg) {
            eprintln!("skipping {tag}: {e}");
            continue;
        }
        let containment = Arc::new(Containment::new(&cfg));
        variants.push((tag.into(), Arc::clone(&containment), None, Io::Null));
        for (name, line) in [
            ("exec_run_bin_true_direct", "/bin/true"),
            ("exec_run_echo_hi_shell", "echo hi;"),
        ] {
            let j = job_in(line, Arc::clone(&containment));
            g.bench_function(format!("{name}+{tag}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let _slot = pool.acquire("bench", Priority::Normal).await.expect("slot");
                    run(&j, &mut Discard, &stop).await.expect("run")
                })
            });
        }
    }
    // Commands as another user (`run_as`): `setpriv` in front, and with
    // rlimits `prlimit` before it (set in the child, not after spawn).
    match RunAs::check("nobody").and_then(|()| RunAs::new("nobody")) {
        Ok(Some(run_as)) => {
            let user = run_as.for_tenant("").expect("nobody resolves");
            let mut with_limits = rlimits_for_run_as.clone();
            with_limits.run_as = "nobody".into();
            for (tag, containment) in [
                ("run_as", Arc::new(Containment::none())),
                ("run_as+rlimits", Arc::new(Containment::new(&with_limits))),
            ] {
                variants.push((
                    tag.into(),
                    Arc::clone(&containment),
                    Some(Arc::clone(&user)),
                    Io::Null,
                ));
                for (name, line) in [
                    ("exec_run_bin_true_direct", "/bin/true"),
                    ("exec_run_echo_hi_shell", "echo hi;"),
                ] {
                    let mut j = job_in(line, Arc::clone(&containment));
                    j.user = Some(Arc::clone(&user));
                    g.bench_function(format!("{name}+{tag}"), |b| {
                        b.to_async(&rt).iter(|| async {
                            let _slot =
                                pool.acquire("bench", Priority::Normal).await.expect("slot");
                            run(&j, &mut Discard, &stop).await.expect("run")
                        })
                    });
                }
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("skipping run_as: {e}"),
    }
    g.finish();
    if let Some(rounds) = std::env::var("VOXTERM_SPAWN_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        for line in ["/bin/true", "echo hi;"] {
            interleaved(&rt, &pool, &stop, line, &variants, rounds);
        }
    }
}

/// Every variant once per round, round-robin, so load drift hits all alike.
fn interleaved(
    rt: &tokio::runtime::Runtime,
    pool: &Pool,
    stop: &Stop,
    line: &str,
    variants: &[Variant],
    rounds: usize,
) {
    let jobs: Vec<Job> = variants
        .iter()
        .map(|(_, c, user, _)| {
            let mut j = job_in(line, Arc::clone(c));
            j.user = user.clone();
            j
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); jobs.len()];
    // The same program spawned bare in the same rounds (std's posix_spawn,
    // pipes, wait; no pool, no limits, no streaming): exec's own overhead is
    // the `none` row over this one (issue 17, part 8).
    let argv: Vec<String> = match jobs[0].line.direct_argv() {
        Some(argv) => argv.to_vec(),
        None => vec!["/bin/sh".into(), "-c".into(), line.into()],
    };
    let mut bare = Vec::with_capacity(rounds);
    rt.block_on(async {
        for _ in 0..rounds {
            let start = std::time::Instant::now();
            tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("bare spawn");
            bare.push(start.elapsed());
            for ((j, out), (_, _, _, io)) in jobs.iter().zip(samples.iter_mut()).zip(variants) {
                let start = std::time::Instant::now();
                let _slot = pool.acquire("bench", Priority::Normal).await.expect("slot");
                run_io(j, *io, stop).await;
                out.push(start.elapsed());
            }
        }
    });
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = median(&mut samples[0]);
    let bare = median(&mut bare);
    println!(
        "interleaved {line:?} {:<24} median {:>8.1} us  x{:.3}  (exec's own overhead: none / bare = x{:.3})",
        "bare tokio spawn+wait",
        bare.as_secs_f64() * 1e6,
        bare.as_secs_f64() / base.as_secs_f64(),
        base.as_secs_f64() / bare.as_secs_f64()
    );
    for ((tag, _, _, _), s) in variants.iter().zip(samples.iter_mut()) {
        let m = median(s);
        println!(
            "interleaved {line:?} {tag:<24} median {:>8.1} us  x{:.3}",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}

criterion_group!(benches, spawn);
criterion_main!(benches);

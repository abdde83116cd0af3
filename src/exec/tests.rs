//! Tests against real processes (sh, seq, sleep, head…) and the real pool.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use voxterm_protocol::{KillReason, Priority, StreamKind};

use super::*;
use crate::output::{OutputSink, SinkClosed};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn job(command: &str) -> Job {
    Job {
        line: std::sync::Arc::new(crate::shell::Line::parse(command)),
        cwd: PathBuf::from("/tmp"),
        env: vec![("PATH".into(), PATH.into()), ("HOME".into(), "/tmp".into())].into(),
        timeout: Duration::from_secs(30),
        kill_grace: Duration::from_millis(200),
        output_cap: 64 << 20,
        containment: std::sync::Arc::new(super::Containment::none()),
        dir: None,
        user: None,
    }
}

/// Collects everything; optionally slow, or closed after some chunks.
#[derive(Default)]
struct Collect {
    out: Vec<u8>,
    err: Vec<u8>,
    chunks: Vec<(StreamKind, usize)>,
    delay: Option<Duration>,
    close_after: Option<usize>,
    /// Copy of every chunk, for tests that need to see output while `run` is running.
    tap: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl OutputSink for Collect {
    fn chunk(
        &mut self,
        stream: StreamKind,
        data: &[u8],
    ) -> impl Future<Output = Result<(), SinkClosed>> + Send {
        let closed = self.close_after.is_some_and(|n| self.chunks.len() >= n);
        if !closed {
            match stream {
                StreamKind::Stdout => self.out.extend_from_slice(data),
                StreamKind::Stderr => self.err.extend_from_slice(data),
            }
            self.chunks.push((stream, data.len()));
            if let Some(tap) = &self.tap {
                let _ = tap.send(data.to_vec());
            }
        }
        let delay = self.delay;
        async move {
            if closed {
                return Err(SinkClosed);
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok(())
        }
    }
}

async fn exec(j: &Job) -> (Outcome, Collect) {
    let mut sink = Collect::default();
    let outcome = run(j, &mut sink, &Stop::default()).await.expect("run");
    (outcome, sink)
}

fn exited(code: i32) -> Outcome {
    Outcome {
        code: Some(code),
        signal: None,
        truncated: false,
        killed: KillReason::None,
        spawned: true,
    }
}

/// What exec answers itself, as `sh` would, for a program it cannot start:
/// no process was started.
fn not_started(code: i32) -> Outcome {
    Outcome {
        spawned: false,
        ..exited(code)
    }
}

/// State letter of /proc/<pid>/stat, or None when the process is gone.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may contain spaces and parens, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits up to 5 s for `pid` to be dead: gone, or a zombie someone else must reap
/// (orphans go to PID 1, which may not reap in a container).
async fn wait_dead(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match proc_state(pid) {
            None | Some(('Z' | 'X', _)) => return true,
            Some(_) if Instant::now() > until => return false,
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn first_pid(out: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(out);
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

fn our_zombies() -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| matches!(proc_state(pid), Some(('Z', ppid)) if ppid == me))
        .collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxterm-exec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

// ---------------------------------------------------------------- run: results

#[tokio::test]
async fn exit_codes_and_stderr_separation() {
    let (o, s) = exec(&job("echo out; echo err >&2; exit 3")).await;
    assert_eq!(o, exited(3));
    assert_eq!(s.out, b"out\n");
    assert_eq!(s.err, b"err\n");

    let (o, s) = exec(&job("false")).await;
    assert_eq!(o, exited(1));
    assert!(s.out.is_empty() && s.err.is_empty());

    let (o, s) = exec(&job("echo 'direct  path'")).await;
    assert_eq!(o, exited(0));
    assert_eq!(s.out, b"direct  path\n");

    let (o, _) = exec(&job("kill -9 $$")).await;
    assert_eq!(
        o,
        Outcome {
            code: None,
            signal: Some(9),
            truncated: false,
            killed: KillReason::None,
            spawned: true,
        }
    );
}

#[tokio::test]
async fn seq_is_byte_exact() {
    let (o, s) = exec(&job("seq 1 300000")).await;
    let want: String = (1..=300_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(o, exited(0));
    assert_eq!(s.out.len(), want.len());
    assert!(s.out == want.as_bytes(), "stdout differs from seq output");
}

#[tokio::test]
async fn chunks_start_small_and_grow() {
    let total = 4_000_000;
    let mut sink = Collect {
        delay: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let o = run(
        &job(&format!("head -c {total} /dev/zero")),
        &mut sink,
        &Stop::default(),
    )
    .await
    .expect("run");
    assert_eq!(o, exited(0));
    assert_eq!(sink.out.len(), total);
    let sizes: Vec<usize> = sink.chunks.iter().map(|c| c.1).collect();
    assert!(sizes[0] <= 4096, "first chunk {}", sizes[0]);
    let max = sizes.iter().copied().max().unwrap_or(0);
    assert!(max > 4096, "chunks never grew: {sizes:?}");
    assert_eq!(
        max,
        64 * 1024,
        "chunks must grow to, and not beyond, 64 KiB: {sizes:?}"
    );
}

#[tokio::test]
async fn a_stdout_firehose_does_not_starve_stderr() {
    let mut sink = Collect {
        delay: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let line = "head -c 5000000 /dev/zero & sleep 0.05; echo err >&2; wait";
    let o = run(&job(line), &mut sink, &Stop::default())
        .await
        .expect("run");
    assert_eq!(o, exited(0));
    assert_eq!(
        (sink.out.len(), sink.err.as_slice()),
        (5_000_000, &b"err\n"[..])
    );
    let at = sink
        .chunks
        .iter()
        .position(|c| c.0 == StreamKind::Stderr)
        .unwrap_or(usize::MAX);
    assert!(
        at < sink.chunks.len() / 2,
        "stderr came at chunk {at} of {}",
        sink.chunks.len()
    );
}

#[tokio::test]
async fn missing_program_is_127_and_unexecutable_is_126() {
    let (o, s) = exec(&job("no-such-program-voxterm --flag")).await;
    assert_eq!(o, not_started(127));
    assert_eq!(
        s.err,
        b"voxterm: no-such-program-voxterm: command not found\n"
    );

    let dir = temp_dir("perm");
    std::fs::write(dir.join("script"), "#!/bin/sh\necho hi\n").expect("write");
    let mut j = job("./script");
    j.cwd = dir.clone();
    let (o, s) = exec(&j).await;
    assert_eq!(o, not_started(126));
    assert_eq!(s.err, b"voxterm: ./script: Permission denied\n");
    let _ = std::fs::remove_dir_all(&dir);

    // Through the shell, sh gives the same code.
    let (o, _) = exec(&job(
        "no-such-program-voxterm | cat; no-such-program-voxterm",
    ))
    .await;
    assert_eq!(o, exited(127));
}

#[tokio::test]
async fn env_is_exactly_the_job_env_and_cwd_is_set() {
    let dir = temp_dir("env");
    let dir = dir.canonicalize().expect("canonical");
    let mut j = job("env");
    j.cwd = dir.clone();
    let mut env = j.env.to_vec();
    env.push(("VOXTERM_X".into(), "a b".into()));
    j.env = env.into();
    let (o, s) = exec(&j).await;
    assert_eq!(o, exited(0));
    let got: BTreeSet<String> = String::from_utf8_lossy(&s.out)
        .lines()
        .map(str::to_owned)
        .collect();
    let want: BTreeSet<String> = [
        format!("PATH={PATH}"),
        "HOME=/tmp".into(),
        "VOXTERM_X=a b".into(),
        format!("PWD={}", dir.display()),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);

    j.line = std::sync::Arc::new(crate::shell::Line::parse("pwd"));
    let (_, s) = exec(&j).await;
    assert_eq!(
        String::from_utf8_lossy(&s.out).trim_end(),
        dir.display().to_string()
    );

    // stdin is /dev/null: cat ends at once.
    j.line = std::sync::Arc::new(crate::shell::Line::parse("cat"));
    let (o, s) = exec(&j).await;
    assert_eq!(o, exited(0));
    assert!(s.out.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn missing_cwd_is_a_spawn_error() {
    let mut j = job("ls");
    j.cwd = PathBuf::from("/nonexistent/voxterm/dir");
    let r = run(&j, &mut Collect::default(), &Stop::default()).await;
    assert!(matches!(r, Err(ExecError::Spawn(_))), "{r:?}");
}

#[tokio::test]
async fn plan_errors_are_returned() {
    let r = run(&job("echo 'x"), &mut Collect::default(), &Stop::default()).await;
    assert!(
        matches!(r, Err(ExecError::Plan(PlanError::Unbalanced))),
        "{r:?}"
    );
}

// ---------------------------------------------------------------- run: limits and kills

#[tokio::test]
async fn output_cap_truncates_and_kills() {
    let mut j = job("seq 1 1000000");
    j.output_cap = 1000;
    let (o, s) = exec(&j).await;
    let want: String = (1..=1_000_000)
        .map(|i| format!("{i}\n"))
        .take(400)
        .collect();
    assert!(o.truncated);
    assert_eq!(o.killed, KillReason::OutputLimit);
    assert_eq!(s.out, &want.as_bytes()[..1000]);

    // Exactly at the cap is not truncated.
    j.line = std::sync::Arc::new(crate::shell::Line::parse("printf abc"));
    j.output_cap = 3;
    let (o, s) = exec(&j).await;
    assert_eq!(o, exited(0));
    assert_eq!(s.out, b"abc");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let mut j = job("sleep 30 & echo $!; wait");
    j.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let (o, s) = exec(&j).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o.killed, KillReason::Timeout);
    assert_eq!(o.signal, Some(15), "{o:?}");
    assert_eq!(o.code, None);
    let grandchild = first_pid(&s.out);
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn sigterm_ignorers_get_sigkill_after_grace() {
    let mut j = job("trap '' TERM; sleep 30");
    j.timeout = Duration::from_millis(200);
    j.kill_grace = Duration::from_millis(300);
    let started = Instant::now();
    let (o, _) = exec(&j).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o.killed, KillReason::Timeout);
    // sh ignores TERM and its sleep inherits the ignore: only the SIGKILL after the grace ends them.
    assert_eq!(o.signal, Some(9), "{o:?}");
}

#[tokio::test]
async fn cancel_and_shutdown_kill() {
    for (which, want) in [(0, KillReason::Cancelled), (1, KillReason::Shutdown)] {
        let stop = Stop::default();
        let (cancel, shutdown) = (stop.cancel.clone(), stop.shutdown.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if which == 0 {
                cancel.cancel();
            } else {
                shutdown.cancel();
            }
        });
        let started = Instant::now();
        let o = run(&job("sleep 30"), &mut Collect::default(), &stop)
            .await
            .expect("run");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            o,
            Outcome {
                code: None,
                signal: Some(15),
                truncated: false,
                killed: want,
                spawned: true,
            }
        );
    }
}

#[tokio::test]
async fn closed_sink_kills_as_cancelled() {
    let mut sink = Collect {
        close_after: Some(2),
        ..Default::default()
    };
    let started = Instant::now();
    let o = run(&job("yes"), &mut sink, &Stop::default())
        .await
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o.killed, KillReason::Cancelled);
    assert!(o.signal.is_some());
}

#[tokio::test]
async fn slow_sink_still_times_out() {
    let mut sink = Collect {
        delay: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mut j = job("yes");
    j.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let o = run(&j, &mut sink, &Stop::default()).await.expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o.killed, KillReason::Timeout);
}

#[tokio::test]
async fn dropped_run_kills_its_group() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sink = Collect {
        tap: Some(tx),
        ..Default::default()
    };
    let stop = Stop::default();
    let j = job("sleep 30 & echo $!; echo $$; wait");
    let mut out = Vec::new();
    let mut run = Box::pin(run(&j, &mut sink, &stop));
    while out.iter().filter(|&&b| b == b'\n').count() < 2 {
        tokio::select! {
            r = &mut run => panic!("run ended early: {r:?}"),
            chunk = rx.recv() => out.extend(chunk.expect("a chunk")),
        };
    }
    // The run future is dropped here, mid-way.
    drop(run);
    let text = String::from_utf8_lossy(&out).into_owned();
    let mut pids = text.lines().filter_map(|l| l.trim().parse::<i32>().ok());
    let (grandchild, child) = (pids.next().expect("$!"), pids.next().expect("$$"));
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived the dropped run"
    );
    // Its main process is reaped too, at the latest with the next command:
    // no zombie is left behind.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = exec(&job("true")).await;
        if !our_zombies().contains(&child) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the dropped run's {child} stays a zombie"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn leftover_background_child_does_not_hold_the_request() {
    let started = Instant::now();
    let (o, s) = exec(&job("sleep 30 & echo $!; echo started")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(o, exited(0));
    let text = String::from_utf8_lossy(&s.out).into_owned();
    assert!(text.ends_with("started\n"), "{text:?}");
    let pid = first_pid(&s.out);
    assert!(wait_dead(pid).await, "background sleep {pid} survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_runs_leave_no_zombies() {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        set.spawn(async { exec(&job("true")).await.0 });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.expect("join"), exited(0));
    }
    // Other tests in this binary spawn too; give their in-flight children (and
    // dropped runs' children, reaped at the next spawn) a moment before
    // declaring a leak.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let z = our_zombies();
        if z.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "zombie children: {z:?}");
        let _ = exec(&job("true")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- pool

fn pool(workers: usize, tenant_concurrency: usize, queue_capacity: usize) -> Pool {
    Pool::new(PoolConfig {
        workers,
        tenant_concurrency,
        queue_capacity,
    })
}

async fn until_depth(p: &Pool, depth: usize) {
    for _ in 0..10_000 {
        if p.queue_depth() == depth {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "queue depth never reached {depth} (now {})",
        p.queue_depth()
    );
}

#[tokio::test]
async fn pool_serves_by_priority_then_fifo() {
    let p = pool(1, 10, 100);
    let hold = p.acquire("t", Priority::Normal).await.expect("slot");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let order = [
        ("p1", Priority::Prefetch),
        ("n1", Priority::Normal),
        ("h1", Priority::High),
        ("n2", Priority::Normal),
        ("p2", Priority::Prefetch),
        ("h2", Priority::High),
    ];
    for (i, (name, prio)) in order.into_iter().enumerate() {
        let (p2, tx) = (p.clone(), tx.clone());
        tokio::spawn(async move {
            let slot = p2.acquire("t", prio).await.expect("slot");
            let _ = tx.send(name);
            drop(slot);
        });
        until_depth(&p, i + 1).await;
    }
    assert_eq!(p.busy(), 1);
    drop(hold);
    let mut got = Vec::new();
    for _ in 0..order.len() {
        got.push(rx.recv().await.expect("name"));
    }
    assert_eq!(got, ["h1", "h2", "n1", "n2", "p1", "p2"]);
    tokio::task::yield_now().await;
    assert_eq!((p.busy(), p.queue_depth()), (0, 0));
}

#[tokio::test]
async fn tenant_cap_does_not_block_other_tenants() {
    let p = pool(2, 1, 100);
    let a1 = p.acquire("a", Priority::Normal).await.expect("a1");
    // A free slot, but tenant a is at its cap: b gets it at once.
    {
        let queued_a =
            tokio::time::timeout(Duration::from_millis(20), p.acquire("a", Priority::High)).await;
        assert!(queued_a.is_err(), "tenant a exceeded its cap");
        let b =
            tokio::time::timeout(Duration::from_secs(5), p.acquire("b", Priority::Prefetch)).await;
        assert!(b.is_ok(), "tenant b was blocked by tenant a");
    }
    // Both slots taken; a High waiter of a (capped) sits ahead of a Normal waiter of b.
    let x = p.acquire("x", Priority::Normal).await.expect("x");
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (tenant, prio) in [("a", Priority::High), ("b", Priority::Normal)] {
        let (p2, tx) = (p.clone(), tx.clone());
        tokio::spawn(async move {
            let slot = p2.acquire(tenant, prio).await.expect("slot");
            let _ = tx.send(tenant);
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(slot);
        });
    }
    until_depth(&p, 2).await;
    drop(x);
    assert_eq!(rx.recv().await, Some("b"));
    assert_eq!(p.queue_depth(), 1, "a must still wait for its own slot");
    drop(a1);
    assert_eq!(rx.recv().await, Some("a"));
}

#[tokio::test]
async fn dropped_waiter_frees_its_place_and_its_grant() {
    let p = pool(1, 1, 1);
    let hold = p.acquire("t", Priority::Normal).await.expect("slot");

    // Dropped while queued.
    let r = tokio::time::timeout(Duration::from_millis(20), p.acquire("u", Priority::High)).await;
    assert!(r.is_err());
    assert_eq!(p.queue_depth(), 0);

    // Granted, then dropped before it observed the grant.
    let mut fut = Box::pin(p.acquire("u", Priority::Normal));
    assert!(tokio::time::timeout(Duration::from_millis(20), &mut fut)
        .await
        .is_err());
    assert_eq!(p.queue_depth(), 1);
    drop(hold);
    assert_eq!(
        (p.busy(), p.queue_depth()),
        (1, 0),
        "slot handed to the waiter"
    );
    drop(fut);
    assert_eq!(p.busy(), 0, "granted-but-dropped slot was lost");

    let again =
        tokio::time::timeout(Duration::from_secs(5), p.acquire("t", Priority::Normal)).await;
    assert!(again.is_ok());
}

#[tokio::test]
async fn queue_full_fails_fast() {
    let p = pool(1, 1, 1);
    let _hold = p.acquire("t", Priority::Normal).await.expect("slot");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.acquire("t", Priority::Normal).await.map(drop) });
    until_depth(&p, 1).await;
    assert_eq!(
        p.acquire("u", Priority::High).await.err(),
        Some(PoolError::QueueFull)
    );
    assert_eq!(p.workers(), 1);
    waiter.abort();
}

#[tokio::test]
async fn pool_and_run_together() {
    let p = pool(2, 2, 16);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let p = p.clone();
        set.spawn(async move {
            let _slot = p.acquire("t", Priority::Normal).await.expect("slot");
            exec(&job(&format!("echo {i}"))).await
        });
    }
    while let Some(r) = set.join_next().await {
        let (o, s) = r.expect("join");
        assert_eq!(o, exited(0));
        assert_eq!(s.out.len(), 2);
    }
    assert_eq!((p.busy(), p.queue_depth()), (0, 0));
}

/// Commands start with no signal blocked and none ignored but what the
/// server's own dispositions leave (the spawner thread blocks every signal;
/// its children must not inherit that).
#[tokio::test]
async fn children_start_with_no_signal_blocked() {
    let (o, s) = exec(&job("grep -E '^Sig(Blk|Ign)' /proc/self/status")).await;
    assert_eq!(o, exited(0));
    let text = String::from_utf8_lossy(&s.out).into_owned();
    let blocked = text
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(str::trim);
    assert_eq!(blocked, Some("0000000000000000"), "{text}");
}

/// A command gets its stdin, stdout and stderr and nothing else of the
/// server: no socket, no pipe of another command, no copy the spawner took.
#[tokio::test]
async fn children_hold_only_their_stdio() {
    // Descriptors of this process a child must not see.
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let dir = std::sync::Arc::new(std::os::fd::OwnedFd::from(
        std::fs::File::open("/tmp").expect("/tmp"),
    ));
    let mut j = job("ls /proc/self/fd");
    j.dir = Some(dir);
    let (o, s) = exec(&j).await;
    assert_eq!(o, exited(0));
    // `ls` itself holds one more: the directory it lists.
    let fds: Vec<u32> = String::from_utf8_lossy(&s.out)
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert_eq!(fds, [0, 1, 2, 3], "{:?}", String::from_utf8_lossy(&s.out));
}

//! Containing children (issue 6, item 5): rlimits on every child, a per-command
//! cgroup that caps forks and memory, and daemonized grandchildren (setsid, double
//! fork: outside the process group) killed on timeout, cancel, disconnect and exit.
//!
//! The cgroup tests configure `exec.cgroup = "required"`: on a machine without a
//! writable cgroup v1 `pids` hierarchy (not root, cgroup v2 only) they fail with a
//! message saying so; they never pass without containment.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use voxterm::config::Config;
use voxterm::exec::CgroupMode;
use voxterm_protocol::{Cancel, KillReason, Message};

/// SIGXCPU on Linux.
const SIGXCPU: i32 = 24;

/// Fails the test with an explanation when cgroups cannot be used here.
fn require_cgroups() {
    let mut cfg = voxterm::config::Preset::Development.config();
    cfg.exec.cgroup = CgroupMode::Required;
    cfg.exec.cgroup_memory_max_bytes = 1 << 30;
    if let Err(e) = voxterm::exec::Containment::check(&cfg.exec) {
        panic!(
            "this test needs per-command cgroups (cgroup v1 `pids` and `memory` writable, \
             e.g. running as root on a cgroup v1 host): {e}"
        );
    }
}

/// Rlimits and cgroups off, so each test turns on exactly what it checks.
fn bare(cfg: &mut Config) {
    cfg.exec.rlimit_cpu = 0;
    cfg.exec.rlimit_as_bytes = 0;
    cfg.exec.rlimit_fsize_bytes = 0;
    cfg.exec.rlimit_nofile = 0;
    cfg.exec.rlimit_nproc = 0;
    cfg.exec.cgroup = CgroupMode::Off;
    cfg.exec.cgroup_pids_max = 0;
    cfg.exec.cgroup_memory_max_bytes = 0;
}

/// `pid`'s process group id, from `/proc/<pid>/stat`.
fn pgid_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("stat of {pid}: {e}"));
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    // state ppid pgrp ...
    after
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .expect("pgrp field")
}

/// The `pids` cgroup directory named by a `/proc/<pid>/cgroup` line.
fn pids_cell(cgroup_line: &str) -> PathBuf {
    let rel = cgroup_line
        .trim()
        .splitn(3, ':')
        .nth(2)
        .unwrap_or_else(|| panic!("not a cgroup line: {cgroup_line:?}"));
    assert!(
        rel.contains("/voxterm-"),
        "the command is not in a voxterm cgroup: {cgroup_line:?}"
    );
    Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'))
}

/// Waits until `file` holds a pid (written by a daemon) and returns it.
async fn pid_from_file(file: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(start.elapsed() < STEP, "{} never written", file.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A line that leaves a daemon behind: a double fork into a new session, with
/// its output detached so it holds none of the command's pipes. Prints the
/// shell's pid (its process group) first.
fn daemonizing(pidfile: &Path, then: &str) -> String {
    format!(
        "echo $$; (setsid sh -c 'echo $$ > {}; exec sleep 60' </dev/null >/dev/null 2>&1 &); {then}",
        pidfile.display()
    )
}

/// Starts a daemonizing command and returns (request, daemon pid) once the
/// daemon runs outside the command's process group.
async fn start_daemon(
    c: &mut voxterm::client::Client,
    pidfile: &Path,
    then: &str,
    timeout_ms: u32,
) -> (u32, i32) {
    let id = c
        .exec(0, &daemonizing(pidfile, then), timeout_ms)
        .await
        .expect("exec");
    let shell = parse_pid(&first_output(c, id).await);
    let daemon = pid_from_file(pidfile).await;
    assert!(alive(daemon), "daemon {daemon} not running");
    assert_ne!(
        pgid_of(daemon),
        shell,
        "the daemon must have left the command's process group for this test to mean anything"
    );
    (id, daemon)
}

fn contained(cfg: &mut Config) {
    bare(cfg);
    cfg.exec.cgroup = CgroupMode::Required;
    cfg.exec.cgroup_pids_max = 256;
}

/// The pid of the process whose argv is exactly `argv`, once it exists.
async fn find_process(argv: &[&str]) -> i32 {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let start = Instant::now();
    loop {
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want) {
                return pid;
            }
        }
        assert!(start.elapsed() < STEP, "no process {argv:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(soft, hard)` of the `name` row of a `/proc/<pid>/limits` text.
fn limit_row(limits: &str, name: &str) -> (String, String) {
    let l = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {limits}"));
    let mut f = l[name.len()..].split_whitespace().map(str::to_owned);
    (f.next().unwrap_or_default(), f.next().unwrap_or_default())
}

fn assert_limits(limits: &str, what: &str) {
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(limit_row(limits, "Max cpu time"), pair("7", "8"), "{what}");
    let as_bytes = (3u64 << 30).to_string();
    assert_eq!(
        limit_row(limits, "Max address space"),
        pair(&as_bytes, &as_bytes),
        "{what}"
    );
    assert_eq!(
        limit_row(limits, "Max file size"),
        pair("5242880", "5242880"),
        "{what}"
    );
    assert_eq!(
        limit_row(limits, "Max open files"),
        pair("321", "321"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlimits_are_set_on_every_child() {
    let server = TestServer::start_with("rlimits", |cfg| {
        bare(cfg);
        cfg.exec.rlimit_cpu = 7;
        cfg.exec.rlimit_as_bytes = 3 << 30;
        cfg.exec.rlimit_fsize_bytes = 5 << 20;
        cfg.exec.rlimit_nofile = 321;
    })
    .await;
    let mut c = server.client("t1").await;
    // Through the shell, and in a grandchild forked by it. (They look after a
    // pause: prlimit lands right after spawn, see src/exec/limits.rs.)
    for line in [
        "sleep 0.2; cat /proc/self/limits",
        "sleep 0.2; cat /proc/self/limits | cat",
    ] {
        let done = run(&mut c, 0, line).await;
        assert_eq!(exit_of(&done).code, Some(0));
        assert_limits(&String::from_utf8_lossy(&done.stdout), line);
    }
    // A program executed directly (no shell), seen from outside.
    let id = c.exec(0, "sleep 9.4242", 0).await.expect("exec");
    let pid = find_process(&["sleep", "9.4242"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    assert_limits(&limits, "direct sleep");
    c.send(&Message::Cancel(Cancel { request: id }))
        .await
        .expect("cancel");
    let _ = gather(&mut c, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_limit_kills_a_busy_loop_before_its_timeout() {
    let server = TestServer::start_with("rlimit-cpu", |cfg| {
        bare(cfg);
        cfg.exec.rlimit_cpu = 1;
    })
    .await;
    let mut c = server.client("t1").await;
    let start = Instant::now();
    let done = run_t(&mut c, 0, "while :; do :; done", 9_000).await;
    let exit = exit_of(&done);
    assert_eq!(
        exit.killed,
        KillReason::None,
        "the timeout ended it: {exit:?}"
    );
    assert!(
        matches!(exit.signal, Some(SIGXCPU | 9)),
        "expected SIGXCPU/SIGKILL: {exit:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

/// Needs ~800 MB; the limits stop it at a fraction of that.
const MEMORY_HOG: &str = "x=$(head -c 800000000 /dev/zero | tr '\\0' a); echo survived ${#x}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_space_limit_stops_a_memory_hog() {
    let server = TestServer::start_with("rlimit-as", |cfg| {
        bare(cfg);
        cfg.exec.rlimit_as_bytes = 256 << 20;
    })
    .await;
    let mut c = server.client("t1").await;
    let done = run_t(&mut c, 0, MEMORY_HOG, 9_000).await;
    let exit = exit_of(&done);
    assert_eq!(exit.killed, KillReason::None, "{exit:?}");
    assert!(
        !String::from_utf8_lossy(&done.stdout).contains("survived"),
        "the hog got its memory: {exit:?}"
    );
    assert!(exit.code != Some(0), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cgroup_oom_kills_a_memory_hog() {
    require_cgroups();
    let server = TestServer::start_with("cg-memory", |cfg| {
        contained(cfg);
        cfg.exec.cgroup_memory_max_bytes = 128 << 20;
    })
    .await;
    let mut c = server.client("t1").await;
    let done = run_t(&mut c, 0, MEMORY_HOG, 9_000).await;
    let exit = exit_of(&done);
    assert_eq!(exit.killed, KillReason::None, "{exit:?}");
    assert!(
        !String::from_utf8_lossy(&done.stdout).contains("survived"),
        "the hog got its memory: {exit:?}"
    );
    assert_eq!(exit.signal, Some(9), "expected the OOM killer: {exit:?}");
    // The server and its next command are fine.
    assert_eq!(run(&mut c, 0, "echo ok").await.stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_storm_is_capped_and_everything_is_killed() {
    require_cgroups();
    let server = TestServer::start_with("cg-forks", |cfg| {
        contained(cfg);
        cfg.exec.cgroup_pids_max = 64;
    })
    .await;
    let mut c = server.client("t1").await;
    // Bounded (3000) so a failed cap cannot take the machine down; `setsid` takes
    // every sleeper out of the process group, so only the cgroup can kill them.
    let line = "grep pids /proc/$$/cgroup >&2; \
                for i in $(seq 1 3000); do setsid sleep 30 & echo $!; done; wait";
    let start = Instant::now();
    let done = run_t(&mut c, 0, line, 20_000).await;
    let exit = exit_of(&done);
    let stderr = String::from_utf8_lossy(&done.stderr);
    let cell = pids_cell(stderr.lines().next().unwrap_or_default());
    let pids: Vec<i32> = String::from_utf8_lossy(&done.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(
        stderr.contains("fork"),
        "no fork failure after {} sleepers: {stderr}",
        pids.len()
    );
    assert!(
        !pids.is_empty() && pids.len() < 64,
        "{} sleepers started with pids.max = 64",
        pids.len()
    );
    assert_eq!(exit.killed, KillReason::None, "{exit:?}");
    assert!(exit.code != Some(0), "{exit:?}");
    for pid in &pids {
        assert_dies(*pid, Duration::from_secs(3)).await;
    }
    // The cell is empty (reused or removed).
    if let Ok(procs) = std::fs::read_to_string(cell.join("cgroup.procs")) {
        assert!(
            procs.trim().is_empty(),
            "left in {}: {procs}",
            cell.display()
        );
    }
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(run(&mut c, 0, "echo ok").await.stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_is_killed_at_the_timeout() {
    require_cgroups();
    let server = TestServer::start_with("cg-daemon-timeout", contained).await;
    let mut c = server.client("t1").await;
    let pidfile = server.root.join("daemon.pid");
    let (id, daemon) = start_daemon(&mut c, &pidfile, "sleep 30", 1_000).await;
    let g = gather(&mut c, id).await;
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("expected Exit, got {:?}", g.end)
    };
    assert_eq!(exit.killed, KillReason::Timeout);
    assert_dies(daemon, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_is_killed_on_cancel() {
    require_cgroups();
    let server = TestServer::start_with("cg-daemon-cancel", contained).await;
    let mut c = server.client("t1").await;
    let pidfile = server.root.join("daemon.pid");
    let (id, daemon) = start_daemon(&mut c, &pidfile, "sleep 30", 0).await;
    c.send(&Message::Cancel(Cancel { request: id }))
        .await
        .expect("cancel");
    let g = gather(&mut c, id).await;
    let Some(Message::Exit(exit)) = &g.end else {
        panic!("expected Exit, got {:?}", g.end)
    };
    assert_eq!(exit.killed, KillReason::Cancelled);
    assert_dies(daemon, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_is_killed_when_the_client_disconnects() {
    require_cgroups();
    let server = TestServer::start_with("cg-daemon-disconnect", contained).await;
    let mut c = server.client("t1").await;
    let pidfile = server.root.join("daemon.pid");
    let (_, daemon) = start_daemon(&mut c, &pidfile, "sleep 30", 0).await;
    drop(c); // TCP close without a close frame
    assert_dies(daemon, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_is_killed_when_its_command_exits() {
    require_cgroups();
    let server = TestServer::start_with("cg-daemon-exit", contained).await;
    let mut c = server.client("t1").await;
    let pidfile = server.root.join("daemon.pid");
    // The command waits until the daemon runs, then exits 0 on its own.
    let line = daemonizing(
        &pidfile,
        &format!(
            "while [ ! -s {} ]; do sleep 0.01; done; cat {}",
            pidfile.display(),
            pidfile.display()
        ),
    );
    let done = run(&mut c, 0, &line).await;
    assert_eq!(exit_of(&done).code, Some(0));
    let daemon = pid_from_file(&pidfile).await;
    assert_dies(daemon, Duration::from_secs(3)).await;
}

/// The control: without cgroups the same daemon outlives its command (which is
/// why the cgroup exists). The test kills it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_a_daemon_escapes_the_process_group_kill() {
    let server = TestServer::start_with("no-cg-daemon", bare).await;
    let mut c = server.client("t1").await;
    let pidfile = server.root.join("daemon.pid");
    let (id, daemon) = start_daemon(&mut c, &pidfile, "sleep 30", 500).await;
    let g = gather(&mut c, id).await;
    assert!(matches!(g.end, Some(Message::Exit(ref e)) if e.killed == KillReason::Timeout));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let escaped = alive(daemon);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(escaped, "expected the daemon to survive without a cgroup");
}

//! What a spawn costs against the number of descriptors the parent holds,
//! and what a spawner with a small descriptor table of its own would save.
//!
//! Every child starts with a copy of its parent's descriptor table and
//! closes the close-on-exec ones at `exec`, one file at a time; a server
//! with 10,000 connections holds 10,000 sockets, so each of its spawns pays
//! for them (`perf` on the server at 10,000 users: ~29 % of its samples in
//! `dup_fd`, `do_close_on_exec` and `filp_close`). The same `posix_spawn`
//! path as the engine's (std's `Command`, process group, null stdio, then
//! `wait`) is timed from the thread that owns the table, and from a thread
//! that `unshare(CLONE_FILES)`d while the table was small (the design the
//! engine's spawner has, `exec/spawner.rs`), and through the engine itself
//! (`exec::run` of `/bin/true`, no containment, from a tokio worker of this
//! process), alternating, at 0, 2,500, 5,000 and 9,000 open loopback
//! connections (two descriptors each).
//!
//! Run: `cargo bench --bench spawn_fds` (needs an open-files limit above
//! 18,100; it stops at the first count it cannot open).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use voxterm::exec::{run, Containment, Job, Stop};

mod support;
use support::Discard;

/// Runs `/bin/true` through the engine `n` times; µs per command.
fn per_run(rt: &tokio::runtime::Runtime, n: usize) -> f64 {
    let job = Job {
        line: Arc::new(voxterm::shell::Line::parse("/bin/true")),
        cwd: PathBuf::from("/tmp"),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())].into(),
        timeout: Duration::from_secs(10),
        kill_grace: Duration::from_millis(100),
        output_cap: 1 << 20,
        containment: Arc::new(Containment::none()),
        dir: None,
        user: None,
    };
    let stop = Stop::default();
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let _ = run(&job, &mut Discard, &stop).await;
        }
    });
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Spawns and waits for `/bin/true` `n` times; µs per spawn.
fn per_spawn(n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let child = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    use nix::sched::{unshare, CloneFlags};
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("cannot build a tokio runtime");
        return;
    };
    // The engine's first command starts its spawner while the table is small,
    // as a server's does before it accepts connections.
    per_run(&rt, 1);
    let (ask, asked) = mpsc::channel::<mpsc::Sender<f64>>();
    std::thread::spawn(move || {
        if let Err(e) = unshare(CloneFlags::CLONE_FILES) {
            eprintln!("unshare(CLONE_FILES): {e}");
            return;
        }
        for reply in asked {
            let _ = reply.send(per_spawn(400));
        }
    });
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        eprintln!("cannot listen on loopback");
        return;
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut held = Vec::new();
    for sockets in [0usize, 2_500, 5_000, 9_000] {
        while held.len() < sockets {
            let pair = TcpStream::connect(addr).and_then(|c| Ok((c, listener.accept()?.0)));
            match pair {
                Ok(p) => held.push(p),
                Err(e) => {
                    eprintln!("stopped at {} connections: {e}", held.len());
                    return;
                }
            }
        }
        let (mut here, mut there, mut engine) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            here.push(per_spawn(400));
            engine.push(per_run(&rt, 400));
            let (tx, rx) = mpsc::channel();
            if ask.send(tx).is_err() {
                return;
            }
            there.extend(rx.recv().ok());
        }
        let there = if there.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.0} µs", median(there))
        };
        println!(
            "{sockets:>5} connections ({:>6} descriptors): from the table's owner {:>5.0} µs · from a thread with its own small table {there} · through the engine {:>5.0} µs (per spawn and wait; medians of 5 × 400, alternating)",
            sockets * 2,
            median(here),
            median(engine)
        );
    }
}

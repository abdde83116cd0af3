//! The load tester's users re-attach as the page does: users run commands
//! that take most of a second through HAProxy (the shipped configuration) in
//! front of one engine; HAProxy is killed with SIGKILL mid-run and started
//! again on the same port. Every user connection is made again, the commands
//! that were running are taken over with `Attach` on the live engine and end
//! with their own `Exit`: nothing lost, no error.

mod common;

use common::Engine;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// HAProxy with the shipped configuration, every server line on `engine`.
fn haproxy(bind: &str, engine: &str, socket: &Path) -> Child {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/voxterm.cfg");
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(cfg)
        .env("VOXTERM_LB_BIND", bind)
        .env("VOXTERM_LB_SOCKET", socket)
        .envs((1..=3).map(|i| (format!("VOXTERM_ENGINE{i}"), engine)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy")
}

fn has(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn users_reattach_to_their_running_commands_after_the_balancer_restarts() {
    if !has("haproxy") {
        eprintln!("skipped: haproxy is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profiles = dir.path().join("slow.toml");
    // Each user runs a command that takes 0.8 s about once a second: most
    // users have one running at any moment.
    std::fs::write(
        &profiles,
        r#"
[profiles.slow]
weight = 1
commands_per_minute = 60.0
start = "nap"
[profiles.slow.states.nap]
command = "sleep 0.8"
class = "volatile"
next = { nap = 1 }
"#,
    )
    .expect("write profiles");
    let server = Engine::start();
    let addr = &server.addr;
    let bind = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let socket = dir.path().join("haproxy.sock");
    let mut lb = haproxy(&bind, addr, &socket);
    std::thread::sleep(Duration::from_secs(2));
    let json = dir.path().join("reattach.json");
    let run = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &format!("ws://{bind}/ws")])
        .args(["--engine", &format!("ws://{addr}/ws")])
        .arg("--profiles")
        .arg(&profiles)
        .args([
            "--users",
            "30",
            "--ramp-up",
            "1s",
            "--duration",
            "9s",
            "--time-scale",
            "1",
            "--quiet",
            "--min-grade",
            "F",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadtest");
    // Into the hold (setup, the floor, the ramp-up), then cut every
    // connection at once and bring the balancer back on the same port.
    std::thread::sleep(Duration::from_secs(7));
    let _ = lb.kill();
    let _ = lb.wait();
    std::thread::sleep(Duration::from_millis(300));
    let mut lb = haproxy(&bind, addr, &socket);
    let out = run.wait_with_output().expect("loadtest ends");
    let _ = lb.kill();
    let _ = lb.wait();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = match std::fs::read(&json) {
        Ok(b) => serde_json::from_slice(&b).expect("valid json"),
        Err(e) => panic!("no report ({e})\n{stdout}\n{stderr}"),
    };
    let raw = &report["raw"];
    println!(
        "reconnects {} · re-attached {} · sent again {} · requests {} · errors {} · lost {}",
        raw["reconnects"],
        raw["reattached"],
        raw["resent"],
        report["requests"],
        report["errors"],
        report["lost_responses"]
    );
    assert!(
        raw["reconnects"].as_u64().is_some_and(|n| n >= 20),
        "the users' connections were made again: {stdout}"
    );
    assert!(
        raw["reattached"].as_u64().is_some_and(|n| n > 0),
        "running commands were taken over: {stdout}"
    );
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    assert_eq!(
        report["errors"], 0,
        "each re-attached command ended with its Exit: {stdout}"
    );
}

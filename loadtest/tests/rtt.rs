//! `loadtest rtt` against a real server (a `loadtest __serve` engine): a line
//! per spacing for voxterm and for the bare TCP echo, exit 0; and exit 1 with
//! the URL named when nothing listens there.

mod common;

use common::Engine;
use std::net::TcpListener;
use std::process::Command;

fn rtt(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("rtt")
        .args(args)
        .env_remove("VOXTERM_URL")
        .output()
        .expect("run loadtest rtt");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rtt_prints_a_line_per_spacing_for_voxterm_and_the_tcp_echo() {
    let engine = Engine::start();
    let url = format!("ws://{}/ws", engine.addr);
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = rtt(&[
        "--url",
        &url,
        "--gaps",
        "0,2ms",
        "--samples",
        "20",
        "--tcp-echo",
    ]);
    drop(engine);
    println!("{stdout}{stderr}took {:?}", started.elapsed());
    assert!(status.success(), "loadtest rtt failed\n{stdout}\n{stderr}");
    assert_eq!(status.code(), Some(0));
    for prefix in ["spacing", "tcp echo spacing"] {
        for spacing in ["0 (back to back)", "2 ms"] {
            let head = format!("{prefix} {spacing}: p50 ");
            let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&head)).collect();
            assert_eq!(lines.len(), 1, "one `{head}` line\n{stdout}");
            assert!(lines[0].contains(" µs · p90 "), "{}", lines[0]);
            assert!(lines[0].contains(" (n="), "{}", lines[0]);
        }
    }
}

#[test]
fn rtt_exits_1_naming_the_url_when_nothing_listens() {
    // A port that was free a moment ago and is closed again.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (status, stdout, stderr) = rtt(&["--url", &url, "--samples", "5"]);
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("no voxterm server answers at {url}")),
        "{stderr}"
    );
}

//! The plain-HTTP routes on the WebSocket port.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_status_and_gauges() {
    let server = TestServer::start("healthz").await;
    let mut c = server.client("t1").await;
    run(&mut c, 0, "true").await;

    let (status, head, body) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_s"].as_f64().is_some_and(|u| u >= 0.0), "{v}");
    assert_eq!(v["connections"].as_u64(), Some(1), "{v}");
    assert_eq!(v["sessions"].as_u64(), Some(1), "{v}");

    // Query strings are ignored.
    let (status, _, _) = http_get(server.addr, "/healthz?verbose=1").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_shows_containment() {
    // rlimits on, cgroups off: exactly what /healthz must report.
    let server = TestServer::start_with("healthz-contain", |c| {
        c.exec.rlimit_cpu = 17;
        c.exec.rlimit_fsize_bytes = 1 << 30;
        c.exec.rlimit_nofile = 512;
        c.exec.cgroup = voxterm::exec::CgroupMode::Off;
    })
    .await;
    let (status, head, body) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200, "{head}\n{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let c = &v["containment"];
    assert_eq!(c["rlimits_active"], true, "{v}");
    assert_eq!(c["rlimits"]["cpu"], 17, "{v}");
    assert_eq!(c["rlimits"]["fsize"], 1u64 << 30, "{v}");
    assert_eq!(c["rlimits"]["nofile"], 512, "{v}");
    assert!(
        c["rlimits"].get("as").is_none(),
        "off limits are left out: {v}"
    );
    assert_eq!(c["cgroup"]["mode"], "off", "{v}");
    assert_eq!(c["cgroup"]["active"], false, "{v}");
    assert!(
        c["cgroup"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("off in config")),
        "{v}"
    );
    assert_eq!(c["refusing_commands"], false, "{v}");
    assert!(
        c["summary"].as_str().is_some_and(|s| s.contains("cpu=17s")),
        "{v}"
    );

    // Nothing at all: rlimits off; with `auto` the cgroup state is whatever this
    // machine allows, and the detail says which.
    let bare = TestServer::start_with("healthz-bare", |c| {
        c.exec.rlimit_cpu = 0;
        c.exec.rlimit_as_bytes = 0;
        c.exec.rlimit_fsize_bytes = 0;
        c.exec.rlimit_nofile = 0;
        c.exec.rlimit_nproc = 0;
        c.exec.cgroup = voxterm::exec::CgroupMode::Auto;
        c.exec.cgroup_pids_max = 77;
    })
    .await;
    let (status, _, body) = http_get(bare.addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let c = &v["containment"];
    assert_eq!(c["rlimits_active"], false, "{v}");
    assert_eq!(c["rlimits"], serde_json::json!({}), "{v}");
    assert_eq!(c["cgroup"]["mode"], "auto", "{v}");
    let detail = c["cgroup"]["detail"].as_str().unwrap_or_default();
    match c["cgroup"]["active"].as_bool() {
        Some(true) => assert!(detail.contains("pids.max=77"), "{v}"),
        Some(false) => assert!(detail.starts_with("no cgroup ("), "{v}"),
        None => panic!("cgroup.active is not a bool: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_origin() {
    let server = TestServer::start("metrics").await;
    let mut c = server.client("t1").await;
    let done = run(&mut c, 0, "echo metered").await;
    assert_eq!(exit_of(&done).code, Some(0));
    let done = run(&mut c, 0, "cd .").await;
    assert_eq!(exit_of(&done).code, Some(0));

    let (status, head, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        body.contains("voxterm_requests_total{served_from=\"exec\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("voxterm_requests_total{served_from=\"builtin\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("voxterm_backend_latency_seconds_bucket"),
        "{body}"
    );
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_methods_and_plain_gets_of_ws() {
    let server = TestServer::start("http-errors").await;
    let (status, _, _) = http_get(server.addr, "/nope").await;
    assert_eq!(status, 404);
    let (status, _, _) = http_get(server.addr, "/ws").await;
    assert_eq!(status, 426);
    let (status, _, _) = http_raw(
        server.addr,
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    let (status, _, _) = http_raw(server.addr, "BLAH\r\n\r\n").await;
    assert_eq!(status, 400);
    // An upgrade without the WebSocket version is a bad request.
    let (status, _, _) = http_raw(
        server.addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    // The server still serves WebSockets.
    let mut c = server.client("t1").await;
    assert_eq!(run(&mut c, 0, "echo up").await.stdout, b"up\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_dropped_after_the_handshake_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with("slow-head", |c| {
        c.server.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .expect("server dropped the connection in time");
    assert!(
        n.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_terminal_page_is_served_from_the_binary() {
    let server = TestServer::start("page").await;
    let (status, head, body) = http_get(server.addr, "/").await;
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Security-Policy: "))
        .expect("a CSP");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        csp.contains(&format!(
            "connect-src 'self' ws://{0} wss://{0};",
            server.addr
        )),
        "{csp}"
    );
    assert!(body.contains("<script type=\"module\" src=\"/app.js\">"));
    assert!(
        !body.contains("<script>"),
        "no inline script: the CSP would block it"
    );
    for (path, kind) in [
        ("/voxterm.js", "text/javascript"),
        ("/vendor/xterm.mjs", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (status, head, _) = http_get(server.addr, path).await;
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains(&format!("Content-Type: {kind}")), "{head}");
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .expect("an ETag");
        let (status, head, body) = http_raw(
            server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 304, "{head}");
        assert!(body.is_empty());
    }
    let (status, _, _) = http_get(server.addr, "/missing.js").await;
    assert_eq!(status, 404);
}

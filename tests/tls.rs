//! TLS over real sockets: a self-signed certificate made at test time, the
//! library client and the `voxterm exec`/`health` binaries over `wss://` and
//! `https://`, and refusals of untrusted certificates and plain clients.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use voxterm::client::{Client, ClientError, ClientOptions};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert, key) PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

async fn tls_server(name: &str) -> (TestServer, PathBuf) {
    let dir = temp_root(&format!("{name}-pki"));
    let (cert, key) = self_signed(&dir);
    let (c2, k2) = (cert.clone(), key);
    let server = TestServer::start_with(name, move |c| {
        c.server.tls_cert = Some(c2);
        c.server.tls_key = Some(k2);
    })
    .await;
    (server, cert)
}

fn options(ca: Option<&Path>) -> ClientOptions {
    ClientOptions {
        tenant: Some("t1".into()),
        ca_cert: ca.map(Path::to_owned),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_wss_with_a_trusted_self_signed_certificate() {
    let (server, cert) = tls_server("tls-exec").await;
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}/ws", server.addr.port());
        let mut c = tokio::time::timeout(STEP, Client::connect(&url, options(Some(&cert))))
            .await
            .expect("connect in time")
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let done = run(&mut c, 0, "echo over tls").await;
        assert_eq!(exit_of(&done).code, Some(0));
        assert_eq!(done.stdout, b"over tls\n");
        // Large output crosses many TLS records intact.
        let done = run(&mut c, 0, "head -c 300000 /dev/zero").await;
        assert_eq!(done.stdout.len(), 300_000);
        c.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificates_and_plain_clients_are_refused() {
    let (server, _cert) = tls_server("tls-refuse").await;
    let port = server.addr.port();
    // Another self-signed certificate is not the server's.
    let other = temp_root("tls-refuse-other");
    let (wrong_ca, _) = self_signed(&other);
    let url = format!("wss://127.0.0.1:{port}/ws");
    match tokio::time::timeout(STEP, Client::connect(&url, options(Some(&wrong_ca)))).await {
        Ok(Err(ClientError::TlsHandshake { error: source, .. })) => {
            let text = source.to_string().to_lowercase();
            assert!(text.contains("certificate"), "{text}");
        }
        Ok(Err(e)) => panic!("expected a TLS handshake error, got {e}"),
        Ok(Ok(_)) => panic!("connected with an untrusted certificate"),
        Err(_) => panic!("no answer in time"),
    }
    // A plain WebSocket client to the TLS port gets no WebSocket.
    let plain = format!("ws://127.0.0.1:{port}/ws");
    let result = tokio::time::timeout(STEP, Client::connect(&plain, options(None)))
        .await
        .expect("answer in time");
    assert!(result.is_err(), "a plain client was served on a TLS port");
}

/// Runs the `voxterm` binary with `args`: (status, stdout, stderr).
async fn voxterm(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_voxterm"))
            .args(&args)
            .env_remove("VOXTERM_URL")
            .env_remove("VOXTERM_TOKEN")
            .output(),
    )
    .await
    .expect("voxterm finished in time")
    .expect("voxterm runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_and_health_commands_speak_wss_and_https() {
    let (server, cert) = tls_server("tls-cli").await;
    let port = server.addr.port();
    let cert = cert.display().to_string();
    let (status, stdout, stderr) = voxterm(vec![
        "exec".into(),
        "--url".into(),
        format!("wss://localhost:{port}/ws"),
        "--ca-cert".into(),
        cert.clone(),
        "--".into(),
        "echo hi from wss; exit 3".into(),
    ])
    .await;
    assert_eq!(stdout, "hi from wss\n", "stderr: {stderr}");
    assert_eq!(status, 3, "the command's status: {stderr}");
    let (status, stdout, stderr) = voxterm(vec![
        "health".into(),
        "--url".into(),
        format!("https://127.0.0.1:{port}"),
        "--ca-cert".into(),
        cert,
    ])
    .await;
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("\"status\":\"ok\""), "{stdout}");
    // Without the certificate the client refuses the server (exit 125).
    let dir = temp_root("tls-cli-empty");
    let empty_ca = dir.join("none.pem");
    std::fs::write(&empty_ca, "").unwrap();
    let (status, _, stderr) = voxterm(vec![
        "exec".into(),
        "--url".into(),
        format!("wss://localhost:{port}/ws"),
        "--ca-cert".into(),
        empty_ca.display().to_string(),
        "--".into(),
        "true".into(),
    ])
    .await;
    assert_eq!(status, 125, "{stderr}");
    assert!(stderr.contains("CA certificates"), "{stderr}");
}

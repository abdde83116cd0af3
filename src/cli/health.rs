//! `voxterm health`: a fast liveness check for scripts and pre-commit hooks.

use super::{client_runtime, DEFAULT_URL};
use anyhow::Context;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options of `voxterm health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Server URL (ws:// or http://); only host and port are used.
    #[arg(long, env = "VOXTERM_URL", default_value = DEFAULT_URL)]
    url: String,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Prints the /healthz body and exits 0 when it says `"status":"ok"`.
pub fn run(args: HealthArgs) -> ExitCode {
    let result = client_runtime()
        .context("cannot start the runtime")
        .and_then(|rt| {
            rt.block_on(async { tokio::time::timeout(args.timeout, check(&args.url)).await })
                .context("timed out")?
        });
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voxterm: unhealthy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(url: &str) -> anyhow::Result<String> {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "server answered {}",
        head.lines().next().unwrap_or("")
    );
    let health: serde_json::Value =
        serde_json::from_str(body).context("health body is not JSON")?;
    anyhow::ensure!(health["status"] == "ok", "status is {}", health["status"]);
    Ok(body.to_owned())
}

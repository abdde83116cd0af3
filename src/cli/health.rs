//! `voxterm health`: a fast liveness check for scripts and pre-commit hooks.

use super::{client_runtime, DEFAULT_URL};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Options of `voxterm health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Server URL (ws://, http://, or wss:// and https:// for a server with
    /// TLS); only the scheme, host and port are used.
    #[arg(long, env = "VOXTERM_URL", default_value = DEFAULT_URL)]
    url: String,
    /// For TLS: PEM certificates to trust instead of the system's roots.
    #[arg(long, env = "VOXTERM_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Prints the /healthz body and exits 0 when it says `"status":"ok"`.
pub fn run(args: HealthArgs) -> ExitCode {
    let result = client_runtime()
        .context("cannot start the runtime")
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(args.timeout, check(&args.url, args.ca_cert.as_deref())).await
            })
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

async fn check(url: &str, ca_cert: Option<&Path>) -> anyhow::Result<String> {
    let reply = crate::client::http_get(url, "/healthz", ca_cert).await?;
    anyhow::ensure!(reply.status == 200, "server answered {}", reply.status_line);
    let health: serde_json::Value =
        serde_json::from_str(&reply.body).context("health body is not JSON")?;
    anyhow::ensure!(health["status"] == "ok", "status is {}", health["status"]);
    Ok(reply.body)
}

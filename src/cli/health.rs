//! `voxterm health`: a fast liveness check for scripts and pre-commit hooks.

use super::{client_runtime, DEFAULT_URL};
use crate::security::tls::{self, MaybeTls};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let secure = matches!(scheme, "wss" | "https");
    let authority = rest.split('/').next().unwrap_or_default();
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let mut stream = if secure {
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.parse::<u16>().is_ok() => h,
            _ => authority,
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
            .context("invalid TLS server name")?;
        let connector = tokio_rustls::TlsConnector::from(tls::client_config(ca_cert)?);
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {authority}"))?;
        MaybeTls::Tls(Box::new(tls.into()))
    } else {
        MaybeTls::Plain(tcp)
    };
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

//! `health`: a fast check that a server answers `/healthz` and runs one command.

use crate::args::HealthArgs;
use crate::conn;
use anyhow::Context;
use std::process::ExitCode;
use voxterm_protocol::{Compression, Encoding};

pub(crate) async fn health(h: HealthArgs) -> anyhow::Result<ExitCode> {
    let check = async {
        conn::Target::parse(&h.url, Encoding::Bincode, Compression::None)?;
        let started = std::time::Instant::now();
        let reply = voxterm::client::http_get(&h.url, "/healthz", None).await?;
        anyhow::ensure!(reply.status == 200, "{}", reply.status_line);
        let body = reply.body;
        let v: serde_json::Value = serde_json::from_str(&body).context("healthz is not JSON")?;
        anyhow::ensure!(v["status"] == "ok", "healthz status is {}", v["status"]);
        let healthz_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = std::time::Instant::now();
        let mut c = voxterm::client::Client::connect(&h.url, Default::default()).await?;
        let done = c.run(0, "echo voxterm-health", 5000).await?;
        let rt_ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            done.exit.as_ref().and_then(|e| e.code) == Some(0)
                && done.stdout == b"voxterm-health\n",
            "exec round trip failed: {:?} {:?}",
            done.exit,
            done.error
        );
        let _ = c.close().await;
        println!("healthy: healthz {healthz_ms:.1} ms · exec round trip {rt_ms:.1} ms · {body}");
        anyhow::Ok(())
    };
    match tokio::time::timeout(h.timeout, check).await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => {
            eprintln!("loadtest: unhealthy: {e:#}");
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            eprintln!("loadtest: unhealthy: no answer within {:?}", h.timeout);
            Ok(ExitCode::from(1))
        }
    }
}

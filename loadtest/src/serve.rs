//! The server under test when no `--url` is given.
//!
//! It runs in a separate process (10,000 users means 20,000 sockets on one host,
//! and the open-files hard limit here is 20,000 per process), and that process is
//! this binary again, re-executed with the hidden `__serve` subcommand: the engine
//! comes from the voxterm library, so no `voxterm` binary has to be built first.

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use voxterm::config::{Config, Preset};

/// Flags `__serve` understands (what `--server-arg` may pass), and what they do.
pub const SUPPORTED_FLAGS: &[(&str, &str)] = &[
    (
        "--preset P",
        "development | production | high-performance (default high-performance)",
    ),
    ("--workers N", "children that may run at once"),
    ("--config FILE", "TOML merged over the preset"),
    (
        "--no-batch",
        "one WebSocket message and flush per frame (writer coalescing off; alias --no-coalesce)",
    ),
    ("--no-coalesce", "same as --no-batch"),
    ("--no-predict", "next-command prediction and prefetch off"),
    ("--no-cache", "every cache tier off (the baseline)"),
    ("--redis-url URL", "turn the L3 cache tier (Redis) on"),
    ("--l1-bytes N", "L1 cache bound per worker thread, bytes"),
    ("--l2-bytes N", "L2 cache bound, bytes"),
];

/// Whether `flag` (e.g. `--no-cache`) is one `__serve` supports.
pub fn supports(flag: &str) -> bool {
    SUPPORTED_FLAGS
        .iter()
        .any(|(f, _)| f.split_whitespace().next() == Some(flag))
}

/// Builds the configuration from `__serve` arguments.
pub fn config_from_args(listen: SocketAddr, args: &[String]) -> anyhow::Result<Config> {
    let mut preset = Preset::HighPerformance;
    let mut file: Option<PathBuf> = None;
    let mut workers = None;
    let mut no_coalesce = false;
    let mut no_cache = false;
    let mut no_predict = false;
    let mut redis_url = None;
    let mut l1_bytes: Option<usize> = None;
    let mut l2_bytes: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "--preset" => {
                preset = match value()?.as_str() {
                    "development" => Preset::Development,
                    "production" => Preset::Production,
                    "high-performance" => Preset::HighPerformance,
                    other => bail!("unknown preset {other}"),
                }
            }
            "--workers" => workers = Some(value()?.parse().context("--workers needs a number")?),
            "--config" => file = Some(PathBuf::from(value()?)),
            "--no-batch" | "--no-coalesce" => no_coalesce = true,
            "--no-predict" => no_predict = true,
            "--no-cache" => no_cache = true,
            "--redis-url" => redis_url = Some(value()?),
            "--l1-bytes" => l1_bytes = Some(value()?.parse().context("--l1-bytes needs bytes")?),
            "--l2-bytes" => l2_bytes = Some(value()?.parse().context("--l2-bytes needs bytes")?),
            other => bail!(
                "server flag {other} is not supported by this server build (supported: {})",
                SUPPORTED_FLAGS
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let mut config = Config::load(preset, file.as_deref())?;
    config.server.listen = listen;
    if let Some(w) = workers {
        config.exec.workers = w;
    }
    if no_coalesce {
        config.server.coalesce = false;
    }
    if no_predict {
        config.predict.enabled = false;
    }
    if config.predict.data_dir.is_none() {
        // Every run starts with a cold model (runs stay comparable) and leaves
        // nothing in the user's ~/.local/share.
        config.predict.data_dir = Some(
            std::env::temp_dir().join(format!("voxterm-loadtest-model-{}", std::process::id())),
        );
    }
    if no_cache {
        config.cache.enabled = false;
    }
    if redis_url.is_some() {
        config.cache.redis_url = redis_url;
    }
    if let Some(b) = l1_bytes {
        config.cache.l1_bytes = b;
    }
    if let Some(b) = l2_bytes {
        config.cache.l2_bytes = b;
    }
    voxterm::server::check(&config)?;
    Ok(config)
}

/// The body of `loadtest __serve`: serve until SIGTERM/SIGINT, printing the bound
/// address on stdout first so the parent knows the port.
pub fn run_child(listen: SocketAddr, args: &[String]) -> anyhow::Result<()> {
    crate::raise_nofile();
    crate::init_tracing();
    let config = config_from_args(listen, args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = voxterm::server::Server::bind(config)
            .await
            .context("cannot bind")?;
        let addr = server.local_addr()?;
        println!("listening {addr}");
        server.run(voxterm::server::shutdown_signal()).await;
        anyhow::Ok(())
    })
}

/// A server child process.
pub struct ServerChild {
    child: Child,
    /// ws:// URL of its endpoint.
    pub url: String,
}

impl ServerChild {
    /// Starts `<this exe> __serve --listen 127.0.0.1:0 ARGS` and waits for its port.
    pub async fn start(args: &[String]) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("cannot find my own executable")?;
        let mut child = Command::new(exe)
            .arg("__serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("server did not start within 20 s")??;
        let Some(addr) = line.as_deref().and_then(|l| l.strip_prefix("listening ")) else {
            let status = child.wait().await.ok();
            bail!("server failed to start ({status:?}); see its stderr above");
        };
        let url = format!("ws://{addr}/ws");
        Ok(ServerChild { child, url })
    }

    /// Whether it is still running (false = it crashed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait; returns a description of an abnormal end.
    pub async fn stop(mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(format!("server exited during the run: {status}"));
        }
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(s)) if s.success() => None,
            Ok(Ok(s)) => Some(format!("server shutdown failed: {s}")),
            Ok(Err(e)) => Some(format!("cannot wait for the server: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Some("server did not shut down within 30 s".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn cache_bounds_override_the_preset_and_bad_values_are_refused() {
        let args = ["--l1-bytes=1048576", "--l2-bytes", "8388608"].map(String::from);
        let c = config_from_args(listen(), &args).expect("valid flags");
        assert_eq!((c.cache.l1_bytes, c.cache.l2_bytes), (1 << 20, 8 << 20));
        let preset = config_from_args(listen(), &[]).expect("no flags");
        assert!(
            preset.cache.l2_bytes > 8 << 20,
            "the preset's bound is larger"
        );

        let e =
            config_from_args(listen(), &["--l2-bytes=8MiB".to_owned()]).expect_err("bytes only");
        assert!(format!("{e:#}").contains("--l2-bytes needs bytes"), "{e:#}");
        let e = config_from_args(listen(), &["--l9".to_owned()]).expect_err("unknown flag");
        assert!(format!("{e:#}").contains("--l1-bytes N"), "{e:#}");
    }
}

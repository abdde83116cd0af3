//! The `failover` scenario's deployment, started by the load tester: one
//! Redis, three engines on it (each a `__serve` child, sessions and L3 in that
//! Redis), and HAProxy in front with the configuration this repository ships
//! (`deploy/haproxy/voxterm.cfg`, compiled in, so the run tests the file
//! operators use). The run kills one engine with SIGKILL a third into the
//! hold; its users reconnect through HAProxy to the others, open their
//! sessions again by name and re-attach to the commands they had running,
//! which end with `RequestLost` (they ran on the dead engine): the report
//! counts them, and anything else lost fails the run.
//!
//! Without `haproxy` on the PATH the users are spread over the engines' own
//! URLs and reconnect to the next one, as a client with a list of endpoints
//! does; the report says which was used.

use crate::redis::RedisServer;
use crate::serve::ServerChild;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The shipped HAProxy configuration.
const HAPROXY_CFG: &str = include_str!("../../deploy/haproxy/voxterm.cfg");

/// Engines started (the shipped configuration names three).
pub const ENGINES: usize = 3;

/// The engine killed: the second, so that the first keeps the monitor's
/// fixture connection.
pub const VICTIM: usize = 1;

/// What the failover run did and saw, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverSummary {
    /// What the users connected through.
    pub balancer: String,
    /// The engine killed (its URL).
    pub killed: String,
    /// When, seconds from the start of the run (None: it was not killed).
    pub killed_at_s: Option<f64>,
    /// Requests in flight on it just before the kill (its last `Stats`).
    pub in_flight_at_kill: Option<u64>,
    /// User connections that dropped and were made again.
    pub reconnects: u64,
    /// Requests taken over on a new connection.
    pub reattached: u64,
    /// Sessions opened again after the drop that came back as they were
    /// (resumed from the session store, in the fixture project).
    pub sessions_intact: u64,
    /// … that came back new or in another directory.
    pub sessions_changed: u64,
    /// Requests that ended with `RequestLost` (they ran on the dead engine).
    pub request_lost: u64,
    /// Requests that ended with any other `Error`.
    pub other_errors: u64,
    /// Requests with no terminal frame at all.
    pub lost: u64,
}

impl FailoverSummary {
    /// What makes the run fail: anything lost silently, an error other than
    /// `RequestLost`, or a kill that nobody noticed (the scenario did not
    /// test what it claims to).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.killed_at_s.is_none() {
            f.push(
                "failover: the engine was not killed (the run ended before a third of the hold)"
                    .into(),
            );
        } else if self.reconnects == 0 {
            f.push("failover: no user connection dropped when the engine was killed".into());
        }
        if self.sessions_changed > 0 {
            f.push(format!(
                "failover: {} sessions came back new or in another directory after their engine died",
                self.sessions_changed
            ));
        }
        if self.lost > 0 {
            f.push(format!(
                "failover: {} requests got no answer at all (each must end, with RequestLost at worst)",
                self.lost
            ));
        }
        if self.other_errors > 0 {
            f.push(format!(
                "failover: {} requests ended with an error other than RequestLost",
                self.other_errors
            ));
        }
        f
    }
}

/// HAProxy in front of the engines.
struct Haproxy {
    child: Child,
    url: String,
    socket: PathBuf,
}

/// The deployment: Redis, the engines, HAProxy when installed.
pub struct Cluster {
    redis: RedisServer,
    engines: Vec<ServerChild>,
    haproxy: Option<Haproxy>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts Redis, the engines (`server_args` plus the Redis URL) and
    /// HAProxy, and waits until HAProxy sees every engine up.
    pub async fn start(server_args: &[String]) -> anyhow::Result<Cluster> {
        let redis = RedisServer::start().await?;
        let mut args = server_args.to_vec();
        args.push(format!("--redis-url={}", redis.url()));
        let mut engines = Vec::with_capacity(ENGINES);
        for _ in 0..ENGINES {
            engines.push(ServerChild::start(&args).await?);
        }
        let dir = std::env::temp_dir().join(format!("voxterm-failover-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cluster = Cluster {
            redis,
            engines,
            haproxy: None,
            dir,
        };
        if crate::browser::on_path(&["haproxy"]).is_some() {
            cluster.haproxy = Some(cluster.start_haproxy().await?);
        }
        Ok(cluster)
    }

    async fn start_haproxy(&self) -> anyhow::Result<Haproxy> {
        let cfg = self.dir.join("voxterm.cfg");
        std::fs::write(&cfg, HAPROXY_CFG)?;
        let socket = self.dir.join("haproxy.sock");
        let bind = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("VOXTERM_LB_BIND", bind.to_string())
            .env("VOXTERM_LB_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (i, e) in self.engines.iter().enumerate() {
            let addr = e
                .url
                .strip_prefix("ws://")
                .and_then(|r| r.split('/').next())
                .context("engine URL")?;
            cmd.env(format!("VOXTERM_ENGINE{}", i + 1), addr);
        }
        let child = cmd.spawn().context("cannot start haproxy")?;
        let h = Haproxy {
            child,
            url: format!("ws://{bind}/ws"),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while up(&h.socket) < ENGINES {
            anyhow::ensure!(
                Instant::now() < deadline,
                "HAProxy did not see the {ENGINES} engines up within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(h)
    }

    /// Where users connect: HAProxy, or every engine.
    pub fn user_urls(&self) -> Vec<String> {
        match &self.haproxy {
            Some(h) => vec![h.url.clone()],
            None => self.engine_urls(),
        }
    }

    /// Every engine's own URL (the monitor reads each).
    pub fn engine_urls(&self) -> Vec<String> {
        self.engines.iter().map(|e| e.url.clone()).collect()
    }

    /// What the users go through, for the report.
    pub fn balancer(&self) -> String {
        match &self.haproxy {
            Some(h) => format!("HAProxy at {} (deploy/haproxy/voxterm.cfg)", h.url),
            None => "none (haproxy is not installed): users spread over the engines' URLs and reconnect to the next".into(),
        }
    }

    /// The engine the run kills: its URL and process id.
    pub fn victim(&self) -> Option<(String, u32)> {
        let e = self.engines.get(VICTIM)?;
        Some((e.url.clone(), e.pid()?))
    }

    /// Stops everything; returns what went wrong with the engines that
    /// should have lived.
    pub async fn stop(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut h) = self.haproxy.take() {
            let _ = h.child.kill().await;
        }
        for (i, e) in std::mem::take(&mut self.engines).into_iter().enumerate() {
            let why = e.stop().await;
            if i != VICTIM {
                problems.extend(why.map(|w| format!("engine {}: {w}", i + 1)));
            }
        }
        let _ = self.redis.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        problems
    }
}

/// SIGKILLs `pid` (the victim engine); true when the signal was delivered.
pub fn kill(pid: u32) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

/// Engines HAProxy reports UP, through its admin socket.
fn up(socket: &std::path::Path) -> usize {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return 0;
    };
    let _ = s.write_all(b"show stat\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .filter(|l| l.starts_with("engines,engine"))
        .filter(|l| l.split(',').nth(17) == Some("UP"))
        .count()
}

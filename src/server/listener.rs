//! The listener: binds the port, accepts TCP connections and hands each one
//! to a task of its own (`http::serve_tcp`), then drains on shutdown.
//!
//! It is the top of `server/`: it depends on the other modules, none of them
//! on it. What happens inside one connection is their business; what happens
//! here is everything that concerns all connections at once: the accept loop,
//! counting connections against the open-files budget and the per-address
//! caps at `accept`, backing off when `accept` fails, and the order of
//! shutdown.

use super::context::ServerContext;
use super::{gate, http, process};
use crate::config::Config;
use crate::engine::Engine;
use crate::security::Security;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

/// A bound, not yet running, voxterm server.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    ctx: Arc<ServerContext>,
}

impl Server {
    /// Binds the configured address with a large accept backlog. Refuses
    /// (`InvalidInput`) a non-loopback address without tokens unless
    /// `auth.insecure_no_auth`, and an unreadable tokens file or bad policy.
    ///
    /// Also hardens the process: its soft open-files limit is raised to the
    /// hard one, and it is made non-dumpable, so that the commands it runs (as
    /// the same user) cannot read its `/proc/<pid>/environ`, `cmdline` or
    /// memory, nor attach a debugger to it.
    pub async fn bind(mut config: Config) -> std::io::Result<Server> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        config
            .read_secret_files()
            .map_err(|e| invalid(e.to_string()))?;
        let security = Security::from_config(&config).map_err(|e| invalid(e.to_string()))?;
        process::harden();
        process::warn_about_secrets(&config);
        let addr = config.server.listen;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(config.server.backlog)?;
        let (soft, hard) = gate::raise_nofile();
        let budget = gate::Budget::measure(config.server.fd_reserve, config.exec.workers);
        let gate = gate::Gate::new(budget);
        tracing::info!(
            soft,
            hard,
            in_use = budget.baseline,
            reserve = budget.reserve,
            connections = gate.soft_cap(),
            "open-files budget: past `connections` open connections the oldest half-open ones are closed and upgrades refused (503)"
        );
        crate::metrics::purge_in_background();
        let kill = CancellationToken::new();
        let engine = Engine::new(config, kill).map_err(|e| invalid(e.to_string()))?;
        engine.load_model().await;
        let ctx = Arc::new(ServerContext::new(engine.clone(), security, gate));
        Ok(Server {
            listener,
            engine,
            ctx,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The engine, for embedding and tests.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Tokens, origins, policy and limits in force: an embedding program
    /// reloads the tokens file through it (`security().tokens`), as SIGHUP does.
    pub fn security(&self) -> &Arc<Security> {
        &self.ctx.security
    }

    /// Serves until `signal` completes, then drains and shuts down.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let Server {
            listener,
            engine,
            ctx,
        } = self;
        let reaper_stop = CancellationToken::new();
        engine.sessions.spawn_reaper(reaper_stop.clone());
        engine.spawn_model_saver(reaper_stop.clone());
        engine.metrics.spawn_window_ticker(reaper_stop.clone());
        if ctx.security.tokens.is_some() {
            tokio::spawn(process::reload_tokens_on_hangup(
                ctx.security.clone(),
                reaper_stop.clone(),
            ));
        }
        tokio::pin!(signal);
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                _ = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff.succeeded();
                        if let Some(accepted) = admit(&ctx, peer) {
                            let ctx2 = ctx.clone();
                            ctx.tracker.spawn(async move { http::serve_tcp(ctx2, stream, peer, accepted).await });
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: make room, back off instead of
                        // spinning, and say so once in a while, not per failure.
                        if matches!(e.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE)) {
                            ctx.gate.evict_oldest();
                        }
                        let pause = backoff.failed(&e);
                        tokio::select! {
                            _ = &mut signal => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }
        drop(listener);
        tracing::info!("shutting down: draining in-flight commands");
        ctx.drain.cancel();
        ctx.tracker.close();
        let cfg = engine.config();
        if tokio::time::timeout(cfg.server.drain_timeout, ctx.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed: killing remaining commands");
            engine.kill_all();
            let grace = cfg.exec.kill_grace + Duration::from_secs(2);
            let _ = tokio::time::timeout(grace, ctx.tracker.wait()).await;
        }
        engine.kill_all();
        reaper_stop.cancel();
        if let Some(cache) = &engine.cache {
            cache.stop_pubsub();
        }
        engine.save_model().await;
        engine.sessions.save_all().await;
        tracing::info!("shutdown complete");
    }
}

/// Counts a connection just accepted against the open-files budget and its
/// address's caps (both from `accept`, so a connection that never sends its
/// head holds its place like any other). `None`: closed at once.
fn admit(ctx: &ServerContext, peer: SocketAddr) -> Option<http::Accepted> {
    let metrics = &ctx.engine.metrics;
    let (ticket, evicted) = ctx.gate.admit();
    if evicted {
        metrics.refused(crate::metrics::Refusal::FdReserve);
    }
    let Some(ticket) = ticket else {
        metrics.refused(crate::metrics::Refusal::FdReserve);
        tracing::debug!(%peer, "connection closed at accept: open-files budget exhausted");
        return None;
    };
    let ip = peer.ip().to_canonical();
    let security = &ctx.security;
    let pending = match &security.ip_pending {
        None => None,
        Some(slots) => match slots.acquire(&ip) {
            Some(slot) => Some(slot),
            None => {
                metrics.refused(crate::metrics::Refusal::PendingPerIp);
                tracing::debug!(%ip, max = slots.max(), "connection closed at accept: too many half-open connections from this address");
                return None;
            }
        },
    };
    // Over the per-address cap the connection may still ask for /healthz or
    // /metrics (bounded by `pending`); an upgrade gets 429.
    let ip_slot = security
        .ip_connections
        .as_ref()
        .and_then(|s| s.acquire(&ip));
    Some(http::Accepted {
        ticket,
        pending,
        ip_slot,
    })
}

/// Exponential back-off of the accept loop after errors (10 ms doubling to
/// 1 s), with one warning per 10 s at most, that counts what it did not log.
#[derive(Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    last_log: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn succeeded(&mut self) {
        self.pause = None;
    }

    /// The pause before the next `accept`.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        self.pause = Some(pause);
        self.unlogged += 1;
        if !self.last_log.is_some_and(|t| t.elapsed() < Self::LOG_EVERY) {
            let hint = match e.raw_os_error() {
                Some(nix::libc::EMFILE | nix::libc::ENFILE) => {
                    "out of file descriptors: raise the open-files limit (systemd LimitNOFILE=, ulimit -n) or set [limits] max_connections_per_ip"
                }
                _ => "",
            };
            tracing::warn!(
                error = %e,
                failures = self.unlogged,
                pause_ms = pause.as_millis() as u64,
                "accept failed ({} time(s) since the last report); pausing accepts. {hint}",
                self.unlogged
            );
            self.last_log = Some(std::time::Instant::now());
            self.unlogged = 0;
        }
        pause
    }
}

//! The network face of voxterm: one TCP port that serves WebSocket clients on
//! `/ws` and plain HTTP on `/healthz` and `/metrics`.
//!
//! Shape (after tokio's mini-redis): [`Server`] owns the listener and the accept
//! loop; each TCP connection gets a task that does the HTTP part (`http`), then a
//! [`connection`] reader task that decodes frames and a `writer` task that owns
//! the socket's write half. Every `Exec` runs in its own task (`request`), so one
//! slow command never holds up the others on the same connection.
//!
//! Shutdown: on the signal the listener closes, connections stop accepting new
//! commands and drain; after `drain_timeout` the remaining children are killed, their
//! requests end with `Exit { killed: Shutdown }`, and connections close with 1001.

mod connection;
mod http;
mod request;
mod writer;

use crate::config::Config;
use crate::security::Security;

/// The byte stream under every connection: plain TCP, or TLS when configured.
pub(crate) type Transport = crate::security::tls::MaybeTls;
use crate::session::Engine;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A bound, not yet running, voxterm server.
pub struct Server {
    listener: TcpListener,
    engine: Arc<Engine>,
    ctx: Arc<ServerContext>,
}

/// What every connection task shares.
pub(crate) struct ServerContext {
    pub engine: Arc<Engine>,
    /// Tokens, origins, command policy and rate limits.
    pub security: Arc<Security>,
    /// Fires when shutdown begins: stop taking new work, drain.
    pub drain: CancellationToken,
    /// Tracks connection and request tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    next_connection: AtomicU64,
}

impl ServerContext {
    fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Server {
    /// Binds the configured address with a large accept backlog. Refuses
    /// (`InvalidInput`) a non-loopback address without tokens unless
    /// `auth.insecure_no_auth`, and an unreadable tokens file or bad policy.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        let security = Security::from_config(&config)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let addr = config.server.listen;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(config.server.backlog)?;
        crate::metrics::purge_in_background();
        let kill = CancellationToken::new();
        let engine = Engine::new(config, kill);
        engine.load_model().await;
        let ctx = Arc::new(ServerContext {
            engine: engine.clone(),
            security,
            drain: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_connection: AtomicU64::new(0),
        });
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
        if ctx.security.tokens.is_some() {
            tokio::spawn(reload_tokens_on_hangup(
                ctx.security.clone(),
                reaper_stop.clone(),
            ));
        }
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let ctx2 = ctx.clone();
                        ctx.tracker.spawn(async move { http::serve_tcp(ctx2, stream, peer).await });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
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
        engine.save_model().await;
        tracing::info!("shutdown complete");
    }
}

/// Reloads the tokens file on every SIGHUP until `stop`: the usual way to
/// rotate a daemon's credentials (`kill -HUP`, `systemctl reload`) without
/// dropping the connections whose tokens stay. Installed only when a tokens file
/// is configured; otherwise SIGHUP keeps its default meaning.
async fn reload_tokens_on_hangup(security: Arc<Security>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(store) = &security.tokens else {
        return;
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler: tokens reload needs a restart");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                match store.reload() {
                    Ok(n) => tracing::info!(tokens = n, "tokens file reloaded"),
                    Err(e) => tracing::error!(error = %e, "tokens file not reloaded: the tokens in force stay"),
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; use the process manager's kill");
            std::future::pending::<()>().await
        }
    }
}

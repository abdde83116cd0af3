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
mod gate;
mod http;
mod lock;
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
    /// Open connections against the open-files budget.
    pub gate: Arc<gate::Gate>,
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
        harden_process();
        warn_about_secrets(&config);
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
        let engine = Engine::new(config, kill);
        engine.load_model().await;
        let ctx = Arc::new(ServerContext {
            engine: engine.clone(),
            security,
            drain: CancellationToken::new(),
            tracker: TaskTracker::new(),
            gate,
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
        engine.save_model().await;
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

/// Makes the process non-dumpable: same-user processes (the commands it
/// runs) can then no longer read `/proc/<pid>/environ`, `cmdline`, `mem` or
/// `maps`, nor ptrace it; core dumps are off too. Children get their own
/// dumpable flag back at `execve`.
fn harden_process() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the server non-dumpable: commands can read its /proc/<pid>/environ and memory");
    }
}

/// Warnings about secrets the commands could read: children run as the
/// server's user, so whatever that user can read, every tenant's commands can.
fn warn_about_secrets(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(path) = &config.auth.tokens_file {
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
        if let Ok(mode) = mode {
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{mode:o}"),
                    "the tokens file is readable by other users: chmod 600 it"
                );
            }
        }
        tracing::warn!(
            file = %path.display(),
            "commands run as the server's own user and can read the tokens file (and so take any tenant's token): run the server under a user of its own and give commands no way to read its files (see README, Containing children)"
        );
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

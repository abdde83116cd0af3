//! `voxterm serve`: its options ([`ServeArgs`], public: the load tester's server
//! child parses the same ones) and the server's start.

use crate::config::{Config, ConfigError, Preset};
use crate::server::{shutdown_signal, Server};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `voxterm serve`. Precedence: flags and `VOXTERM_*` env over the
/// `--config` file over the preset.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file merged over the preset.
    #[arg(long, env = "VOXTERM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Starting configuration.
    #[arg(
        long,
        value_enum,
        env = "VOXTERM_PRESET",
        default_value = "development"
    )]
    pub preset: Preset,
    /// Address to listen on: `host:port` with an IP or a name (`localhost:7999`);
    /// default 127.0.0.1:7878.
    #[arg(long, env = "VOXTERM_LISTEN", value_parser = listen_address)]
    pub listen: Option<SocketAddr>,
    /// Children that may run at once.
    #[arg(long, env = "VOXTERM_WORKERS")]
    pub workers: Option<usize>,
    /// Threads that run connections and requests (0: one per core). Fewer
    /// than the cores pays when another busy process shares the machine,
    /// such as a load tester beside the server.
    #[arg(long, env = "VOXTERM_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Redis for the shared L3 cache tier (e.g. redis://127.0.0.1:6379); without
    /// it the cache runs on L1/L2 alone.
    /// A password in it is visible to every process of the server's user (its
    /// command line, in /proc): prefer VOXTERM_REDIS_URL or --redis-url-file.
    #[arg(long, env = "VOXTERM_REDIS_URL")]
    pub redis_url: Option<String>,
    /// A file whose first line is the Redis URL (keeps a password off the
    /// command line); --redis-url wins when both are given.
    #[arg(long, env = "VOXTERM_REDIS_URL_FILE", value_name = "FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// The Redis URL names seed nodes of a Redis Cluster (several separated by
    /// commas: redis://10.0.0.1:7000,redis://10.0.0.2:7000).
    #[arg(long)]
    pub redis_cluster: bool,
    /// Turn every cache tier off (the baseline for comparisons).
    #[arg(long)]
    pub no_cache: bool,
    /// Turn next-command prediction and prefetch off (the baseline for comparisons).
    #[arg(long)]
    pub no_predict: bool,
    /// Turn renewal off: a cached line in use is not run again before its
    /// entry expires (the baseline for comparisons).
    #[arg(long)]
    pub no_renew: bool,
    /// Send every frame as its own WebSocket message with its own flush instead of
    /// coalescing (the baseline for comparisons).
    #[arg(long)]
    pub no_batch: bool,
    /// TOML file with a `[tokens]` table mapping each token to its tenant; clients
    /// must then present a token (Authorization: Bearer, a `bearer.<token>`
    /// subprotocol, or Hello.token) and act as its tenant.
    #[arg(long, env = "VOXTERM_TOKENS")]
    pub tokens: Option<PathBuf>,
    /// Allow listening beyond loopback without --tokens. Anyone who can reach the
    /// port can then run commands as any tenant: trusted networks only.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// PEM certificate chain: with --tls-key, the port speaks TLS only (wss://,
    /// https://), so pages served over https can connect.
    #[arg(
        long,
        env = "VOXTERM_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "VOXTERM_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The configuration these options ask for: the preset, the `--config` file
    /// over it, the flags over both. Not validated yet, so that a caller can set
    /// fields of its own first (the load tester's server sets its listen address
    /// and cache bounds) and then call [`server::check`](crate::server::check).
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.preset, self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(workers) = self.workers {
            config.exec.workers = workers;
        }
        if let Some(threads) = self.threads {
            config.server.threads = threads;
        }
        if let Some(url) = self.redis_url.as_ref().filter(|u| !u.is_empty()) {
            config.cache.redis_url = Some(url.clone());
        }
        if let Some(file) = &self.redis_url_file {
            config.cache.redis_url_file = Some(file.clone());
        }
        if self.redis_cluster {
            config.cache.redis_cluster = true;
        }
        if self.no_cache {
            config.cache.enabled = false;
        }
        if self.no_predict {
            config.predict.enabled = false;
        }
        if self.no_renew {
            config.cache.renew = false;
        }
        if self.no_batch {
            config.server.coalesce = false;
        }
        if let Some(tokens) = &self.tokens {
            config.auth.tokens_file = Some(tokens.clone());
        }
        if self.insecure_no_auth {
            config.auth.insecure_no_auth = true;
        }
        if let Some(cert) = &self.tls_cert {
            config.server.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            config.server.tls_key = Some(key.clone());
        }
        Ok(config)
    }
}

/// Loads the configuration, starts the runtime and serves until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    init_tracing();
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxterm: {e}");
            return ExitCode::from(2);
        }
    };
    let password_on_command_line = args.redis_url.as_deref().is_some_and(|url| {
        has_password(url) && std::env::var("VOXTERM_REDIS_URL").ok().as_deref() != Some(url)
    });
    if let Err(e) = crate::server::check(&config) {
        eprintln!("voxterm: {e}");
        return ExitCode::from(2);
    }
    let runtime = match crate::server::runtime(&config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxterm: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if password_on_command_line {
            tracing::warn!(
                "--redis-url carries a password on the command line, where every process of this user can read it (/proc/<pid>/cmdline); \
                 pass it in VOXTERM_REDIS_URL or --redis-url-file instead"
            );
        }
        let server = match Server::bind(config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("voxterm: cannot listen on {}: {e}", config.server.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr().unwrap_or(config.server.listen);
        if config.auth.tokens_file.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "listening beyond loopback WITHOUT authentication (--insecure-no-auth)");
        }
        let (ws, http) = match config.server.tls_cert {
            Some(_) => ("wss", "https"),
            None => ("ws", "http"),
        };
        tracing::info!(
            %addr,
            preset = ?args.preset,
            workers = config.exec.workers,
            "voxterm listening: {ws}://{addr}/ws, {http}://{addr}/healthz, {http}://{addr}/metrics"
        );
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Whether a `redis://` URL carries a password (`redis://[user]:password@host`).
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `--listen`: an IP address and port, or a host name and port resolved once
/// (its first address, as `bind` would take).
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| {
        format!("{text:?} is not host:port (e.g. 127.0.0.1:7878 or localhost:7878): {e}")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn threads_flag_reaches_the_configuration() {
        let c = Serve::try_parse_from(["serve", "--threads", "1"])
            .unwrap()
            .args
            .load_config()
            .unwrap();
        assert_eq!(c.server.threads, 1);
        let c = Serve::try_parse_from(["serve"])
            .unwrap()
            .args
            .load_config()
            .unwrap();
        if std::env::var_os("VOXTERM_THREADS").is_none() {
            assert_eq!(c.server.threads, 0, "one per core unless asked");
        }
        assert!(Serve::try_parse_from(["serve", "--threads", "many"]).is_err());
    }
}

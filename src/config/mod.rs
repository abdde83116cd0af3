//! Configuration: presets, a TOML file over them, then flags and `VOXTERM_*` env.
//!
//! Layering is done on TOML values: the preset is serialized to a table, the user's
//! file is deep-merged over it, and the result is deserialized with
//! `deny_unknown_fields`, so a typo in a key is an error rather than a silent default.

mod preset;

pub use preset::Preset;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the server can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Network, protocol and connection limits.
    pub server: ServerConfig,
    /// Session lifetime and environment.
    pub session: SessionConfig,
    /// The worker pool and the limits of every child.
    pub exec: ExecConfig,
    /// The result cache tiers.
    pub cache: CacheConfig,
    /// Authentication: tokens mapped to tenants.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Command allow and deny lists.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Per-tenant rate limits and quotas.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Next-command prediction and prefetch.
    #[serde(default)]
    pub predict: PredictConfig,
}

/// Next-command prediction and prefetch (DESIGN §2 step 8). Prefetch only runs
/// cacheable lines (pure, session, fs-read), only on idle workers, within a
/// per-tenant budget and a global share of the CPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictConfig {
    /// Learn and predict (`--no-predict` turns it off, prefetch included).
    pub enabled: bool,
    /// Run likely next commands ahead of time (needs the cache).
    pub prefetch: bool,
    /// Predictions kept per command (top-k, for accuracy and prefetch).
    pub top_k: usize,
    /// Smallest probability worth a prefetch.
    pub threshold: f64,
    /// Prefetches considered after one command (the best ones first).
    pub per_command: usize,
    /// Prefetch only while fewer than this share of the workers are busy and
    /// nothing waits in the queue.
    pub idle_share: f64,
    /// Prefetches running at once: at most ceil(cores × this) (at least 1).
    pub cpu_share: f64,
    /// Prefetches per second per tenant (token bucket; 0: unlimited).
    pub tenant_rate: f64,
    /// Burst of that bucket (0: the rate, at least 1).
    pub tenant_burst: u32,
    /// Tenants whose models are kept in memory (least recently used go first).
    pub max_tenants: usize,
    /// Where the model is saved when L3 is off (`predict-model.bin` in it).
    /// Unset: `$XDG_DATA_HOME/voxterm`, else `$HOME/.local/share/voxterm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// How often changes are saved (and once more at shutdown).
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            enabled: true,
            prefetch: true,
            top_k: 3,
            threshold: 0.3,
            per_command: 2,
            idle_share: 0.5,
            cpu_share: 0.25,
            tenant_rate: 2.0,
            tenant_burst: 4,
            max_tenants: 100_000,
            data_dir: None,
            save_interval: Duration::from_secs(30),
        }
    }
}

impl PredictConfig {
    /// The data directory: configured, else the XDG default.
    pub fn data_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Some(d.clone());
        }
        match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(x) => Some(PathBuf::from(x).join("voxterm")),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share/voxterm")),
        }
    }
}

/// Authentication (DESIGN §6). Without a tokens file the tenant is whatever the
/// client names in `Hello`, which is only acceptable on loopback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// TOML file with a `[tokens]` table mapping each token to its tenant
    /// (`voxterm serve --tokens FILE`). Read once at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Allow a non-loopback `listen` without tokens (`--insecure-no-auth`).
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// With tokens configured, whether an upgrade request that carries no token in
    /// its headers is let through to authenticate with `Hello.token` (browsers that
    /// cannot set headers). When false it gets 401 like a wrong token.
    #[serde(default = "yes")]
    pub hello_token: bool,
}

fn yes() -> bool {
    true
}

fn idle_timeout() -> Duration {
    Duration::from_secs(600)
}

fn ping_interval() -> Duration {
    Duration::from_secs(30)
}

fn detach_grace() -> Duration {
    Duration::from_secs(30)
}

fn detach_buffer() -> usize {
    1 << 20
}

fn coalesce_delay() -> Duration {
    Duration::from_micros(200)
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens_file: None,
            insecure_no_auth: false,
            hello_token: true,
        }
    }
}

/// Command policy, checked on every simple command of a line (pipelines, lists,
/// subshells, substitutions, function bodies, `sh -c` strings) before anything runs.
/// Entries are a program (`rm`) or a program and subcommand (`git push`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Refused wherever they appear. Matched on the program's base name, so
    /// `/bin/rm` and `./rm` are `rm` too.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When not empty, only these may run (and a program word that is computed,
    /// like `$CMD`, or a path outside /bin, /usr/bin, /usr/local/bin never may).
    /// An allow list also refuses output redirections (see
    /// `allow_redirections`); any policy refuses assignments of the variables
    /// that change what programs run (see `allow_variables`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Under an allow list, let lines redirect output to files (`>`, `>>`,
    /// `time -o`, `find -fprint`). Off: an allowed reader cannot become a writer
    /// of `.git/config` or `~/.profile`.
    #[serde(default)]
    pub allow_redirections: bool,
    /// Variables a line may assign, export or unset under a policy although
    /// they are in the default-deny set (`PATH`, `LD_*`, `GIT_*`, `BASH_ENV`,
    /// ...). A trailing `*` matches a prefix.
    #[serde(default)]
    pub allow_variables: Vec<String>,
    /// More variables to refuse under a policy besides the default-deny set. A
    /// trailing `*` matches a prefix.
    #[serde(default)]
    pub deny_variables: Vec<String>,
}

/// Per-tenant and per-address limits; 0 means unlimited. The defaults bound
/// what one client can cost before anyone configured anything (issue 19).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Token-bucket refill rate of `Exec`s per second, per tenant (0: off).
    pub commands_per_second: f64,
    /// Bucket size: commands a tenant may send at once after being idle
    /// (0: the same as `commands_per_second`, at least 1).
    pub burst: u32,
    /// Live sessions one tenant may have (0: unlimited). Default 64: the number
    /// of session handles one connection may hold (`server.max_sessions`), so a
    /// client that uses one connection never meets it, while rebinding handles
    /// to fresh names cannot pile up sessions that outlive the connection.
    pub max_sessions_per_tenant: u32,
    /// Output bytes per second one tenant's commands may stream, over all its
    /// connections (0: unlimited). Over budget, output is delayed, never dropped:
    /// the child's pipe fills and the child slows down.
    pub output_bytes_per_second: u64,
    /// Output bytes a tenant may send at once after being quiet (0: one second's worth).
    pub output_burst: u64,
    /// WebSocket connections one tenant may hold at once (0: unlimited).
    pub max_connections_per_tenant: u32,
    /// TCP connections one source IP address may hold at once, counted from
    /// `accept` (0: unlimited).
    pub max_connections_per_ip: u32,
    /// Connections one source address may have open that have not yet sent a
    /// complete request head (0: unlimited). Counted from `accept`, so a flood of
    /// half-sent heads from one address is bounded whatever the other caps say.
    pub max_pending_per_ip: u32,
    /// Longest command line accepted, in bytes (0: unlimited). Checked before
    /// anything parses the line: a long line costs the shell parser time and heap
    /// and would fail at `execve` (E2BIG) anyway.
    pub max_command_bytes: u32,
    /// Failed authentications (unknown tokens) one address may make before it is
    /// made to wait: 1 s after the next failure, doubling with each further one
    /// up to 10 minutes (0: off).
    pub auth_failures_per_ip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            commands_per_second: 0.0,
            burst: 0,
            max_sessions_per_tenant: 64,
            output_bytes_per_second: 0,
            output_burst: 0,
            max_connections_per_tenant: 0,
            max_connections_per_ip: 0,
            max_pending_per_ip: 64,
            max_command_bytes: 128 << 10,
            auth_failures_per_ip: 10,
        }
    }
}

/// The most runtime threads `server.threads` may ask for: more than any
/// machine's cores, and each one holds a stack.
pub const MAX_THREADS: usize = 1024;

/// Network, protocol and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default: commands are code execution.
    pub listen: SocketAddr,
    /// `listen(2)` backlog; tokio's `bind` uses 128, too few for connection storms.
    pub backlog: u32,
    /// Worker threads of the async runtime that runs connections and requests;
    /// 0 (the default): one per core. Fewer pays when other busy processes
    /// share the machine, such as a load tester beside the server (see
    /// `server::runtime`). Children are spawned and waited for elsewhere.
    #[serde(default)]
    pub threads: usize,
    /// Largest WebSocket message accepted; larger closes the connection with 1009.
    pub max_message_bytes: u32,
    /// Largest frame body (after decompression).
    pub max_frame_bytes: u32,
    /// Requests one connection may have in flight.
    pub max_in_flight: u32,
    /// Session handles one connection may hold.
    pub max_sessions: u32,
    /// Frames queued for one connection's writer before its producers wait
    /// (the writer may hold as many again, taken from the queue to send).
    pub write_queue: usize,
    /// Largest WebSocket message the writer builds when coalescing frames (0: one
    /// frame per message). tungstenite serializes a whole message into a
    /// per-connection buffer that keeps its largest size, so this bounds every
    /// connection's write-buffer high-water mark.
    pub coalesce_bytes: usize,
    /// Coalesce frames into fewer WebSocket messages (`--no-batch` turns it off:
    /// one frame per message, one flush each; the baseline for comparisons).
    #[serde(default = "yes")]
    pub coalesce: bool,
    /// Under load (more frames were already queued), how long the writer may
    /// wait for further frames before it flushes; never waits when idle.
    #[serde(default = "coalesce_delay", with = "humantime_serde")]
    pub coalesce_delay: Duration,
    /// tungstenite's read buffer per connection (its default of 128 KiB is ~1 GB at 10k connections):
    /// allocated when the connection opens and kept, and also the most it reads
    /// per system call, so a larger one trades idle memory for fewer reads of large messages.
    pub ws_read_buffer: usize,
    /// tungstenite's write buffer per connection.
    pub ws_write_buffer: usize,
    /// Bodies at least this large are compressed, when compression is negotiated.
    pub compress_threshold: usize,
    /// Time a client has to finish the HTTP upgrade and send `Hello`.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight commands may run before they are killed.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A connection with no message from the client and no request in flight for
    /// this long is closed (1000, "idle timeout"); 0 turns it off. Keepalive pongs
    /// do not count as traffic.
    #[serde(default = "idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The server pings every connection this often; one that has sent nothing
    /// (no pong, no message) by the next ping is dropped as dead, so a vanished
    /// peer goes within about two intervals. 0 turns keepalive off.
    #[serde(default = "ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// When a connection that asked for re-attach (`Configure.reattach`)
    /// drops, its commands keep running this long, their output held, for a
    /// new connection to take over with `Attach`; then they are killed. 0
    /// kills them at once, as for every other connection.
    #[serde(default = "detach_grace", with = "humantime_serde")]
    pub detach_grace: Duration,
    /// Output held per request for re-attach: what was sent but not yet
    /// acknowledged (a WebSocket ping answered after it), and what was
    /// produced while detached. Beyond it the command waits (its pipe fills):
    /// nothing is dropped.
    #[serde(default = "detach_buffer")]
    pub detach_buffer: usize,
    /// PEM certificate chain: with `tls_key`, the port speaks TLS only (`wss://`,
    /// `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// `Origin`s (e.g. `https://app.example.com`) allowed to open `/ws`. Requests
    /// without an `Origin` header (non-browser clients) are always let through;
    /// a request with one is refused with 403 unless it is listed here.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names (without port) `/healthz` and `/metrics` answer to besides
    /// `localhost` and IP literals: a DNS-rebinding page reaches a local server
    /// under its own host name, which is refused with 421.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// File descriptors kept free for `/healthz`, children's pipes and the
    /// cache: near the open-files limit new WebSocket connections are refused
    /// (503) and the oldest half-open connections closed. 0: automatic
    /// (64 + 4 per worker, at most a quarter of the limit).
    #[serde(default)]
    pub fd_reserve: u32,
}

/// Session lifetime and environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// How long a session outlives its last connection (so reconnects resume it).
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// Working directory of a new session; empty means the server's HOME.
    pub root: PathBuf,
    /// Per-tenant working roots, e.g. `/srv/voxterm/{tenant}`: a tenant's sessions
    /// start there (created on first use) and `cd` cannot leave it. Empty: off.
    #[serde(default)]
    pub tenant_roots: String,
    /// Commands remembered per session (bounded to keep sessions small).
    pub history: usize,
    /// Variables copied from the server's environment into every child; all others are scrubbed.
    pub env_passthrough: Vec<String>,
    /// `PATH` given to children.
    pub path: String,
}

/// The worker pool and the limits of every child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Children that may run at once.
    pub workers: usize,
    /// Children one tenant may run at once, so one user cannot starve the rest.
    pub tenant_concurrency: usize,
    /// Requests that may wait for a worker before new ones are refused.
    pub queue_capacity: usize,
    /// Timeout of a command that does not ask for one.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// Upper bound on a timeout a request may ask for.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Longest a request may wait for a worker before it is refused with
    /// `QuotaExceeded`: under overload the server sheds load with a typed answer
    /// instead of letting a queue grow until clients give up.
    #[serde(with = "humantime_serde")]
    pub max_queue_wait: Duration,
    /// Between SIGTERM and SIGKILL when a command is stopped.
    #[serde(with = "humantime_serde")]
    pub kill_grace: Duration,
    /// Bytes per stream forwarded before output is cut and the command killed.
    pub output_cap: u64,
    /// `RLIMIT_CPU` of every child, in CPU seconds (0: off). A guard that still
    /// holds for a process that escaped the timeout (soft limit: SIGXCPU, one second
    /// later SIGKILL).
    #[serde(default)]
    pub rlimit_cpu: u64,
    /// `RLIMIT_AS` of every child, in bytes (0: off). Counts virtual reservations, so
    /// runtimes that reserve big address ranges (JVM, V8, Go) fail under tight values;
    /// the memory cgroup (`cgroup_memory_max_bytes`) is the better memory bound.
    #[serde(default)]
    pub rlimit_as_bytes: u64,
    /// `RLIMIT_FSIZE` of every child, in bytes (0: off): the largest file it may write.
    #[serde(default)]
    pub rlimit_fsize_bytes: u64,
    /// `RLIMIT_NOFILE` of every child (0: off). Also keeps a server that raised its
    /// own limit from handing children a huge table (slow `close_fds` loops, `select`).
    #[serde(default)]
    pub rlimit_nofile: u64,
    /// `RLIMIT_NPROC` of every child (0: off). Counts every process of the server's
    /// user, not of one command, and is not enforced for root: a fork bomb needs
    /// the pids cgroup.
    #[serde(default)]
    pub rlimit_nproc: u64,
    /// Per-command cgroup confinement (pids, memory): `off`, `auto` (when the cgroup
    /// v1 filesystem is writable, else rlimits and process groups only) or
    /// `required` (no command runs without it).
    #[serde(default)]
    pub cgroup: CgroupMode,
    /// `pids.max` of each command's cgroup (0: no cap, the cgroup still tracks and
    /// kills daemonized descendants).
    #[serde(default)]
    pub cgroup_pids_max: u64,
    /// Memory limit of each command's cgroup, in bytes (0: off); over it the kernel
    /// reclaims, then OOM-kills inside that cgroup only.
    #[serde(default)]
    pub cgroup_memory_max_bytes: u64,
    /// The user commands run as, so they cannot read what the server can (its
    /// tokens file, its `/proc` entries): a user name, or a template with
    /// `{tenant}` for a user per tenant (`"vt-{tenant}"`). Empty: the server's
    /// own user. Needs a root server (or the capabilities README "Containing
    /// children" lists) and util-linux's `setpriv`.
    #[serde(default)]
    pub run_as: String,
}

/// Whether commands run in their own cgroup (`[exec] cgroup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Never: rlimits and the process group only.
    Off,
    /// When the cgroup v1 `pids` hierarchy is writable (root, or a delegated
    /// subtree); otherwise the server starts without and says so in its log.
    #[default]
    Auto,
    /// Always: a server that cannot confine commands refuses to run them.
    Required,
}

/// The result cache (DESIGN §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Master switch; `--no-cache` turns it off (the baseline for comparisons).
    pub enabled: bool,
    /// L1 bound in bytes, per worker thread (memory is threads × this).
    pub l1_bytes: usize,
    /// L2 bound in bytes, for the process.
    pub l2_bytes: u64,
    /// Largest output (stdout + stderr) stored; larger results are not cached.
    pub max_entry_bytes: usize,
    /// Redis for L3 (`redis://host:port/db`); absent means L1/L2 only. With
    /// `redis_cluster`, seed nodes of the cluster separated by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// `redis_url` names nodes of a Redis Cluster (cluster mode: keys spread
    /// over its masters by hash slot, failovers followed) instead of one server.
    #[serde(default)]
    pub redis_cluster: bool,
    /// A file holding the Redis URL (first line), so a password need not be on
    /// the command line (`/proc/<pid>/cmdline` is readable by the same user);
    /// `redis_url` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url_file: Option<PathBuf>,
    /// An L3 lookup slower than this counts as a miss.
    #[serde(with = "humantime_serde")]
    pub l3_deadline: Duration,
    /// Deadline of L3 writes and generation bumps.
    #[serde(with = "humantime_serde")]
    pub l3_write_timeout: Duration,
    /// L3 values at least this large are stored LZ4-compressed.
    pub l3_compress_threshold: usize,
    /// Consecutive L3 failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker keeps L3 off before probing again.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// How stale this instance's copy of a tenant's generation may be before Redis
    /// is asked again (bounds how late another instance's invalidation is seen).
    #[serde(with = "humantime_serde")]
    pub generation_refresh: Duration,
    /// With L3, bumps are also published through Redis pub/sub and every
    /// instance subscribes, so another instance's invalidation is seen at once;
    /// the poll above still runs as the backstop for a lost message or a
    /// dropped subscription. Off: polling alone (and no PUBLISH, e.g. for a
    /// Redis user whose ACL refuses pub/sub).
    #[serde(default = "yes")]
    pub generation_pubsub: bool,
    /// Unknown commands invalidate the tenant's fs-read entries like mutating
    /// ones: they may write files (`./build.sh`, `npm install`).
    pub unknown_invalidates: bool,
    /// Run a cached line that is still in use again shortly before its entry
    /// expires (`engine::renew`), on idle workers only, so that it does not
    /// expire into a miss; `--no-renew` turns it off. Independent of
    /// prediction and prefetch, whose idle and CPU shares it uses.
    #[serde(default = "yes")]
    pub renew: bool,
    /// A cache policy TOML replacing the built-in table (`src/cache/cache-policy.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// The preset, with the TOML file (if any) merged over it.
    pub fn load(preset: Preset, file: Option<&Path>) -> Result<Config, ConfigError> {
        let base = preset.config();
        let Some(path) = file else {
            return Ok(base);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_err = |source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        };
        let overlay: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let mut merged = toml::Table::try_from(&base)
            .map_err(|e| ConfigError::Invalid(format!("preset does not serialize: {e}")))?;
        merge(&mut merged, overlay);
        let config: Config = toml::Value::Table(merged).try_into().map_err(parse_err)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the secrets that are kept in files of their own
    /// (`cache.redis_url_file`) into the configuration. A URL given directly
    /// wins over the file.
    pub fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.cache.redis_url_file else {
            return Ok(());
        };
        if self
            .cache
            .redis_url
            .as_deref()
            .is_some_and(|u| !u.is_empty())
        {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let url = text.lines().next().unwrap_or("").trim();
        if url.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "cache.redis_url_file {} is empty (expected a redis:// URL on its first line)",
                path.display()
            )));
        }
        check_redis_url(url, self.cache.redis_cluster).map_err(|e| {
            ConfigError::Invalid(format!("cache.redis_url_file {}: {e}", path.display()))
        })?;
        self.cache.redis_url = Some(url.to_owned());
        Ok(())
    }

    /// Rejects values that would make the server misbehave rather than fail,
    /// as far as the values alone tell. What only a part can judge (TLS files,
    /// the command and cache policies, the tokens file, the bind rule,
    /// containment, `run_as`) that part checks, and `server::check` asks them
    /// all: config knows no other module of the engine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.exec.workers == 0 || self.exec.tenant_concurrency == 0 {
            return invalid("exec.workers and exec.tenant_concurrency must be at least 1");
        }
        if self.server.threads > MAX_THREADS {
            return invalid(&format!(
                "server.threads must be at most {MAX_THREADS} (0: one per core)"
            ));
        }
        if self.server.max_frame_bytes >= 1 << 24 {
            return invalid("server.max_frame_bytes must be below 16 MiB (24-bit frame length)");
        }
        if self.server.max_in_flight == 0 || self.server.write_queue == 0 {
            return invalid("server.max_in_flight and server.write_queue must be at least 1");
        }
        if let Some(url) = self.cache.redis_url.as_deref().filter(|u| !u.is_empty()) {
            check_redis_url(url, self.cache.redis_cluster)
                .map_err(|e| ConfigError::Invalid(format!("cache.{e}")))?;
        }
        if !(self.limits.commands_per_second >= 0.0 && self.limits.commands_per_second.is_finite())
        {
            return invalid("limits.commands_per_second must be a finite number >= 0");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert and server.tls_key go together (--tls-cert, --tls-key)",
            );
        }
        if !self.session.tenant_roots.is_empty() && !self.session.tenant_roots.contains("{tenant}")
        {
            return invalid("session.tenant_roots must contain {tenant}");
        }
        Ok(())
    }
}

/// A Redis URL the client library accepts (scheme, host, db, credentials); for
/// a cluster, each of its comma-separated seed nodes.
fn check_redis_url(url: &str, cluster: bool) -> Result<(), String> {
    if !cluster && url.contains(',') {
        return Err(
            "redis_url: several URLs name a Redis Cluster's seed nodes; \
                    set cache.redis_cluster = true (--redis-cluster)"
                .into(),
        );
    }
    let mut seeds = url.split(',').map(str::trim).filter(|s| !s.is_empty());
    let first = seeds.next().ok_or("redis_url: no URL")?;
    std::iter::once(first).chain(seeds).try_for_each(|u| {
        redis::Client::open(u)
            .map(|_| ())
            .map_err(|e| format!("invalid redis url: {e}"))
    })
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_takes_seed_nodes_and_one_server_takes_one_url() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg-cl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        let seeds = "redis://127.0.0.1:7000,redis://127.0.0.1:7001/";
        std::fs::write(
            &file,
            format!("[cache]\nredis_url = \"{seeds}\"\nredis_cluster = true\n"),
        )
        .unwrap();
        let c = Config::load(Preset::Development, Some(&file)).unwrap();
        assert!(c.cache.redis_cluster);
        assert_eq!(c.cache.redis_url.as_deref(), Some(seeds));
        // The same list for one server is an error that names the switch.
        std::fs::write(&file, format!("[cache]\nredis_url = \"{seeds}\"\n")).unwrap();
        let e = Config::load(Preset::Development, Some(&file)).unwrap_err();
        assert!(e.to_string().contains("redis_cluster"), "{e}");
        // Every seed is checked.
        std::fs::write(
            &file,
            "[cache]\nredis_url = \"redis://127.0.0.1:7000,nope://x\"\nredis_cluster = true\n",
        )
        .unwrap();
        assert!(Config::load(Preset::Development, Some(&file)).is_err());
        // Off by default: a single Redis is configured as before.
        assert!(!Preset::Production.config().cache.redis_cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_overrides_only_what_it_names() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[exec]\nworkers = 3\ndefault_timeout = \"2s\"\n").unwrap();
        let c = Config::load(Preset::Production, Some(&file)).unwrap();
        assert_eq!(c.exec.workers, 3);
        assert_eq!(c.exec.default_timeout, Duration::from_secs(2));
        let p = Preset::Production.config();
        assert_eq!(c.exec.output_cap, p.exec.output_cap);
        assert_eq!(c.server.listen, p.server.listen);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[exec]\nworkerz = 3\n").unwrap();
        let err = Config::load(Preset::Development, Some(&file)).unwrap_err();
        assert!(err.to_string().contains("workerz"), "{err}");
    }

    #[test]
    fn presets_are_valid() {
        for p in [
            Preset::Development,
            Preset::Production,
            Preset::HighPerformance,
        ] {
            p.config().validate().unwrap();
        }
    }
}

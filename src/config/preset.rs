//! Built-in presets: complete configurations a TOML file and flags refine.

use super::{
    AuthConfig, CacheConfig, Config, ExecConfig, LimitsConfig, PolicyConfig, PredictConfig,
    ServerConfig, SessionConfig,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A named starting configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Loopback, modest pool, verbose-friendly; runs on a laptop with nothing else.
    Development,
    /// Conservative limits for a shared deployment.
    Production,
    /// Larger pool and queues for dedicated machines and load tests.
    HighPerformance,
}

impl Preset {
    /// The complete configuration of this preset.
    pub fn config(self) -> Config {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (workers, tenant, queue) = match self {
            Preset::Development => (16, 8, 4096),
            Preset::Production => (8 * cores, 16, 16_384),
            Preset::HighPerformance => (16 * cores, 64, 65_536),
        };
        // L1 per worker thread, L2 per process.
        let (l1, l2) = match self {
            Preset::Development => (2 << 20, 32 << 20),
            Preset::Production => (4 << 20, 128 << 20),
            Preset::HighPerformance => (8 << 20, 512 << 20),
        };
        // Containment of children (README "Containing children"): development only
        // catches runaways; shared deployments also bound CPU, files and memory.
        let containment = match self {
            Preset::Development => ChildLimits {
                cpu: 0,
                fsize: 0,
                nproc: 0,
                pids: 1024,
                memory: 0,
            },
            Preset::Production | Preset::HighPerformance => ChildLimits {
                cpu: 600,
                fsize: 1 << 30,
                nproc: 4096,
                pids: 512,
                memory: 1 << 30,
            },
        };
        Config {
            server: ServerConfig {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7878)),
                backlog: 4096,
                threads: 0,
                max_message_bytes: 4 << 20,
                max_frame_bytes: 1 << 20,
                max_in_flight: 256,
                max_sessions: 64,
                write_queue: 64,
                coalesce_bytes: 16 << 10,
                coalesce: true,
                coalesce_delay: Duration::from_micros(200),
                // Allocated for every connection, idle or not, and kept:
                // 1 KiB holds ~25 `Exec`s; a larger message is read in 1 KiB
                // pieces (issue 17, part 7).
                ws_read_buffer: 1 << 10,
                ws_write_buffer: 8 << 10,
                compress_threshold: 1024,
                handshake_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(600),
                ping_interval: Duration::from_secs(30),
                detach_grace: Duration::from_secs(30),
                detach_buffer: 1 << 20,
                tls_cert: None,
                tls_key: None,
                allowed_origins: Vec::new(),
                allowed_hosts: Vec::new(),
                fd_reserve: 0,
            },
            session: SessionConfig {
                idle_ttl: Duration::from_secs(600),
                root: PathBuf::new(),
                tenant_roots: String::new(),
                history: 64,
                env_passthrough: ["HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"]
                    .map(String::from)
                    .to_vec(),
                path: "/usr/local/bin:/usr/bin:/bin".to_owned(),
            },
            exec: ExecConfig {
                workers,
                tenant_concurrency: tenant,
                queue_capacity: queue,
                default_timeout: Duration::from_secs(30),
                max_timeout: Duration::from_secs(600),
                max_queue_wait: Duration::from_secs(5),
                kill_grace: Duration::from_millis(500),
                output_cap: 8 << 20,
                rlimit_cpu: containment.cpu,
                rlimit_as_bytes: 0,
                rlimit_fsize_bytes: containment.fsize,
                rlimit_nofile: 1024,
                rlimit_nproc: containment.nproc,
                cgroup: super::CgroupMode::Auto,
                cgroup_pids_max: containment.pids,
                cgroup_memory_max_bytes: containment.memory,
                run_as: String::new(),
            },
            cache: CacheConfig {
                enabled: true,
                l1_bytes: l1,
                l2_bytes: l2,
                max_entry_bytes: 256 << 10,
                redis_url: None,
                redis_cluster: false,
                redis_url_file: None,
                l3_deadline: Duration::from_millis(5),
                l3_write_timeout: Duration::from_millis(50),
                l3_compress_threshold: 1024,
                breaker_failures: 3,
                breaker_cooldown: Duration::from_secs(1),
                generation_refresh: Duration::from_millis(100),
                generation_pubsub: true,
                unknown_invalidates: true,
                renew: true,
                policy_file: None,
            },
            auth: AuthConfig {
                tokens_file: None,
                insecure_no_auth: false,
                hello_token: true,
            },
            policy: PolicyConfig::default(),
            // Rates and connection caps are off in every preset: without tokens
            // the tenant is client-chosen, so they only mean something with
            // `--tokens` (see README). What bounds one client's cost whoever it
            // is (sessions, command length, half-open connections, failed
            // authentications) is on in all of them.
            limits: LimitsConfig {
                // Load tests open connection storms from one address.
                max_pending_per_ip: match self {
                    Preset::HighPerformance => 256,
                    _ => 64,
                },
                ..LimitsConfig::default()
            },
            predict: PredictConfig::default(),
        }
    }
}

/// The per-preset containment figures of [`ExecConfig`] (0: off).
struct ChildLimits {
    cpu: u64,
    fsize: u64,
    nproc: u64,
    pids: u64,
    memory: u64,
}

//! Built-in presets: complete configurations a TOML file and flags refine.

use super::{Config, ExecConfig, ServerConfig, SessionConfig};
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
        Config {
            server: ServerConfig {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7878)),
                backlog: 4096,
                max_message_bytes: 4 << 20,
                max_frame_bytes: 1 << 20,
                max_in_flight: 256,
                max_sessions: 64,
                write_queue: 64,
                coalesce_bytes: 64 << 10,
                ws_read_buffer: 4 << 10,
                ws_write_buffer: 8 << 10,
                compress_threshold: 1024,
                handshake_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(10),
            },
            session: SessionConfig {
                idle_ttl: Duration::from_secs(600),
                root: PathBuf::new(),
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
                kill_grace: Duration::from_millis(500),
                output_cap: 8 << 20,
            },
        }
    }
}

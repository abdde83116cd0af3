//! The async runtime the server runs on, sized by `server.threads`.
//!
//! tokio's default is one worker thread per core, right for a server that has
//! the machine to itself. A server that shares a small machine with other
//! busy processes (a load tester beside it, as in `benches/hot_path.rs` and
//! `loadtest`) does better with fewer: on 2 cores with the client's thread
//! beside it, 2 workers make 3 runnable threads for 2 cores, and a
//! connection whose worker is preempted waits a whole time slice. One worker
//! there served ×1.11 the cached commands at ×0.77 the CPU each, with p99
//! 3.8 ms instead of 6.6 ms (README "The cached hot path"). Commands are not
//! run on these threads (the spawner, waits and disk writes have threads of
//! their own), so one worker still runs children in parallel.

use crate::config::Config;
use tokio::runtime::{Builder, Runtime};

/// A multi-thread runtime with `config.server.threads` workers (0: one per
/// core, or `TOKIO_WORKER_THREADS`), every driver enabled.
pub fn runtime(config: &Config) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if config.server.threads > 0 {
        builder.worker_threads(config.server.threads);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Preset, MAX_THREADS};

    #[test]
    fn threads_sizes_the_runtime_and_zero_means_one_per_core() {
        let mut config = Preset::Development.config();
        config.server.threads = 1;
        let rt = runtime(&config).unwrap();
        assert_eq!(rt.metrics().num_workers(), 1);
        // The timer and I/O drivers are on: a sleep completes.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await });
        config.server.threads = 3;
        assert_eq!(runtime(&config).unwrap().metrics().num_workers(), 3);
        config.server.threads = 0;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            assert_eq!(runtime(&config).unwrap().metrics().num_workers(), cores);
        }
    }

    #[test]
    fn too_many_threads_is_a_configuration_error() {
        let mut config = Preset::Development.config();
        config.server.threads = MAX_THREADS + 1;
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("server.threads"), "{e}");
        config.server.threads = MAX_THREADS;
        config.validate().unwrap();
    }
}

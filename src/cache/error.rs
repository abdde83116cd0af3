//! Error types of the cache.

use std::path::PathBuf;
use thiserror::Error;

/// Why a cache component could not be set up, or a stored value not be read.
///
/// None of these reach a client: at run time a cache error is a miss.
#[derive(Debug, Error)]
pub enum CacheError {
    /// The policy file could not be read.
    #[error("cannot read cache policy {path}: {source}")]
    PolicyRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy TOML is invalid.
    #[error("invalid cache policy: {0}")]
    Policy(String),
    /// The Redis URL cannot be used.
    #[error("invalid redis url: {0}")]
    RedisUrl(String),
    /// A value read from L3 is not a valid entry (other version, corrupt, too large).
    #[error("bad cache entry: {0}")]
    BadEntry(&'static str),
}

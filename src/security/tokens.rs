//! The tokens file: a `[tokens]` table mapping each token to its tenant.
//!
//! Tokens are kept only as BLAKE3 digests and a presented token is compared with
//! every one of them in constant time (`constant_time_eq_32`, no early exit), so
//! neither the comparison time nor the position of a match tells anything about
//! the configured tokens.

use super::roots::valid_tenant;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shortest token accepted in the file (guessing must be hopeless).
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the security configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The tokens file could not be read.
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tokens file is malformed.
    #[error("invalid tokens file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The command policy is malformed.
    #[error("invalid command policy: {0}")]
    Policy(String),
    /// A non-loopback bind without authentication.
    #[error("refusing to listen on {0} without authentication: commands are code execution; give --tokens FILE (or, on a trusted network only, --insecure-no-auth)")]
    InsecureBind(SocketAddr),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: BTreeMap<String, String>,
}

/// The configured tokens, as digests, with their tenants.
pub struct Tokens {
    entries: Vec<([u8; 32], Arc<str>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

impl Tokens {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text).map_err(|message| AuthError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the TOML text of a tokens file.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.tokens.is_empty() {
            return Err("the [tokens] table is empty".into());
        }
        let mut entries = Vec::with_capacity(file.tokens.len());
        for (n, (token, tenant)) in file.tokens.into_iter().enumerate() {
            // Never echo a token into an error message: name it by position.
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "token #{} (tenant {tenant}) is shorter than {MIN_TOKEN_LEN} characters",
                    n + 1
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "token #{} (tenant {tenant}) must be printable ASCII without spaces",
                    n + 1
                ));
            }
            if !valid_tenant(&tenant) {
                return Err(format!(
                    "tenant {tenant:?} must be 1-64 characters of [A-Za-z0-9._-], not . or .."
                ));
            }
            entries.push((digest(&token), Arc::from(tenant)));
        }
        Ok(Tokens { entries })
    }

    /// The tenant of a presented token, compared in constant time against every
    /// configured token.
    pub fn tenant(&self, presented: &str) -> Option<Arc<str>> {
        let d = digest(presented);
        let mut found = None;
        for (known, tenant) in &self.entries {
            if constant_time_eq::constant_time_eq_32(&d, known) {
                found = Some(tenant);
            }
        }
        found.cloned()
    }
}

fn digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_tokens_to_tenants() {
        let t = Tokens::parse(
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"alice\"\n\"bbbbbbbbbbbbbbbb2\" = \"bob\"\n",
        )
        .unwrap();
        assert_eq!(t.tenant("aaaaaaaaaaaaaaaa1").as_deref(), Some("alice"));
        assert_eq!(t.tenant("bbbbbbbbbbbbbbbb2").as_deref(), Some("bob"));
        assert_eq!(t.tenant("aaaaaaaaaaaaaaaa"), None);
        assert_eq!(t.tenant(""), None);
        assert!(!format!("{t:?}").contains("aaaa"));
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "",
            "[tokens]\n",
            "[tokens]\nshort = \"a\"\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"../x\"\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"..\"\n",
            "[tokens]\n\"aaaaaaaa aaaaaaaa\" = \"a\"\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"a\"\n[extra]\n",
        ] {
            let err = Tokens::parse(bad).err();
            assert!(err.is_some(), "accepted {bad:?}");
            assert!(!err.unwrap().contains("aaaaaaaaaaaaaaaa1"));
        }
    }
}

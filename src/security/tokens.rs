//! The tokens file: a `[tokens]` table mapping each token to its tenant, and
//! optionally to the moment it stops being accepted:
//!
//! ```toml
//! [tokens]
//! "9f2c0d4e6a8b1c3d5e7f" = "alice"                                        # never expires
//! "0a1b2c3d4e5f60718293" = { tenant = "bob", expires = 2026-12-31T00:00:00Z }
//! [tokens."5e6f7a8b9c0d1e2f3a4b"]
//! tenant = "carol"
//! expires = 2026-06-30            # a date alone: 00:00 UTC that day
//! ```
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// A non-loopback bind without authentication.
    #[error("refusing to listen on {0} without authentication: commands are code execution; give --tokens FILE (or, on a trusted network only, --insecure-no-auth)")]
    InsecureBind(SocketAddr),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: BTreeMap<String, toml::Value>,
}

/// One configured token.
struct Entry {
    digest: [u8; 32],
    tenant: Arc<str>,
    /// Not accepted from this moment on; `None`: never expires.
    expires: Option<SystemTime>,
}

/// What a presented token turned out to be. Expired and unknown tokens are both
/// refused; they are told apart so logs and metrics can say which (an expired
/// token is an operational matter, a stream of unknown ones is probing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A configured, unexpired token.
    Valid {
        /// Its tenant.
        tenant: Arc<str>,
        /// When it expires, if it does (connections authenticated by it end then).
        expires: Option<SystemTime>,
    },
    /// A configured token past its expiry (its tenant, for the log).
    Expired(Arc<str>),
    /// Not a configured token.
    Unknown,
}

/// The configured tokens, as digests, with their tenants and expiries.
pub struct Tokens {
    entries: Vec<Entry>,
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
        for (n, (token, value)) in file.tokens.into_iter().enumerate() {
            // Never echo a token into an error message: name it by position.
            let n = n + 1;
            let (tenant, expires) = entry_value(value).map_err(|e| format!("token #{n}: {e}"))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "token #{n} (tenant {tenant}) is shorter than {MIN_TOKEN_LEN} characters"
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "token #{n} (tenant {tenant}) must be printable ASCII without spaces"
                ));
            }
            if !valid_tenant(&tenant) {
                return Err(format!(
                    "tenant {tenant:?} must be 1-64 characters of [A-Za-z0-9._-], not . or .."
                ));
            }
            entries.push(Entry {
                digest: digest(&token),
                tenant: Arc::from(tenant),
                expires,
            });
        }
        Ok(Tokens { entries })
    }

    /// Checks a presented token against every configured one in constant time
    /// (no early exit), then its expiry against `now`.
    pub fn check(&self, presented: &str, now: SystemTime) -> TokenCheck {
        let d = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq::constant_time_eq_32(&d, &entry.digest) {
                found = Some(entry);
            }
        }
        match found {
            None => TokenCheck::Unknown,
            Some(e) if e.expires.is_some_and(|at| now >= at) => {
                TokenCheck::Expired(e.tenant.clone())
            }
            Some(e) => TokenCheck::Valid {
                tenant: e.tenant.clone(),
                expires: e.expires,
            },
        }
    }

    /// The tenant of a presented token that is valid now.
    pub fn tenant(&self, presented: &str) -> Option<Arc<str>> {
        match self.check(presented, SystemTime::now()) {
            TokenCheck::Valid { tenant, .. } => Some(tenant),
            TokenCheck::Expired(_) | TokenCheck::Unknown => None,
        }
    }
}

/// A `[tokens]` value: `"tenant"` or `{ tenant = "..", expires = <datetime> }`.
fn entry_value(value: toml::Value) -> Result<(String, Option<SystemTime>), String> {
    match value {
        toml::Value::String(tenant) => Ok((tenant, None)),
        toml::Value::Table(mut table) => {
            let tenant = match table.remove("tenant") {
                Some(toml::Value::String(t)) => t,
                Some(_) => return Err("`tenant` must be a string".into()),
                None => return Err("a table entry needs `tenant`".into()),
            };
            let expires = match table.remove("expires") {
                None => None,
                Some(toml::Value::Datetime(dt)) => Some(to_system_time(&dt)?),
                Some(_) => {
                    return Err(
                        "`expires` must be a TOML datetime such as 2026-12-31T00:00:00Z".into(),
                    )
                }
            };
            if let Some(key) = table.keys().next() {
                return Err(format!(
                    "unknown key `{key}` (expected `tenant` and `expires`)"
                ));
            }
            Ok((tenant, expires))
        }
        _ => Err("the value must be a tenant name or a table { tenant, expires }".into()),
    }
}

/// An offset date-time, or a date alone (00:00 UTC that day). A local date-time
/// without an offset is refused: its meaning would depend on the server's zone.
fn to_system_time(dt: &toml::value::Datetime) -> Result<SystemTime, String> {
    let Some(date) = dt.date else {
        return Err("`expires` needs a date".into());
    };
    let (secs_of_day, offset_minutes) = match (dt.time, dt.offset) {
        (None, _) => (0, 0),
        (Some(_), None) => {
            return Err(format!(
                "`expires = {dt}` has no offset; write it in UTC with Z (e.g. {dt}Z)"
            ))
        }
        (Some(t), Some(offset)) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            };
            let secs = i64::from(t.hour) * 3600
                + i64::from(t.minute) * 60
                + i64::from(t.second.unwrap_or(0));
            (secs, minutes)
        }
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let unix = days * 86_400 + secs_of_day - offset_minutes * 60;
    let unix = u64::try_from(unix).map_err(|_| format!("`expires = {dt}` is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(unix))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn expiry_is_checked_and_told_apart_from_unknown() {
        let t = Tokens::parse(concat!(
            "[tokens]\n",
            "\"aaaaaaaaaaaaaaaa1\" = \"alice\"\n",
            "\"bbbbbbbbbbbbbbbb2\" = { tenant = \"bob\", expires = 2026-01-01T00:00:00Z }\n",
            "[tokens.\"cccccccccccccccc3\"]\ntenant = \"carol\"\nexpires = 2026-01-01T02:00:00+02:00\n",
            "[tokens.\"dddddddddddddddd4\"]\ntenant = \"dave\"\nexpires = 2026-01-01\n",
        ))
        .unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
        let before = at - Duration::from_secs(1);
        for (token, tenant) in [
            ("bbbbbbbbbbbbbbbb2", "bob"),
            ("cccccccccccccccc3", "carol"),
            ("dddddddddddddddd4", "dave"),
        ] {
            assert_eq!(
                t.check(token, before),
                TokenCheck::Valid {
                    tenant: tenant.into(),
                    expires: Some(at)
                },
                "{token}"
            );
            assert_eq!(t.check(token, at), TokenCheck::Expired(tenant.into()));
        }
        assert_eq!(
            t.check("aaaaaaaaaaaaaaaa1", at + Duration::from_secs(1 << 40)),
            TokenCheck::Valid {
                tenant: "alice".into(),
                expires: None
            }
        );
        assert_eq!(t.check("zzzzzzzzzzzzzzzz9", before), TokenCheck::Unknown);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
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
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = 5\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { expires = 2026-01-01 }\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { tenant = \"a\", expires = \"soon\" }\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { tenant = \"a\", expires = 2026-01-01T00:00:00 }\n",
            "[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { tenant = \"a\", expire = 2026-01-01 }\n",
        ] {
            let err = Tokens::parse(bad).err();
            assert!(err.is_some(), "accepted {bad:?}");
            assert!(!err.unwrap().contains("aaaaaaaaaaaaaaaa1"));
        }
    }
}

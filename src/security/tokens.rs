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
//! [tokens."c4f1...64 hex digits"]
//! tenant = "ops"
//! admin = true                    # sees server-wide figures in `Stats`
//! ```
//!
//! Tokens are kept only as BLAKE3 digests and a presented token is compared with
//! every one of them in constant time (`constant_time_eq_32`, no early exit), so
//! neither the comparison time nor the position of a match tells anything about
//! the configured tokens.
//!
//! The file can be reloaded while serving ([`TokenStore::reload`], on SIGHUP):
//! new connections see the new set at once, and open connections re-check the
//! tokens they authenticated with, so a token removed from the file (revoked)
//! ends its connections too. A file that no longer parses changes nothing.

use super::roots::valid_tenant;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Shortest token accepted in the file (guessing must be hopeless).
pub const MIN_TOKEN_LEN: usize = 16;

/// Estimated entropy below which a token is warned about at load: 128 bits is
/// what `openssl rand -hex 32` (256) or a UUIDv4 (122) are judged against.
pub const WEAK_TOKEN_BITS: u32 = 128;

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

/// A token as the server keeps it (its BLAKE3 digest): what a connection
/// remembers of the tokens it authenticated with, to re-check them after a
/// reload without keeping the secret itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenId([u8; 32]);

impl TokenId {
    /// The id of a presented token.
    pub fn of(token: &str) -> TokenId {
        TokenId(digest(token))
    }
}

impl std::fmt::Debug for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenId(..)")
    }
}

/// One configured token.
struct Entry {
    digest: [u8; 32],
    tenant: Arc<str>,
    /// Not accepted from this moment on; `None`: never expires.
    expires: Option<SystemTime>,
    /// May see server-wide figures (`Stats`), not only its tenant's.
    admin: bool,
    /// Estimated entropy of the token, in bits (the token itself is not kept).
    bits: u32,
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
        /// Which token it was, to re-check after a reload.
        id: TokenId,
        /// An operator's token (`admin = true`).
        admin: bool,
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
            let EntryValue {
                tenant,
                expires,
                admin,
            } = entry_value(value).map_err(|e| format!("token #{n}: {e}"))?;
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
                admin,
                bits: entropy_bits(&token),
            });
        }
        Ok(Tokens { entries })
    }

    /// Checks a presented token against every configured one in constant time
    /// (no early exit), then its expiry against `now`.
    pub fn check(&self, presented: &str, now: SystemTime) -> TokenCheck {
        self.check_id(TokenId::of(presented), now)
    }

    /// [`Tokens::check`] for a token known by its id.
    pub fn check_id(&self, id: TokenId, now: SystemTime) -> TokenCheck {
        let d = id.0;
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
                id,
                admin: e.admin,
            },
        }
    }

    /// The tenants of tokens whose estimated entropy is below
    /// [`WEAK_TOKEN_BITS`], with the estimate: a short or low-variety token can
    /// be guessed by whoever may try (see the auth throttle).
    pub fn weak(&self) -> Vec<(Arc<str>, u32)> {
        self.entries
            .iter()
            .filter(|e| e.bits < WEAK_TOKEN_BITS)
            .map(|e| (e.tenant.clone(), e.bits))
            .collect()
    }

    /// Logs one warning per weak token, naming its tenant (never the token).
    fn warn_weak(&self, path: &Path) {
        for (tenant, bits) in self.weak() {
            tracing::warn!(
                %tenant,
                estimated_bits = bits,
                file = %path.display(),
                "a token of tenant {tenant} has about {bits} bits of entropy, less than {WEAK_TOKEN_BITS}: \
                 it could be guessed; replace it with e.g. `openssl rand -hex 32`"
            );
        }
    }

    /// Configured tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is configured (never, for a file that loaded).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tenant of a presented token that is valid now.
    pub fn tenant(&self, presented: &str) -> Option<Arc<str>> {
        match self.check(presented, SystemTime::now()) {
            TokenCheck::Valid { tenant, .. } => Some(tenant),
            TokenCheck::Expired(_) | TokenCheck::Unknown => None,
        }
    }
}

/// Who a connection authenticated as: the tenant, the tokens it presented
/// (headers and `Hello` may each carry one) and the earliest of their expiries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The tenant every presented token maps to.
    pub tenant: Arc<str>,
    /// When the first of them expires; the connection ends then.
    pub expires: Option<SystemTime>,
    /// The tokens, to re-check after a reload (empty without authentication).
    pub tokens: Vec<TokenId>,
    /// One of the tokens is an operator's (`admin = true`): `Stats` shows it
    /// server-wide figures. Set when the connection authenticates.
    pub admin: bool,
}

impl Grant {
    /// A tenant that needed no token (a server without authentication).
    pub fn unauthenticated(tenant: Arc<str>) -> Grant {
        Grant {
            tenant,
            expires: None,
            tokens: Vec::new(),
            admin: false,
        }
    }

    /// This grant and a valid token's together, if they are for the same tenant.
    pub fn with(mut self, other: Grant) -> Option<Grant> {
        if self.tenant != other.tenant {
            return None;
        }
        self.expires = self.expires.into_iter().chain(other.expires).min();
        self.tokens.extend(other.tokens);
        self.admin |= other.admin;
        Some(self)
    }
}

impl TokenCheck {
    /// The grant of a valid token.
    pub fn grant(self) -> Option<Grant> {
        match self {
            TokenCheck::Valid {
                tenant,
                expires,
                id,
                admin,
            } => Some(Grant {
                tenant,
                expires,
                tokens: vec![id],
                admin,
            }),
            TokenCheck::Expired(_) | TokenCheck::Unknown => None,
        }
    }
}

/// Why an open connection's grant no longer holds after a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// A token it presented is no longer in the file, or maps to another tenant now.
    Removed,
    /// A token it presented now has an expiry in the past.
    Expired,
}

/// The tokens file behind a running server: the current set, swapped whole on
/// a reload, and a counter open connections watch to re-check their grants.
pub struct TokenStore {
    path: PathBuf,
    current: RwLock<Arc<Tokens>>,
    reloads: watch::Sender<u64>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenStore({}, {:?})",
            self.path.display(),
            self.current()
        )
    }
}

impl TokenStore {
    /// Reads the tokens file.
    /// Weak tokens are warned about (by tenant), here and at every reload.
    pub fn load(path: &Path) -> Result<TokenStore, AuthError> {
        let tokens = Tokens::load(path)?;
        tokens.warn_weak(path);
        Ok(TokenStore {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(tokens)),
            reloads: watch::Sender::new(0),
        })
    }

    /// The tokens file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<Tokens> {
        crate::sync::read(&self.current).clone()
    }

    /// [`Tokens::check`] against the tokens in force.
    pub fn check(&self, presented: &str, now: SystemTime) -> TokenCheck {
        self.current().check(presented, now)
    }

    /// Reads the file again and, if it is valid, puts it in force and tells the
    /// open connections; returns how many tokens it holds. An unreadable or
    /// invalid file leaves the tokens in force as they were.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let fresh = Arc::new(Tokens::load(&self.path)?);
        fresh.warn_weak(&self.path);
        let n = fresh.len();
        *crate::sync::write(&self.current) = fresh;
        self.reloads.send_modify(|r| *r += 1);
        Ok(n)
    }

    /// Changes whenever a reload puts a new set in force.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Re-checks an open connection's grant against the tokens in force: its
    /// (possibly changed) earliest expiry, or why it no longer holds.
    pub fn recheck(&self, grant: &Grant, now: SystemTime) -> Result<Option<SystemTime>, Revoked> {
        let tokens = self.current();
        let mut expires: Option<SystemTime> = None;
        for id in &grant.tokens {
            match tokens.check_id(*id, now) {
                TokenCheck::Valid {
                    tenant, expires: e, ..
                } if tenant == grant.tenant => {
                    expires = expires.into_iter().chain(e).min();
                }
                TokenCheck::Expired(_) => return Err(Revoked::Expired),
                TokenCheck::Valid { .. } | TokenCheck::Unknown => return Err(Revoked::Removed),
            }
        }
        Ok(expires)
    }
}

/// What a `[tokens]` value says about its token.
struct EntryValue {
    tenant: String,
    expires: Option<SystemTime>,
    admin: bool,
}

/// A `[tokens]` value: `"tenant"` or `{ tenant = "..", expires = <datetime>, admin = true }`.
fn entry_value(value: toml::Value) -> Result<EntryValue, String> {
    match value {
        toml::Value::String(tenant) => Ok(EntryValue {
            tenant,
            expires: None,
            admin: false,
        }),
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
            let admin = match table.remove("admin") {
                None => false,
                Some(toml::Value::Boolean(b)) => b,
                Some(_) => return Err("`admin` must be true or false".into()),
            };
            if let Some(key) = table.keys().next() {
                return Err(format!(
                    "unknown key `{key}` (expected `tenant`, `expires` and `admin`)"
                ));
            }
            Ok(EntryValue {
                tenant,
                expires,
                admin,
            })
        }
        _ => Err("the value must be a tenant name or a table { tenant, expires, admin }".into()),
    }
}

/// A rough upper bound on a token's entropy: its length times the bits of the
/// alphabet it draws from (16 symbols for hex, else the character classes it
/// uses: digits, lower case, upper case, punctuation). It cannot see that a
/// token is a word or a pattern, so it only ever errs towards "strong enough";
/// a token it calls weak is weak.
pub fn entropy_bits(token: &str) -> u32 {
    let bytes = token.as_bytes();
    let hex = bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        || bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
    let alphabet: u32 = if hex {
        16
    } else {
        let class = |f: fn(&u8) -> bool, size: u32| if bytes.iter().any(f) { size } else { 0 };
        class(u8::is_ascii_digit, 10)
            + class(u8::is_ascii_lowercase, 26)
            + class(u8::is_ascii_uppercase, 26)
            + class(u8::is_ascii_punctuation, 32)
    };
    let bits = bytes.len() as f64 * f64::from(alphabet.max(1)).log2();
    bits.min(f64::from(u32::MAX)) as u32
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
                    expires: Some(at),
                    id: TokenId::of(token),
                    admin: false,
                },
                "{token}"
            );
            assert_eq!(t.check(token, at), TokenCheck::Expired(tenant.into()));
        }
        assert_eq!(
            t.check("aaaaaaaaaaaaaaaa1", at + Duration::from_secs(1 << 40)),
            TokenCheck::Valid {
                tenant: "alice".into(),
                expires: None,
                id: TokenId::of("aaaaaaaaaaaaaaaa1"),
                admin: false,
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

    #[test]
    fn reload_swaps_the_set_and_rechecks_grants_and_a_bad_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write("[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"alice\"\n\"bbbbbbbbbbbbbbbb2\" = \"bob\"\n");
        let store = TokenStore::load(&path).unwrap();
        let reloads = store.reloads();
        let now = SystemTime::now();
        let alice = store.check("aaaaaaaaaaaaaaaa1", now).grant().unwrap();
        let bob = store.check("bbbbbbbbbbbbbbbb2", now).grant().unwrap();
        assert_eq!(store.recheck(&alice, now), Ok(None));

        // Invalid: refused, the old set stays, nobody is told.
        write("[tokens]\nshort = \"x\"\n");
        assert!(matches!(store.reload(), Err(AuthError::Invalid { .. })));
        assert!(!reloads.has_changed().unwrap());
        assert_eq!(store.recheck(&bob, now), Ok(None));

        // bob's token goes, alice's gets an expiry, carol's is new.
        write(concat!(
            "[tokens]\n",
            "\"aaaaaaaaaaaaaaaa1\" = { tenant = \"alice\", expires = 2999-01-01 }\n",
            "\"cccccccccccccccc3\" = \"carol\"\n",
        ));
        assert_eq!(store.reload().unwrap(), 2);
        assert!(reloads.has_changed().unwrap());
        assert_eq!(store.recheck(&bob, now), Err(Revoked::Removed));
        assert!(store.recheck(&alice, now).unwrap().is_some());
        assert_eq!(store.check("bbbbbbbbbbbbbbbb2", now), TokenCheck::Unknown);
        assert!(store.check("cccccccccccccccc3", now).grant().is_some());

        // A token moved to another tenant revokes the grant; one past its
        // expiry is told apart.
        write("[tokens]\n\"aaaaaaaaaaaaaaaa1\" = \"mallory\"\n");
        store.reload().unwrap();
        assert_eq!(store.recheck(&alice, now), Err(Revoked::Removed));
        write("[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { tenant = \"alice\", expires = 2001-01-01 }\n");
        store.reload().unwrap();
        assert_eq!(store.recheck(&alice, now), Err(Revoked::Expired));
        assert!(!format!("{store:?}").contains("aaaa"));
    }

    #[test]
    fn grants_combine_only_within_a_tenant_and_keep_the_earliest_expiry() {
        let t = Tokens::parse(concat!(
            "[tokens]\n",
            "\"aaaaaaaaaaaaaaaa1\" = { tenant = \"alice\", expires = 2999-01-01 }\n",
            "\"aaaaaaaaaaaaaaaa2\" = { tenant = \"alice\", expires = 2998-01-01 }\n",
            "\"bbbbbbbbbbbbbbbb1\" = \"bob\"\n",
        ))
        .unwrap();
        let now = SystemTime::now();
        let g = |tok: &str| t.check(tok, now).grant().unwrap();
        let both = g("aaaaaaaaaaaaaaaa1").with(g("aaaaaaaaaaaaaaaa2")).unwrap();
        assert_eq!(both.expires, g("aaaaaaaaaaaaaaaa2").expires);
        assert_eq!(both.tokens.len(), 2);
        assert!(g("aaaaaaaaaaaaaaaa1")
            .with(g("bbbbbbbbbbbbbbbb1"))
            .is_none());
    }

    #[test]
    fn admin_tokens_are_marked_and_their_grants_say_so() {
        let t = Tokens::parse(concat!(
            "[tokens]\n",
            "\"aaaaaaaaaaaaaaaa1\" = { tenant = \"ops\", admin = true }\n",
            "\"aaaaaaaaaaaaaaaa2\" = \"ops\"\n",
        ))
        .unwrap();
        let now = SystemTime::now();
        let admin = t.check("aaaaaaaaaaaaaaaa1", now).grant().unwrap();
        let plain = t.check("aaaaaaaaaaaaaaaa2", now).grant().unwrap();
        assert!(admin.admin && !plain.admin);
        assert!(plain.with(admin).unwrap().admin);
        assert!(
            Tokens::parse("[tokens]\n\"aaaaaaaaaaaaaaaa1\" = { tenant = \"a\", admin = 1 }\n")
                .is_err()
        );
    }

    #[test]
    fn entropy_estimate_flags_short_and_low_variety_tokens() {
        // 16 hex digits: 64 bits; 32: 128; 64: 256.
        assert_eq!(entropy_bits(&"a".repeat(16)), 64);
        assert_eq!(entropy_bits("0123456789abcdef0123456789abcdef"), 128);
        assert_eq!(entropy_bits(&"f".repeat(64)), 256);
        // Lower case and digits: ~5.17 bits each.
        assert!(entropy_bits("alice-token-0123456789abcdef") >= 128);
        assert!(entropy_bits("aaaaaaaaaaaaaaaa1") < 128);
        let t = Tokens::parse(concat!(
            "[tokens]\n",
            "\"9f2c0d4e6a8b1c3d5e7f\" = \"alice\"\n",
            "\"3b9d6f1c8a2e7d4b0f5c9a1e6d3b8f2c7a4e0d9b1f6c3a8e\" = \"bob\"\n",
        ))
        .unwrap();
        let weak = t.weak();
        assert_eq!(weak.len(), 1);
        assert_eq!((&*weak[0].0, weak[0].1), ("alice", 80));
    }
}

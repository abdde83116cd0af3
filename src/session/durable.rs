//! Where sessions live beyond one process: Redis when L3 is on (so any engine
//! behind a balancer can open a session another one started), otherwise one
//! file per session under the data directory (so a restart keeps them).
//!
//! What is kept is what a person would miss: the working directory (and the
//! previous one, for `cd -`), the session's own variables and its history. The
//! tenant's root and the predictor's context are not: the root is resolved
//! again on attach, and a cold context only costs one prediction.
//!
//! A saved session expires like a live one: `idle_ttl` after it was last
//! saved (Redis by the key's TTL, a file by the time stamped in it). Values
//! are bincode with a layout version; one that does not decode (an older
//! layout, a torn file) is ignored with a warning: a session that starts
//! fresh is an inconvenience, never a wrong answer.

use crate::cache::L3;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Layout version of a saved session.
pub(super) const SAVED_VERSION: u32 = 1;
/// Largest saved session read back (bounds a bad file or value).
const MAX_SAVED_BYTES: usize = 1 << 20;
/// The directory under the data directory.
const DIR_NAME: &str = "sessions";

/// One session as it is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Saved {
    /// [`SAVED_VERSION`].
    pub version: u32,
    /// When it was saved, in milliseconds since the Unix epoch: the newer of
    /// two copies wins, and a copy older than `idle_ttl` has expired.
    pub saved_ms: u64,
    /// The working directory (its bytes: a path need not be UTF-8).
    pub cwd: Vec<u8>,
    /// The previous one (`cd -`).
    pub prev_cwd: Option<Vec<u8>>,
    /// The session's own variables (not the base environment).
    pub env: Vec<(String, String)>,
    /// The most recent commands, oldest first.
    pub history: Vec<String>,
}

impl Saved {
    fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Saved> {
        if bytes.len() > MAX_SAVED_BYTES {
            return None;
        }
        let cfg = bincode::config::standard().with_limit::<MAX_SAVED_BYTES>();
        let (s, _): (Saved, usize) = bincode::decode_from_slice(bytes, cfg).ok()?;
        (s.version == SAVED_VERSION).then_some(s)
    }
}

/// Milliseconds since the Unix epoch now.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The persistence backend of sessions.
pub enum Durable {
    /// Nowhere (no data directory and no Redis): sessions last one run.
    Memory,
    /// `<data_dir>/sessions/<tenant>/<name>`, each rewritten whole (temp file
    /// + rename, so a reader never sees half of one).
    Files(PathBuf),
    /// Redis: `session:<tenant>:<name>` under the cache's namespace.
    Redis(Arc<L3>),
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Durable {
    /// Redis when L3 is on, else files under `data_dir`, else memory only.
    pub fn choose(l3: Option<&Arc<L3>>, data_dir: Option<&Path>) -> Durable {
        match (l3, data_dir) {
            (Some(l3), _) => Durable::Redis(l3.clone()),
            (None, Some(dir)) => Durable::Files(dir.join(DIR_NAME)),
            (None, None) => Durable::Memory,
        }
    }

    /// A human description for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Durable::Memory => "memory only (no data directory)".into(),
            Durable::Files(p) => format!("files under {}", p.display()),
            Durable::Redis(_) => "Redis (L3)".into(),
        }
    }

    /// Whether other processes may change what is kept (then a session held
    /// here must be compared with the kept copy when it is opened again).
    pub fn shared(&self) -> bool {
        matches!(self, Durable::Redis(_))
    }

    /// The kept copy of `tenant`'s session `name`, unless it is missing,
    /// unreadable, or older than `ttl`.
    pub async fn load(&self, tenant: &str, name: &str, ttl: Duration) -> Option<Saved> {
        let bytes = match self {
            Durable::Memory => return None,
            Durable::Files(dir) => {
                let path = file_of(dir, tenant, name);
                match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
                    Ok(Ok(bytes)) => bytes,
                    _ => return None,
                }
            }
            Durable::Redis(l3) => l3.get_blob(&key_of(tenant, name)).await?,
        };
        let Some(saved) = Saved::decode(&bytes) else {
            tracing::warn!(
                tenant,
                session = name,
                "saved session unreadable; starting it fresh"
            );
            return None;
        };
        let age = unix_ms().saturating_sub(saved.saved_ms);
        (u128::from(age) < ttl.as_millis()).then_some(saved)
    }

    /// Keeps `saved` as `tenant`'s session `name` for `ttl`. Failures are
    /// logged: the live session goes on either way.
    pub async fn save(&self, tenant: &str, name: &str, saved: &Saved, ttl: Duration) {
        let bytes = saved.encode();
        match self {
            Durable::Memory => {}
            Durable::Files(dir) => {
                let path = file_of(dir, tenant, name);
                let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                if let Err(e) = written {
                    tracing::warn!(tenant, session = name, error = %e, "cannot save the session");
                }
            }
            Durable::Redis(l3) => {
                if !l3.put_blob(&key_of(tenant, name), bytes, ttl).await {
                    tracing::warn!(tenant, session = name, "cannot save the session to Redis");
                }
            }
        }
    }
}

impl Durable {
    /// Removes kept sessions last saved more than `ttl` ago, and temporary
    /// files a crash left: files are what nothing else would ever remove (Redis
    /// expires its keys), and a data directory would otherwise keep one file
    /// for every session ever opened. Returns how many files went.
    pub async fn sweep(&self, ttl: Duration) -> usize {
        let Durable::Files(dir) = self else { return 0 };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || sweep_files(&dir, ttl, SystemTime::now()))
            .await
            .unwrap_or(0)
    }
}

/// The files under `dir` (`<tenant>/<name>`) older than `ttl` at `now`, by
/// their modification time (each save rewrites the file whole), then each
/// tenant directory left empty.
fn sweep_files(dir: &Path, ttl: Duration, now: SystemTime) -> usize {
    let Ok(tenants) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for tenant in tenants.flatten() {
        let path = tenant.path();
        let Ok(sessions) = std::fs::read_dir(&path) else {
            continue;
        };
        for file in sessions.flatten() {
            let expired = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age >= ttl);
            if expired && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
        // Fails, as it should, while the tenant still has a session.
        let _ = std::fs::remove_dir(&path);
    }
    removed
}

/// Tenant and session names are validated at the edge (`[A-Za-z0-9._-]`, 1–64
/// characters, never `.` or `..`), so they are safe path components.
fn file_of(dir: &Path, tenant: &str, name: &str) -> PathBuf {
    dir.join(tenant).join(name)
}

fn key_of(tenant: &str, name: &str) -> String {
    format!("session:{tenant}:{name}")
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating
/// the directories (private to the server's user) on the way.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a session file has no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("tmp");
    match std::fs::write(&tmp, bytes) {
        // The sweep removed the tenant's directory as it became empty, just
        // after it was made: once more.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::write(&tmp, bytes)?;
        }
        other => other?,
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(cwd: &str) -> Saved {
        Saved {
            version: SAVED_VERSION,
            saved_ms: unix_ms(),
            cwd: cwd.as_bytes().to_vec(),
            prev_cwd: Some(b"/".to_vec()),
            env: vec![("A".into(), "1".into())],
            history: vec!["ls".into(), "cd /tmp".into()],
        }
    }

    #[tokio::test]
    async fn files_keep_a_session_and_expire_it_after_the_ttl() {
        let dir = std::env::temp_dir().join(format!("voxterm-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Durable::choose(None, Some(&dir));
        let ttl = Duration::from_secs(60);
        assert_eq!(d.load("t", "main", ttl).await, None);
        let kept = saved("/tmp");
        d.save("t", "main", &kept, ttl).await;
        assert_eq!(d.load("t", "main", ttl).await, Some(kept));
        // Another tenant's session of the same name is another file.
        assert_eq!(d.load("u", "main", ttl).await, None);
        // Older than the TTL: gone.
        let mut old = saved("/var");
        old.saved_ms -= 61_000;
        d.save("t", "main", &old, ttl).await;
        assert_eq!(d.load("t", "main", ttl).await, None);
        // A torn file is ignored, not trusted.
        std::fs::write(dir.join("sessions/t/main"), b"\x01\x02").unwrap();
        assert_eq!(d.load("t", "main", ttl).await, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_sweep_removes_expired_files_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("voxterm-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Durable::choose(None, Some(&dir));
        let ttl = Duration::from_secs(60);
        d.save("t", "main", &saved("/tmp"), ttl).await;
        d.save("t", "old", &saved("/tmp"), ttl).await;
        d.save("u", "old", &saved("/tmp"), ttl).await;
        std::fs::write(dir.join("sessions/u/old.tmp"), b"torn").unwrap();
        // Nothing is old yet.
        assert_eq!(d.sweep(ttl).await, 0);
        // Two minutes on, the files saved then have expired, whatever their
        // names; "main" is saved again in between and stays.
        let later = SystemTime::now() + Duration::from_secs(120);
        let touch = |p: &str| {
            let f = std::fs::File::options()
                .write(true)
                .open(dir.join(p))
                .unwrap();
            f.set_modified(later).unwrap();
        };
        touch("sessions/t/main");
        let sessions = dir.join("sessions");
        assert_eq!(sweep_files(&sessions, ttl, later), 3);
        assert!(sessions.join("t/main").is_file());
        assert!(!sessions.join("t/old").exists());
        // A tenant with nothing left loses its directory.
        assert!(!sessions.join("u").exists());
        // Saving into a removed tenant directory makes it again.
        d.save("u", "new", &saved("/tmp"), ttl).await;
        assert!(d.load("u", "new", ttl).await.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

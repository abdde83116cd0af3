//! Where the model lives between runs: Redis when L3 is on (shared by every
//! instance, one key per tenant), otherwise one file under the data directory.
//!
//! Values are bincode with a version number; a value that does not decode (an
//! older layout, a torn file) is ignored with a warning: a predictor that starts
//! cold is slower, never wrong.

use super::model::ContextSnapshot;
use super::Predictor;
use crate::cache::L3;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Layout version of a snapshot.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Largest snapshot read back (a file or a Redis value); bounds a bad input.
const MAX_SNAPSHOT_BYTES: usize = 256 << 20;
/// How long a tenant's model outlives its last save in Redis.
const REDIS_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The file's name under the data directory.
pub const FILE_NAME: &str = "predict-model.bin";

/// A persisted model: the global prior and some tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The global prior's contexts.
    pub global: Vec<ContextSnapshot>,
    /// (tenant, contexts).
    pub tenants: Vec<(String, Vec<ContextSnapshot>)>,
}

impl Snapshot {
    /// Nothing to save.
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.tenants.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Snapshot> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return None;
        }
        let cfg = bincode::config::standard().with_limit::<MAX_SNAPSHOT_BYTES>();
        let (s, _): (Snapshot, usize) = bincode::decode_from_slice(bytes, cfg).ok()?;
        (s.version == SNAPSHOT_VERSION).then_some(s)
    }
}

/// The persistence backend.
pub enum Store {
    /// Nowhere (no data directory and no Redis): the model lasts one run.
    Memory,
    /// One file, rewritten whole (temp file + rename) when anything changed.
    File(PathBuf),
    /// Redis: `predict:global` and `predict:t:<tenant>` under the cache namespace.
    Redis(Arc<L3>),
}

impl Store {
    /// Redis when L3 is on, else a file under `data_dir`, else memory only.
    pub fn choose(l3: Option<&Arc<L3>>, data_dir: Option<&Path>) -> Store {
        match (l3, data_dir) {
            (Some(l3), _) => Store::Redis(l3.clone()),
            (None, Some(dir)) => Store::File(dir.join(FILE_NAME)),
            (None, None) => Store::Memory,
        }
    }

    /// A human description for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Store::Memory => "memory only (no data directory)".into(),
            Store::File(p) => format!("file {}", p.display()),
            Store::Redis(_) => "Redis (L3)".into(),
        }
    }

    /// Loads what is kept into `p`: everything from a file, the global prior from
    /// Redis (tenants come from Redis one by one, see [`Store::load_tenant`]).
    pub async fn load(&self, p: &Predictor) {
        let snap = match self {
            Store::Memory => None,
            Store::File(path) => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
                    Ok(Ok(bytes)) => Snapshot::decode(&bytes).or_else(|| {
                        tracing::warn!("prediction model file unreadable; starting cold");
                        None
                    }),
                    _ => None,
                }
            }
            Store::Redis(l3) => l3.get_blob("predict:global").await.and_then(|b| {
                Snapshot::decode(&b).map(|mut s| {
                    s.tenants.clear();
                    s
                })
            }),
        };
        if let Some(s) = snap {
            tracing::info!(
                tenants = s.tenants.len(),
                prior_contexts = s.global.len(),
                "prediction model loaded"
            );
            p.restore(&s);
        }
    }

    /// Loads one tenant's model from Redis (no-op for the other stores, which
    /// load everything at start).
    pub async fn load_tenant(&self, p: &Predictor, tenant: &str) {
        let Store::Redis(l3) = self else { return };
        let Some(bytes) = l3.get_blob(&format!("predict:t:{tenant}")).await else {
            return;
        };
        if let Some(mut s) = Snapshot::decode(&bytes) {
            s.global.clear();
            s.tenants.retain(|(t, _)| t == tenant);
            p.restore(&s);
        }
    }

    /// Saves what changed since the last save. Returns the tenants written.
    pub async fn save(&self, p: &Predictor) -> usize {
        match self {
            Store::Memory => 0,
            Store::File(path) => {
                // The file holds everything, so any change rewrites all of it.
                if !p.has_changes() {
                    return 0;
                }
                let snap = p.take_dirty(true);
                let n = snap.tenants.len();
                let path = path.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_atomically(&path, &snap)).await;
                match written {
                    Ok(Ok(())) => n,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot save the prediction model");
                        0
                    }
                    Err(_) => 0,
                }
            }
            Store::Redis(l3) => {
                let mut snap = p.take_dirty(false);
                let mut n = 0;
                if !snap.global.is_empty() {
                    let g = Snapshot {
                        version: SNAPSHOT_VERSION,
                        global: std::mem::take(&mut snap.global),
                        tenants: Vec::new(),
                    };
                    l3.put_blob("predict:global", g.encode(), REDIS_TTL).await;
                }
                for (tenant, contexts) in snap.tenants {
                    let name = format!("predict:t:{tenant}");
                    let one = Snapshot {
                        version: SNAPSHOT_VERSION,
                        global: Vec::new(),
                        tenants: vec![(tenant, contexts)],
                    };
                    if l3.put_blob(&name, one.encode(), REDIS_TTL).await {
                        n += 1;
                    }
                }
                n
            }
        }
    }
}

/// Writes `snap` to `path` through a temporary file and a rename, so a crash
/// mid-write leaves the previous model, not half of a new one. Encoded straight
/// into the file: the whole encoding in memory was megabytes every save.
fn write_atomically(path: &Path, snap: &Snapshot) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("bin.tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    bincode::encode_into_std_write(snap, &mut w, bincode::config::standard())
        .map_err(std::io::Error::other)?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::predict::{id_of, NONE, START};

    #[tokio::test]
    async fn a_file_store_round_trips_the_model() {
        let dir = std::env::temp_dir().join(format!("voxterm-predict-{}", std::process::id()));
        let store = Store::File(dir.join(FILE_NAME));
        let cfg = Preset::Development.config().predict;
        let a = Predictor::new(&cfg);
        let t: Arc<str> = "alice".into();
        let (ls, cat) = (id_of("ls"), id_of("cat README.md"));
        for _ in 0..5 {
            a.learn(&t, NONE, START, ls, "ls");
            a.learn(&t, START, ls, cat, "cat README.md");
        }
        assert_eq!(store.save(&a).await, 1);
        assert_eq!(store.save(&a).await, 0, "nothing changed since");

        let b = Predictor::new(&cfg);
        store.load(&b).await;
        assert_eq!(&*b.predict("alice", NONE, ls)[0].line, "cat README.md");
        assert_eq!(&*b.predict("alice", NONE, START)[0].line, "ls");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn garbage_is_not_a_snapshot() {
        assert!(Snapshot::decode(b"not a model").is_none());
        let mut s = Snapshot {
            version: SNAPSHOT_VERSION + 1,
            ..Snapshot::default()
        };
        assert!(Snapshot::decode(&s.encode()).is_none());
        s.version = SNAPSHOT_VERSION;
        assert_eq!(Snapshot::decode(&s.encode()), Some(s));
    }
}

//! All live sessions of the process, keyed by (tenant, name), with idle expiry,
//! kept beyond the process by `durable` (Redis or files): a session that is
//! not live here is looked up there when it is opened, and a session is
//! written there when its directory or variables change, when its last
//! connection lets go of it, and when the server shuts down. The writes are
//! made by one task, off every request's way.

use super::durable::{Durable, Saved};
use super::state::Session;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Key = (Arc<str>, Box<str>);

/// Live sessions. Opening is rare next to executing, so one mutex over the map is enough.
#[derive(Debug)]
pub struct SessionStore {
    sessions: Mutex<HashMap<Key, Arc<Session>>>,
    epoch: Instant,
    idle_ttl: Duration,
    root: PathBuf,
    history_limit: usize,
    durable: Durable,
    /// Sessions to write to `durable`, for the writer task (`spawn_reaper`).
    to_save: mpsc::UnboundedSender<Arc<Session>>,
    saves: Mutex<Option<mpsc::UnboundedReceiver<Arc<Session>>>>,
    /// One write at a time, each of a snapshot taken under it: the writer
    /// task and the shutdown's `save_all` never race on a file, and a later
    /// state is never overwritten by an earlier one.
    saving: tokio::sync::Mutex<()>,
}

/// A connection's hold on a session; while any exist the session never expires.
#[derive(Debug)]
pub struct SessionHandle {
    session: Arc<Session>,
    store: Arc<SessionStore>,
}

impl std::ops::Deref for SessionHandle {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.session.touch(self.store.now_ms());
        if self.session.attached.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last hold: keep its history (its directory and variables
            // were kept as they changed).
            self.store.queue(&self.session);
        }
    }
}

impl SessionStore {
    /// An empty store. New sessions start in `root`; sessions are kept in
    /// `durable` beyond this process.
    pub fn new(
        root: PathBuf,
        idle_ttl: Duration,
        history_limit: usize,
        durable: Durable,
    ) -> Arc<Self> {
        let (to_save, saves) = mpsc::unbounded_channel();
        Arc::new(SessionStore {
            sessions: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            idle_ttl,
            root,
            history_limit,
            durable,
            to_save,
            saves: Mutex::new(Some(saves)),
            saving: tokio::sync::Mutex::new(()),
        })
    }

    /// Where sessions are kept, for the startup log.
    pub fn describe(&self) -> String {
        self.durable.describe()
    }

    /// Asks for `session` to be written to the durable store (soon, by the
    /// writer task; a no-op without one): its directory or variables changed.
    pub fn changed(&self, session: &Session) {
        if matches!(self.durable, Durable::Memory) {
            return;
        }
        let key: Key = (session.tenant().clone(), session.name().into());
        let live = self.map().get(&key).cloned();
        if let Some(live) = live {
            self.queue(&live);
        }
    }

    fn queue(&self, session: &Arc<Session>) {
        if !matches!(self.durable, Durable::Memory) {
            let _ = self.to_save.send(session.clone());
        }
    }

    /// Writes every live session now (on shutdown, so a restart resumes them).
    pub async fn save_all(&self) {
        if matches!(self.durable, Durable::Memory) {
            return;
        }
        let live: Vec<Arc<Session>> = self.map().values().cloned().collect();
        for session in &live {
            self.save(session).await;
        }
        tracing::debug!(sessions = live.len(), "sessions saved");
    }

    async fn save(&self, session: &Session) {
        let _one_at_a_time = self.saving.lock().await;
        let saved = session.snapshot();
        self.durable
            .save(session.tenant(), session.name(), &saved, self.idle_ttl)
            .await;
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Session>>> {
        crate::sync::lock(&self.sessions)
    }

    /// Attaches to the tenant's session `name`, creating it if needed. The bool is
    /// true when an existing session was resumed (live here, or kept).
    pub async fn open(self: &Arc<Self>, tenant: &Arc<str>, name: &str) -> (SessionHandle, bool) {
        match self.open_within(tenant, name, usize::MAX).await {
            Some(opened) => opened,
            None => unreachable!("no quota is reached at usize::MAX"),
        }
    }

    /// Like [`open`](Self::open), but a new session is only created while the
    /// tenant has fewer than `max` (checked under the store's lock); `None` when
    /// the quota is reached.
    ///
    /// A session not live here is looked up in the durable store first; one
    /// that is live is compared with the kept copy when other processes share
    /// the store (Redis), so a session that moved to another engine and back
    /// comes back as that engine left it.
    pub async fn open_within(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        name: &str,
        max: usize,
    ) -> Option<(SessionHandle, bool)> {
        let key: Key = (tenant.clone(), name.into());
        let live = self.map().contains_key(&key);
        let kept = if live && !self.durable.shared() {
            None
        } else {
            self.durable.load(tenant, name, self.idle_ttl).await
        };
        // Stat the directory before taking any lock.
        let kept = match kept {
            Some(saved) => {
                let exists = cwd_exists(&saved).await;
                Some((saved, exists))
            }
            None => None,
        };
        let mut map = self.map();
        let (session, resumed) = match map.get(&key) {
            Some(s) => (s.clone(), true),
            None if max != usize::MAX && map.keys().filter(|(t, _)| t == tenant).count() >= max => {
                return None
            }
            None => {
                let s = Arc::new(Session::new(
                    tenant.clone(),
                    name,
                    self.root.clone(),
                    self.history_limit,
                ));
                map.insert(key, s.clone());
                (s, kept.is_some())
            }
        };
        if let Some((saved, exists)) = kept {
            if session.restore(saved, exists) {
                tracing::debug!(%tenant, session = name, "session resumed from the durable store");
            }
        }
        session.attached.fetch_add(1, Ordering::AcqRel);
        session.touch(self.now_ms());
        Some((
            SessionHandle {
                session,
                store: self.clone(),
            },
            resumed,
        ))
    }

    /// Live sessions of one tenant.
    pub fn count_of(&self, tenant: &str) -> usize {
        self.map().keys().filter(|(t, _)| &**t == tenant).count()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops sessions that nobody holds and that have been idle past the TTL.
    pub fn reap(&self) -> usize {
        let now = self.now_ms();
        let ttl = self.idle_ttl.as_millis() as u64;
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, s| {
            s.attached.load(Ordering::Acquire) > 0
                || now.saturating_sub(s.last_used_ms.load(Ordering::Relaxed)) < ttl
        });
        before - map.len()
    }

    /// Runs `reap` periodically (and the durable store's sweep, see
    /// [`Durable::sweep`]), and the task that writes changed sessions to the
    /// durable store, until `stop` fires.
    pub fn spawn_reaper(self: &Arc<Self>, stop: CancellationToken) {
        let store = self.clone();
        let period = (self.idle_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        // Kept files are swept at start and then about as often as they
        // can expire (at most hourly, at least a minute apart).
        let sweep_period = self
            .idle_ttl
            .clamp(Duration::from_secs(60), Duration::from_secs(3600));
        let reaper_stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut sweep = tokio::time::interval(sweep_period);
            loop {
                tokio::select! {
                    _ = reaper_stop.cancelled() => break,
                    _ = tick.tick() => {
                        let n = store.reap();
                        if n > 0 {
                            tracing::debug!(expired = n, "reaped idle sessions");
                        }
                    }
                    _ = sweep.tick() => {
                        let n = store.durable.sweep(store.idle_ttl).await;
                        if n > 0 {
                            tracing::info!(removed = n, "removed expired kept sessions");
                        }
                    }
                }
            }
        });
        let taken = crate::sync::lock(&self.saves).take();
        if let Some(saves) = taken {
            tokio::spawn(self.clone().write_changed(saves, stop));
        }
    }

    /// The writer task: each changed session once per batch of changes, in
    /// the order they came (a burst of `cd`s is one write). Ends with `stop`
    /// (the shutdown then writes every live session: `save_all`).
    async fn write_changed(
        self: Arc<Self>,
        mut saves: mpsc::UnboundedReceiver<Arc<Session>>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::new();
        loop {
            let got = tokio::select! {
                _ = stop.cancelled() => return,
                got = saves.recv_many(&mut batch, 256) => got,
            };
            if got == 0 {
                return;
            }
            let mut seen = std::collections::HashSet::new();
            for session in batch.drain(..) {
                if seen.insert(Arc::as_ptr(&session) as usize) {
                    self.save(&session).await;
                }
            }
        }
    }
}

/// Whether a kept session's directory still exists (it may have been removed
/// while the session was away).
async fn cwd_exists(saved: &Saved) -> bool {
    use std::os::unix::ffi::OsStringExt;
    let path = PathBuf::from(std::ffi::OsString::from_vec(saved.cwd.clone()));
    tokio::task::spawn_blocking(move || path.is_dir())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resumes_same_tenant_and_name_only() {
        let store = SessionStore::new(
            PathBuf::from("/"),
            Duration::from_secs(60),
            8,
            Durable::Memory,
        );
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let (h1, resumed1) = store.open(&a, "main").await;
        let (h2, resumed2) = store.open(&a, "main").await;
        let (h3, resumed3) = store.open(&b, "main").await;
        assert!(!resumed1 && resumed2 && !resumed3);
        assert!(Arc::ptr_eq(&h1.session, &h2.session));
        assert!(!Arc::ptr_eq(&h1.session, &h3.session));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn idle_unattached_sessions_expire() {
        let store = SessionStore::new(PathBuf::from("/"), Duration::ZERO, 8, Durable::Memory);
        let t: Arc<str> = "t".into();
        let (held, _) = store.open(&t, "held").await;
        let (dropped, _) = store.open(&t, "dropped").await;
        drop(dropped);
        assert_eq!(store.reap(), 1);
        assert_eq!(store.len(), 1);
        drop(held);
        assert_eq!(store.reap(), 1);
        assert!(store.is_empty());
    }
}

//! All live sessions of the process, keyed by (tenant, name), with idle expiry.

use super::state::Session;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
        self.session.attached.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionStore {
    /// An empty store. New sessions start in `root`.
    pub fn new(root: PathBuf, idle_ttl: Duration, history_limit: usize) -> Arc<Self> {
        Arc::new(SessionStore {
            sessions: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            idle_ttl,
            root,
            history_limit,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Session>>> {
        crate::sync::lock(&self.sessions)
    }

    /// Attaches to the tenant's session `name`, creating it if needed. The bool is
    /// true when an existing session was resumed.
    pub fn open(self: &Arc<Self>, tenant: &Arc<str>, name: &str) -> (SessionHandle, bool) {
        self.open_within(tenant, name, usize::MAX)
            .expect("no quota is reached at usize::MAX")
    }

    /// Like [`open`](Self::open), but a new session is only created while the
    /// tenant has fewer than `max` (checked under the store's lock); `None` when
    /// the quota is reached.
    pub fn open_within(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        name: &str,
        max: usize,
    ) -> Option<(SessionHandle, bool)> {
        let mut map = self.map();
        let key: Key = (tenant.clone(), name.into());
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
                (s, false)
            }
        };
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

    /// Runs `reap` periodically until `stop` fires.
    pub fn spawn_reaper(self: &Arc<Self>, stop: CancellationToken) {
        let store = self.clone();
        let period = (self.idle_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let n = store.reap();
                        if n > 0 {
                            tracing::debug!(expired = n, "reaped idle sessions");
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_same_tenant_and_name_only() {
        let store = SessionStore::new(PathBuf::from("/"), Duration::from_secs(60), 8);
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let (h1, resumed1) = store.open(&a, "main");
        let (h2, resumed2) = store.open(&a, "main");
        let (h3, resumed3) = store.open(&b, "main");
        assert!(!resumed1 && resumed2 && !resumed3);
        assert!(Arc::ptr_eq(&h1.session, &h2.session));
        assert!(!Arc::ptr_eq(&h1.session, &h3.session));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn idle_unattached_sessions_expire() {
        let store = SessionStore::new(PathBuf::from("/"), Duration::ZERO, 8);
        let t: Arc<str> = "t".into();
        let (held, _) = store.open(&t, "held");
        let (dropped, _) = store.open(&t, "dropped");
        drop(dropped);
        assert_eq!(store.reap(), 1);
        assert_eq!(store.len(), 1);
        drop(held);
        assert_eq!(store.reap(), 1);
        assert!(store.is_empty());
    }
}

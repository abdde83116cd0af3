//! One session's state.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::durable::{unix_ms, Saved, SAVED_VERSION};
use super::env::{BaseEnv, ChildEnv};
use crate::predict::{CmdId, NONE, START};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// A named terminal session of a tenant. Cheap to share: the mutable part is behind
/// a short-held lock that is never held across an await.
#[derive(Debug)]
pub struct Session {
    tenant: Arc<str>,
    name: Box<str>,
    state: Mutex<State>,
    history_limit: usize,
    /// Connections holding a handle to this session; the reaper skips attached ones.
    pub(super) attached: AtomicUsize,
    /// Milliseconds since the store's epoch at the last attach or detach.
    pub(super) last_used_ms: AtomicU64,
}

/// The mutable part of a session.
#[derive(Debug, Clone)]
pub(super) struct State {
    pub cwd: PathBuf,
    pub prev_cwd: Option<PathBuf>,
    /// The session's own variables; changed only through [`State::set_var`] and
    /// its siblings, which drop `child_env`.
    env: BTreeMap<String, String>,
    /// `env` over the base environment, as children get it: built on the first
    /// command after a change, so a command costs an `Arc` clone rather than a
    /// copy of every variable (~20 allocations each, heaptrack).
    child_env: Option<ChildEnv>,
    /// Shared copies of the lines (the engine's memo holds the same ones):
    /// recording a command allocates nothing.
    pub history: VecDeque<Arc<str>>,
    /// The tenant's working root when `tenant_roots` is on: `cd` stays inside it.
    pub root: Option<PathBuf>,
    /// The last two commands (previous-but-one, previous), the predictor's context.
    pub context: (CmdId, CmdId),
    /// What the predictor expected next, best first (for its accuracy figures).
    pub predicted: [CmdId; 3],
    /// `saved_ms` of the kept copy this state was last written to or read
    /// from (`durable`): a kept copy newer than it was changed elsewhere.
    pub synced_ms: u64,
}

impl Session {
    pub(super) fn new(tenant: Arc<str>, name: &str, cwd: PathBuf, history_limit: usize) -> Self {
        Session {
            tenant,
            name: name.into(),
            state: Mutex::new(State {
                cwd,
                prev_cwd: None,
                env: BTreeMap::new(),
                child_env: None,
                history: VecDeque::new(),
                root: None,
                context: (NONE, START),
                predicted: [NONE; 3],
                synced_ms: 0,
            }),
            history_limit,
            attached: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(0),
        }
    }

    /// The tenant that owns this session.
    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The session's name within its tenant.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current working directory.
    pub fn cwd(&self) -> PathBuf {
        self.lock().cwd.clone()
    }

    /// The tenant root this session is confined to, if any (set on attach).
    pub fn root(&self) -> Option<PathBuf> {
        self.lock().root.clone()
    }

    /// The value of a session variable.
    pub fn var(&self, name: &str) -> Option<String> {
        self.lock().env.get(name).cloned()
    }

    /// The most recent commands, oldest first.
    pub fn history(&self) -> Vec<String> {
        self.lock().history.iter().map(|c| c.to_string()).collect()
    }

    /// Remembers a command, dropping the oldest beyond the limit.
    pub(crate) fn record(&self, command: impl Into<Arc<str>>) {
        if self.history_limit == 0 {
            return;
        }
        let mut s = self.lock();
        if s.history.len() >= self.history_limit {
            s.history.pop_front();
        }
        s.history.push_back(command.into());
    }

    /// Moves the predictor's context on to `next`. Returns the context `next`
    /// followed and, when a prediction had been made for it, `next`'s rank in it.
    pub(crate) fn advance(&self, next: CmdId) -> ((CmdId, CmdId), Option<Option<usize>>) {
        let mut s = self.lock();
        let ctx = s.context;
        let rank = (s.predicted[0] != NONE).then(|| s.predicted.iter().position(|&p| p == next));
        s.context = (ctx.1, next);
        s.predicted = [NONE; 3];
        (ctx, rank)
    }

    /// The predictor's context now (previous-but-one, previous).
    pub(crate) fn context(&self) -> (CmdId, CmdId) {
        self.lock().context
    }

    /// Remembers what the predictor expects next, if the context is still
    /// `after` (another command of the session may have started meanwhile).
    pub(crate) fn set_predicted(&self, after: CmdId, ids: [CmdId; 3]) {
        let mut s = self.lock();
        if s.context.1 == after {
            s.predicted = ids;
        }
    }

    /// cwd and the complete environment as they are now, for a child to start
    /// from (`base` is the engine's, the same for every call).
    pub(crate) fn launch(&self, base: &BaseEnv) -> (PathBuf, ChildEnv) {
        let mut s = self.lock();
        let env = match &s.child_env {
            Some(env) => env.clone(),
            None => {
                let env = base.compose(&s.env);
                s.child_env = Some(env.clone());
                env
            }
        };
        (s.cwd.clone(), env)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written (every
        // mutation is a single assignment), so a poisoned lock is still usable.
        crate::sync::lock(&self.state)
    }

    pub(super) fn set_cwd(&self, dir: &Path) {
        let mut s = self.lock();
        let old = std::mem::replace(&mut s.cwd, dir.to_owned());
        s.prev_cwd = Some(old);
    }

    pub(super) fn touch(&self, now_ms: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The session as it is kept (`durable`), stamped now.
    pub(super) fn snapshot(&self) -> Saved {
        let mut s = self.lock();
        let saved_ms = unix_ms().max(s.synced_ms + 1);
        s.synced_ms = saved_ms;
        Saved {
            version: SAVED_VERSION,
            saved_ms,
            cwd: s.cwd.as_os_str().as_bytes().to_vec(),
            prev_cwd: s
                .prev_cwd
                .as_ref()
                .map(|p| p.as_os_str().as_bytes().to_vec()),
            env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            history: s.history.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Takes the kept copy `saved` if it is newer than what this state last
    /// wrote or read. `cwd_exists`: whether its directory is still there
    /// (looked up by the caller, outside the lock); if not, the session keeps
    /// the directory it has.
    pub(super) fn restore(&self, saved: Saved, cwd_exists: bool) -> bool {
        let mut s = self.lock();
        if saved.saved_ms <= s.synced_ms {
            return false;
        }
        s.synced_ms = saved.saved_ms;
        if cwd_exists {
            s.cwd = PathBuf::from(OsString::from_vec(saved.cwd));
            s.prev_cwd = saved.prev_cwd.map(|p| PathBuf::from(OsString::from_vec(p)));
        }
        s.env = saved.env.into_iter().collect();
        s.child_env = None;
        let skip = saved.history.len().saturating_sub(self.history_limit);
        s.history = saved
            .history
            .into_iter()
            .skip(skip)
            .map(Arc::from)
            .collect();
        true
    }
}

impl State {
    /// The session's own variables.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Sets a session variable.
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
        self.child_env = None;
    }

    /// Removes a session variable.
    pub fn remove_var(&mut self, name: &str) {
        if self.env.remove(name).is_some() {
            self.child_env = None;
        }
    }

    /// Sets `name` unless the session already has it.
    pub fn default_var(&mut self, name: &str, value: impl FnOnce() -> String) {
        if !self.env.contains_key(name) {
            self.env.insert(name.to_owned(), value());
            self.child_env = None;
        }
    }
}

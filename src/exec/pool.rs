//! Bounded worker slots with a priority queue and per-tenant caps.
//!
//! A slot is a permission to run one child process. The pool does not own tasks
//! or threads: callers `acquire` a [`Slot`], run their command on their own task,
//! and drop the slot. That keeps back-pressure and cancellation with the caller
//! (a dropped request simply drops its slot or its place in the queue).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use voxterm_protocol::Priority;

use super::error::PoolError;

/// Sizing of a [`Pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Child processes allowed to run at once (at least 1).
    pub workers: usize,
    /// Slots one tenant may hold at once, so one user cannot starve the others (at least 1).
    pub tenant_concurrency: usize,
    /// Waiters allowed in the queue before `acquire` fails fast with `QueueFull`.
    pub queue_capacity: usize,
}

/// Cheap-to-clone handle to a shared set of worker slots.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    workers: usize,
    tenant_cap: usize,
    queue_capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    busy: usize,
    /// Slots held per tenant; entries are removed at zero so idle tenants cost nothing.
    held: HashMap<Arc<str>, usize>,
    /// One FIFO per priority class, indexed by [`class`].
    queues: [VecDeque<Waiter>; 3],
    queued: usize,
    next_id: u64,
}

struct Waiter {
    id: u64,
    tenant: Arc<str>,
    grant: oneshot::Sender<()>,
}

fn class(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Prefetch => 2,
    }
}

impl State {
    fn held_by(&self, tenant: &str) -> usize {
        self.held.get(tenant).copied().unwrap_or(0)
    }

    fn take(&mut self, tenant: &Arc<str>) {
        self.busy += 1;
        *self.held.entry(Arc::clone(tenant)).or_insert(0) += 1;
    }

    fn give_back(&mut self, tenant: &str) {
        self.busy = self.busy.saturating_sub(1);
        if let Some(n) = self.held.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(tenant);
            }
        }
    }

    /// Hands free slots to the best eligible waiters: highest class first, FIFO
    /// within a class, skipping waiters whose tenant is at its cap. Called after
    /// every release so no eligible waiter ever sits next to a free slot.
    fn dispatch(&mut self, workers: usize, tenant_cap: usize) {
        while self.busy < workers {
            let found = (0..self.queues.len()).find_map(|c| {
                self.queues[c]
                    .iter()
                    .position(|w| self.held_by(&w.tenant) < tenant_cap)
                    .map(|i| (c, i))
            });
            let Some((c, i)) = found else { return };
            let Some(w) = self.queues[c].remove(i) else {
                return;
            };
            self.queued -= 1;
            self.take(&w.tenant);
            // The receiver is alive while the waiter is queued (its guard removes it
            // under this lock before dropping the receiver); be defensive anyway.
            if w.grant.send(()).is_err() {
                self.give_back(&w.tenant);
            }
        }
    }
}

impl Pool {
    /// Creates a pool; zero `workers` or `tenant_concurrency` are raised to 1 so
    /// that a misconfiguration cannot deadlock every request.
    pub fn new(cfg: PoolConfig) -> Self {
        Pool {
            inner: Arc::new(Inner {
                workers: cfg.workers.max(1),
                tenant_cap: cfg.tenant_concurrency.max(1),
                queue_capacity: cfg.queue_capacity,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Waits for a free worker slot for `tenant` at `priority`; the slot is
    /// released when the returned [`Slot`] drops.
    ///
    /// Cancellation-safe: dropping the future while queued removes the waiter, and
    /// a slot granted to a future that is dropped before it saw the grant is
    /// passed on. Fails fast with [`PoolError::QueueFull`] when `queue_capacity`
    /// waiters already wait.
    pub async fn acquire(&self, tenant: &str, priority: Priority) -> Result<Slot, PoolError> {
        let (id, tenant, rx) = {
            let mut st = self.inner.lock();
            if st.busy < self.inner.workers && st.held_by(tenant) < self.inner.tenant_cap {
                // Any queued waiter is ineligible (dispatch runs on every release),
                // so taking the free slot here never jumps an eligible waiter.
                let tenant: Arc<str> = Arc::from(tenant);
                st.take(&tenant);
                return Ok(Slot {
                    pool: Arc::clone(&self.inner),
                    tenant,
                });
            }
            if st.queued >= self.inner.queue_capacity {
                return Err(PoolError::QueueFull);
            }
            let tenant: Arc<str> = Arc::from(tenant);
            let (tx, rx) = oneshot::channel();
            let id = st.next_id;
            st.next_id += 1;
            st.queues[class(priority)].push_back(Waiter {
                id,
                tenant: Arc::clone(&tenant),
                grant: tx,
            });
            st.queued += 1;
            (id, tenant, rx)
        };
        let mut wait = Waiting {
            pool: &self.inner,
            id,
            class: class(priority),
            tenant,
            rx,
            done: false,
        };
        // Err is unreachable: the sender stays in the queue until dispatch sends on
        // it, and only our own guard (below) removes it otherwise.
        let _ = (&mut wait.rx).await;
        wait.done = true;
        Ok(Slot {
            pool: Arc::clone(&self.inner),
            tenant: Arc::clone(&wait.tenant),
        })
    }

    /// A slot now, or nothing: only when a worker is free, nobody waits in the
    /// queue and the tenant is below its cap. Prefetches use this so that they
    /// run on idle capacity only and never take a place in the queue.
    pub fn try_acquire_idle(&self, tenant: &str) -> Option<Slot> {
        let mut st = self.inner.lock();
        if st.queued > 0
            || st.busy >= self.inner.workers
            || st.held_by(tenant) >= self.inner.tenant_cap
        {
            return None;
        }
        let tenant: Arc<str> = Arc::from(tenant);
        st.take(&tenant);
        Some(Slot {
            pool: Arc::clone(&self.inner),
            tenant,
        })
    }

    /// Number of callers currently waiting in the queue (all classes).
    pub fn queue_depth(&self) -> usize {
        self.inner.lock().queued
    }

    /// Number of slots currently held.
    pub fn busy(&self) -> usize {
        self.inner.lock().busy
    }

    /// Total number of slots.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Pool")
            .field("workers", &self.inner.workers)
            .field("busy", &st.busy)
            .field("queued", &st.queued)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover rather than cascade if it ever did.
        crate::sync::lock(&self.state)
    }

    fn release(&self, tenant: &str) {
        let mut st = self.lock();
        st.give_back(tenant);
        st.dispatch(self.workers, self.tenant_cap);
    }
}

/// Guard for a queued `acquire`: if the future is dropped, either removes the
/// waiter from the queue or, if the grant already happened, releases the slot.
struct Waiting<'a> {
    pool: &'a Inner,
    id: u64,
    class: usize,
    tenant: Arc<str>,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.pool.lock();
        let q = &mut st.queues[self.class];
        if let Some(i) = q.iter().position(|w| w.id == self.id) {
            q.remove(i);
            st.queued -= 1;
            // Removing a waiter can unblock nobody, so no dispatch needed.
        } else {
            // Granted but never observed: pass the slot on.
            st.give_back(&self.tenant);
            st.dispatch(self.pool.workers, self.pool.tenant_cap);
        }
    }
}

/// Permission to run one child process; returns its slot to the pool on drop.
pub struct Slot {
    pool: Arc<Inner>,
    tenant: Arc<str>,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.release(&self.tenant);
    }
}

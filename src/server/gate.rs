//! Open files as a budget: every accepted TCP connection is counted from
//! `accept`, a reserve of descriptors is kept for `/healthz`, children's pipes
//! and the cache, and connections still sending their request head are the
//! first to go when the budget runs out.
//!
//! A flood of half-open connections would otherwise take every descriptor the
//! process may have: `accept` then fails with EMFILE, `/healthz` cannot be
//! reached, and no child can be spawned (its pipes are descriptors too). Here,
//! past `soft_cap` connections each new one closes the oldest half-open one,
//! and a WebSocket upgrade is refused (503) while established connections
//! alone fill the budget; past `hard_cap` with nothing to close, the new
//! connection is closed at once. A client that sends its head at once (a
//! health check, a real client) is through before it can be the oldest.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Descriptors a server uses besides its connections: what `fd_reserve = 0`
/// keeps, plus 4 per worker (a child's pipes while it runs, its cgroup files).
const AUTO_RESERVE_BASE: usize = 64;

/// The connection budget of one server.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Accepted TCP connections not yet closed.
    open: AtomicUsize,
    /// Past this many open connections the oldest half-open one is closed for
    /// each new one, and upgrades are refused while established ones fill it.
    soft_cap: usize,
    /// Past this many, a new connection with nothing to close is closed at once.
    hard_cap: usize,
    /// Connections still reading their request head, oldest first.
    pending: Mutex<BTreeMap<u64, CancellationToken>>,
    next: AtomicU64,
}

/// One accepted connection's place in the budget; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    /// Fires when the connection is closed to make room; dropped when the
    /// head is in (`head_done`), so an upgraded connection does not hold a
    /// token (~112 bytes) for its whole life (issue 17, part 7).
    evicted: Option<CancellationToken>,
}

/// How many descriptors the budget starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub limit: usize,
    /// Descriptors open before serving (listener, runtime, log files...).
    pub baseline: usize,
    /// Descriptors kept for everything but connections.
    pub reserve: usize,
}

impl Budget {
    /// The budget of this process: its soft open-files limit (after
    /// [`raise_nofile`]), what it has open now, and the reserve, either
    /// configured or 64 + 4 per worker (at most a quarter of the limit).
    pub fn measure(configured_reserve: u32, workers: usize) -> Budget {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| {
                usize::try_from(soft).unwrap_or(usize::MAX)
            });
        let baseline = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count());
        let reserve = match configured_reserve {
            0 => (AUTO_RESERVE_BASE + 4 * workers).min(limit / 4),
            n => n as usize,
        };
        Budget {
            limit,
            baseline,
            reserve,
        }
    }
}

impl Gate {
    /// A gate for `budget`.
    pub fn new(budget: Budget) -> Arc<Gate> {
        let room = budget.limit.saturating_sub(budget.baseline);
        let soft_cap = room.saturating_sub(budget.reserve).max(1);
        let hard_cap = room.saturating_sub(budget.reserve / 2).max(soft_cap);
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            soft_cap,
            hard_cap,
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Connections the budget holds before half-open ones are closed for new ones.
    pub fn soft_cap(&self) -> usize {
        self.soft_cap
    }

    fn pending(&self) -> MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        lock(&self.pending)
    }

    /// Counts a connection just accepted. Past the soft cap the oldest
    /// half-open connection is told to close (`evicted` says whether one was);
    /// `None` when past the hard cap with none to close: close this one.
    pub fn admit(self: &Arc<Gate>) -> (Option<Ticket>, bool) {
        let n = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut evicted = false;
        if n > self.soft_cap {
            evicted = self.evict_oldest();
            if !evicted && n > self.hard_cap {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return (None, false);
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.pending().insert(id, token.clone());
        let ticket = Ticket {
            gate: self.clone(),
            id,
            evicted: Some(token),
        };
        (Some(ticket), evicted)
    }

    /// Tells the oldest half-open connection to close; false when there is none.
    pub fn evict_oldest(&self) -> bool {
        match self.pending().pop_first() {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether another WebSocket fits: established connections (those past
    /// their head, the asking one included) are within the soft cap.
    pub fn room_for_websocket(&self) -> bool {
        let pending = self.pending().len();
        let open = self.open.load(Ordering::Acquire);
        open.saturating_sub(pending) <= self.soft_cap
    }
}

impl Ticket {
    /// Fires when the connection is closed to make room; only while
    /// half-open (after [`Ticket::head_done`], a token that never fires).
    pub fn evicted(&self) -> CancellationToken {
        self.evicted.clone().unwrap_or_default()
    }

    /// The request head is in: the connection is no longer a candidate for
    /// eviction, and lets its token go.
    pub fn head_done(&mut self) {
        self.gate.pending().remove(&self.id);
        self.evicted = None;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.pending().remove(&self.id);
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Raises the soft open-files limit to the hard one (a server holds one
/// descriptor per connection; the usual soft default of 1,024 is far below
/// what it can serve). Returns (soft, hard) in force afterwards.
pub fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (1024, 1024);
    };
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit to its hard limit");
            return (soft, hard);
        }
        return (hard, hard);
    }
    (soft, hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limit: usize, reserve: usize) -> Arc<Gate> {
        Gate::new(Budget {
            limit,
            baseline: 0,
            reserve,
        })
    }

    #[test]
    fn half_open_connections_make_room_for_new_ones_past_the_soft_cap() {
        let g = gate(14, 8); // soft cap 6, hard cap 10
        let mut tickets: Vec<Ticket> = (0..6).map(|_| g.admit().0.unwrap()).collect();
        assert!(tickets.iter().all(|t| !t.evicted().is_cancelled()));
        // The 7th closes the oldest half-open one.
        let (t, evicted) = g.admit();
        assert!(evicted && tickets[0].evicted().is_cancelled());
        tickets.push(t.unwrap());
        // Established connections cannot be closed: with all of them past
        // their head, new ones get in up to the hard cap, then not at all.
        for t in &mut tickets {
            t.head_done();
        }
        drop(tickets.remove(0)); // the evicted one closes
        assert!(g.room_for_websocket(), "6 established: within the soft cap");
        let mut extra = Vec::new();
        for _ in 0..4 {
            let (t, evicted) = g.admit();
            let mut t = t.expect("below the hard cap");
            assert!(!evicted, "nothing half-open to close");
            t.head_done();
            extra.push(t);
        }
        assert!(g.admit().0.is_none(), "past the hard cap, nothing to close");
        assert!(!g.room_for_websocket(), "established ones fill the budget");
        drop(extra);
        assert!(g.room_for_websocket());
    }
}

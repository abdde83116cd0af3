//! Sending on time: one thread keeps every user's next due time and sends
//! each command at it, within a few microseconds.
//!
//! Sleeping a task until its due time on tokio's timer (1 ms granularity)
//! makes commands leave up to a millisecond late, and a latency measured from
//! the due time then charges that to the server (issue 17: L1 answers showed
//! 1.33 ms end to end against a 0.04 ms backend). Here a dedicated thread
//! sleeps with the kernel's timer slack at 1 ns until shortly before the
//! earliest due time, spins the last stretch, and sends: it writes the
//! command on the connection's socket itself when nothing is queued ahead of
//! it and the socket takes it now (`conn::Link::send_direct`), and hands it
//! to the connection's writer task otherwise. The earliest due line is
//! picked and encoded while the thread waits for it (`users::User::next`),
//! so at its due time only the write is left (send lag p50 4–6 µs → 2–3 µs
//! in five alternating `quick` runs each). What is left of the lateness
//! is measured, not assumed: the actual send is stamped as its write starts,
//! and the report shows the send lag beside the latencies.

use super::users::{Next, User};
use crate::profile::Profiles;
use crate::record::Recorder;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long before a due time the thread stops sleeping and spins: covers the
/// wake-up latency of a sleeping thread on a loaded machine.
const SPIN: Duration = Duration::from_micros(200);
/// The same for a real-time thread (see [`enter_realtime`]), which nothing
/// delays once awake: what is left to cover is a halted core's wake-up
/// (~50 µs on this project's VMs: send lag p50 46 µs without a spin, 8 µs
/// with this one, in `quick`).
const RT_SPIN: Duration = Duration::from_micros(50);
/// Share of a core a real-time thread may spend spinning (per
/// [`SPIN_WINDOW`]); past it, it sleeps to the due time: at thousands of
/// sends a second a spin before each would take a core from the server,
/// whose cores are then busy anyway (so a sleep ends on time).
const RT_SPIN_SHARE: f64 = 0.05;
/// The window [`RT_SPIN_SHARE`] is counted over.
const SPIN_WINDOW: Duration = Duration::from_millis(100);

/// What a real-time scheduling thread has spun in the current window.
struct SpinBudget {
    window: Instant,
    spent: Duration,
}

impl SpinBudget {
    fn new() -> SpinBudget {
        SpinBudget {
            window: Instant::now(),
            spent: Duration::ZERO,
        }
    }

    /// How long to spin before the next send at `now`.
    fn spin(&mut self, now: Instant) -> Duration {
        if now.duration_since(self.window) >= SPIN_WINDOW {
            *self = SpinBudget {
                window: now,
                spent: Duration::ZERO,
            };
        }
        match self.spent < SPIN_WINDOW.mul_f64(RT_SPIN_SHARE) {
            true => RT_SPIN,
            false => Duration::ZERO,
        }
    }

    fn spent(&mut self, d: Duration) {
        self.spent += d;
    }
}
/// Longest single sleep, so a new user's first command, earlier than every
/// due time known, is never waited past by more than this.
const MAX_NAP: Duration = Duration::from_millis(2);

/// One user's next command.
struct Due {
    at: Instant,
    user: Arc<User>,
    /// Its line, made ready (encoded) once it is the earliest due: at the
    /// due time only the write is left.
    next: Option<Next>,
    rng: fastrand::Rng,
    /// Mean think time, s.
    mean: f64,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

/// The handle users are added through.
#[derive(Clone)]
pub(super) struct Scheduler {
    tx: mpsc::Sender<Due>,
}

impl Scheduler {
    /// Starts the thread; it sends until `end` or until `stop` is set.
    /// `realtime`: it asks for a real-time class ([`enter_realtime`]).
    pub(super) fn start(
        profiles: Arc<Profiles>,
        rec: Arc<Recorder>,
        stop: Arc<AtomicBool>,
        end: tokio::time::Instant,
        realtime: bool,
    ) -> Scheduler {
        let (tx, rx) = mpsc::channel::<Due>();
        let end = end.into_std();
        let spawned = std::thread::Builder::new()
            .name("loadtest-schedule".into())
            .spawn(move || run(rx, &profiles, &rec, &stop, end, realtime));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the scheduling thread: no user will send");
        }
        Scheduler { tx }
    }

    /// Adds a user: its first command comes at a random point of one think
    /// time (no thundering herd), then one after each think time.
    pub(super) fn add(&self, user: Arc<User>, profiles: &Profiles, time_scale: f64) {
        let mean = 60.0 / profiles.list[user.profile()].commands_per_minute / time_scale;
        let mut rng = fastrand::Rng::with_seed(user.idx() as u64 ^ 0x5eed);
        let at = Instant::now() + Duration::from_secs_f64(rng.f64() * mean);
        let _ = self.tx.send(Due {
            at,
            user,
            next: None,
            rng,
            mean,
        });
    }
}

fn run(
    rx: mpsc::Receiver<Due>,
    profiles: &Profiles,
    rec: &Recorder,
    stop: &AtomicBool,
    end: Instant,
    realtime: bool,
) {
    // Without this the kernel may fire a sleep up to 50 µs late on purpose.
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!(error = %e, "timer slack unchanged");
    }
    let rt = realtime && enter_realtime();
    let mut budget = SpinBudget::new();
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut open = true;
    loop {
        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
            return;
        }
        // Take every user added meanwhile.
        while let Ok(d) = rx.try_recv() {
            heap.push(Reverse(d));
        }
        let Some(mut head) = heap.peek_mut() else {
            if !open {
                return;
            }
            match rx.recv_timeout(MAX_NAP) {
                Ok(d) => heap.push(Reverse(d)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            continue;
        };
        // Its line made ready now, while there is time (the order is the
        // due time's, unchanged).
        let Reverse(next) = &mut *head;
        if next.next.is_none() {
            next.next = Some(next.user.next(profiles));
        }
        let at = next.at;
        drop(head);
        let now = Instant::now();
        let spin = match rt {
            false => SPIN,
            true => budget.spin(now),
        };
        if at > now + spin {
            let nap = (at - now - spin).min(MAX_NAP);
            if !open {
                // Every user is in (the connection tasks that added them are
                // gone): a disconnected channel answers `recv_timeout` at
                // once, so waiting on it would spin a core for the whole
                // hold (it did: 88 % of a core, half of this machine, taken
                // from the server under test).
                std::thread::sleep(nap);
                continue;
            }
            // Sleep, but wake for a user added meanwhile.
            match rx.recv_timeout(nap) {
                Ok(d) => heap.push(Reverse(d)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            continue;
        }
        let spun = Instant::now();
        while Instant::now() < at {
            std::hint::spin_loop();
        }
        budget.spent(spun.elapsed());
        // Everything due by now, in order.
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(mut d)) = heap.pop() else {
                break;
            };
            let due = tokio::time::Instant::from_std(d.at);
            let next = d.next.take().unwrap_or_else(|| d.user.next(profiles));
            if !d.user.send_next(next, due, rec) {
                // Its connection is gone: the user stops.
                continue;
            }
            d.at += think(&mut d.rng, d.mean);
            if d.at < end {
                heap.push(Reverse(d));
            }
        }
    }
}

/// Puts this thread in the lowest real-time class (`SCHED_FIFO` 1), when the
/// tester may (root, or `CAP_SYS_NICE`): woken at a command's due time, it
/// then runs at once instead of waiting for the server's threads and the
/// children it runs to use up their time slices on cores shared with them.
/// What it runs is bounded: the sends due, and spins of [`RT_SPIN`] within
/// [`RT_SPIN_SHARE`] of a core. True when it is real-time now.
fn enter_realtime() -> bool {
    use nix::libc;
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` outlives the call; pid 0 is this thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "scheduling thread stays in the normal class");
    }
    r == 0
}

/// Exponential think time with mean `mean_s` seconds.
fn think(rng: &mut fastrand::Rng, mean_s: f64) -> Duration {
    let u = rng.f64().max(1e-12);
    Duration::from_secs_f64((-u.ln() * mean_s).min(mean_s * 20.0))
}

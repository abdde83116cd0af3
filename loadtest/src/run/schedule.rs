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
//! to the connection's writer task otherwise. What is left of the lateness
//! is measured, not assumed: the actual send is stamped once the message is
//! on the socket, and the report shows the send lag beside the latencies.

use super::users::User;
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
/// Longest single sleep, so a new user's first command, earlier than every
/// due time known, is never waited past by more than this.
const MAX_NAP: Duration = Duration::from_millis(2);

/// One user's next command.
struct Due {
    at: Instant,
    user: Arc<User>,
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
    pub(super) fn start(
        profiles: Arc<Profiles>,
        rec: Arc<Recorder>,
        stop: Arc<AtomicBool>,
        end: tokio::time::Instant,
    ) -> Scheduler {
        let (tx, rx) = mpsc::channel::<Due>();
        let end = end.into_std();
        let spawned = std::thread::Builder::new()
            .name("loadtest-schedule".into())
            .spawn(move || run(rx, &profiles, &rec, &stop, end));
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
) {
    // Without this the kernel may fire a sleep up to 50 µs late on purpose.
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!(error = %e, "timer slack unchanged");
    }
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
        let Some(Reverse(next)) = heap.peek() else {
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
        let at = next.at;
        let now = Instant::now();
        if at > now + SPIN {
            let nap = (at - now - SPIN).min(MAX_NAP);
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
        while Instant::now() < at {
            std::hint::spin_loop();
        }
        // Everything due by now, in order.
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(mut d)) = heap.pop() else {
                break;
            };
            let due = tokio::time::Instant::from_std(d.at);
            if !d.user.send(profiles, due, None, rec) {
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

/// Exponential think time with mean `mean_s` seconds.
fn think(rng: &mut fastrand::Rng, mean_s: f64) -> Duration {
    let u = rng.f64().max(1e-12);
    Duration::from_secs_f64((-u.ln() * mean_s).min(mean_s * 20.0))
}

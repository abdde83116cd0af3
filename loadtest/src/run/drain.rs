//! The end of the load: the users stopped, the chaos agent's summary awaited,
//! the answers still out given `--grace`, the lost ones counted, and the
//! server's last figures taken.

use super::hold::Observed;
use super::monitor::{sample, Monitor};
use super::users::Fleet;
use super::RunOptions;
use crate::chaos::ChaosSummary;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the end of the load leaves for the report.
pub(super) struct Drained {
    /// Requests without a terminal frame once the grace was over.
    pub(super) lost: u64,
    /// The server's last figures (None: it did not answer).
    pub(super) s_end: Option<voxterm_protocol::Stats>,
    /// What the chaos agent did (chaos scenarios).
    pub(super) chaos: Option<ChaosSummary>,
}

/// Stops the users and the chaos agent, waits for the answers still out, and
/// closes every user connection.
pub(super) async fn drain(
    opts: &RunOptions,
    fleet: &Fleet,
    chaos_agent: Option<JoinHandle<ChaosSummary>>,
    mon: &mut Monitor,
    obs: &mut Observed,
    t0: Instant,
    bar: Option<&indicatif::ProgressBar>,
) -> Drained {
    fleet.stop.store(true, Ordering::Relaxed);
    let chaos = match chaos_agent {
        Some(h) => h.await.ok(),
        None => None,
    };
    for j in &fleet.join {
        j.abort();
    }

    // Wait for the answers still out, then count the lost ones.
    let grace_end = Instant::now() + opts.grace;
    while fleet.outstanding() > 0 && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = fleet.outstanding();
    let s_end = match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            obs.server_alive = false;
            None
        }
    };
    if let Some(s) = &s_end {
        obs.samples.push(sample(s, t0));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for c in fleet.conns.lock().iter() {
        c.abort();
    }
    Drained { lost, s_end, chaos }
}

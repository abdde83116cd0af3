//! The chaos scenario's part of a run: the fault agent over the middle third
//! of the hold, the memory judged around its storm, and the idle memory once
//! every user has left.

use super::hold::Observed;
use super::monitor::{sample, Monitor};
use super::{Clock, RunOptions};
use crate::chaos;
use crate::report::{level_at, ServerSample};
use crate::scenario::{Scenario, Shape};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// After a chaos run: the longest wait for the server to see every user and
/// fault connection gone (for the idle-after figure, which is not judged).
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// … then this many one-second samples; the last one is the settled RSS (freed
/// memory can take a moment to go back to the allocator and the OS).
const SETTLE_SAMPLES: usize = 5;

/// The fault agent of a chaos run, and when its storm starts and ends.
pub(super) struct Storm {
    /// Faults from, until.
    pub(super) window: (Instant, Instant),
    /// The agent, which returns what it did.
    pub(super) agent: JoinHandle<chaos::ChaosSummary>,
}

/// Starts the fault agent for the middle third of the hold (chaos scenarios only).
pub(super) fn start(
    sc: &Scenario,
    opts: &RunOptions,
    clock: &Clock,
    root: &str,
    stop: &Arc<AtomicBool>,
) -> Option<Storm> {
    let hold_start = clock.hold_start;
    let storm = (sc.shape == Shape::Chaos).then(|| {
        (
            hold_start + sc.duration / 3,
            hold_start + sc.duration * 2 / 3,
        )
    });
    storm.map(|(from, until)| {
        let target = opts.target.clone();
        let root = root.to_owned();
        let stop = stop.clone();
        let redis = opts.redis.clone();
        Storm {
            window: (from, until),
            agent: tokio::spawn(
                async move { chaos::run(target, root, from, until, stop, redis).await },
            ),
        }
    })
}

/// Judges the chaos run's memory: the level just before the faults against the
/// level at the end of the hold, a calm third later, with the same users.
pub(super) fn judge_storm(
    summary: &mut chaos::ChaosSummary,
    samples: &[ServerSample],
    from_s: f64,
    until_s: f64,
    hold_end_s: f64,
) {
    summary.storm_window_s = Some((from_s, until_s));
    let (Some(pre), Some(post)) = (
        level_at(samples, from_s),
        level_at(samples, hold_end_s + 0.5),
    ) else {
        summary.skipped.push(
            "memory around the storm: no server sample before it or at the end of the hold".into(),
        );
        return;
    };
    let peak = samples
        .iter()
        .filter(|x| x.t_s >= from_s && x.t_s <= hold_end_s + 0.5)
        .map(|x| x.rss_bytes)
        .max()
        .unwrap_or(0);
    summary.judge_memory(pre.rss_bytes, peak, post.rss_bytes);
    summary.retained = Some(chaos::Retained {
        sessions_before: pre.sessions,
        sessions_after: post.sessions,
        cache_bytes_before: pre.cache_bytes.unwrap_or(0),
        cache_bytes_after: post.cache_bytes.unwrap_or(0),
        heap_allocated_before: pre.heap_allocated_bytes,
        heap_allocated_after: post.heap_allocated_bytes,
    });
}

/// For reading, not judged: the server's memory once the users have gone too
/// and it has closed every connection but the monitor's, and has settled.
pub(super) async fn settle(
    summary: &mut chaos::ChaosSummary,
    mon: &mut Monitor,
    obs: &mut Observed,
    s_before: &voxterm_protocol::Stats,
    t0: Instant,
) {
    // For reading: memory once the users have gone too and the server has
    // closed every connection but the monitor's, and has settled.
    let settle_end = Instant::now() + SETTLE_MAX;
    let mut settled = 0usize;
    let mut last: Option<voxterm_protocol::Stats> = None;
    while settled < SETTLE_SAMPLES && Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
            Ok(Ok(s)) => {
                if s.connections <= 1 {
                    settled += 1;
                }
                obs.samples.push(sample(&s, t0));
                last = Some(s);
            }
            _ => {
                obs.server_alive = false;
                break;
            }
        }
    }
    summary.rss_idle_before_bytes = Some(s_before.rss_bytes);
    if let Some(s) = last {
        summary.rss_idle_after_bytes = Some(s.rss_bytes);
        summary.connections_after = Some(s.connections);
        if settled < SETTLE_SAMPLES {
            summary.skipped.push(format!(
                "memory after the users left: the server still had {} connections after {} s; RSS taken then",
                s.connections,
                SETTLE_MAX.as_secs()
            ));
        }
    }
}

//! The run's clock: once a second until the end, the server's figures (and
//! the marks of the hold's start and end), a line of the timeline, the live
//! progress, and the capacity search's steps.

use super::capacity::CapacitySearch;
use super::monitor::{own_rss, sample, Monitor};
use super::steady::SteadyMark;
use super::users::Fleet;
use super::{Clock, RunOptions};
use crate::hist;
use crate::record::{Recorder, RunPhase};
use crate::report::{CapacityStep, ServerSample, SteadyBegan, Tick};
use crate::scenario::{Scenario, Shape};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the clock loop saw, for the report.
pub(super) struct Observed {
    /// One line per second.
    pub(super) timeline: Vec<Tick>,
    /// The server's samples, from before the first user on.
    pub(super) samples: Vec<ServerSample>,
    /// The server's peak RSS until the end of the hold.
    pub(super) rss_peak_hold: u64,
    /// The load tester's own peak RSS.
    pub(super) own_rss_peak: u64,
    /// The server's figures when the hold started (a burst: once it is in).
    pub(super) s_hold_start: Option<voxterm_protocol::Stats>,
    /// When the steady state began (s from the first user), the server's
    /// figures then, and the rule it began by.
    pub(super) s_steady: Option<(f64, voxterm_protocol::Stats, SteadyBegan)>,
    /// … and when it ended.
    pub(super) s_hold_end: Option<voxterm_protocol::Stats>,
    /// Client payload bytes (both ways) at the start of the hold.
    pub(super) bytes_hold_start: u64,
    /// … and at its end.
    pub(super) bytes_hold_end: u64,
    /// Users whose connection was alive at the end of the hold.
    pub(super) users_held: u64,
    /// Whether the server still answered (a poll failed and no new monitor
    /// connection could be made: false).
    pub(super) server_alive: bool,
    /// The capacity search's steps.
    pub(super) steps: Vec<CapacityStep>,
    /// Why the window gate stopped the run (`--abort-on-fail`).
    pub(super) aborted: Option<String>,
}

/// Ticks once a second from the first user to `clock.end` (or the capacity
/// search's last step) and returns what it saw; the capacity generator is
/// stopped on the way out.
#[allow(clippy::too_many_arguments)]
pub(super) async fn hold(
    sc: &Scenario,
    opts: &RunOptions,
    clock: &Clock,
    rec: &Arc<Recorder>,
    fleet: &Fleet,
    mon: &mut Monitor,
    s_before: &voxterm_protocol::Stats,
    bar: Option<&indicatif::ProgressBar>,
) -> Observed {
    let Clock {
        t0,
        hold_start,
        hold_end,
        end,
        ..
    } = *clock;
    let k = fleet.per_conn;
    let mut timeline: Vec<Tick> = Vec::new();
    let mut samples: Vec<ServerSample> = vec![sample(s_before, t0)];
    let mut rss_peak_hold = s_before.rss_bytes;
    let mut own_rss_peak = own_rss();
    let mut s_hold_start: Option<voxterm_protocol::Stats> = None;
    let mut s_steady: Option<(f64, voxterm_protocol::Stats, SteadyBegan)> = None;
    let steady_mark = SteadyMark::new(sc, clock);
    let mut s_hold_end: Option<voxterm_protocol::Stats> = None;
    let mut bytes_hold_start = 0u64;
    let mut bytes_hold_end = 0u64;
    let mut users_held = 0u64;
    let mut server_alive = true;
    let mut last_completed = 0u64;
    let (mut last_cacheable, mut last_hits) = (0u64, 0u64);
    let mut last_tick = Instant::now();
    let mut last_log = Instant::now();

    let mut capacity = CapacitySearch::default();
    let mut gate = super::gate::WindowGate::new(
        opts.abort_window,
        opts.p95_target_ms,
        opts.error_rate_target_pct,
    );
    let mut aborted = None;
    let mut last_errors = 0u64;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        // Server figures.
        match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
            Ok(Ok(s)) => {
                if now <= hold_end + Duration::from_secs(1) {
                    rss_peak_hold = rss_peak_hold.max(s.rss_bytes);
                }
                if s_hold_start.is_none() && now >= hold_start && sc.shape != Shape::Burst
                    || s_hold_start.is_none()
                        && sc.shape == Shape::Burst
                        && now >= hold_start + sc.duration / 3 + Duration::from_secs(2)
                {
                    bytes_hold_start = rec.bytes_in.load(Ordering::Relaxed)
                        + rec.bytes_out.load(Ordering::Relaxed);
                    s_hold_start = Some(s.clone());
                }
                if s_steady.is_none() {
                    if let Some(began) = steady_mark.begins(now, s.queue_depth, s.busy_workers) {
                        rec.enter(RunPhase::Steady);
                        s_steady = Some((clock.at(now), s.clone(), began));
                    }
                }
                if s_hold_end.is_none() && now >= hold_end {
                    bytes_hold_end = rec.bytes_in.load(Ordering::Relaxed)
                        + rec.bytes_out.load(Ordering::Relaxed);
                    users_held = fleet.conns.lock().iter().filter(|c| c.is_alive()).count() as u64
                        * k as u64;
                    users_held = users_held.min(rec.users_connected.load(Ordering::Relaxed));
                    s_hold_end = Some(s.clone());
                }
                samples.push(sample(&s, t0));
            }
            _ => {
                server_alive = false;
                if let Ok(m) = Monitor::connect(&opts.target, &opts.engines).await {
                    *mon = m;
                    server_alive = true;
                }
            }
        }
        own_rss_peak = own_rss_peak.max(own_rss());
        // Timeline.
        let interval = rec.take_interval();
        let completed = rec.completed.load(Ordering::Relaxed);
        let dt = now.duration_since(last_tick).as_secs_f64().max(1e-3);
        let cps = (completed - last_completed) as f64 / dt;
        last_completed = completed;
        last_tick = now;
        let s = hist::summary(&interval);
        let (cacheable, hits) = (
            rec.cacheable.load(Ordering::Relaxed),
            rec.cache_hits.load(Ordering::Relaxed),
        );
        let interval_cacheable = cacheable.saturating_sub(last_cacheable);
        let hit_rate_pct = (interval_cacheable > 0)
            .then(|| hits.saturating_sub(last_hits) as f64 / interval_cacheable as f64 * 100.0);
        (last_cacheable, last_hits) = (cacheable, hits);
        let t = Tick {
            hit_rate_pct,
            t_s: t0.elapsed().as_secs_f64(),
            users: rec.users_connected.load(Ordering::Relaxed),
            completed_per_s: cps,
            p50_ms: s.p50_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            errors: rec.errors.load(Ordering::Relaxed),
            server_rss_bytes: samples.last().map_or(0, |s| s.rss_bytes),
        };
        let msg = format!(
            "{} users {}/{} | {:.0} cmd/s | p95 {:.1} ms | errors {} | step {}",
            sc.name,
            t.users,
            sc.users,
            t.completed_per_s,
            t.p95_ms,
            t.errors + rec.send_failures.load(Ordering::Relaxed),
            capacity.steps.len()
        );
        if let Some(b) = bar {
            b.set_message(msg);
        } else if last_log.elapsed() >= Duration::from_secs(10) {
            eprintln!("loadtest: t={:.0}s {msg}", t.t_s);
            last_log = Instant::now();
        }
        let errors_now = t.errors + rec.send_failures.load(Ordering::Relaxed);
        let answers = (cps * dt).round() as u64;
        let gated = gate.as_mut().and_then(|g| {
            g.second(
                &interval,
                answers,
                errors_now.saturating_sub(last_errors),
                rec.phase() == RunPhase::Steady,
            )
        });
        last_errors = errors_now;
        if let Some(why) = gated {
            eprintln!("loadtest: aborting at t={:.0}s: {why}", t.t_s);
            aborted = Some(format!(
                "aborted at t={:.0} s by --abort-on-fail: {why}",
                t.t_s
            ));
            timeline.push(t);
            break;
        }
        timeline.push(t);

        // Capacity search: one step per `capacity_step`, stop at the first miss.
        // The profile load it runs beside is neither phase's: it overloads the
        // server on purpose.
        if sc.capacity && now >= hold_end {
            rec.enter(RunPhase::After);
        }
        if sc.capacity
            && now >= hold_end
            && now < end
            && !capacity.tick(sc, now - hold_end, opts.p95_target_ms, rec, fleet)
        {
            break;
        }
        if now >= end {
            break;
        }
    }
    capacity.stop();
    Observed {
        timeline,
        samples,
        rss_peak_hold,
        own_rss_peak,
        s_hold_start,
        s_steady,
        s_hold_end,
        bytes_hold_start,
        bytes_hold_end,
        users_held,
        server_alive,
        steps: capacity.steps,
        aborted,
    }
}

pub(super) fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
    {
        b.set_style(style);
    }
    b.enable_steady_tick(Duration::from_millis(200));
    Some(b)
}

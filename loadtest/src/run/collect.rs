//! The run's raw data for the report, put together from what the phases
//! gathered: the recorder's counts and histograms, the server's figures at the
//! marks of the hold, the capacity steps and the chaos summary.

use super::drain::Drained;
use super::hold::Observed;
use super::monitor::{counter_delta, own_cpu, server_cpu_us};
use super::setup::Setup;
use super::RunOptions;
use crate::hist::{self, Hist};
use crate::record::Recorder;
use crate::report::{LineMisses, PhaseData, Phases, Raw, RunData, SteadyBegan};
use crate::scenario::Scenario;
use std::sync::atomic::Ordering;

/// The run's [`RunData`].
pub(super) fn collect(
    sc: &Scenario,
    opts: &RunOptions,
    rec: &Recorder,
    setup: Setup,
    obs: Observed,
    drained: Drained,
    probed: Option<super::probe::Probed>,
) -> RunData {
    let Setup {
        started_unix_ms,
        wall0,
        cpu0,
        own_rss_before,
        s_before,
        backend_before,
        floor,
        paced_floor,
        pace_us,
        ..
    } = setup;
    let Observed {
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
        steps,
        aborted,
    } = obs;
    let Drained {
        lost,
        s_end,
        chaos: chaos_summary,
    } = drained;
    let s_hold_end = s_hold_end.or_else(|| s_end.clone());
    let backend_hold = s_hold_end
        .as_ref()
        .and_then(|s| hist::decode_bytes(&s.backend_histogram).ok())
        .map(|mut h| {
            // Only what the server did during this run's profile load.
            let _ = h.subtract(&backend_before);
            h
        });
    let (hold_s, server_cpu_hold_s) = match (&s_hold_start, &s_hold_end) {
        (Some(a), Some(b)) if b.uptime_ms > a.uptime_ms => (
            (b.uptime_ms - a.uptime_ms) as f64 / 1000.0,
            Some(server_cpu_us(b).saturating_sub(server_cpu_us(a)) as f64 / 1e6),
        ),
        _ => (0.0, None),
    };
    let tables = rec.tables.lock();
    let hold_end_s = (sc.ramp_up + sc.duration).as_secs_f64();
    let phases = phases(
        rec,
        &opts.profiles,
        &tables,
        &s_before,
        s_steady.as_ref(),
        s_hold_end.as_ref(),
        hold_end_s,
    );
    let served = tables
        .served
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let per_profile: Vec<(String, Hist)> = opts
        .profiles
        .list
        .iter()
        .zip(&tables.per_profile)
        .map(|(p, h)| (p.name.clone(), h.clone()))
        .collect();
    let capacity_cps = sc.capacity.then(|| {
        steps
            .iter()
            .filter(|s| s.within_target)
            .map(|s| s.offered_per_s)
            .fold(0.0, f64::max)
    });
    let wall_s = wall0.elapsed().as_secs_f64();
    let slope =
        crate::report::per_session_slope(&samples, (sc.ramp_up + sc.duration).as_secs_f64());
    let own_cpu_s = (own_cpu() - cpu0).as_secs_f64();
    let raw = Raw {
        users: sc.users as u64,
        offered: rec.sent.load(Ordering::Relaxed),
        completed: rec.completed.load(Ordering::Relaxed),
        errors: rec.errors.load(Ordering::Relaxed),
        send_failures: rec.send_failures.load(Ordering::Relaxed),
        lost,
        nonzero_exits: rec.nonzero_exits.load(Ordering::Relaxed),
        cacheable: rec.cacheable.load(Ordering::Relaxed),
        cache_hits: rec.cache_hits.load(Ordering::Relaxed),
        on_time: rec.on_time.load(Ordering::Relaxed),
        users_connected: rec.users_connected.load(Ordering::Relaxed),
        users_held,
        users_failed: rec.users_failed.load(Ordering::Relaxed),
        reconnects: rec.reconnects.load(Ordering::Relaxed),
        reattached: rec.reattached.load(Ordering::Relaxed),
        resent: rec.resent.load(Ordering::Relaxed),
        hold_s,
        client_bytes_hold: bytes_hold_end.saturating_sub(bytes_hold_start),
        client_bytes_total: rec.bytes_in.load(Ordering::Relaxed)
            + rec.bytes_out.load(Ordering::Relaxed),
        server_rss_before: Some(s_before.rss_bytes),
        server_rss_peak: Some(rss_peak_hold),
        server_cpu_hold_s,
        capacity_cps,
        capacity: sc.capacity,
        server_alive,
        wall_s,
        client_rss_before: own_rss_before,
        client_rss_peak: own_rss_peak,
        client_cpu_s: own_cpu_s,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
        time_scale: sc.time_scale,
        server_counters: counter_delta(&s_before, s_end.as_ref()),
        memory_per_session_bytes: slope.map(|s| s.0),
        memory_fixed_bytes: slope.map(|s| s.1),
    };
    RunData {
        started_unix_ms,
        raw,
        e2e: tables.e2e.clone(),
        backend: backend_hold,
        per_profile,
        per_class: tables
            .per_class
            .iter()
            .map(|(c, h)| (c.as_str().to_owned(), h.clone()))
            .collect(),
        per_served: tables
            .per_served
            .iter()
            .map(|(c, h)| (c.to_string(), h.clone()))
            .collect(),
        served,
        errors_by_code: tables.errors_by_code.clone(),
        timeline,
        samples,
        capacity: steps,
        chaos: chaos_summary,
        phases,
        aborted,
        timing: crate::report::TimingData {
            send_lag: tables.send_lag.clone(),
            from_send: tables.from_send.clone(),
            floor: floor.clone(),
            paced_floor: paced_floor.clone(),
            pace_us,
            probe_spacing_us: probed.as_ref().map_or(0, |p| p.spacing_us),
            probe_backend: probed.as_ref().map(|p| p.backend.clone()),
            probe: probed.map(|p| p.hist),
            l1_pure: tables.l1_pure.clone(),
            l1_pure_from_send: tables.l1_pure_from_send.clone(),
            l1_pure_backend: tables.l1_pure_backend.clone(),
        },
        engines: Vec::new(),
        failover: None,
    }
}

/// The cold start and the steady state: each request in the phase it was
/// sent in (the hold loop marks where the steady state began); the server's
/// backend latency split at the same sample.
fn phases(
    rec: &Recorder,
    profiles: &crate::profile::Profiles,
    tables: &crate::record::Tables,
    s_before: &voxterm_protocol::Stats,
    s_steady: Option<&(f64, voxterm_protocol::Stats, SteadyBegan)>,
    s_hold_end: Option<&voxterm_protocol::Stats>,
    until: f64,
) -> Option<Phases> {
    let (steady_from, s_steady, began) = s_steady?;
    let (steady_from, began) = (*steady_from, *began);
    let backend = |s: Option<&voxterm_protocol::Stats>| {
        s.and_then(|s| hist::decode_bytes(&s.backend_histogram).ok())
    };
    let between = |a: Option<Hist>, b: Option<Hist>| match (a, b) {
        (Some(a), Some(mut b)) => {
            let _ = b.subtract(&a);
            Some(b)
        }
        _ => None,
    };
    let at_steady = backend(Some(s_steady));
    let phase = |i: usize, from_s, until_s, backend| {
        let p = &tables.phases[i];
        let mut lines: Vec<LineMisses> = p
            .lines
            .iter()
            .filter_map(|(&(profile, line), n)| {
                let profile = profiles.list.get(usize::from(profile))?;
                Some(LineMisses {
                    profile: profile.name.clone(),
                    line: profile.states.get(usize::from(line))?.command.clone(),
                    answers: n.cacheable,
                    misses: n.cacheable - n.hits,
                })
            })
            .collect();
        lines.sort_by_key(|l| std::cmp::Reverse(l.misses));
        PhaseData {
            from_s,
            until_s,
            e2e: p.e2e.clone(),
            backend,
            offered: rec.sent_by_phase[i].load(Ordering::Relaxed),
            completed: p.completed,
            errors: p.errors,
            cacheable: p.cacheable,
            hits: p.hits,
            on_time: p.on_time,
            lines,
        }
    };
    Some(Phases {
        cold: phase(
            0,
            0.0,
            steady_from,
            between(backend(Some(s_before)), at_steady.clone()),
        ),
        steady: phase(
            1,
            steady_from,
            until,
            between(at_steady, backend(s_hold_end)),
        ),
        began,
    })
}

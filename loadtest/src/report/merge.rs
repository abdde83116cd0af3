//! Reports taken on several machines against one server, made one: counts add
//! up, histograms merge, and every metric is recomputed from the merged data.

use super::{decode_map, Raw, Report, RunData};
use crate::hist::{self, Hist};
use anyhow::Context;
use std::collections::BTreeMap;

impl Report {
    /// Merges reports of the same scenario taken on several machines: counts add
    /// up, histograms merge, and every metric is recomputed from the merged data.
    /// Server figures (RSS, CPU) are taken as the maximum, assuming the machines
    /// drove one server; users and capacity add up.
    pub fn merge(reports: &[Report]) -> anyhow::Result<Report> {
        let first = reports.first().context("nothing to merge")?;
        let mut e2e = hist::new_hist();
        let mut backend = hist::new_hist();
        let mut groups: [BTreeMap<String, Hist>; 3] = Default::default();
        let mut raw = Raw {
            time_scale: first.raw.time_scale,
            capacity: first.raw.capacity,
            server_alive: true,
            ..Raw::default()
        };
        let mut served: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors_by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut have_backend = false;
        let mut timing = super::TimingData::default();
        for r in reports {
            let t = r.timing.data()?;
            timing.send_lag.add(t.send_lag)?;
            timing.from_send.add(t.from_send)?;
            if let Some(f) = t.floor {
                timing.floor.get_or_insert_with(hist::new_hist).add(f)?;
            }
            if let Some(f) = t.paced_floor {
                timing
                    .paced_floor
                    .get_or_insert_with(hist::new_hist)
                    .add(f)?;
                // Machines of one run share the users' pace; the slowest
                // one stands for them if they did not.
                timing.pace_us = timing.pace_us.max(t.pace_us);
            }
            if let Some(p) = t.probe {
                timing.probe.get_or_insert_with(hist::new_hist).add(p)?;
                timing.probe_spacing_us = timing.probe_spacing_us.max(t.probe_spacing_us);
            }
            e2e.add(hist::decode(&r.histograms.e2e)?)?;
            if !r.histograms.backend.is_empty() {
                backend.add(hist::decode(&r.histograms.backend)?)?;
                have_backend = true;
            }
            for (g, src) in groups.iter_mut().zip([
                &r.histograms.per_profile,
                &r.histograms.per_class,
                &r.histograms.per_served_from,
            ]) {
                for (k, h) in decode_map(src)? {
                    g.entry(k).or_insert_with(hist::new_hist).add(h)?;
                }
            }
            let x = &r.raw;
            raw.users += x.users;
            raw.offered += x.offered;
            raw.completed += x.completed;
            raw.errors += x.errors;
            raw.send_failures += x.send_failures;
            raw.lost += x.lost;
            raw.nonzero_exits += x.nonzero_exits;
            raw.cacheable += x.cacheable;
            raw.cache_hits += x.cache_hits;
            raw.on_time += x.on_time;
            raw.users_connected += x.users_connected;
            raw.users_held += x.users_held;
            raw.users_failed += x.users_failed;
            raw.hold_s = raw.hold_s.max(x.hold_s);
            raw.client_bytes_hold += x.client_bytes_hold;
            raw.client_bytes_total += x.client_bytes_total;
            raw.server_rss_before = min_opt(raw.server_rss_before, x.server_rss_before);
            raw.server_rss_peak = raw.server_rss_peak.max(x.server_rss_peak);
            // One server: its slope as the largest any machine saw.
            raw.memory_per_session_bytes =
                max_f(raw.memory_per_session_bytes, x.memory_per_session_bytes);
            raw.memory_fixed_bytes = max_f(raw.memory_fixed_bytes, x.memory_fixed_bytes);
            raw.server_cpu_hold_s = max_f(raw.server_cpu_hold_s, x.server_cpu_hold_s);
            // One server driven from several machines: its counters are the largest.
            for (k, v) in &x.server_counters {
                let e = raw.server_counters.entry(k.clone()).or_default();
                *e = (*e).max(*v);
            }
            raw.capacity_cps = match (raw.capacity_cps, x.capacity_cps) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            raw.server_alive &= x.server_alive;
            raw.wall_s = raw.wall_s.max(x.wall_s);
            raw.client_rss_before += x.client_rss_before;
            raw.client_rss_peak += x.client_rss_peak;
            raw.client_cpu_s += x.client_cpu_s;
            raw.cores += x.cores;
            raw.time_scale = x.time_scale;
            for (k, v) in &r.served_from {
                *served.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.errors_by_code {
                *errors_by_code.entry(k.clone()).or_default() += v;
            }
        }
        let [per_profile, per_class, per_served] = groups;
        let backend = have_backend.then_some(backend);
        let mut scenario = first.scenario.clone();
        scenario.users = raw.users as usize;
        let d = RunData {
            started_unix_ms: reports.iter().map(|r| r.started_unix_ms).min().unwrap_or(0),
            raw,
            e2e,
            backend,
            per_profile: per_profile.into_iter().collect(),
            per_class,
            per_served,
            served,
            errors_by_code,
            timeline: Vec::new(),
            samples: Vec::new(),
            capacity: Vec::new(),
            chaos: None,
            engines: Vec::new(),
            failover: None,
            timing,
            phases: None,
            aborted: reports.iter().find_map(|r| r.aborted.clone()),
        };
        let mut merged = Report::build(&scenario, &first.url, &first.targets, d);
        merged.notes.push(format!(
            "merged from {} reports; server RSS and CPU are the maxima (one server assumed), users, requests and capacity are sums; graded over the whole runs (phases are not merged)",
            reports.len()
        ));
        Ok(merged)
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

//! The text rendering, printed at the end of every run: the run in figures,
//! section by section, then the scorecard, notes and regressions.

use super::{Report, MAX_SOAK_GROWTH_PCT};
use crate::chaos::ChaosSummary;
use crate::scenario::Shape;
use std::fmt::Write as _;
use voxterm::scorecard::{render_text, Scorecard};

impl Report {
    /// The text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_run(&mut out);
        self.write_server_figures(&mut out);
        self.write_breakdowns(&mut out);
        if let Some(c) = &self.chaos {
            write_chaos(c, &mut out);
        }
        out.push_str(&super::engines::text(&self.engines));
        if let Some(f) = &self.failover {
            write_failover(f, &mut out);
        }
        self.write_memory(&mut out);
        let _ = writeln!(
            out,
            "load tester: peak RSS {:.1} MiB · {:.1} KiB per user · CPU {:.1}% of a core ({:.1}% of the machine)",
            self.client.rss_peak_bytes as f64 / 1048576.0,
            self.client.rss_per_user_bytes / 1024.0,
            self.client.cpu_pct_of_core,
            self.client.cpu_share_pct
        );
        let _ = writeln!(out);
        let card = Scorecard {
            metrics: self.metrics.clone(),
            categories: self.categories.clone(),
            score: self.score,
            grade: self.grade,
            critical_failures: self.critical_failures.clone(),
            recommendations: self.recommendations.clone(),
        };
        out.push_str(&render_text(&card));
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if !self.regressions.is_empty() {
            let _ = writeln!(out, "\nregressions against the baseline:");
            for r in &self.regressions {
                let _ = writeln!(
                    out,
                    "  REGRESSION {}: {:.3} → {:.3} ({:.1}% worse)",
                    r.metric, r.baseline, r.current, r.worse_pct
                );
            }
        }
        out
    }

    /// The scenario as run, the requests and their end-to-end latency.
    fn write_run(&self, out: &mut String) {
        let s = &self.scenario;
        let _ = writeln!(
            out,
            "voxterm loadtest: scenario {} · {} users · ramp-up {:.0}s · hold {:.0}s · time scale {}× · {}",
            s.name,
            s.users,
            s.ramp_up.as_secs_f64(),
            s.duration.as_secs_f64(),
            s.time_scale,
            self.url
        );
        let r = &self.raw;
        let _ = writeln!(
            out,
            "requests {} · answered {} · errors {} · lost {} · non-zero exits {} · users ready {} (failed {}) · held {}",
            self.requests, r.completed, self.errors, self.lost_responses, r.nonzero_exits,
            r.users_connected, r.users_failed, r.users_held
        );
        if r.reconnects > 0 {
            let _ = writeln!(
                out,
                "connections dropped mid-run and made again: {} · requests re-attached on them: {} · sent again (the server never received them): {} (see errors by code for RequestLost and Dropped)",
                r.reconnects, r.reattached, r.resent
            );
        }
        if let Some(e) = self.latency.get("e2e") {
            let _ = writeln!(
                out,
                "end-to-end ms: p50 {:.2} · p95 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2}",
                e.p50_ms, e.p95_ms, e.p99_ms, e.p999_ms, e.max_ms
            );
        }
        if let Some(b) = self.latency.get("backend") {
            let _ = writeln!(
                out,
                "backend ms:    p50 {:.2} · p95 {:.2} · p99 {:.2} · max {:.2}",
                b.p50_ms, b.p95_ms, b.p99_ms, b.max_ms
            );
        }
        if let Some(p) = &self.phases {
            for (name, f, graded) in [
                ("cold start  ", &p.cold_start, !p.graded_steady),
                ("steady state", &p.steady_state, p.graded_steady),
            ] {
                let opt = |v: Option<f64>, unit: &str| {
                    v.map_or("n/a".to_owned(), |v| format!("{v:.1}{unit}"))
                };
                let _ = writeln!(
                    out,
                    "{name} {:>5.0}–{:<5.0}s: {} answers · e2e p50 {:.2} · p95 {:.2} · p99 {:.2} ms · backend p95 {} · hit rate {} · errors {}{}",
                    f.from_s,
                    f.until_s,
                    f.requests,
                    f.e2e.p50_ms,
                    f.e2e.p95_ms,
                    f.e2e.p99_ms,
                    opt(f.backend_p95_ms, " ms"),
                    opt(f.hit_rate_pct, "%"),
                    f.error_rate_pct.map_or("n/a".to_owned(), |v| format!("{v:.2}%")),
                    if graded { "  ← graded" } else { "" }
                );
                if !f.misses_by_line.is_empty() {
                    let lines: Vec<String> = f
                        .misses_by_line
                        .iter()
                        .map(|l| {
                            format!("{} ({}) {} of {}", l.line, l.profile, l.misses, l.answers)
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "  its cacheable misses, by line: {}",
                        lines.join(" · ")
                    );
                }
            }
        }
        let t = &self.timing;
        if t.send_lag.count > 0 {
            let _ = writeln!(
                out,
                "from the actual send ms: p50 {:.2} · p95 {:.2} · p99 {:.2} · send lag (due → its write starts) ms: p50 {:.3} · p99 {:.3} · max {:.2}{}",
                t.from_send.p50_ms,
                t.from_send.p95_ms,
                t.from_send.p99_ms,
                t.send_lag.p50_ms,
                t.send_lag.p99_ms,
                t.send_lag.max_ms,
                if t.tester_bottleneck { " · THE LOAD TESTER WAS THE BOTTLENECK" } else { "" }
            );
        }
        if let Some(f) = &t.floor {
            let l1 = self
                .latency
                .get("served:L1")
                .zip(t.l1_p50_over_floor)
                .map(|(l1, r)| {
                    format!(
                        "; L1-served end to end under load: p50 {:.0} µs (×{r:.2} the floor)",
                        l1.p50_ms * 1000.0
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "floor, back to back (one connection, one cached request at a time, before the load): p50 {:.0} µs · p99 {:.0} µs{l1}",
                f.p50_ms * 1000.0,
                f.p99_ms * 1000.0
            );
            if let (Some(pf), Some(pace)) = (&t.paced_floor, t.pace_us) {
                let _ = writeln!(
                    out,
                    "floor at the users' pace (the same, one request every {:.1} ms, as the users' requests reach the server, at most 20; an idle server answers later): p50 {:.0} µs · p99 {:.0} µs",
                    pace as f64 / 1000.0,
                    pf.p50_ms * 1000.0,
                    pf.p99_ms * 1000.0
                );
            }
            if let (Some(p), Some(r)) = (&t.l1_pure, t.l1_pure_p50_over_floor) {
                let from_send = t
                    .l1_pure_from_send
                    .as_ref()
                    .map(|s| format!(", from the actual send p50 {:.0} µs", s.p50_ms * 1000.0))
                    .unwrap_or_default();
                let ratios = match t.l1_pure_p50_over_paced_floor {
                    Some(paced) => {
                        format!("×{paced:.2} the floor at the users' pace, ×{r:.2} back to back")
                    }
                    None => format!("×{r:.2} the floor"),
                };
                let _ = writeln!(
                    out,
                    "like for like, L1-served pure lines (the floor's kind; fs-read lines are validated first and can be large): {} answers, p50 {:.0} µs from the due time ({ratios}){from_send}",
                    p.count,
                    p.p50_ms * 1000.0
                );
            }
            if let (Some(pr), Some(spacing)) = (&t.probe, t.probe_spacing_us) {
                let verdict = match (&t.l1_pure, t.l1_pure_p50_over_probe) {
                    (Some(p), Some(r)) => {
                        let gap_us = (p.p50_ms - pr.p50_ms) * 1000.0;
                        let within = r <= 1.10 || gap_us <= 20.0;
                        let spans = match (&t.l1_pure_backend, &t.probe_backend) {
                            (Some(theirs), Some(its)) => format!(
                                "; the server's own span of each (Exit.backend_us) p50: theirs {:.0} µs, its {:.0} µs",
                                theirs.p50_ms * 1000.0,
                                its.p50_ms * 1000.0
                            ),
                            _ => String::new(),
                        };
                        let interval = t
                            .l1_pure_p50_interval_us
                            .map(|[lo, hi]| {
                                let gap = |us: u64| us as f64 - pr.p50_ms * 1000.0;
                                format!(", {:+.0}..{:+.0} µs at 95 % confidence", gap(lo), gap(hi))
                            })
                            .unwrap_or_default();
                        format!(
                            "; L1-served pure lines ×{r:.2} its p50 ({:+.0} µs{interval}, from their due time; {}){spans}",
                            gap_us,
                            if within { "within 10 % or 20 µs" } else { "more than 10 % and 20 µs" }
                        )
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "plain client beside the load (one connection on a thread of its own, one cached request every {:.0} ms while the users ran): {} answers, p50 {:.0} µs · p99 {:.0} µs{verdict}",
                    spacing as f64 / 1000.0,
                    pr.count,
                    pr.p50_ms * 1000.0,
                    pr.p99_ms * 1000.0
                );
            }
        }
        let served: Vec<String> = self
            .served_from
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "served from: {}", served.join(" · "));
    }

    /// What the server counted: prediction, prefetch, write syscalls.
    fn write_server_figures(&self, out: &mut String) {
        let c = |k: &str| self.raw.server_counters.get(k).copied().unwrap_or(0);
        if c("predict_checked") > 0 || c("prefetch_started") > 0 {
            let pct = |a, b| self.raw.server_ratio(a, b).map_or(0.0, |r| r * 100.0);
            let _ = writeln!(
                out,
                "prediction: top-1 {:.1}% · top-3 {:.1}% of {} · prefetch: started {} · stored {} · used {} · wasted {} · worker time {:.1} s",
                pct("predict_top1", "predict_checked"),
                pct("predict_top3", "predict_checked"),
                c("predict_checked"),
                c("prefetch_started"),
                c("prefetch_stored"),
                c("prefetch_hits"),
                c("prefetch_wasted"),
                c("prefetch_worker_us") as f64 / 1e6,
            );
        }
        if let Some(w) = self.raw.server_ratio("syscalls_write", "requests") {
            let _ = writeln!(out, "server write syscalls per request: {w:.2}");
        }
    }

    /// Errors by code, latency by profile and class, the capacity steps.
    fn write_breakdowns(&self, out: &mut String) {
        if !self.errors_by_code.is_empty() {
            let e: Vec<String> = self
                .errors_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "errors by code: {}", e.join(" · "));
        }
        for (k, v) in &self.latency {
            if k.starts_with("profile:") || k.starts_with("class:") {
                let _ = writeln!(
                    out,
                    "  {k:<18} n={:<8} p50 {:>8.2} ms  p95 {:>8.2} ms",
                    v.count, v.p50_ms, v.p95_ms
                );
            }
        }
        for st in &self.capacity_steps {
            let _ = writeln!(
                out,
                "  capacity step {:>7.0}/s: answered {:>7} · spawned {:>5.1} % · p95 {:>8.2} ms · errors {} · {}",
                st.offered_per_s,
                st.answered,
                st.spawned as f64 * 100.0 / st.answered.max(1) as f64,
                st.p95_ms,
                st.errors,
                if st.within_target {
                    "within target"
                } else {
                    "MISSED"
                }
            );
        }
    }

    /// The server's memory trend, and its growth over the hold.
    fn write_memory(&self, out: &mut String) {
        if let Some(g) = self.server_rss_growth_bytes_per_min {
            let _ = writeln!(
                out,
                "server RSS growth (second half): {:.1} KiB/min",
                g / 1024.0
            );
        }
        if let Some(m) = &self.server_rss_over_hold {
            let judged = match self.scenario.shape {
                Shape::Soak => format!("judged, limit +{MAX_SOAK_GROWTH_PCT}%"),
                _ => "not judged in this scenario".to_owned(),
            };
            let _ = writeln!(
                out,
                "server RSS over the hold, from a third in to its end: {} ({:+.1}%, {judged})",
                m.describe(),
                m.growth_pct
            );
        }
    }
}

/// The failover scenario: which engine died, and how its users fared.
fn write_failover(f: &crate::failover::FailoverSummary, out: &mut String) {
    let _ = writeln!(out, "failover: users through {}", f.balancer);
    match f.killed_at_s {
        Some(at) => {
            let _ = writeln!(
                out,
                "failover: {} killed (SIGKILL) at {at:.1} s{}",
                f.killed,
                f.in_flight_at_kill
                    .map(|n| format!(", {n} requests in flight on it at its last answer before"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "failover: {} was not killed", f.killed);
        }
    }
    let _ = writeln!(
        out,
        "failover: {} connections reconnected · {} requests re-attached · {} ended RequestLost (ran on the dead engine) · {} other errors · {} without any answer",
        f.reconnects, f.reattached, f.request_lost, f.other_errors, f.lost
    );
    let _ = writeln!(
        out,
        "failover: sessions opened again on another engine: {} as they were (cwd and env from the session store) · {} new or moved",
        f.sessions_intact, f.sessions_changed
    );
}

/// What the chaos agent did, and the server's memory around the storm.
fn write_chaos(c: &ChaosSummary, out: &mut String) {
    let _ = writeln!(
        out,
        "chaos: {} abrupt disconnects · {} malformed ({} answered) · {} slow readers · {} storms ({} conns, {} failed)",
        c.abrupt_disconnects, c.malformed_sent, c.malformed_answered, c.slow_readers,
        c.reconnect_storms, c.storm_connections, c.storm_failures
    );
    if c.redis_restarts > 0 {
        let _ = writeln!(
            out,
            "chaos: Redis killed and restarted {} time(s), down {} ms; server reconnected to it: {}",
            c.redis_restarts,
            c.redis_down_ms.unwrap_or(0),
            match c.redis_reconnected {
                Some(true) => "yes",
                Some(false) => "NO (nothing stored in it afterwards)",
                None => "not checked",
            }
        );
    }
    let mib = |v: u64| v as f64 / 1048576.0;
    if let (Some((from, until)), Some(b), Some(p), Some(a)) = (
        c.storm_window_s,
        c.rss_pre_storm_bytes,
        c.rss_peak_bytes,
        c.rss_post_storm_bytes,
    ) {
        let _ = writeln!(
            out,
            "chaos: faults from {from:.0} s to {until:.0} s; server RSS with the users connected: before the storm {:.1} MiB · peak {:.1} MiB · end of the hold {:.1} MiB ({}, {} of the growth given back)",
            mib(b),
            mib(p),
            mib(a),
            c.rss_post_vs_pre_pct
                .map_or("n/a".to_owned(), |x| format!("{x:+.1}% vs before")),
            c.rss_recovered_pct
                .map_or("n/a".to_owned(), |x| format!("{x:.0}%")),
        );
    }
    if let Some(r) = &c.retained {
        let heap = match (r.heap_allocated_before, r.heap_allocated_after) {
            (Some(a), Some(b)) => format!(" · live heap {:.1} → {:.1} MiB", mib(a), mib(b)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "chaos: kept by design, before → after the storm: sessions {} → {} · cache tiers {:.1} → {:.1} MiB{heap}",
            r.sessions_before,
            r.sessions_after,
            mib(r.cache_bytes_before),
            mib(r.cache_bytes_after),
        );
    }
    if let (Some(b), Some(a)) = (c.rss_idle_before_bytes, c.rss_idle_after_bytes) {
        let _ = writeln!(
            out,
            "chaos: server RSS idle, before the users came {:.1} MiB · after they all left {:.1} MiB (not judged: their sessions and cache entries stay by design)",
            mib(b),
            mib(a),
        );
    }
    for sk in &c.skipped {
        let _ = writeln!(out, "chaos skipped: {sk}");
    }
}

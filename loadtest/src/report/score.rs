//! The scorecard's inputs: metric values measured from a run's raw data, and
//! the critical failures that force an F whatever the score.

use super::{HoldMemory, Raw};
use crate::chaos::ChaosSummary;
use crate::hist::Hist;
use voxterm::scorecard::{ids, Measurements};

/// Metric values from raw counts and histograms. Absent = not measured.
pub fn measure(raw: &Raw, e2e: &Hist, backend: Option<&Hist>) -> Measurements {
    let mut m = Measurements::new();
    if !e2e.is_empty() {
        m.insert(
            ids::E2E_P95_MS.into(),
            e2e.value_at_quantile(0.95) as f64 / 1000.0,
        );
    }
    if let Some(b) = backend.filter(|b| !b.is_empty()) {
        m.insert(
            ids::BACKEND_P95_MS.into(),
            b.value_at_quantile(0.95) as f64 / 1000.0,
        );
    }
    if raw.capacity {
        if let Some(c) = raw.capacity_cps {
            m.insert(ids::COMMANDS_PER_SECOND.into(), c);
        }
        m.insert(ids::CONCURRENT_USERS.into(), raw.users_held as f64);
    } else if raw.offered > 0 {
        m.insert(
            ids::SERVED_ON_TIME_PCT.into(),
            raw.on_time as f64 / raw.offered as f64 * 100.0,
        );
    }
    let users = raw.users_held.max(1) as f64;
    // The slope of RSS over sessions, not (peak − before) / users, which
    // charges the server's fixed growth to however few users a run has.
    if let Some(bytes) = raw.memory_per_session_bytes {
        m.insert(ids::MEMORY_PER_SESSION_KB.into(), bytes / 1024.0);
    }
    if raw.hold_s > 0.0 && raw.users_held > 0 {
        let real_pace_users = users * raw.time_scale.max(1e-9);
        if let Some(cpu) = raw.server_cpu_hold_s {
            m.insert(
                ids::CPU_PER_1000_USERS_PCT.into(),
                cpu / raw.hold_s * 100.0 * 1000.0 / real_pace_users,
            );
        }
        m.insert(
            ids::NETWORK_PER_100_SESSIONS_MBPS.into(),
            raw.client_bytes_hold as f64 * 8.0 / raw.hold_s / 1e6 * 100.0 / real_pace_users,
        );
    }
    if raw.cacheable > 0 {
        m.insert(
            ids::CACHE_HIT_RATE_PCT.into(),
            raw.cache_hits as f64 / raw.cacheable as f64 * 100.0,
        );
    }
    if raw.offered > 0 {
        m.insert(
            ids::ERROR_RATE_PCT.into(),
            (raw.errors + raw.send_failures + raw.lost) as f64 / raw.offered as f64 * 100.0,
        );
    }
    m
}

pub(super) fn critical(
    raw: &Raw,
    chaos: Option<&ChaosSummary>,
    soak: Option<&HoldMemory>,
) -> Vec<String> {
    let mut c = Vec::new();
    if let Some(why) = chaos.and_then(ChaosSummary::memory_failure) {
        c.push(why);
    }
    if let Some(why) = soak.and_then(HoldMemory::soak_failure) {
        c.push(why);
    }
    if raw.lost > 0 {
        c.push(format!(
            "{} lost responses (every accepted request must end with exactly one terminal frame)",
            raw.lost
        ));
    }
    if !raw.server_alive {
        c.push("the server stopped answering (crash or hang)".to_owned());
    }
    c
}

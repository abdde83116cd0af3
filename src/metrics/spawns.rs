//! Processes started, counted exactly where they start (after a successful
//! spawn), by why they were started and the line's cache class: what the
//! cost of a workload in children is, and what prefetching costs in spawns.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use voxterm_protocol::Counter as StatCounter;

/// Why a process was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A client's `Exec` (a cache miss, or a line that is never cached).
    Request,
    /// The prefetcher ran a predicted line ahead of time.
    Prefetch,
    /// A cached line in use ran again before its entry expired.
    Renewal,
    /// A client's `Spawn` (live input, perhaps a terminal).
    Interactive,
}

impl Cause {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Request => "request",
            Cause::Prefetch => "prefetch",
            Cause::Renewal => "renewal",
            Cause::Interactive => "interactive",
        }
    }

    const ALL: [Cause; 4] = [
        Cause::Request,
        Cause::Prefetch,
        Cause::Renewal,
        Cause::Interactive,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnLabel {
    cause: &'static str,
    class: &'static str,
}

/// `voxterm_processes_started_total{cause, class}`.
#[derive(Default)]
pub struct SpawnMetrics {
    started: Family<SpawnLabel, Counter>,
    by_cause: [Counter; Cause::ALL.len()],
}

impl SpawnMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "processes_started",
            "Processes started, by cause (request, prefetch, renewal, interactive) and the line's cache class (none without a cache)",
            self.started.clone(),
        );
    }

    /// A process was started for `cause`, for a line of cache class `class`.
    pub fn started(&self, cause: Cause, class: &'static str) {
        self.started
            .get_or_create(&SpawnLabel {
                cause: cause.as_str(),
                class,
            })
            .inc();
        self.by_cause[cause as usize].inc();
    }

    /// Processes started for `cause` so far.
    pub fn count(&self, cause: Cause) -> u64 {
        self.by_cause[cause as usize].get()
    }

    /// The figures as named counters for the `Stats` frame.
    pub(super) fn counters(&self) -> Vec<StatCounter> {
        Cause::ALL
            .iter()
            .map(|&c| StatCounter {
                name: format!("processes_started_{}", c.as_str()),
                value: self.count(c),
            })
            .collect()
    }
}

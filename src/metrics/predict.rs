//! Prediction and prefetch figures: top-1/top-3 accuracy, prefetches run,
//! stored, used and wasted, why prefetches were skipped, and the worker time they
//! took (an upper bound of their CPU).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use voxterm_protocol::Counter as StatCounter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a predicted line was not prefetched (the `reason` label).
pub const SKIP_REASONS: [&str; 8] = [
    "busy",
    "budget",
    "cpu_share",
    "cached",
    "in_flight",
    "not_cacheable",
    "unstampable",
    "cwd_outside_root",
];

/// The predictor's counters.
pub struct PredictMetrics {
    checked: Counter,
    top1: Counter,
    top3: Counter,
    started: Counter,
    stored: Counter,
    first_hits: Counter,
    served: Counter,
    skipped: Family<ReasonLabel, Counter>,
    /// `skipped`'s counters, one per [`SKIP_REASONS`] in its order, resolved
    /// once: a skip is counted after most cache hits ("cached"), and the
    /// family's lookup hashed the label with SipHash every time.
    skipped_by_reason: [Counter; SKIP_REASONS.len()],
    worker_us: Counter,
}

impl PredictMetrics {
    pub(super) fn new() -> Self {
        let skipped = Family::<ReasonLabel, Counter>::default();
        PredictMetrics {
            checked: Counter::default(),
            top1: Counter::default(),
            top3: Counter::default(),
            started: Counter::default(),
            stored: Counter::default(),
            first_hits: Counter::default(),
            served: Counter::default(),
            skipped: skipped.clone(),
            skipped_by_reason: SKIP_REASONS
                .map(|reason| skipped.get_or_create(&ReasonLabel { reason }).clone()),
            worker_us: Counter::default(),
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "predict_checked",
            "Commands that arrived with a prediction made for them",
            self.checked.clone(),
        );
        r.register(
            "predict_top1_correct",
            "Commands that were the top prediction",
            self.top1.clone(),
        );
        r.register(
            "predict_top3_correct",
            "Commands among the top three predictions",
            self.top3.clone(),
        );
        r.register(
            "prefetch_started",
            "Prefetches started",
            self.started.clone(),
        );
        r.register(
            "prefetch_stored",
            "Prefetches whose clean result was stored",
            self.stored.clone(),
        );
        r.register(
            "prefetch_hits",
            "Prefetched entries used by a request at least once",
            self.first_hits.clone(),
        );
        r.register(
            "prefetch_served",
            "Requests answered from a prefetched entry",
            self.served.clone(),
        );
        r.register(
            "prefetch_skipped",
            "Predicted lines not prefetched, by reason",
            self.skipped.clone(),
        );
        r.register(
            "prefetch_worker_microseconds",
            "Time prefetches held a worker slot (an upper bound of their CPU)",
            self.worker_us.clone(),
        );
    }

    /// A command arrived for which a prediction had been made; `rank` is its
    /// place in that prediction (0 = top), if it was there.
    pub fn checked(&self, rank: Option<usize>) {
        self.checked.inc();
        match rank {
            Some(0) => {
                self.top1.inc();
                self.top3.inc();
            }
            Some(1 | 2) => {
                self.top3.inc();
            }
            _ => {}
        }
    }

    /// A prefetch started.
    pub fn started(&self) {
        self.started.inc();
    }

    /// A prefetch ended after holding a worker for `us`; `stored` if cached.
    pub fn finished(&self, stored: bool, us: u64) {
        if stored {
            self.stored.inc();
        }
        self.worker_us.inc_by(us);
    }

    /// A request was answered from a prefetched entry (`first`: its first use).
    pub fn served(&self, first: bool) {
        self.served.inc();
        if first {
            self.first_hits.inc();
        }
    }

    /// A predicted line was not prefetched; `reason` is one of [`SKIP_REASONS`].
    pub fn skipped(&self, reason: &'static str) {
        match SKIP_REASONS.iter().position(|r| *r == reason) {
            Some(i) => {
                self.skipped_by_reason[i].inc();
            }
            None => {
                self.skipped.get_or_create(&ReasonLabel { reason }).inc();
            }
        }
    }

    /// Top-1 accuracy so far (0 when nothing was checked).
    pub fn top1_rate(&self) -> f64 {
        ratio(self.top1.get(), self.checked.get())
    }

    /// Top-3 accuracy so far.
    pub fn top3_rate(&self) -> f64 {
        ratio(self.top3.get(), self.checked.get())
    }

    pub(super) fn counters(&self) -> Vec<StatCounter> {
        let c = |name: &str, value: u64| StatCounter {
            name: name.to_owned(),
            value,
        };
        let stored = self.stored.get();
        let hits = self.first_hits.get();
        let mut v = vec![
            c("predict_checked", self.checked.get()),
            c("predict_top1", self.top1.get()),
            c("predict_top3", self.top3.get()),
            c(
                "predict_top1_permille",
                (self.top1_rate() * 1000.0).round() as u64,
            ),
            c(
                "predict_top3_permille",
                (self.top3_rate() * 1000.0).round() as u64,
            ),
            c("prefetch_started", self.started.get()),
            c("prefetch_stored", stored),
            c("prefetch_hits", hits),
            c("prefetch_served", self.served.get()),
            // Stored but not (yet) used: the cost of wrong guesses.
            c("prefetch_wasted", stored.saturating_sub(hits)),
            c("prefetch_worker_us", self.worker_us.get()),
        ];
        for reason in SKIP_REASONS {
            v.push(c(
                &format!("prefetch_skipped_{reason}"),
                self.skipped.get_or_create(&ReasonLabel { reason }).get(),
            ));
        }
        v
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

//! `--abort-on-fail[=WINDOW]`: a gate that watches a sliding window, not only
//! the whole run (k6's thresholds judge the whole run at its end: k6#2379).
//!
//! Every second the hold loop hands over that second's answers; once a
//! window's worth has been seen, the window's error rate is checked against
//! the error-rate target from the start, and its end-to-end p95 against the
//! latency target over windows wholly in the steady state (the cold start is
//! graded apart, so it does not abort a run either). The first miss stops the users; the
//! run drains and reports what it has, marked as aborted.

use crate::hist::{self, Hist};
use std::collections::VecDeque;
use std::time::Duration;

/// The sliding window and the targets it is held to.
pub(super) struct WindowGate {
    window: usize,
    p95_target_ms: f64,
    error_rate_target_pct: f64,
    /// Each second's answers, their count, errors, and whether it was steady.
    seconds: VecDeque<(Hist, u64, u64, bool)>,
}

impl WindowGate {
    /// A gate over `window`, or none.
    pub(super) fn new(
        window: Option<Duration>,
        p95_target_ms: f64,
        error_rate_target_pct: f64,
    ) -> Option<WindowGate> {
        let window = window?.as_secs().max(1) as usize;
        Some(WindowGate {
            window,
            p95_target_ms,
            error_rate_target_pct,
            seconds: VecDeque::with_capacity(window + 1),
        })
    }

    /// One second: its answers (`interval`), how many, and how many errors.
    /// `Some(why)` when the window misses a target.
    pub(super) fn second(
        &mut self,
        interval: &Hist,
        answers: u64,
        errors: u64,
        steady: bool,
    ) -> Option<String> {
        self.seconds
            .push_back((interval.clone(), answers, errors, steady));
        if self.seconds.len() > self.window {
            self.seconds.pop_front();
        }
        if self.seconds.len() < self.window {
            return None;
        }
        let answers: u64 = self.seconds.iter().map(|s| s.1).sum();
        let errors: u64 = self.seconds.iter().map(|s| s.2).sum();
        if answers == 0 {
            return None;
        }
        let rate = errors as f64 / answers as f64 * 100.0;
        if rate > self.error_rate_target_pct {
            return Some(format!(
                "error rate {rate:.2}% over the last {} s (target < {}%)",
                self.window, self.error_rate_target_pct
            ));
        }
        // Latency only over a window wholly in the steady state.
        if !self.seconds.iter().all(|s| s.3) {
            return None;
        }
        let mut merged = hist::new_hist();
        for (h, _, _, _) in &self.seconds {
            let _ = merged.add(h);
        }
        let p95 = merged.value_at_quantile(0.95) as f64 / 1000.0;
        (p95 > self.p95_target_ms).then(|| {
            format!(
                "end-to-end p95 {p95:.1} ms over the last {} s of the steady state (target < {} ms)",
                self.window, self.p95_target_ms
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(us: u64, n: u64) -> Hist {
        let mut h = hist::new_hist();
        for _ in 0..n {
            hist::record(&mut h, us);
        }
        h
    }

    #[test]
    fn the_window_fills_before_it_judges_then_aborts_on_the_first_miss() {
        let mut g = WindowGate::new(Some(Duration::from_secs(3)), 65.0, 0.1).expect("a gate");
        let fast = second(5_000, 100);
        let slow = second(200_000, 100);
        // Slow but still cold: never an abort for latency.
        for _ in 0..5 {
            assert_eq!(g.second(&slow, 100, 0, false), None);
        }
        // Steady and fast: fine.
        for _ in 0..3 {
            assert_eq!(g.second(&fast, 100, 0, true), None);
        }
        // One slow second in three: a third of the window's answers, p95 misses.
        let why = g.second(&slow, 100, 0, true).expect("p95 misses");
        assert!(why.contains("p95"), "{why}");
        // Errors abort even while cold.
        let mut g = WindowGate::new(Some(Duration::from_secs(2)), 65.0, 0.1).expect("a gate");
        assert_eq!(g.second(&fast, 1000, 0, false), None);
        let why = g.second(&fast, 1000, 5, false).expect("errors miss");
        assert!(why.contains("error rate 0.25%"), "{why}");
        assert!(WindowGate::new(None, 65.0, 0.1).is_none());
    }
}

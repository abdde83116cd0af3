//! The capacity search of the capacity scenarios: after the hold, one step per
//! `capacity_step` at each of the scenario's rates in turn (open-model arrivals
//! over the users), judged on p95, errors and answers; it stops at the first miss.

use super::users::{Fleet, User};
use crate::profile::Profiles;
use crate::record::Recorder;
use crate::report::CapacityStep;
use crate::scenario::Scenario;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The steps judged so far, and the one running.
#[derive(Default)]
pub(super) struct CapacitySearch {
    /// Finished steps, in order.
    pub(super) steps: Vec<CapacityStep>,
    task: Option<JoinHandle<()>>,
}

impl CapacitySearch {
    /// One tick after the hold (`elapsed` since its end): judges the finished
    /// step and starts the next one. False once the search is over (a step
    /// missed, or every rate passed).
    pub(super) fn tick(
        &mut self,
        sc: &Scenario,
        elapsed: Duration,
        p95_target_ms: f64,
        rec: &Arc<Recorder>,
        fleet: &Fleet,
    ) -> bool {
        let steps = &mut self.steps;
        let step_i = (elapsed.as_secs_f64() / sc.capacity_step.as_secs_f64()) as usize;
        if step_i > steps.len() || (steps.is_empty() && self.task.is_none()) {
            // Judge the finished step.
            if let Some(h) = self.task.take() {
                h.abort();
                let i = steps.len();
                let tally = rec.tables.lock().steps.get(i).cloned().unwrap_or_default();
                let (p95, count, errs, spawned) = (
                    tally.e2e.value_at_quantile(0.95) as f64 / 1000.0,
                    tally.e2e.len(),
                    tally.errors,
                    tally.spawned,
                );
                let rate = sc.capacity_rates[i];
                let expected = rate * sc.capacity_step.as_secs_f64();
                // Answers still missing at the end of the step are late by definition.
                let answered_share = count as f64 / expected.max(1.0);
                let pass = p95 <= p95_target_ms && errs == 0 && answered_share >= 0.95;
                steps.push(CapacityStep {
                    offered_per_s: rate,
                    answered: count,
                    p95_ms: p95,
                    errors: errs,
                    spawned,
                    within_target: pass,
                });
                if !pass || steps.len() >= sc.capacity_rates.len() {
                    return false;
                }
            }
            let i = steps.len();
            let rate = sc.capacity_rates[i];
            let users = fleet.users.lock().clone();
            let profiles = fleet.profiles.clone();
            let rec = rec.clone();
            let step_len = sc.capacity_step;
            self.task = Some(tokio::spawn(async move {
                generate(users, profiles, rec, rate, step_len, i as u16).await;
            }));
        }
        true
    }

    /// Stops the running step's generator, if any.
    pub(super) fn stop(&mut self) {
        if let Some(h) = self.task.take() {
            h.abort();
        }
    }
}

/// Open-model arrivals at `rate`/s for `len`, round-robin over the users: command
/// `n` is due at exactly `start + n / rate`, whenever it actually gets sent.
async fn generate(
    users: Vec<Arc<User>>,
    profiles: Arc<Profiles>,
    rec: Arc<Recorder>,
    rate: f64,
    len: Duration,
    step: u16,
) {
    if users.is_empty() || rate <= 0.0 {
        return;
    }
    let start = Instant::now();
    let total = (rate * len.as_secs_f64()) as u64;
    let mut n = 0u64;
    let mut next_user = 0usize;
    while n < total {
        let now = Instant::now();
        let due_now = ((now - start).as_secs_f64() * rate) as u64 + 1;
        while n < due_now.min(total) {
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            let u = &users[next_user % users.len()];
            next_user += 1;
            u.send(&profiles, due, step, &rec);
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

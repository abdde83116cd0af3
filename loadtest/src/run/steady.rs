//! When the steady state begins.
//!
//! A third into the hold every user has arrived, but on a loaded machine the
//! cold start's backlog may still be draining: every user's first commands
//! miss and wait for a worker (10,000 users on 2 cores queue tens of
//! thousands of first commands at ~1,000 spawns a second). Judging from the
//! fixed mark then grades the cold start's tail: stop 35's four 90 s
//! 10,000-user runs graded A three times and D once, when the steady state
//! began while the queue still drained (steady p95 1.35 s against 7–18 ms).
//!
//! So, where no event of the scenario is scheduled at the third (a plain
//! steady load or a soak), the steady state begins at the first sample from a
//! third in at which the server's worker queue has drained: no more jobs
//! waiting than running, a wait under one command's run. That is a fact about
//! the server's state, not the latency being graded, so it cannot pick a
//! flattering window. It begins two thirds in at the latest; the report then
//! says the backlog had not drained, and the steady figures carry its tail.

use super::Clock;
use crate::report::SteadyBegan;
use crate::scenario::{Scenario, Shape};
use tokio::time::Instant;

/// The rule a run's steady state begins by.
#[derive(Debug, Clone, Copy)]
pub(super) struct SteadyMark {
    /// A third into the hold: never earlier.
    third: Instant,
    /// Two thirds into the hold: never later.
    latest: Instant,
    /// False where the scenario schedules its event at the third (a burst's
    /// spike, chaos's storm, failover's kill): the steady state must begin
    /// with it.
    waits_for_drain: bool,
}

impl SteadyMark {
    /// The mark for `sc` on `clock`.
    pub(super) fn new(sc: &Scenario, clock: &Clock) -> SteadyMark {
        SteadyMark {
            third: clock.hold_start + sc.duration / 3,
            latest: clock.hold_start + sc.duration * 2 / 3,
            waits_for_drain: matches!(sc.shape, Shape::Steady | Shape::Soak),
        }
    }

    /// Whether the steady state begins at `now`, with `queued` jobs waiting
    /// for a worker and `busy` running on the server; and by which rule.
    pub(super) fn begins(&self, now: Instant, queued: u64, busy: u64) -> Option<SteadyBegan> {
        if now < self.third {
            return None;
        }
        if !self.waits_for_drain {
            return Some(SteadyBegan::AtThird);
        }
        let after_s = now.duration_since(self.third).as_secs_f64();
        if queued <= busy {
            return Some(SteadyBegan::Drained { after_s });
        }
        (now >= self.latest).then_some(SteadyBegan::Undrained { queued })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mark(shape: Shape) -> (SteadyMark, Instant) {
        let mut sc = Scenario::named("quick").expect("named");
        sc.shape = shape;
        sc.duration = Duration::from_secs(90);
        let clock = Clock::start(&sc);
        (SteadyMark::new(&sc, &clock), clock.hold_start)
    }

    #[test]
    fn a_steady_load_waits_past_the_third_for_the_queue_to_drain() {
        let (m, hold) = mark(Shape::Steady);
        let s = Duration::from_secs;
        // Before the third: never, however idle.
        assert_eq!(m.begins(hold + s(29), 0, 0), None);
        // At the third with a backlog: not yet.
        assert_eq!(m.begins(hold + s(30), 4000, 8), None);
        assert_eq!(m.begins(hold + s(45), 9, 8), None);
        // Drained: fewer waiting than running.
        assert_eq!(
            m.begins(hold + s(47), 3, 8),
            Some(SteadyBegan::Drained { after_s: 17.0 })
        );
        // Idle at the third: begins there.
        assert_eq!(
            m.begins(hold + s(30), 0, 0),
            Some(SteadyBegan::Drained { after_s: 0.0 })
        );
        // Never drained: two thirds in, saying so.
        assert_eq!(
            m.begins(hold + s(60), 1200, 8),
            Some(SteadyBegan::Undrained { queued: 1200 })
        );
    }

    #[test]
    fn scenarios_with_an_event_at_the_third_begin_there_whatever_the_queue() {
        for shape in [Shape::Burst, Shape::Chaos, Shape::Failover] {
            let (m, hold) = mark(shape);
            assert_eq!(m.begins(hold + Duration::from_secs(29), 0, 0), None);
            assert_eq!(
                m.begins(hold + Duration::from_secs(30), 4000, 8),
                Some(SteadyBegan::AtThird),
                "{shape:?}"
            );
        }
    }
}

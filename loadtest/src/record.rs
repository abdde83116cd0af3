//! Where every answered request lands: HDR histograms (overall, per profile, per
//! command class, per served_from, and the current one-second interval for the
//! timeline) and counters. One mutex, held for a few `record` calls per request.

use crate::hist::{self, Hist};
use crate::profile::CommandClass;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use voxterm_protocol::ServedFrom;

/// What a finished request was.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Due time → terminal frame, µs.
    pub latency_us: u64,
    /// (due → actual send, actual send → terminal frame), µs; None when the
    /// answer came before the writer stamped the send (it cannot, for a
    /// request the server only sees once sent, but a stamp may be missed
    /// under a race with a dropped connection).
    pub sent: Option<(u64, u64)>,
    /// Profile index.
    pub profile: u8,
    /// The profile's state (its line) it ran.
    pub line: u8,
    /// Command class.
    pub class: CommandClass,
    /// How it ended.
    pub end: End,
    /// The server's own span (`Exit.backend_us`), µs; None for an `Error`
    /// or a drop.
    pub backend_us: Option<u64>,
    /// Whether it belongs to a capacity step (and which).
    pub step: Option<u16>,
    /// The part of the run it was sent in.
    pub phase: RunPhase,
}

/// The part of the run a measured request was sent in. A request belongs to
/// the phase it was sent in, however late its answer: a cold-start command
/// answered from the backlog after the steady state began is the cold
/// start's, and the profile load that goes on during the capacity search
/// (which overloads the server on purpose) is neither phase's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Ramp-up and the hold until the steady state begins.
    Cold,
    /// The rest of the hold.
    Steady,
    /// After the hold: the capacity search.
    After,
}

impl RunPhase {
    /// Its index in [`Tables::phases`]; None after the hold.
    pub fn index(self) -> Option<usize> {
        match self {
            RunPhase::Cold => Some(0),
            RunPhase::Steady => Some(1),
            RunPhase::After => None,
        }
    }
}

/// The terminal frame of a request.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// `Exit` with this code (None: killed by a signal) and origin.
    Exit(Option<i32>, ServedFrom),
    /// `Error` with this code.
    Error(voxterm_protocol::ErrorCode),
    /// Its connection dropped while it ran, with re-attach off (`--no-reattach`):
    /// the server killed it with the connection, and nobody can take it over.
    Dropped,
}

/// The answers to what was sent in one phase of the run ([`RunPhase`]): the
/// cold start (ramp-up and the hold until the steady state begins: every
/// first command of a user misses) or the steady state (the rest of the hold,
/// caches at their working level).
#[derive(Debug, Clone)]
pub struct Phase {
    /// End to end, from the due time.
    pub e2e: Hist,
    /// Answers.
    pub completed: u64,
    /// … with `Error`.
    pub errors: u64,
    /// Cacheable requests that took the cache path.
    pub cacheable: u64,
    /// … served from a cache tier or prefetch.
    pub hits: u64,
    /// Answered within the on-time deadline.
    pub on_time: u64,
    /// Cacheable answers and hits by (profile, line): where the misses are.
    pub lines: BTreeMap<(u8, u8), LineCount>,
}

/// One line's cacheable answers in a phase, and how many were hits.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineCount {
    /// Cacheable answers that took the cache path.
    pub cacheable: u64,
    /// … served from a cache tier or prefetch.
    pub hits: u64,
}

impl Default for Phase {
    fn default() -> Self {
        Phase {
            e2e: hist::new_hist(),
            completed: 0,
            errors: 0,
            cacheable: 0,
            hits: 0,
            on_time: 0,
            lines: BTreeMap::new(),
        }
    }
}

/// What one capacity step's own requests got.
#[derive(Debug, Clone)]
pub struct StepTally {
    /// Latency from the due time.
    pub e2e: Hist,
    /// Error answers.
    pub errors: u64,
    /// Answers that started a process (`served_from: exec`): what bounds a
    /// step on a machine of few cores.
    pub spawned: u64,
}

impl Default for StepTally {
    fn default() -> Self {
        StepTally {
            e2e: hist::new_hist(),
            errors: 0,
            spawned: 0,
        }
    }
}

/// Everything recorded, behind one lock.
pub struct Tables {
    /// [cold start, steady state] of the profile load.
    pub phases: [Phase; 2],
    /// All measured requests.
    pub e2e: Hist,
    /// Due time → actual send (the load tester's own lateness), profile load.
    pub send_lag: Hist,
    /// Actual send → terminal frame, profile load.
    pub from_send: Hist,
    /// L1-served `pure` lines (the floor's kind of line), due time →
    /// terminal frame: what compares with the floor like for like.
    pub l1_pure: Hist,
    /// … from the actual send.
    pub l1_pure_from_send: Hist,
    /// … the server's own span of each.
    pub l1_pure_backend: Hist,
    /// By profile index.
    pub per_profile: Vec<Hist>,
    /// By class.
    pub per_class: BTreeMap<CommandClass, Hist>,
    /// By served_from name.
    pub per_served: BTreeMap<&'static str, Hist>,
    /// The current timeline interval.
    pub interval: Hist,
    /// Per capacity step.
    pub steps: Vec<StepTally>,
    /// Errors by code name.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Requests by served_from name.
    pub served: BTreeMap<&'static str, u64>,
}

/// The shared recorder of a run.
pub struct Recorder {
    /// Histograms and maps.
    pub tables: Mutex<Tables>,
    /// The phase requests sent now belong to ([`RunPhase`] as a byte), set
    /// by the hold loop.
    phase: std::sync::atomic::AtomicU8,
    /// Measured requests sent in [cold start, steady state].
    pub sent_by_phase: [AtomicU64; 2],
    /// Measured requests sent.
    pub sent: AtomicU64,
    /// Measured requests answered.
    pub completed: AtomicU64,
    /// Answered with `Error`.
    pub errors: AtomicU64,
    /// Could not be sent (connection gone).
    pub send_failures: AtomicU64,
    /// `Exit` with a non-zero code (a normal answer, counted for information).
    pub nonzero_exits: AtomicU64,
    /// Cacheable-class requests that reached the cache path (not builtins).
    pub cacheable: AtomicU64,
    /// … of which served from L1/L2/L3/prefetch.
    pub cache_hits: AtomicU64,
    /// Answered within the on-time deadline.
    pub on_time: AtomicU64,
    /// On-time deadline, µs.
    pub on_time_us: u64,
    /// WebSocket payload bytes sent by users.
    pub bytes_out: AtomicU64,
    /// WebSocket payload bytes received by users.
    pub bytes_in: AtomicU64,
    /// Users connected now.
    pub users_connected: AtomicU64,
    /// Users whose connection failed.
    pub users_failed: AtomicU64,
    /// Connections that dropped mid-run and were made again.
    pub reconnects: AtomicU64,
    /// Requests taken over on a new connection (`Notice { Reattached }`).
    pub reattached: AtomicU64,
    /// Requests written as a connection dropped that never reached the
    /// server (`NotReceived`), and were written again on the next.
    pub resent: AtomicU64,
    /// Sessions opened again after a drop that came back as they were
    /// (resumed, in the fixture).
    pub sessions_intact: AtomicU64,
    /// … that came back new, or somewhere else.
    pub sessions_changed: AtomicU64,
}

impl Recorder {
    /// An empty recorder for `profiles` profiles.
    pub fn new(profiles: usize, on_time_us: u64) -> Recorder {
        Recorder {
            phase: std::sync::atomic::AtomicU8::new(RunPhase::Cold as u8),
            sent_by_phase: [AtomicU64::new(0), AtomicU64::new(0)],
            tables: Mutex::new(Tables {
                phases: [Phase::default(), Phase::default()],
                e2e: hist::new_hist(),
                send_lag: hist::new_hist(),
                from_send: hist::new_hist(),
                l1_pure: hist::new_hist(),
                l1_pure_from_send: hist::new_hist(),
                l1_pure_backend: hist::new_hist(),
                per_profile: (0..profiles).map(|_| hist::new_hist()).collect(),
                per_class: BTreeMap::new(),
                per_served: BTreeMap::new(),
                interval: hist::new_hist(),
                steps: Vec::new(),
                errors_by_code: BTreeMap::new(),
                served: BTreeMap::new(),
            }),
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            nonzero_exits: AtomicU64::new(0),
            cacheable: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            on_time: AtomicU64::new(0),
            on_time_us,
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            users_connected: AtomicU64::new(0),
            users_failed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reattached: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            sessions_intact: AtomicU64::new(0),
            sessions_changed: AtomicU64::new(0),
        }
    }

    /// The phase requests sent now belong to.
    pub fn phase(&self) -> RunPhase {
        match self.phase.load(Ordering::Relaxed) {
            0 => RunPhase::Cold,
            1 => RunPhase::Steady,
            _ => RunPhase::After,
        }
    }

    /// Requests sent from now on belong to `p`.
    pub fn enter(&self, p: RunPhase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    /// Records one answered request.
    pub fn record(&self, d: Done) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        let on_time = d.latency_us <= self.on_time_us;
        if on_time {
            self.on_time.fetch_add(1, Ordering::Relaxed);
        }
        let mut hit = None;
        let served = match d.end {
            End::Exit(code, sf) => {
                if code != Some(0) {
                    self.nonzero_exits.fetch_add(1, Ordering::Relaxed);
                }
                if d.class.cacheable() && sf != ServedFrom::Builtin {
                    self.cacheable.fetch_add(1, Ordering::Relaxed);
                    let is_hit = matches!(
                        sf,
                        ServedFrom::L1 | ServedFrom::L2 | ServedFrom::L3 | ServedFrom::Prefetch
                    );
                    if is_hit {
                        self.cache_hits.fetch_add(1, Ordering::Relaxed);
                    }
                    hit = Some(is_hit);
                }
                sf.as_str()
            }
            End::Error(_) | End::Dropped => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        let mut t = self.tables.lock();
        hist::record(&mut t.interval, d.latency_us);
        *t.served.entry(served).or_default() += 1;
        match d.end {
            End::Error(code) => *t.errors_by_code.entry(format!("{code:?}")).or_default() += 1,
            End::Dropped => *t.errors_by_code.entry("Dropped".into()).or_default() += 1,
            End::Exit(..) => {}
        }
        if let Some(step) = d.step {
            // Capacity-search requests are judged per step, not in the latency
            // figures of the profile load: they push on purpose until p95 breaks.
            let i = step as usize;
            if t.steps.len() <= i {
                t.steps.resize_with(i + 1, StepTally::default);
            }
            let s = &mut t.steps[i];
            hist::record(&mut s.e2e, d.latency_us);
            s.errors += u64::from(matches!(d.end, End::Error(_) | End::Dropped));
            s.spawned += u64::from(matches!(d.end, End::Exit(_, ServedFrom::Exec)));
            return;
        }
        // The profile load beside the capacity search is counted (answers,
        // errors by code, the timeline, above) but kept out of the latency
        // figures, as the steps are: it is the search's overload.
        let Some(i) = d.phase.index() else {
            return;
        };
        hist::record(&mut t.e2e, d.latency_us);
        let phase = &mut t.phases[i];
        hist::record(&mut phase.e2e, d.latency_us);
        phase.completed += 1;
        phase.errors += u64::from(matches!(d.end, End::Error(_) | End::Dropped));
        phase.on_time += u64::from(on_time);
        if let Some(is_hit) = hit {
            phase.cacheable += 1;
            phase.hits += u64::from(is_hit);
            let line = phase.lines.entry((d.profile, d.line)).or_default();
            line.cacheable += 1;
            line.hits += u64::from(is_hit);
        }
        let l1_pure =
            d.class == CommandClass::Pure && matches!(d.end, End::Exit(_, ServedFrom::L1));
        if l1_pure {
            hist::record(&mut t.l1_pure, d.latency_us);
            if let Some(us) = d.backend_us {
                hist::record(&mut t.l1_pure_backend, us);
            }
        }
        if let Some((lag, from_send)) = d.sent {
            // A lag of 0 µs is recorded as 1 (the histogram's floor).
            hist::record(&mut t.send_lag, lag);
            hist::record(&mut t.from_send, from_send);
            if l1_pure {
                hist::record(&mut t.l1_pure_from_send, from_send);
            }
        }
        if let Some(h) = t.per_profile.get_mut(d.profile as usize) {
            hist::record(h, d.latency_us);
        }
        hist::record(
            t.per_class.entry(d.class).or_insert_with(hist::new_hist),
            d.latency_us,
        );
        hist::record(
            t.per_served.entry(served).or_insert_with(hist::new_hist),
            d.latency_us,
        );
    }

    /// Takes the current interval histogram, leaving an empty one.
    pub fn take_interval(&self) -> Hist {
        let mut t = self.tables.lock();
        let mut fresh = hist::new_hist();
        std::mem::swap(&mut fresh, &mut t.interval);
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(phase: RunPhase, end: End) -> Done {
        Done {
            latency_us: 500,
            sent: None,
            profile: 0,
            line: 0,
            class: CommandClass::Pure,
            end,
            backend_us: None,
            step: None,
            phase,
        }
    }

    #[test]
    fn an_answer_counts_in_the_phase_its_request_was_sent_in() {
        let rec = Recorder::new(1, 1_000);
        assert_eq!(rec.phase(), RunPhase::Cold);
        rec.enter(RunPhase::Steady);
        assert_eq!(rec.phase(), RunPhase::Steady);
        // Sent in the cold start, answered now: the cold start's.
        rec.record(done(RunPhase::Cold, End::Exit(Some(0), ServedFrom::Exec)));
        rec.record(done(RunPhase::Steady, End::Exit(Some(0), ServedFrom::L1)));
        rec.enter(RunPhase::After);
        // Sent beside the capacity search: neither phase's and out of the
        // latency figures (the search's overload), but counted in the run.
        rec.record(done(
            RunPhase::After,
            End::Error(voxterm_protocol::ErrorCode::QuotaExceeded),
        ));
        let t = rec.tables.lock();
        let counts = |p: &Phase| (p.completed, p.errors, p.cacheable, p.hits);
        assert_eq!(counts(&t.phases[0]), (1, 0, 1, 0));
        assert_eq!(counts(&t.phases[1]), (1, 0, 1, 1));
        assert_eq!(t.e2e.len(), 2);
        assert_eq!(
            t.per_class.get(&CommandClass::Pure).map(|h| h.len()),
            Some(2)
        );
        assert_eq!(t.errors_by_code.get("QuotaExceeded"), Some(&1));
        assert_eq!(rec.errors.load(Ordering::Relaxed), 1);
        assert_eq!(rec.completed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_capacity_step_counts_the_answers_that_started_a_process() {
        let rec = Recorder::new(1, 1_000);
        let step = |end| Done {
            step: Some(1),
            ..done(RunPhase::After, end)
        };
        rec.record(step(End::Exit(Some(0), ServedFrom::Exec)));
        rec.record(step(End::Exit(Some(0), ServedFrom::L1)));
        rec.record(step(End::Exit(Some(0), ServedFrom::Exec)));
        let t = rec.tables.lock();
        let spawned: Vec<u64> = t.steps.iter().map(|s| s.spawned).collect();
        assert_eq!(spawned, vec![0, 2]);
        assert_eq!(t.steps[1].e2e.len(), 3);
        assert_eq!(
            t.e2e.len(),
            0,
            "a step's answers stay out of the profile load's"
        );
    }
}

//! The next-command model of one tenant (and of the global prior): transition
//! counts from a context, the last one or two commands, to the command that
//! followed it.
//!
//! Counts decay by halving: when a context's total passes [`DECAY_AT`] every count
//! in it is halved (and zeros dropped), so a habit that changed is forgotten after a
//! few dozen new observations, the way adaptive compressors (PPM) age their
//! statistics. Memory is bounded: at most [`MAX_CONTEXTS`] contexts per model and
//! [`MAX_SUCCESSORS`] successors per context; the weakest one goes to make room.

use std::collections::HashMap;
use std::sync::Arc;

/// A command's identity: 128 bits of BLAKE3 of its line, so that two different
/// lines never share predictions (a 64-bit std hash could be steered into a
/// collision by a client).
pub type CmdId = u128;

/// The context of a session's first command.
pub const START: CmdId = 1;
/// "No command": the first half of an order-1 context.
pub const NONE: CmdId = 0;

/// Contexts kept per model.
pub const MAX_CONTEXTS: usize = 32;
/// Successors kept per context.
pub const MAX_SUCCESSORS: usize = 4;
/// Context total past which its counts are halved.
pub const DECAY_AT: u32 = 48;
/// Longest command line the model learns (longer ones are rarely repeated).
pub const MAX_LINE: usize = 256;

/// The id of a command line.
pub fn id_of(line: &str) -> CmdId {
    let h = blake3::hash(line.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    // 0 and 1 are reserved markers; a real hash landing there is a 2^-127 event,
    // but keep the markers unambiguous anyway.
    u128::from_le_bytes(b).max(2)
}

/// A command that followed a context, with its (decayed) count.
#[derive(Debug, Clone)]
struct Successor {
    id: CmdId,
    line: Arc<str>,
    count: u32,
}

/// What followed one context.
#[derive(Debug, Clone, Default)]
struct Successors {
    list: Vec<Successor>,
    total: u32,
}

impl Successors {
    fn add(&mut self, id: CmdId, line: &Arc<str>) {
        match self.list.iter_mut().find(|s| s.id == id) {
            Some(s) => s.count += 1,
            None => {
                if self.list.len() >= MAX_SUCCESSORS {
                    // Make room by dropping the weakest (the newest among equals).
                    if let Some(i) = weakest(self.list.iter().map(|s| s.count)) {
                        self.total -= self.list[i].count;
                        self.list.swap_remove(i);
                    }
                }
                self.list.push(Successor {
                    id,
                    line: line.clone(),
                    count: 1,
                });
            }
        }
        self.total += 1;
        if self.total > DECAY_AT {
            for s in &mut self.list {
                s.count /= 2;
            }
            self.list.retain(|s| s.count > 0);
            self.total = self.list.iter().map(|s| s.count).sum();
        }
    }
}

/// Index of the smallest count (the last one among equals).
fn weakest(counts: impl Iterator<Item = u32>) -> Option<usize> {
    counts
        .enumerate()
        .min_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// Transition counts of one tenant, or of everybody (the prior).
#[derive(Debug, Clone)]
pub struct Model {
    /// (previous-but-one or NONE, previous or START) → successors.
    contexts: HashMap<(CmdId, CmdId), Successors, crate::sync::NumHash>,
    max_contexts: usize,
    /// Learned from since it was last saved (the predictor's store keeps the
    /// set of such tenants; this flag spares every request a lookup in it).
    unsaved: bool,
}

impl Default for Model {
    fn default() -> Self {
        Model::with_capacity(MAX_CONTEXTS)
    }
}

/// One predicted next command.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Its id.
    pub id: CmdId,
    /// The line.
    pub line: Arc<str>,
    /// Blended probability.
    pub p: f64,
    /// The tenant itself ran this line after this context (not only the global
    /// prior): only such lines may be prefetched, so one tenant's lines never run
    /// in another's session, and `served_from = prefetch` reveals nothing about
    /// what others typed.
    pub own: bool,
}

/// A distribution over next commands, best first.
pub type Distribution = Vec<Prediction>;

impl Model {
    /// A model that keeps at most `max_contexts` contexts (the global prior is
    /// larger than a tenant's).
    pub fn with_capacity(max_contexts: usize) -> Model {
        Model {
            contexts: HashMap::default(),
            max_contexts: max_contexts.max(1),
            unsaved: false,
        }
    }

    /// Marks the model learned from since its last save; true when it was
    /// not already (its tenant must join the set of those to save).
    pub(super) fn mark_unsaved(&mut self) -> bool {
        !std::mem::replace(&mut self.unsaved, true)
    }

    /// Marks the model saved (its snapshot was just taken).
    pub(super) fn mark_saved(&mut self) {
        self.unsaved = false;
    }

    /// Learns that `next` followed `prev1` (and `prev2` before it). Order-1 and
    /// order-2 contexts both learn; `order2` is false for the global prior, which
    /// keeps only order 1 (long contexts are personal).
    pub fn learn(
        &mut self,
        prev2: CmdId,
        prev1: CmdId,
        next: CmdId,
        line: &Arc<str>,
        order2: bool,
    ) {
        self.bump((NONE, prev1), next, line);
        if order2 && prev2 != NONE {
            self.bump((prev2, prev1), next, line);
        }
    }

    fn bump(&mut self, ctx: (CmdId, CmdId), next: CmdId, line: &Arc<str>) {
        // A context seen before (nearly every request's) costs one lookup.
        if let Some(successors) = self.contexts.get_mut(&ctx) {
            successors.add(next, line);
            return;
        }
        if self.contexts.len() >= self.max_contexts {
            let victim = self
                .contexts
                .iter()
                .min_by_key(|(_, s)| s.total)
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                self.contexts.remove(&k);
            }
        }
        self.contexts.entry(ctx).or_default().add(next, line);
    }

    /// The order-1 and order-2 distributions after (prev2, prev1), with the number
    /// of observations behind each.
    fn dist(&self, ctx: (CmdId, CmdId)) -> Option<(&Successors, f64)> {
        let s = self.contexts.get(&ctx)?;
        (s.total > 0).then_some((s, f64::from(s.total)))
    }

    /// Contexts held (for tests and bounds checks).
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// A serializable copy.
    pub fn snapshot(&self) -> Vec<ContextSnapshot> {
        self.contexts
            .iter()
            .map(|(&(p2, p1), s)| ContextSnapshot {
                prev2: p2.to_le_bytes(),
                prev1: p1.to_le_bytes(),
                next: s.list.iter().map(|x| (x.line.clone(), x.count)).collect(),
            })
            .collect()
    }

    /// Rebuilds a model from a snapshot (merging into what is already here).
    pub fn restore(&mut self, snap: &[ContextSnapshot]) {
        for c in snap.iter().take(self.max_contexts) {
            let ctx = (u128::from_le_bytes(c.prev2), u128::from_le_bytes(c.prev1));
            for (line, count) in c.next.iter().take(MAX_SUCCESSORS) {
                if line.len() > MAX_LINE {
                    continue;
                }
                let id = id_of(line);
                for _ in 0..(*count).min(DECAY_AT) {
                    self.bump(ctx, id, line);
                }
            }
        }
    }
}

/// One context as persisted: ids as bytes (bincode-friendly), successors by line.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ContextSnapshot {
    /// The previous-but-one command's id (0: none).
    pub prev2: [u8; 16],
    /// The previous command's id (1: the session start).
    pub prev1: [u8; 16],
    /// Successor lines and their counts. Shared with the model, not copied:
    /// a snapshot of every tenant is taken every `save_interval`, and copying
    /// each line made that an 18 MiB burst of small allocations (heaptrack, 500
    /// tenants) that left the heap fragmented. Encoded exactly as a `String`.
    pub next: Vec<(Arc<str>, u32)>,
}

/// Interpolation strength: a context with `n` observations gets weight n/(n+K)
/// over the shorter context behind it (Witten–Bell-like backoff).
const K: f64 = 2.0;

/// Blends the tenant's order-2 and order-1 contexts over the global order-1 prior:
/// `p = λ2·P2 + (1−λ2)·(λ1·P1 + (1−λ1)·Pg)`, each λ = n/(n+K) from its own count.
/// Returns the `k` most likely next commands, best first.
pub fn blend(
    tenant: Option<&Model>,
    global: &Model,
    prev2: CmdId,
    prev1: CmdId,
    k: usize,
) -> Distribution {
    let levels = [
        tenant.and_then(|m| (prev2 != NONE).then(|| m.dist((prev2, prev1))).flatten()),
        tenant.and_then(|m| m.dist((NONE, prev1))),
        global.dist((NONE, prev1)),
    ];
    // Weight of each level after the backoff chain. At most every level's
    // successors are scored: on the stack, their lines borrowed; only the
    // `k` returned are cloned (an `Arc` clone is an atomic write to a line
    // every core's requests share: the global prior's `echo hello`).
    const MAX: usize = LEVELS * MAX_SUCCESSORS;
    let mut found: [Option<Scored<'_>>; MAX] = [None; MAX];
    let mut n = 0;
    let mut remaining = 1.0;
    for (i, level) in levels.iter().enumerate() {
        let Some((s, total)) = level else { continue };
        let own = i < 2;
        let last = levels[i + 1..].iter().all(Option::is_none);
        let lambda = if last { 1.0 } else { total / (total + K) };
        let w = remaining * lambda;
        for x in &s.list {
            let p = w * f64::from(x.count) / total;
            match found[..n].iter_mut().flatten().find(|o| o.id == x.id) {
                Some(o) => {
                    o.p += p;
                    o.own |= own;
                }
                None if n < MAX => {
                    found[n] = Some(Scored {
                        id: x.id,
                        line: &x.line,
                        p,
                        own,
                    });
                    n += 1;
                }
                None => {}
            }
        }
        remaining -= w;
        if remaining <= 0.0 {
            break;
        }
    }
    let found = &mut found[..n];
    found.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => b.p.total_cmp(&a.p).then_with(|| a.line.cmp(b.line)),
        _ => std::cmp::Ordering::Equal,
    });
    found
        .iter()
        .flatten()
        .take(k)
        .map(|s| Prediction {
            id: s.id,
            line: s.line.clone(),
            p: s.p,
            own: s.own,
        })
        .collect()
}

/// Levels [`blend`] mixes: the tenant's order 2 and order 1, the global prior.
const LEVELS: usize = 3;

/// A successor scored by [`blend`], its line still the model's.
#[derive(Clone, Copy)]
struct Scored<'a> {
    id: CmdId,
    line: &'a Arc<str>,
    p: f64,
    own: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Arc<str> {
        s.into()
    }

    fn train(m: &mut Model, seq: &[&str], order2: bool) {
        let (mut p2, mut p1) = (NONE, START);
        for s in seq {
            let id = id_of(s);
            m.learn(p2, p1, id, &line(s), order2);
            (p2, p1) = (p1, id);
        }
    }

    #[test]
    fn the_most_frequent_successor_comes_first() {
        let mut m = Model::default();
        let seq: Vec<&str> = [
            "git status",
            "git diff",
            "git status",
            "git diff",
            "git status",
            "git log",
        ]
        .repeat(5);
        train(&mut m, &seq, true);
        let d = blend(Some(&m), &Model::default(), NONE, id_of("git status"), 3);
        assert_eq!(&*d[0].line, "git diff");
        assert_eq!(&*d[1].line, "git log");
        let total: f64 = d.iter().map(|x| x.p).sum();
        assert!((total - 1.0).abs() < 1e-9, "{d:?}");
        assert!((d[0].p - 2.0 / 3.0).abs() < 0.05, "{d:?}");
    }

    #[test]
    fn order_two_tells_apart_what_order_one_cannot() {
        // After `ls`, what follows depends on what came before `ls`.
        let mut m = Model::default();
        let seq: Vec<&str> = [
            "cd src",
            "ls",
            "cat main.rs",
            "cd docs",
            "ls",
            "cat guide.md",
        ]
        .repeat(6);
        train(&mut m, &seq, true);
        let ls = id_of("ls");
        let after_src = blend(Some(&m), &Model::default(), id_of("cd src"), ls, 1);
        let after_docs = blend(Some(&m), &Model::default(), id_of("cd docs"), ls, 1);
        assert_eq!(&*after_src[0].line, "cat main.rs");
        assert_eq!(&*after_docs[0].line, "cat guide.md");
    }

    #[test]
    fn the_prior_answers_for_a_new_tenant_and_yields_to_its_own_habits() {
        let mut global = Model::default();
        train(&mut global, &["git status", "git diff"].repeat(10), false);
        let status = id_of("git status");
        let d = blend(None, &global, NONE, status, 1);
        assert_eq!(&*d[0].line, "git diff");
        assert!(!d[0].own, "the prior's lines are not the tenant's own");

        let mut mine = Model::default();
        train(&mut mine, &["git status", "git log"].repeat(10), true);
        let d = blend(Some(&mine), &global, NONE, status, 1);
        assert_eq!(&*d[0].line, "git log");
        assert!(d[0].own);
    }

    #[test]
    fn memory_is_bounded_and_old_habits_decay() {
        let mut m = Model::default();
        let lines: Vec<String> = (0..500).map(|i| format!("cat f{i}")).collect();
        let seq: Vec<&str> = lines.iter().map(String::as_str).collect();
        train(&mut m, &seq, true);
        assert!(m.contexts() <= MAX_CONTEXTS);
        assert!(m.contexts.values().all(|s| s.list.len() <= MAX_SUCCESSORS));

        // 40 × (a → b), then 100 × (a → c): c takes over.
        let mut m = Model::default();
        train(&mut m, &["a", "b"].repeat(40), true);
        train(&mut m, &["a", "c"].repeat(100), true);
        let d = blend(Some(&m), &Model::default(), NONE, id_of("a"), 2);
        assert_eq!(&*d[0].line, "c");
        assert!(d.get(1).is_none_or(|x| x.p < 0.1), "{d:?}");
    }

    #[test]
    fn snapshots_restore_the_same_predictions() {
        let mut m = Model::default();
        train(
            &mut m,
            &["ls", "cat README.md", "ls", "pwd", "ls", "cat README.md"].repeat(3),
            true,
        );
        let mut back = Model::default();
        back.restore(&m.snapshot());
        for ctx in [START, id_of("ls"), id_of("pwd")] {
            let a = blend(Some(&m), &Model::default(), NONE, ctx, 3);
            let b = blend(Some(&back), &Model::default(), NONE, ctx, 3);
            let names = |d: &Distribution| d.iter().map(|x| x.line.to_string()).collect::<Vec<_>>();
            assert_eq!(names(&a), names(&b));
        }
    }
}

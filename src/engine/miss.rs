//! The one run of a cacheable miss, shared by every request that joined its
//! flight: L3 first, then a worker; a clean result is stored in every tier.

use super::workers::{Why, Workers};
use super::Finish;
use crate::cache::flight::Publisher;
use crate::cache::{Cache, Entry, Key, Verdict};
use crate::exec::{Job, Slot};
use crate::metrics::Cause;
use crate::output::{OutputSink, SinkClosed};
use crate::Cancel;
use std::sync::Arc;
use voxterm_protocol::{KillReason, Priority, ServedFrom, StreamKind};

/// Why a cacheable line runs.
pub(super) enum Origin {
    /// A request's miss; `refresh`: the client asked for a fresh run
    /// (`CacheMode::Refresh`), so L3 is not asked first.
    Request { refresh: bool },
    /// A predicted line run ahead of time (`engine::prefetch`), with the idle
    /// slot it was admitted with. What it stores is marked, so a request
    /// answered from it reports `served_from = prefetch`.
    Prefetch(Slot),
    /// A cached line in use run again before its entry expires
    /// (`engine::renew`), with its idle slot. L3 is not asked first: it may
    /// hold the very entry that is ending.
    Renewal(Slot),
}

/// One run for a cacheable miss, shared by every request that joined its flight.
/// A prefetch or a renewal is one too: it comes with its slot already taken
/// (idle capacity only) and is not stopped when nobody follows it.
pub(super) struct MissRun {
    pub(super) cache: Arc<Cache>,
    pub(super) workers: Workers,
    pub(super) tenant: Arc<str>,
    pub(super) priority: Priority,
    pub(super) job: Job,
    pub(super) key: Key,
    pub(super) verdict: Verdict,
    /// The tenant's generation the key was made under.
    pub(super) generation: u64,
    pub(super) origin: Origin,
}

impl MissRun {
    /// Runs the miss and ends the flight. Returns whether a result was stored.
    pub(super) async fn run(self, mut publisher: Publisher<Finish>) -> bool {
        let (ahead, refresh) = match self.origin {
            Origin::Request { refresh } => (None, refresh),
            Origin::Prefetch(slot) => (Some((slot, Cause::Prefetch)), false),
            Origin::Renewal(slot) => (Some((slot, Cause::Renewal)), true),
        };
        let served_from = if ahead.is_some() {
            ServedFrom::Prefetch
        } else {
            ServedFrom::Exec
        };
        if !refresh {
            let fresh =
                self.cache
                    .freshness(&self.verdict, &self.job.cwd, &self.job.env, self.generation);
            if let Some(entry) = self.cache.get_remote(self.key, &fresh).await {
                for (stream, bytes) in entry.segments() {
                    publisher.push(stream, bytes);
                }
                publisher.finish(Finish::Exit {
                    code: Some(0),
                    signal: None,
                    truncated: false,
                    killed: KillReason::None,
                    served_from: ServedFrom::L3,
                });
                return false;
            }
        }
        // A request's run stops when its last follower leaves; a prefetch or
        // a renewal has none to begin with and runs to its end (or shutdown).
        let cancel = if ahead.is_some() {
            Cancel::new()
        } else {
            publisher.cancelled()
        };
        // Taken before the command reads its inputs: a change made while it runs
        // makes the stamp differ at the next lookup (or the guard at the end).
        let before =
            self.cache
                .validity(&self.verdict, &self.job.cwd, &self.job.env, self.generation);
        let mut tee = Tee {
            publisher: &mut publisher,
            chunks: Vec::new(),
            bytes: 0,
            limit: self.cache.max_entry(),
        };
        let why = |cause| Why {
            cause,
            class: self.verdict.class.as_str(),
            cacheable_miss: true,
        };
        let cause = ahead.as_ref().map(|(_, cause)| *cause);
        let finish = match ahead {
            Some((slot, cause)) => {
                self.workers
                    .exec(slot, &self.job, why(cause), &mut tee, cancel, served_from)
                    .await
            }
            None => {
                self.workers
                    .run(
                        &self.tenant,
                        self.priority,
                        &self.job,
                        None,
                        why(Cause::Request),
                        &mut tee,
                        cancel,
                    )
                    .await
            }
        };
        let Tee {
            chunks,
            bytes,
            limit,
            ..
        } = tee;
        let clean = matches!(
            finish,
            Finish::Exit {
                code: Some(0),
                signal: None,
                truncated: false,
                killed: KillReason::None,
                ..
            }
        );
        let stored = clean && bytes <= limit;
        if stored {
            let validity = self.cache.settled(
                &self.verdict,
                &self.job.cwd,
                &self.job.env,
                self.generation,
                before,
            );
            let mut entry = Entry::from_chunks(
                chunks.iter().map(|(s, d)| (*s, d.as_slice())),
                self.cache.ttl(&self.verdict, validity),
            )
            .valid_while(validity);
            if cause == Some(Cause::Prefetch) {
                entry = entry.prefetched();
            }
            self.cache.store(self.key, entry);
            if refresh && cause.is_none() {
                self.cache.refreshing();
            }
        }
        publisher.finish(finish);
        stored
    }
}

/// Publishes output to the flight's followers and keeps a copy for the cache,
/// until it grows past the largest storable entry.
struct Tee<'a> {
    publisher: &'a mut Publisher<Finish>,
    chunks: Vec<(StreamKind, Vec<u8>)>,
    bytes: usize,
    limit: usize,
}

impl OutputSink for Tee<'_> {
    async fn chunk(&mut self, stream: StreamKind, data: &[u8]) -> Result<(), SinkClosed> {
        self.publisher.push(stream, data);
        self.bytes = self.bytes.saturating_add(data.len());
        if self.bytes <= self.limit {
            self.chunks.push((stream, data.to_vec()));
        } else {
            self.chunks = Vec::new();
        }
        Ok(())
    }
}

//! Single-flight: identical concurrent misses share one run.
//!
//! The first request for a key creates a flight and gets its [`Publisher`]; the
//! run happens on its own task and writes output into the flight's buffer. Every
//! request, the first included, is a [`Follower`] that replays the buffer from
//! the start and then waits for more, so a late joiner gets everything that
//! streamed before it came, and all get the same end. Since no request owns the
//! run, one client's cancel or disconnect only stops its own following; the run
//! is cancelled when its last follower leaves.

use super::key::Key;
use super::l1::KeyHash;
use crate::output::{OutputSink, SinkClosed};
use crate::Cancel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use voxterm_protocol::StreamKind;

struct State<T> {
    chunks: Vec<(StreamKind, Arc<[u8]>)>,
    end: Option<T>,
    followers: usize,
}

struct Flight<T> {
    state: Mutex<State<T>>,
    changed: watch::Receiver<u64>,
    /// Fired when the last follower leaves before the end: stop the run.
    cancel: Cancel,
}

impl<T> Flight<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every mutation is a push or an assignment: a poisoned state is consistent.
        crate::sync::lock(&self.state)
    }
}

type Map<T> = Mutex<HashMap<Key, Arc<Flight<T>>, KeyHash>>;

/// The in-flight runs of one engine, by key. Cheap to clone.
pub struct Flights<T> {
    map: Arc<Map<T>>,
}

impl<T> Clone for Flights<T> {
    fn clone(&self) -> Self {
        Flights {
            map: self.map.clone(),
        }
    }
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            map: Arc::new(Mutex::new(HashMap::with_hasher(KeyHash))),
        }
    }
}

fn lock_map<T>(map: &Map<T>) -> MutexGuard<'_, HashMap<Key, Arc<Flight<T>>, KeyHash>> {
    crate::sync::lock(map)
}

/// Why following stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The follower's own cancel fired.
    Cancelled,
    /// The follower's sink is gone.
    SinkClosed,
    /// The run ended without an end value (its task died).
    Abandoned,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Joins the flight for `key`, creating it if there is none (then the
    /// publisher is returned too, and the caller must start the run).
    pub fn join(&self, key: Key) -> (Follower<T>, Option<Publisher<T>>) {
        let mut map = lock_map(&self.map);
        if let Some(f) = map.get(&key) {
            if !f.cancel.is_cancelled() {
                f.lock().followers += 1;
                let follower = Follower {
                    flight: f.clone(),
                    flights: self.clone(),
                    key,
                    rx: f.changed.clone(),
                    next: 0,
                };
                return (follower, None);
            }
        }
        let (tx, rx) = watch::channel(0u64);
        let flight = Arc::new(Flight {
            state: Mutex::new(State {
                chunks: Vec::new(),
                end: None,
                followers: 1,
            }),
            changed: rx.clone(),
            cancel: Cancel::new(),
        });
        map.insert(key, flight.clone());
        let publisher = Publisher {
            flight: flight.clone(),
            flights: self.clone(),
            key,
            tx,
            finished: false,
        };
        let follower = Follower {
            flight,
            flights: self.clone(),
            key,
            rx,
            next: 0,
        };
        (follower, Some(publisher))
    }

    /// Flights in progress (for tests).
    pub fn len(&self) -> usize {
        lock_map(&self.map).len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn forget(&self, key: Key, flight: &Arc<Flight<T>>) {
        let mut map = lock_map(&self.map);
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(&key);
        }
    }
}

/// The run's side of a flight: output goes in, then the end.
pub struct Publisher<T: Clone + Send + Sync + 'static> {
    flight: Arc<Flight<T>>,
    flights: Flights<T>,
    key: Key,
    tx: watch::Sender<u64>,
    finished: bool,
}

impl<T: Clone + Send + Sync + 'static> Publisher<T> {
    /// Fires when every follower has left: the run may stop.
    pub fn cancelled(&self) -> Cancel {
        self.flight.cancel.clone()
    }

    /// Appends output.
    pub fn push(&self, stream: StreamKind, data: &[u8]) {
        self.flight.lock().chunks.push((stream, data.into()));
        self.tx.send_modify(|v| *v += 1);
    }

    /// Ends the flight. New requests for the key start a new flight from now on
    /// (they should find the stored result in L1/L2 first).
    pub fn finish(mut self, end: T) {
        self.flights.forget(self.key, &self.flight);
        self.flight.lock().end = Some(end);
        self.finished = true;
        self.tx.send_modify(|v| *v += 1);
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Publisher<T> {
    fn drop(&mut self) {
        if !self.finished {
            // The run died: followers see the sender go and stop with `Abandoned`.
            self.flights.forget(self.key, &self.flight);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> OutputSink for Publisher<T> {
    async fn chunk(&mut self, stream: StreamKind, data: &[u8]) -> Result<(), SinkClosed> {
        self.push(stream, data);
        Ok(())
    }
}

/// A request's side of a flight.
pub struct Follower<T: Clone + Send + Sync + 'static> {
    flight: Arc<Flight<T>>,
    flights: Flights<T>,
    key: Key,
    rx: watch::Receiver<u64>,
    next: usize,
}

impl<T: Clone + Send + Sync + 'static> Follower<T> {
    /// Replays everything published so far into `sink`, then what follows, and
    /// returns the end.
    pub async fn follow<S: OutputSink>(
        &mut self,
        sink: &mut S,
        cancel: &Cancel,
    ) -> Result<T, Stopped> {
        loop {
            self.rx.borrow_and_update();
            let (chunks, end) = {
                let st = self.flight.lock();
                (st.chunks[self.next..].to_vec(), st.end.clone())
            };
            self.next += chunks.len();
            for (stream, data) in chunks {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(Stopped::Cancelled),
                    r = sink.chunk(stream, &data) => r.map_err(|SinkClosed| Stopped::SinkClosed)?,
                }
            }
            if let Some(end) = end {
                return Ok(end);
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Stopped::Cancelled),
                r = self.rx.changed() => {
                    if r.is_err() && self.flight.lock().end.is_none() {
                        return Err(Stopped::Abandoned);
                    }
                }
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Follower<T> {
    fn drop(&mut self) {
        // Under the map lock, so a join cannot slip in between the count reaching
        // zero and the cancel.
        let map = lock_map(&self.flights.map);
        let mut st = self.flight.lock();
        st.followers -= 1;
        if st.followers == 0 && st.end.is_none() {
            self.flight.cancel.cancel();
            drop(st);
            drop(map);
            self.flights.forget(self.key, &self.flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<u8>);
    impl OutputSink for Collect {
        async fn chunk(&mut self, _s: StreamKind, data: &[u8]) -> Result<(), SinkClosed> {
            self.0.extend_from_slice(data);
            Ok(())
        }
    }

    #[tokio::test]
    async fn late_joiner_gets_everything() {
        let flights: Flights<i32> = Flights::default();
        let (mut a, publisher) = flights.join(7);
        let publisher = publisher.expect("first is publisher");
        publisher.push(StreamKind::Stdout, b"one ");
        let (mut b, none) = flights.join(7);
        assert!(none.is_none());
        let cancel = Cancel::new();
        let ta = tokio::spawn(async move {
            let mut s = Collect(Vec::new());
            let end = a.follow(&mut s, &Cancel::new()).await;
            (s.0, end)
        });
        publisher.push(StreamKind::Stdout, b"two");
        publisher.finish(0);
        let mut s = Collect(Vec::new());
        assert_eq!(b.follow(&mut s, &cancel).await, Ok(0));
        assert_eq!(s.0, b"one two");
        let (out, end) = ta.await.unwrap();
        assert_eq!((out.as_slice(), end), (&b"one two"[..], Ok(0)));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn last_follower_leaving_cancels_the_run() {
        let flights: Flights<i32> = Flights::default();
        let (a, publisher) = flights.join(1);
        let publisher = publisher.unwrap();
        let (b, _) = flights.join(1);
        drop(a);
        assert!(!publisher.cancelled().is_cancelled());
        drop(b);
        assert!(publisher.cancelled().is_cancelled());
        // A new request starts a new flight instead of joining the cancelled one.
        let (_c, p2) = flights.join(1);
        assert!(p2.is_some());
    }

    #[tokio::test]
    async fn dead_run_is_abandoned() {
        let flights: Flights<i32> = Flights::default();
        let (mut a, publisher) = flights.join(1);
        drop(publisher);
        let mut s = Collect(Vec::new());
        assert_eq!(
            a.follow(&mut s, &Cancel::new()).await,
            Err(Stopped::Abandoned)
        );
    }
}

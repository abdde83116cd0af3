//! A plain client beside the load: one connection on a thread of its own,
//! one cached request at a time, spaced well apart, for as long as the users
//! run (issue 17, part 1).
//!
//! Why: the floors of `setup` are measured before the users come, on an idle
//! server, and this machine's idle round trip moves by ×2 from one minute to
//! the next (`loadtest rtt`); a run's ~100 L1-served pure answers compared
//! with a floor taken a minute earlier gave ratios from ×0.6 to ×1.8 run to
//! run. The probe meets the server in the same seconds as the users, at
//! random moments of their traffic, so the machine's swings reach both; what
//! is left between the users' answers and the probe's is what the load
//! tester adds (its send lag, its shared runtime's readers), with what the
//! users' busier connections cost the server (histories, predictions). It is
//! `loadtest rtt`'s client (a current-thread runtime, `std::thread::sleep`
//! to the send time), so it is timed as the issue's "plain one-connection
//! client" was.
//!
//! Spacing: ten times the users' mean spacing at the server, at least
//! [`MIN_SPACING`], so it adds at most a tenth to the load it measures.
//!
//! It asks for re-attach when the users do (the default, as the page and
//! `voxterm exec` do): the server then keeps each answer until a ping behind
//! it is answered, a cost of the users' answers that is the server's, not
//! the tester's, so the probe pays it too.

use crate::hist::{self, Hist};
use crate::rtt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use voxterm_protocol::ServedFrom;

/// The probe's spacing over the users' mean spacing.
const SPACING_FACTOR: u32 = 10;
/// Closest spacing: the widest of `loadtest rtt`'s steps, where the idle
/// round trip has stopped growing.
const MIN_SPACING: Duration = Duration::from_millis(20);
/// Widest spacing: enough samples in a short hold.
const MAX_SPACING: Duration = Duration::from_millis(100);
/// How long after an answer the probe reads on, for the ack ping behind it
/// (re-attach): well inside the closest spacing.
const SETTLE: Duration = Duration::from_millis(2);

/// The running probe; [`Probe::finish`] stops it and hands its round trips.
pub(super) struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<(Hist, Hist)>>,
    spacing: Duration,
}

/// What the probe measured.
pub(super) struct Probed {
    /// L1-served round trips, µs.
    pub hist: Hist,
    /// The server's own span of each (`Exit.backend_us`), µs.
    pub backend: Hist,
    /// Its spacing, µs.
    pub spacing_us: u64,
}

impl Probe {
    /// Starts the probe against `url` for users spaced `users_pace` apart at
    /// the server, asking for re-attach as they do (`reattach`). It connects
    /// and warms its line up at once, then sends one request per spacing
    /// until [`finish`](Self::finish).
    pub(super) fn start(url: &str, users_pace: Duration, reattach: bool) -> Option<Probe> {
        let spacing = (users_pace * SPACING_FACTOR).clamp(MIN_SPACING, MAX_SPACING);
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (url.to_owned(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("loadtest-probe".into())
            .spawn(move || match measure(&url, spacing, reattach, &flag) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!("the plain client beside the load stopped: {e:#}");
                    None
                }
            })
            .ok()?;
        Some(Probe {
            stop,
            thread,
            spacing,
        })
    }

    /// Stops the probe at `at` (within one spacing and one answer), so that
    /// it measures what the users' figures do: the hold, and not the
    /// capacity search's overload after it.
    pub(super) fn stop_at(&self, at: tokio::time::Instant) {
        let flag = self.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            flag.store(true, Ordering::Relaxed);
        });
    }

    /// Stops the probe (within one spacing and one answer) and returns its
    /// L1-served round trips; None when it failed or none was L1-served.
    pub(super) fn finish(self) -> Option<Probed> {
        self.stop.store(true, Ordering::Relaxed);
        let (hist, backend) = self.thread.join().ok().flatten()?;
        (!hist.is_empty()).then_some(Probed {
            hist,
            backend,
            spacing_us: self.spacing.as_micros() as u64,
        })
    }
}

/// The probe's thread: connect, warm up, then one request per `spacing`
/// until `stop`.
/// Its L1-served round trips and their server spans, µs.
fn measure(
    url: &str,
    spacing: Duration,
    reattach: bool,
    stop: &AtomicBool,
) -> anyhow::Result<(Hist, Hist)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = rtt::connect(url).await?;
        if reattach {
            ask_reattach(&mut c, url).await?;
        }
        rtt::warm_up(&mut c, url).await?;
        let (mut h, mut backend) = (hist::new_hist(), hist::new_hist());
        let start = Instant::now();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            rtt::sleep_until_send(start, spacing, i)?;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let sent = Instant::now();
            let done = rtt::answer(&mut c, url).await?;
            let rtt = sent.elapsed().as_micros() as u64;
            if reattach {
                // Behind a kept answer comes the server's ack ping; reading
                // it now answers it now, as a browser and the users' readers
                // do, not with the next request (which it then slowed).
                c.idle(SETTLE).await?;
            }
            if let Some(e) = done.exit.filter(|e| e.served_from == ServedFrom::L1) {
                hist::record(&mut h, rtt);
                hist::record(&mut backend, e.backend_us);
            }
        }
        let _ = c.close().await;
        Ok((h, backend))
    })
}

/// Asks for re-attach and waits until it is granted.
async fn ask_reattach(c: &mut voxterm::client::Client, url: &str) -> anyhow::Result<()> {
    let grace = tokio::time::timeout(Duration::from_secs(10), c.reattach())
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer Configure within 10 s"))?
        .map_err(|e| anyhow::anyhow!("{url} refused re-attach: {e}"))?;
    anyhow::ensure!(!grace.is_zero(), "{url} did not grant re-attach");
    Ok(())
}

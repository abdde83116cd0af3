//! Before the first user: the load tester's own starting figures, the fixture
//! project the users work in (built on the server's host), and the server's
//! figures that the run's are taken relative to.

use super::monitor::{own_cpu, own_rss, Monitor};
use super::RunOptions;
use crate::hist::{self, Hist};
use crate::profile::{fixture_script, shell_quote};
use crate::scenario::Scenario;
use anyhow::Context;
use std::time::Duration;
use tokio::time::Instant;

/// What was known before the first user.
pub(super) struct Setup {
    /// Start, ms since the epoch.
    pub(super) started_unix_ms: u64,
    /// Start, for the wall time of the run.
    pub(super) wall0: Instant,
    /// The load tester's CPU time then.
    pub(super) cpu0: Duration,
    /// The load tester's RSS then.
    pub(super) own_rss_before: u64,
    /// The fixture project's directory on the server's host.
    pub(super) root: String,
    /// The server's figures then.
    pub(super) s_before: voxterm_protocol::Stats,
    /// The server's backend histogram then (the run's is the difference).
    pub(super) backend_before: Hist,
    /// One connection, one cached request at a time: the floor of the run.
    pub(super) floor: Option<Hist>,
    /// The same, one request every `pace_us` (the users' mean spacing at the
    /// server); None when that spacing is under [`MIN_PACE`].
    pub(super) paced_floor: Option<Hist>,
    /// The users' mean spacing at the server, µs.
    pub(super) pace_us: u64,
}

/// Connects the monitor, builds the fixture for `sc.users` users and takes
/// the server's figures.
pub(super) async fn setup(sc: &Scenario, opts: &RunOptions) -> anyhow::Result<(Monitor, Setup)> {
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let wall0 = Instant::now();
    let cpu0 = own_cpu();
    let own_rss_before = own_rss();

    // Fixture, on the server's host.
    let mut mon = Monitor::connect(&opts.target, &opts.engines).await?;
    let root = format!(
        "/tmp/voxterm-loadtest-{}-{}",
        std::process::id(),
        started_unix_ms
    );
    let fx = mon
        .client
        .run(0, &fixture_script(&root, sc.users), 300_000)
        .await
        .context("fixture")?;
    if fx.exit.as_ref().and_then(|e| e.code) != Some(0) {
        anyhow::bail!(
            "could not build the fixture project on the server: {}{}",
            String::from_utf8_lossy(&fx.stderr),
            fx.error.map(|e| e.message).unwrap_or_default()
        );
    }
    // Every engine's host needs it (the script does nothing where it is there).
    for e in opts.engines.iter().filter(|e| e.url != opts.target.url) {
        let mut c = Monitor::connect(e, &[]).await?;
        let fx = c
            .client
            .run(0, &fixture_script(&root, sc.users), 300_000)
            .await
            .with_context(|| format!("fixture on {}", e.url))?;
        anyhow::ensure!(
            fx.exit.as_ref().and_then(|e| e.code) == Some(0),
            "could not build the fixture project on {}: {}",
            e.url,
            String::from_utf8_lossy(&fx.stderr)
        );
    }
    let floor = round_trip_floor(&mut mon).await;
    let pace = Duration::from_secs_f64(
        1.0 / opts
            .profiles
            .offered_per_s(sc.users, sc.time_scale)
            .max(1e-3),
    )
    .min(MAX_PACE);
    let paced_floor = match floor {
        Some(_) if pace >= MIN_PACE => paced_round_trip_floor(&mut mon, pace).await,
        _ => None,
    };
    let s_before = mon
        .stats()
        .await
        .context("server does not answer StatsRequest")?;
    let backend_before =
        hist::decode_bytes(&s_before.backend_histogram).unwrap_or_else(|_| hist::new_hist());
    Ok((
        mon,
        Setup {
            started_unix_ms,
            wall0,
            cpu0,
            own_rss_before,
            root,
            s_before,
            backend_before,
            floor,
            paced_floor,
            pace_us: pace.as_micros() as u64,
        },
    ))
}

/// Round trips measured for the floor.
const FLOOR_SAMPLES: usize = 400;

/// One connection, one request at a time, a line the cache answers from L1:
/// the round trip no load can beat, measured on this machine, in this run,
/// before the users come (issue 17). Only L1-served answers count, so that it
/// compares with the run's L1-served answers. None if the server caches
/// nothing.
async fn round_trip_floor(mon: &mut Monitor) -> Option<Hist> {
    floor(mon, Duration::ZERO, FLOOR_SAMPLES + 10, FLOOR_SAMPLES / 2).await
}

/// `n` cached round trips on the monitor's connection, one every `pace`
/// from the start (back to back when zero), L1-served ones only; None when
/// fewer than `need` were.
async fn floor(mon: &mut Monitor, pace: Duration, n: usize, need: usize) -> Option<Hist> {
    let line = "echo voxterm-loadtest-floor";
    let mut h = hist::new_hist();
    let start = Instant::now();
    for i in 1..=n as u32 {
        if !pace.is_zero() {
            tokio::time::sleep_until(start + pace * i).await;
        }
        let started = Instant::now();
        let done = mon.client.run(0, line, 0).await.ok()?;
        let us = started.elapsed().as_micros() as u64;
        if done.exit.map(|e| e.served_from) == Some(voxterm_protocol::ServedFrom::L1) {
            hist::record(&mut h, us);
        }
    }
    (h.len() >= need as u64).then_some(h)
}

/// Below this spacing the server is seldom idle between two requests, and
/// tokio's timer (a millisecond) could not keep it anyway: the back-to-back
/// floor is the floor.
const MIN_PACE: Duration = Duration::from_millis(1);
/// Time the paced floor may take: at most [`FLOOR_SAMPLES`] requests, at
/// least [`MIN_PACED_SAMPLES`].
const PACED_FLOOR_BUDGET: Duration = Duration::from_secs(3);
/// Fewest requests the paced floor takes.
const MIN_PACED_SAMPLES: usize = 100;
/// Widest spacing the paced floor keeps: a server idle this long is as cold
/// as one idle longer (`loadtest rtt`'s widest step), and at most
/// [`MIN_PACED_SAMPLES`] of it fit in [`PACED_FLOOR_BUDGET`]. Users a second
/// apart would otherwise hold the run's setup for 100 s.
const MAX_PACE: Duration = Duration::from_millis(20);

/// The floor again, with one request every `pace` (the users' mean spacing
/// at the server), sent at fixed times so that the spacing holds on average.
///
/// Why both: a server (any server, and the load tester's own reader) idle
/// between two requests answers the second one later than one that never
/// went idle: its threads park, the VM's vCPU halts, caches go cold. On this
/// project's 2-core VMs `loadtest rtt --tcp-echo` measured voxterm's cached
/// round trip p50 35–62 µs back to back and 242–327 µs 20 ms apart, and a
/// bare blocking TCP echo 13–53 µs and 69–186 µs (the echo's spread is where
/// the two threads run: one vCPU or two). Users arriving at the `quick` pace
/// (~4–5 ms apart) find the server idle, so their round trips are compared
/// with this floor: what they would see if the load tester added nothing
/// (README, "Measuring latency").
async fn paced_round_trip_floor(mon: &mut Monitor, pace: Duration) -> Option<Hist> {
    let n = ((PACED_FLOOR_BUDGET.as_secs_f64() / pace.as_secs_f64()) as usize)
        .clamp(MIN_PACED_SAMPLES, FLOOR_SAMPLES);
    floor(mon, pace, n, n / 2).await
}

/// Removes the fixture (best effort: the server may be gone).
pub(super) async fn remove_fixture(mon: &mut Monitor, root: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        mon.client
            .run(0, &format!("rm -rf {}", shell_quote(root)), 60_000),
    )
    .await;
}

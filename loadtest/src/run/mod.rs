//! One run of a scenario: fixture, users on their profiles (open model), the
//! server's figures polled during the run, an optional capacity search, and the
//! raw results the report is built from.
//!
//! [`run`] goes through the phases in order, one file each: `setup` (monitor
//! connection, fixture, the server's starting figures), `users` (the ramp-up:
//! connections on their schedule, each user's commands), `storm` (the chaos
//! agent, when the scenario has one), `hold` (the once-a-second loop: figures,
//! timeline, progress, `capacity` search), `drain` (stop, grace, lost answers)
//! and `collect` (the raw data); `monitor` is the `Stats` connection they share.

mod capacity;
mod collect;
mod drain;
mod gate;
mod hold;
mod monitor;
mod probe;
mod schedule;
mod setup;
mod steady;
mod storm;
mod users;

use crate::chaos;
use crate::conn::Target;
use crate::failover::FailoverSummary;
use crate::profile::Profiles;
use crate::record::Recorder;
use crate::report::EngineFigures;
use crate::report::RunData;
use crate::scenario::Scenario;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Everything a run needs besides the scenario.
pub struct RunOptions {
    /// Where the users connect: the first of `targets`.
    pub target: Target,
    /// Every URL users connect to, spread evenly (one, or several `--url`s).
    pub targets: Arc<[Target]>,
    /// The engines whose figures are read (each `--url`, or the `--engine`s
    /// behind a balancer); their `Stats` are merged into the server's.
    pub engines: Vec<Target>,
    /// Users ask the server to hold their commands over a dropped connection
    /// and re-attach to them (as the page and `voxterm exec` do).
    pub reattach: bool,
    /// The scheduling thread asks for a real-time class (`--no-realtime`).
    pub realtime: bool,
    /// Profiles.
    pub profiles: Profiles,
    /// Users sharing one connection.
    pub users_per_connection: usize,
    /// Requests answered within this are on time, µs.
    pub on_time_us: u64,
    /// p95 target for the capacity search, ms.
    pub p95_target_ms: f64,
    /// Whether a progress bar may be drawn.
    pub progress: bool,
    /// Time to wait for outstanding answers after the end.
    pub grace: Duration,
    /// The server's Redis when the load tester started it (`--with-redis`):
    /// the chaos scenario restarts it mid-run.
    pub redis: Option<chaos::SharedRedis>,
    /// `--abort-on-fail`: the sliding window a miss is judged over.
    pub abort_window: Option<Duration>,
    /// Error rate target, % (the window gate's).
    pub error_rate_target_pct: f64,
    /// The failover scenario: the engine to kill a third into the hold.
    pub failover: Option<FailoverPlan>,
}

/// The engine the failover scenario kills, and what the users go through.
pub struct FailoverPlan {
    /// What the users connect through, for the report.
    pub balancer: String,
    /// The victim's URL.
    pub url: String,
    /// The victim's process.
    pub pid: u32,
}

/// The run's schedule, from the moment the first user may connect.
#[derive(Clone, Copy)]
struct Clock {
    /// The first user's time; report times are seconds from it.
    t0: Instant,
    /// The ramp-up's length.
    ramp: Duration,
    /// Every user connected (but a burst's).
    hold_start: Instant,
    /// The end of the hold; the capacity search follows it.
    hold_end: Instant,
    /// The end of the load.
    end: Instant,
}

impl Clock {
    /// The schedule of `sc`, starting now.
    fn start(sc: &Scenario) -> Clock {
        let t0 = Instant::now();
        let ramp = sc.ramp_up;
        let hold_start = t0 + ramp;
        let hold_end = hold_start + sc.duration;
        let end = hold_end
            + if sc.capacity {
                sc.capacity_step * sc.capacity_rates.len() as u32
            } else {
                Duration::ZERO
            };
        Clock {
            t0,
            ramp,
            hold_start,
            hold_end,
            end,
        }
    }

    /// `i` in seconds from the start.
    fn at(&self, i: Instant) -> f64 {
        i.duration_since(self.t0).as_secs_f64()
    }
}

/// A third into the hold: where a burst spikes and failover kills (the soak
/// judges memory from the same mark). The steady state begins here or, once
/// the cold start's backlog has drained, later (`steady`).
fn third_in(sc: &Scenario, clock: &Clock) -> Instant {
    clock.hold_start + sc.duration / 3
}

/// Runs the scenario and returns the raw data of the report.
pub async fn run(sc: &Scenario, opts: &RunOptions) -> anyhow::Result<RunData> {
    let rec = Arc::new(Recorder::new(opts.profiles.list.len(), opts.on_time_us));
    let (mut mon, setup) = setup::setup(sc, opts).await?;
    // Only where the server caches (the floor was measured): it times L1 answers.
    let probe = setup.floor.as_ref().and_then(|_| {
        let pace = Duration::from_micros(setup.pace_us);
        probe::Probe::start(&opts.target.url, pace, opts.reattach)
    });
    let clock = Clock::start(sc);
    let fleet = users::ramp(
        sc,
        &opts.targets,
        opts.reattach,
        opts.realtime,
        opts.profiles.clone(),
        opts.users_per_connection,
        &clock,
        &rec,
        &setup.root,
    );
    let (storm_window, chaos_agent) = match storm::start(sc, opts, &clock, &setup.root, &fleet.stop)
    {
        Some(s) => (Some(s.window), Some(s.agent)),
        None => (None, None),
    };
    let killer = opts.failover.as_ref().map(|plan| {
        let (at, pid) = (third_in(sc, &clock), plan.pid);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            crate::failover::kill(pid).then(Instant::now)
        })
    });
    if let Some(p) = probe.as_ref().filter(|_| sc.capacity) {
        p.stop_at(clock.hold_end);
    }
    let bar = hold::progress_bar(opts.progress);
    let mut obs = hold::hold(
        sc,
        opts,
        &clock,
        &rec,
        &fleet,
        &mut mon,
        &setup.s_before,
        bar.as_ref(),
    )
    .await;
    // Joined off the runtime: it may be waiting for an answer.
    let probed = match probe {
        Some(p) => tokio::task::spawn_blocking(move || p.finish())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let mut drained = drain::drain(
        opts,
        &fleet,
        chaos_agent,
        &mut mon,
        &mut obs,
        clock.t0,
        bar.as_ref(),
    )
    .await;
    if let (Some(summary), Some((from, until))) = (drained.chaos.as_mut(), storm_window) {
        storm::judge_storm(
            summary,
            &obs.samples,
            clock.at(from),
            clock.at(until),
            clock.at(clock.hold_end),
        );
    }
    if let (Some(summary), true) = (drained.chaos.as_mut(), obs.server_alive) {
        storm::settle(summary, &mut mon, &mut obs, &setup.s_before, clock.t0).await;
    }
    if obs.server_alive {
        setup::remove_fixture(&mut mon, &setup.root).await;
    }
    let killed_at = match killer {
        Some(k) => k.await.ok().flatten(),
        None => None,
    };
    let mut data = collect::collect(sc, opts, &rec, setup, obs, drained, probed);
    data.engines = mon
        .engines()
        .iter()
        .filter_map(|e| {
            let (first, last) = (e.first.as_ref()?, e.last.as_ref()?);
            Some(EngineFigures::between(
                &e.url,
                e.dead_since.is_none(),
                first,
                last,
                monitor::server_cpu_us,
            ))
        })
        .collect();
    data.failover = opts.failover.as_ref().map(|plan| {
        let request_lost = data.errors_by_code.get("RequestLost").copied().unwrap_or(0);
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        FailoverSummary {
            balancer: plan.balancer.clone(),
            killed: plan.url.clone(),
            killed_at_s: killed_at.map(|t| clock.at(t)),
            in_flight_at_kill: mon
                .engines()
                .iter()
                .find(|e| e.url == plan.url)
                .and_then(|e| e.last.as_ref())
                .map(|s| s.in_flight),
            reconnects: data.raw.reconnects,
            reattached: data.raw.reattached,
            sessions_intact: count(&rec.sessions_intact),
            sessions_changed: count(&rec.sessions_changed),
            request_lost,
            other_errors: data.raw.errors.saturating_sub(request_lost),
            lost: data.raw.lost,
        }
    });
    Ok(data)
}

//! One run of a scenario: fixture, users on their profiles (open model), the
//! server's figures polled during the run, an optional capacity search, and the
//! raw results the report is built from.

use crate::chaos;
use crate::conn::{Conn, Pending, Target};
use crate::hist::{self, Hist};
use crate::profile::{fixture_script, shell_quote, CommandClass, Profiles};
use crate::record::Recorder;
use crate::report::{CapacityStep, Raw, RunData, ServerSample, Tick};
use crate::scenario::{Scenario, Shape};
use anyhow::Context;
use parking_lot::Mutex;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use voxterm::client::{Client, ClientOptions};
use voxterm_protocol::{Message, StatsRequest};

/// Everything a run needs besides the scenario.
pub struct RunOptions {
    /// Where the server is.
    pub target: Target,
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
}

/// After a chaos run: the longest wait for the server to see every user and
/// fault connection gone (for the idle-after figure, which is not judged).
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// … then this many one-second samples; the last one is the settled RSS (freed
/// memory can take a moment to go back to the allocator and the OS).
const SETTLE_SAMPLES: usize = 5;

/// The monitor connection: `Stats` polling and the fixture.
struct Monitor {
    client: Client,
    nonce: u64,
}

impl Monitor {
    async fn connect(t: &Target) -> anyhow::Result<Monitor> {
        let client = Client::connect(
            &t.url,
            ClientOptions {
                name: "voxterm-loadtest-monitor".into(),
                tenant: Some("lt-monitor".into()),
                ..ClientOptions::default()
            },
        )
        .await
        .with_context(|| format!("cannot connect to {}", t.url))?;
        Ok(Monitor { client, nonce: 0 })
    }

    async fn stats(&mut self) -> anyhow::Result<voxterm_protocol::Stats> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.client
            .send(&Message::StatsRequest(StatsRequest { nonce }))
            .await?;
        loop {
            match self.client.recv().await? {
                Message::Stats(s) if s.nonce == nonce => return Ok(*s),
                _ => {}
            }
        }
    }
}

/// CPU the server spent, µs: its own plus that of the commands it ran (reported by
/// the server as the `cpu_children_us` counter), which is most of an exec-heavy load.
fn server_cpu_us(s: &voxterm_protocol::Stats) -> u64 {
    s.cpu_us + counter(s, "cpu_children_us").unwrap_or(0)
}

/// The server's counter `name`, when it reports one.
fn counter(s: &voxterm_protocol::Stats, name: &str) -> Option<u64> {
    s.counters.iter().find(|c| c.name == name).map(|c| c.value)
}

/// Bytes held by the server's cache tiers (its `cache_bytes_*` gauges).
fn cache_bytes(s: &voxterm_protocol::Stats) -> u64 {
    s.counters
        .iter()
        .filter(|c| c.name.starts_with("cache_bytes_"))
        .map(|c| c.value)
        .sum()
}

fn sample(s: &voxterm_protocol::Stats, t0: Instant) -> ServerSample {
    ServerSample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_bytes: s.rss_bytes,
        cpu_us: server_cpu_us(s),
        connections: s.connections,
        sessions: s.sessions,
        requests: s.requests,
        errors: s.errors,
        in_flight: s.in_flight,
        queue_depth: s.queue_depth,
        cache_bytes: s
            .counters
            .iter()
            .any(|c| c.name.starts_with("cache_bytes_"))
            .then(|| cache_bytes(s)),
        heap_allocated_bytes: counter(s, "heap_allocated_bytes"),
        rss_anon_bytes: counter(s, "rss_anon_bytes"),
    }
}

/// The server's counters at the end minus at the start (rates and gauges among
/// them, such as `cache_hit_rate_permille`, are left out: a difference of those
/// means nothing).
fn counter_delta(
    before: &voxterm_protocol::Stats,
    end: Option<&voxterm_protocol::Stats>,
) -> std::collections::BTreeMap<String, u64> {
    let Some(end) = end else {
        return Default::default();
    };
    let mut m: std::collections::BTreeMap<String, u64> = end
        .counters
        .iter()
        .filter(|c| !c.name.ends_with("_permille") && !c.name.starts_with("cache_bytes"))
        .map(|c| {
            let start = before
                .counters
                .iter()
                .find(|b| b.name == c.name)
                .map_or(0, |b| b.value);
            (c.name.clone(), c.value.saturating_sub(start))
        })
        .collect();
    m.insert(
        "requests".into(),
        end.requests.saturating_sub(before.requests),
    );
    m
}

/// Judges the chaos run's memory: the level just before the faults against the
/// level at the end of the hold, a calm third later, with the same users.
fn judge_storm(
    summary: &mut chaos::ChaosSummary,
    samples: &[ServerSample],
    from_s: f64,
    until_s: f64,
    hold_end_s: f64,
) {
    summary.storm_window_s = Some((from_s, until_s));
    let (Some(pre), Some(post)) = (
        crate::report::level_at(samples, from_s),
        crate::report::level_at(samples, hold_end_s + 0.5),
    ) else {
        summary.skipped.push(
            "memory around the storm: no server sample before it or at the end of the hold".into(),
        );
        return;
    };
    let peak = samples
        .iter()
        .filter(|x| x.t_s >= from_s && x.t_s <= hold_end_s + 0.5)
        .map(|x| x.rss_bytes)
        .max()
        .unwrap_or(0);
    summary.judge_memory(pre.rss_bytes, peak, post.rss_bytes);
    summary.retained = Some(chaos::Retained {
        sessions_before: pre.sessions,
        sessions_after: post.sessions,
        cache_bytes_before: pre.cache_bytes.unwrap_or(0),
        cache_bytes_after: post.cache_bytes.unwrap_or(0),
        heap_allocated_before: pre.heap_allocated_bytes,
        heap_allocated_after: post.heap_allocated_bytes,
    });
}

/// The load tester's own resident memory, bytes.
pub fn own_rss() -> u64 {
    voxterm::metrics::resident_bytes()
}

/// The load tester's own CPU time.
pub fn own_cpu() -> Duration {
    voxterm::metrics::cpu_time()
}

/// Source address for connection `i`: 127.0.0.x past 25,000 connections on loopback.
fn source_for(t: &Target, i: usize, conns: usize) -> Option<IpAddr> {
    if conns <= 25_000 || !t.addr.ip().is_loopback() || !t.addr.is_ipv4() {
        return None;
    }
    let x = 2 + (i / 20_000) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, x)))
}

/// Per-user state shared by the user's own schedule and the capacity generator.
struct User {
    idx: usize,
    profile: usize,
    state: Mutex<(usize, fastrand::Rng)>,
    session: u32,
    conn: Arc<Conn>,
}

impl User {
    fn next_command(&self, profiles: &Profiles) -> (String, CommandClass) {
        let p = &profiles.list[self.profile];
        let mut st = self.state.lock();
        let (state, rng) = &mut *st;
        let cur = *state;
        *state = p.step(cur, rng);
        (
            p.command(cur, &format!("users/u{}", self.idx)),
            p.states[cur].class,
        )
    }

    fn send(&self, profiles: &Profiles, due: Instant, step: Option<u16>, rec: &Recorder) -> bool {
        let (cmd, class) = self.next_command(profiles);
        rec.sent.fetch_add(1, Ordering::Relaxed);
        let ok = self.conn.exec(
            self.session,
            cmd,
            0,
            Pending {
                due,
                profile: self.profile as u8,
                class,
                step,
                measured: true,
                notify: None,
            },
        );
        if !ok {
            rec.send_failures.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

/// Exponential think time with mean `mean_s` seconds.
fn think(rng: &mut fastrand::Rng, mean_s: f64) -> Duration {
    let u = rng.f64().max(1e-12);
    Duration::from_secs_f64((-u.ln() * mean_s).min(mean_s * 20.0))
}

/// Runs the scenario and returns the raw data of the report.
pub async fn run(sc: &Scenario, opts: &RunOptions) -> anyhow::Result<RunData> {
    let rec = Arc::new(Recorder::new(opts.profiles.list.len(), opts.on_time_us));
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let wall0 = Instant::now();
    let cpu0 = own_cpu();
    let own_rss_before = own_rss();

    // Fixture, on the server's host.
    let mut mon = Monitor::connect(&opts.target).await?;
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
    let s_before = mon
        .stats()
        .await
        .context("server does not answer StatsRequest")?;
    let backend_before =
        hist::decode_bytes(&s_before.backend_histogram).unwrap_or_else(|_| hist::new_hist());

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
    let users: Arc<Mutex<Vec<Arc<User>>>> = Arc::default();
    let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
    let profiles = Arc::new(opts.profiles.clone());
    let k = opts.users_per_connection.max(1);
    let nconns = sc.users.div_ceil(k);
    let stop_users = Arc::new(AtomicBool::new(false));

    // Connection schedule.
    let connect_at = |c: usize| -> Instant {
        let frac = c as f64 / nconns.max(1) as f64;
        match sc.shape {
            Shape::Burst => {
                let base = (nconns / 10).max(1);
                if c < base {
                    t0 + ramp.mul_f64(c as f64 / base as f64)
                } else {
                    hold_start + sc.duration / 3 + Duration::from_millis((c - base) as u64 % 1000)
                }
            }
            _ => t0 + ramp.mul_f64(frac),
        }
    };
    let mut join = Vec::with_capacity(nconns);
    for c in 0..nconns {
        let at = connect_at(c);
        let target = opts.target.clone();
        let rec = rec.clone();
        let profiles = profiles.clone();
        let users = users.clone();
        let conns = conns.clone();
        let root = root.clone();
        let stop = stop_users.clone();
        let time_scale = sc.time_scale;
        let first_user = c * k;
        let last_user = ((c + 1) * k).min(sc.users);
        join.push(tokio::spawn(async move {
            sleep_until(at).await;
            let source = source_for(&target, c, nconns);
            let conn = match Conn::open(&target, &format!("lt-c{c}"), source, rec.clone()).await {
                Ok(conn) => Arc::new(conn),
                Err(e) => {
                    tracing::debug!(error = %e, "connect failed");
                    rec.users_failed
                        .fetch_add((last_user - first_user) as u64, Ordering::Relaxed);
                    return;
                }
            };
            conns.lock().push(conn.clone());
            for u in first_user..last_user {
                let session = (u - first_user) as u32 + 1;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let ok = conn.open_session(session, &format!("u{u}"))
                    && conn.exec(
                        session,
                        format!("cd {}", shell_quote(&root)),
                        0,
                        Pending {
                            due: Instant::now(),
                            profile: 0,
                            class: CommandClass::Session,
                            step: None,
                            measured: false,
                            notify: Some(tx),
                        },
                    );
                let ready = ok
                    && matches!(
                        tokio::time::timeout(Duration::from_secs(30), rx).await,
                        Ok(Ok(crate::record::End::Exit(Some(0), _)))
                    );
                if !ready {
                    rec.users_failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                rec.users_connected.fetch_add(1, Ordering::Relaxed);
                let profile = profiles.for_user(u);
                let start_state = profiles.list[profile].start;
                let user = Arc::new(User {
                    idx: u,
                    profile,
                    state: Mutex::new((start_state, fastrand::Rng::with_seed(u as u64 * 31 + 7))),
                    session,
                    conn: conn.clone(),
                });
                users.lock().push(user.clone());
                let profiles = profiles.clone();
                let rec = rec.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mean = 60.0 / profiles.list[user.profile].commands_per_minute / time_scale;
                    let mut rng = fastrand::Rng::with_seed(user.idx as u64 ^ 0x5eed);
                    // First command at a random point of one think time: no thundering herd.
                    let mut due = Instant::now() + Duration::from_secs_f64(rng.f64() * mean);
                    loop {
                        if due >= end || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        sleep_until(due).await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if !user.send(&profiles, due, None, &rec) {
                            break;
                        }
                        due += think(&mut rng, mean);
                    }
                });
            }
        }));
    }

    // Chaos agent.
    let storm = (sc.shape == Shape::Chaos).then(|| {
        (
            hold_start + sc.duration / 3,
            hold_start + sc.duration * 2 / 3,
        )
    });
    let chaos_handle = storm.map(|(from, until)| {
        let target = opts.target.clone();
        let root = root.clone();
        let stop = stop_users.clone();
        let redis = opts.redis.clone();
        tokio::spawn(async move { chaos::run(target, root, from, until, stop, redis).await })
    });

    // Progress and the server poller.
    let bar = progress_bar(opts.progress);
    let mut timeline: Vec<Tick> = Vec::new();
    let mut samples: Vec<ServerSample> = vec![sample(&s_before, t0)];
    let mut rss_peak_hold = s_before.rss_bytes;
    let mut own_rss_peak = own_rss();
    let mut s_hold_start: Option<voxterm_protocol::Stats> = None;
    let mut s_hold_end: Option<voxterm_protocol::Stats> = None;
    let mut bytes_hold_start = 0u64;
    let mut bytes_hold_end = 0u64;
    let mut users_held = 0u64;
    let mut server_alive = true;
    let mut last_completed = 0u64;
    let mut last_tick = Instant::now();
    let mut last_log = Instant::now();

    // Capacity search state.
    let mut steps: Vec<CapacityStep> = Vec::new();
    let mut cap_task: Option<tokio::task::JoinHandle<()>> = None;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        // Server figures.
        match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
            Ok(Ok(s)) => {
                if now <= hold_end + Duration::from_secs(1) {
                    rss_peak_hold = rss_peak_hold.max(s.rss_bytes);
                }
                if s_hold_start.is_none() && now >= hold_start && sc.shape != Shape::Burst
                    || s_hold_start.is_none()
                        && sc.shape == Shape::Burst
                        && now >= hold_start + sc.duration / 3 + Duration::from_secs(2)
                {
                    bytes_hold_start = rec.bytes_in.load(Ordering::Relaxed)
                        + rec.bytes_out.load(Ordering::Relaxed);
                    s_hold_start = Some(s.clone());
                }
                if s_hold_end.is_none() && now >= hold_end {
                    bytes_hold_end = rec.bytes_in.load(Ordering::Relaxed)
                        + rec.bytes_out.load(Ordering::Relaxed);
                    users_held =
                        conns.lock().iter().filter(|c| c.is_alive()).count() as u64 * k as u64;
                    users_held = users_held.min(rec.users_connected.load(Ordering::Relaxed));
                    s_hold_end = Some(s.clone());
                }
                samples.push(sample(&s, t0));
            }
            _ => {
                server_alive = false;
                if let Ok(m) = Monitor::connect(&opts.target).await {
                    mon = m;
                    server_alive = true;
                }
            }
        }
        own_rss_peak = own_rss_peak.max(own_rss());
        // Timeline.
        let interval = rec.take_interval();
        let completed = rec.completed.load(Ordering::Relaxed);
        let dt = now.duration_since(last_tick).as_secs_f64().max(1e-3);
        let cps = (completed - last_completed) as f64 / dt;
        last_completed = completed;
        last_tick = now;
        let s = hist::summary(&interval);
        let t = Tick {
            t_s: t0.elapsed().as_secs_f64(),
            users: rec.users_connected.load(Ordering::Relaxed),
            completed_per_s: cps,
            p50_ms: s.p50_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            errors: rec.errors.load(Ordering::Relaxed),
            server_rss_bytes: samples.last().map_or(0, |s| s.rss_bytes),
        };
        let msg = format!(
            "{} users {}/{} | {:.0} cmd/s | p95 {:.1} ms | errors {} | step {}",
            sc.name,
            t.users,
            sc.users,
            t.completed_per_s,
            t.p95_ms,
            t.errors + rec.send_failures.load(Ordering::Relaxed),
            steps.len()
        );
        if let Some(b) = &bar {
            b.set_message(msg);
        } else if last_log.elapsed() >= Duration::from_secs(10) {
            eprintln!("loadtest: t={:.0}s {msg}", t.t_s);
            last_log = Instant::now();
        }
        timeline.push(t);

        // Capacity search: one step per `capacity_step`, stop at the first miss.
        if sc.capacity && now >= hold_end && now < end {
            let step_i = ((now - hold_end).as_secs_f64() / sc.capacity_step.as_secs_f64()) as usize;
            if step_i > steps.len() || (steps.is_empty() && cap_task.is_none()) {
                // Judge the finished step.
                if let Some(h) = cap_task.take() {
                    h.abort();
                    let i = steps.len();
                    let (p95, count, errs) = {
                        let tb = rec.tables.lock();
                        let h = tb.steps.get(i).cloned().unwrap_or_else(hist::new_hist);
                        (
                            h.value_at_quantile(0.95) as f64 / 1000.0,
                            h.len(),
                            tb.step_errors.get(i).copied().unwrap_or(0),
                        )
                    };
                    let rate = sc.capacity_rates[i];
                    let expected = rate * sc.capacity_step.as_secs_f64();
                    // Answers still missing at the end of the step are late by definition.
                    let answered_share = count as f64 / expected.max(1.0);
                    let pass = p95 <= opts.p95_target_ms && errs == 0 && answered_share >= 0.95;
                    steps.push(CapacityStep {
                        offered_per_s: rate,
                        answered: count,
                        p95_ms: p95,
                        errors: errs,
                        within_target: pass,
                    });
                    if !pass || steps.len() >= sc.capacity_rates.len() {
                        break;
                    }
                }
                let i = steps.len();
                let rate = sc.capacity_rates[i];
                let users = users.lock().clone();
                let profiles = profiles.clone();
                let rec = rec.clone();
                let step_len = sc.capacity_step;
                cap_task = Some(tokio::spawn(async move {
                    generate(users, profiles, rec, rate, step_len, i as u16).await;
                }));
            }
        }
        if now >= end {
            break;
        }
    }
    if let Some(h) = cap_task.take() {
        h.abort();
    }
    stop_users.store(true, Ordering::Relaxed);
    let mut chaos_summary = match chaos_handle {
        Some(h) => h.await.ok(),
        None => None,
    };
    for j in join {
        j.abort();
    }

    // Wait for the answers still out, then count the lost ones.
    let grace_end = Instant::now() + opts.grace;
    let outstanding = |conns: &Arc<Mutex<Vec<Arc<Conn>>>>| -> u64 {
        conns.lock().iter().map(|c| c.outstanding()).sum()
    };
    while outstanding(&conns) > 0 && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = outstanding(&conns);
    let s_end = match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            server_alive = false;
            None
        }
    };
    if let Some(s) = &s_end {
        samples.push(sample(s, t0));
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for c in conns.lock().iter() {
        c.abort();
    }
    if let (Some(summary), Some((from, until))) = (chaos_summary.as_mut(), storm) {
        let at = |i: Instant| i.duration_since(t0).as_secs_f64();
        judge_storm(summary, &samples, at(from), at(until), at(hold_end));
    }
    if let (Some(summary), true) = (chaos_summary.as_mut(), server_alive) {
        // For reading: memory once the users have gone too and the server has
        // closed every connection but the monitor's, and has settled.
        let settle_end = Instant::now() + SETTLE_MAX;
        let mut settled = 0usize;
        let mut last: Option<voxterm_protocol::Stats> = None;
        while settled < SETTLE_SAMPLES && Instant::now() < settle_end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match tokio::time::timeout(Duration::from_secs(5), mon.stats()).await {
                Ok(Ok(s)) => {
                    if s.connections <= 1 {
                        settled += 1;
                    }
                    samples.push(sample(&s, t0));
                    last = Some(s);
                }
                _ => {
                    server_alive = false;
                    break;
                }
            }
        }
        summary.rss_idle_before_bytes = Some(s_before.rss_bytes);
        if let Some(s) = last {
            summary.rss_idle_after_bytes = Some(s.rss_bytes);
            summary.connections_after = Some(s.connections);
            if settled < SETTLE_SAMPLES {
                summary.skipped.push(format!(
                    "memory after the users left: the server still had {} connections after {} s; RSS taken then",
                    s.connections,
                    SETTLE_MAX.as_secs()
                ));
            }
        }
    }
    // Clean up the fixture (best effort).
    if server_alive {
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            mon.client
                .run(0, &format!("rm -rf {}", shell_quote(&root)), 60_000),
        )
        .await;
    }

    let s_hold_end = s_hold_end.or_else(|| s_end.clone());
    let backend_hold = s_hold_end
        .as_ref()
        .and_then(|s| hist::decode_bytes(&s.backend_histogram).ok())
        .map(|mut h| {
            // Only what the server did during this run's profile load.
            let _ = h.subtract(&backend_before);
            h
        });
    let (hold_s, server_cpu_hold_s) = match (&s_hold_start, &s_hold_end) {
        (Some(a), Some(b)) if b.uptime_ms > a.uptime_ms => (
            (b.uptime_ms - a.uptime_ms) as f64 / 1000.0,
            Some(server_cpu_us(b).saturating_sub(server_cpu_us(a)) as f64 / 1e6),
        ),
        _ => (0.0, None),
    };
    let tables = rec.tables.lock();
    let served = tables
        .served
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let per_profile: Vec<(String, Hist)> = opts
        .profiles
        .list
        .iter()
        .zip(&tables.per_profile)
        .map(|(p, h)| (p.name.clone(), h.clone()))
        .collect();
    let capacity_cps = sc.capacity.then(|| {
        steps
            .iter()
            .filter(|s| s.within_target)
            .map(|s| s.offered_per_s)
            .fold(0.0, f64::max)
    });
    let wall_s = wall0.elapsed().as_secs_f64();
    let own_cpu_s = (own_cpu() - cpu0).as_secs_f64();
    let raw = Raw {
        users: sc.users as u64,
        offered: rec.sent.load(Ordering::Relaxed),
        completed: rec.completed.load(Ordering::Relaxed),
        errors: rec.errors.load(Ordering::Relaxed),
        send_failures: rec.send_failures.load(Ordering::Relaxed),
        lost,
        nonzero_exits: rec.nonzero_exits.load(Ordering::Relaxed),
        cacheable: rec.cacheable.load(Ordering::Relaxed),
        cache_hits: rec.cache_hits.load(Ordering::Relaxed),
        on_time: rec.on_time.load(Ordering::Relaxed),
        users_connected: rec.users_connected.load(Ordering::Relaxed),
        users_held,
        users_failed: rec.users_failed.load(Ordering::Relaxed),
        hold_s,
        client_bytes_hold: bytes_hold_end.saturating_sub(bytes_hold_start),
        client_bytes_total: rec.bytes_in.load(Ordering::Relaxed)
            + rec.bytes_out.load(Ordering::Relaxed),
        server_rss_before: Some(s_before.rss_bytes),
        server_rss_peak: Some(rss_peak_hold),
        server_cpu_hold_s,
        capacity_cps,
        capacity: sc.capacity,
        server_alive,
        wall_s,
        client_rss_before: own_rss_before,
        client_rss_peak: own_rss_peak,
        client_cpu_s: own_cpu_s,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
        time_scale: sc.time_scale,
        server_counters: counter_delta(&s_before, s_end.as_ref()),
    };
    Ok(RunData {
        started_unix_ms,
        raw,
        e2e: tables.e2e.clone(),
        backend: backend_hold,
        per_profile,
        per_class: tables
            .per_class
            .iter()
            .map(|(c, h)| (c.as_str().to_owned(), h.clone()))
            .collect(),
        per_served: tables
            .per_served
            .iter()
            .map(|(c, h)| (c.to_string(), h.clone()))
            .collect(),
        served,
        errors_by_code: tables.errors_by_code.clone(),
        timeline,
        samples,
        capacity: steps,
        chaos: chaos_summary,
    })
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
            u.send(&profiles, due, Some(step), &rec);
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
    {
        b.set_style(style);
    }
    b.enable_steady_tick(Duration::from_millis(200));
    Some(b)
}

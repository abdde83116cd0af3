//! The users: the connection schedule of the ramp-up (or the burst), each
//! user's session set up in the fixture, and its own commands on its
//! profile's schedule until the end of the run (sent on time by the
//! `schedule` thread).

use super::schedule::Scheduler;
use super::Clock;
use crate::conn::{Conn, Pending, Reconnect, Target};
use crate::profile::{shell_quote, CommandClass, Profiles};
use crate::record::{Recorder, RunPhase};
use crate::scenario::{Scenario, Shape};
use parking_lot::Mutex;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// The users and their connections as they come, and the switch that stops them.
pub(super) struct Fleet {
    /// Users ready so far (the capacity search sends on their behalf too).
    pub(super) users: Arc<Mutex<Vec<Arc<User>>>>,
    /// Connections opened so far.
    pub(super) conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    /// The profiles, shared by every user task.
    pub(super) profiles: Arc<Profiles>,
    /// Users sharing one connection.
    pub(super) per_conn: usize,
    /// Set at the end: no user sends again.
    pub(super) stop: Arc<AtomicBool>,
    /// The connection tasks (aborted at the end, whether connected or not).
    pub(super) join: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Requests sent and not answered yet, over every connection.
    pub(super) fn outstanding(&self) -> u64 {
        self.conns.lock().iter().map(|c| c.outstanding()).sum()
    }
}

/// Spawns one task per connection, each waiting for its time on the schedule
/// (spread over the ramp-up; for a burst, a tenth first and the rest at once a
/// third into the hold), then opening its users' sessions in the fixture and
/// running each user's commands until `clock.end`. Connection `c` goes to
/// `targets[c % n]`: users spread evenly over several `--url`s.
#[allow(clippy::too_many_arguments)]
pub(super) fn ramp(
    sc: &Scenario,
    targets: &Arc<[Target]>,
    reattach: bool,
    realtime: bool,
    profiles: Profiles,
    per_conn: usize,
    clock: &Clock,
    rec: &Arc<Recorder>,
    root: &str,
) -> Fleet {
    let (t0, ramp, hold_start, end) = (clock.t0, clock.ramp, clock.hold_start, clock.end);
    let users: Arc<Mutex<Vec<Arc<User>>>> = Arc::default();
    let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
    let profiles = Arc::new(profiles);
    let k = per_conn.max(1);
    let nconns = sc.users.div_ceil(k);
    let stop_users = Arc::new(AtomicBool::new(false));
    let reconnect = Reconnect {
        targets: targets.clone(),
        reattach,
        give_up: RECONNECT_GIVE_UP,
        stop: stop_users.clone(),
        home: root.into(),
    };
    let scheduler = Scheduler::start(
        profiles.clone(),
        rec.clone(),
        stop_users.clone(),
        end,
        realtime,
    );

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
        let target = targets[c % targets.len()].clone();
        let reconnect = reconnect.clone();
        let rec = rec.clone();
        let profiles = profiles.clone();
        let users = users.clone();
        let conns = conns.clone();
        let root = root.to_owned();
        let scheduler = scheduler.clone();
        let time_scale = sc.time_scale;
        let first_user = c * k;
        let last_user = ((c + 1) * k).min(sc.users);
        join.push(tokio::spawn(async move {
            sleep_until(at).await;
            let source = source_for(&target, c, nconns);
            let conn = match Conn::open(
                &target,
                &format!("lt-c{c}"),
                source,
                rec.clone(),
                reconnect,
            )
            .await
            {
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
                let ready = enter_fixture(&conn, session, u, &root).await;
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
                scheduler.add(user, &profiles, time_scale);
            }
        }));
    }

    Fleet {
        users,
        conns,
        profiles,
        per_conn: k,
        stop: stop_users,
        join,
    }
}

/// How long a dropped connection keeps trying to reconnect before its users
/// give up (every target refused it for this long: the service is down).
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(20);

/// Opens user `u`'s session `session` on `conn` and moves it into the fixture
/// project; true once that `cd` succeeded (within 30 s).
async fn enter_fixture(conn: &Conn, session: u32, u: usize, root: &str) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ok = conn.open_session(session, &format!("u{u}"))
        && conn.exec(
            session,
            format!("cd {}", shell_quote(root)),
            0,
            Pending {
                due: Instant::now(),
                sent: None,
                home: None,
                resend: None,
                session,
                profile: 0,
                line: 0,
                class: CommandClass::Session,
                step: None,
                phase: RunPhase::Cold,
                measured: false,
                notify: Some(tx),
            },
        );
    ok && matches!(
        tokio::time::timeout(Duration::from_secs(30), rx).await,
        Ok(Ok(crate::record::End::Exit(Some(0), _)))
    )
}

/// Per-user state shared by the user's own schedule and the capacity generator.
pub(super) struct User {
    idx: usize,
    profile: usize,
    state: Mutex<(usize, fastrand::Rng)>,
    session: u32,
    conn: Arc<Conn>,
}

impl User {
    /// The user's number in the run.
    pub(super) fn idx(&self) -> usize {
        self.idx
    }

    /// Its profile's index.
    pub(super) fn profile(&self) -> usize {
        self.profile
    }

    /// The next line: its text, class and state index.
    fn next_command(&self, profiles: &Profiles) -> (String, CommandClass, u8) {
        let p = &profiles.list[self.profile];
        let mut st = self.state.lock();
        let (state, rng) = &mut *st;
        let cur = *state;
        *state = p.step(cur, rng);
        (
            p.command(cur, &format!("users/u{}", self.idx)),
            p.states[cur].class,
            u8::try_from(cur).unwrap_or(u8::MAX),
        )
    }

    /// The capacity search's arrival at `step`: queued for the connection's
    /// writer.
    pub(super) fn send(&self, profiles: &Profiles, due: Instant, step: u16, rec: &Recorder) {
        let (cmd, class, line) = self.next_command(profiles);
        let pending = self.pending(due, Some(step), class, line, rec);
        if !self.conn.exec(self.session, cmd, 0, pending) {
            rec.send_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The user's next line, made ready to be written (its frame encoded):
    /// the scheduling thread takes it while it waits for the due time.
    pub(super) fn next(&self, profiles: &Profiles) -> Next {
        let (cmd, class, line) = self.next_command(profiles);
        Next {
            ready: self.conn.ready(self.session, cmd, 0),
            class,
            line,
        }
    }

    /// Sends `next` due at `due`, from the scheduling thread: written at
    /// once when the socket takes it. False when the connection is gone.
    pub(super) fn send_next(&self, next: Next, due: Instant, rec: &Recorder) -> bool {
        let pending = self.pending(due, None, next.class, next.line, rec);
        let ok = self.conn.send_ready(next.ready, pending);
        if !ok {
            rec.send_failures.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// A request of this user about to be sent, counted as sent.
    fn pending(
        &self,
        due: Instant,
        step: Option<u16>,
        class: CommandClass,
        line: u8,
        rec: &Recorder,
    ) -> Pending {
        rec.sent.fetch_add(1, Ordering::Relaxed);
        let phase = rec.phase();
        if let Some(i) = phase.index().filter(|_| step.is_none()) {
            rec.sent_by_phase[i].fetch_add(1, Ordering::Relaxed);
        }
        Pending {
            due,
            sent: None,
            home: None,
            resend: None,
            session: self.session,
            profile: self.profile as u8,
            line,
            class,
            step,
            phase,
            measured: true,
            notify: None,
        }
    }
}

/// A user's next line, ready to be written ([`User::next`]).
pub(super) struct Next {
    ready: crate::conn::Ready,
    class: CommandClass,
    line: u8,
}

/// Source address for connection `i`: 127.0.0.x past 25,000 connections on loopback.
fn source_for(t: &Target, i: usize, conns: usize) -> Option<IpAddr> {
    if conns <= 25_000 || !t.addr.ip().is_loopback() || !t.addr.is_ipv4() {
        return None;
    }
    let x = 2 + (i / 20_000) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, x)))
}

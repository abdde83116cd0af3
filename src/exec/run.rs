//! Running one job: spawn, stream both pipes, enforce timeout / cap / cancel, reap.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{KillReason, StreamKind};

use super::cgroup::Cell;
use super::child::Child;
use super::contain::Containment;
use super::error::ExecError;
use super::group::{signal_group, GroupGuard};
use super::identity::Identity;
use super::input::{self, Input, Interactive};
use super::pty::{self, Master, Pty};
use super::spawner::{self, Program};
use crate::output::{OutputSink, SinkClosed};
use crate::shell::{Line, Plan};

/// First read size: small so the first bytes reach the client at once.
const FIRST_CHUNK: usize = 4 * 1024;
/// Largest read size: reached by doubling while reads keep filling the buffer.
const MAX_CHUNK: usize = 64 * 1024;
/// After the main child exits, how long its leftovers may keep the pipes open
/// before the group is killed (the output already in the pipes is still read).
const EXIT_LINGER: Duration = Duration::from_millis(15);
/// After killing the group, how long to wait for more bytes before giving up on
/// pipes held open by processes outside the group (e.g. a `setsid` daemon).
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// `PATH` used when the job's environment has none (what `sh` would do).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything needed to run one command; built by the session from its state.
#[derive(Debug, Clone)]
pub struct Job {
    /// The user's command line, parsed once by whoever built the job: its text
    /// runs verbatim under `/bin/sh -c`, or its argv directly.
    pub line: Arc<Line>,
    /// Working directory of the child (the session's cwd).
    pub cwd: PathBuf,
    /// The COMPLETE child environment: the caller scrubs it; `run` clears the
    /// inherited environment and sets exactly these (plus `PWD` = `cwd`).
    /// Shared: a session's environment changes rarely and is reused by every
    /// command it runs.
    pub env: crate::env::Env,
    /// Wall-clock limit from spawn; then the group is terminated.
    pub timeout: Duration,
    /// SIGTERM → wait this long → SIGKILL, so well-behaved programs can clean up.
    pub kill_grace: Duration,
    /// Bytes forwarded per stream; more output truncates and kills the command.
    pub output_cap: u64,
    /// The engine's limits and cgroups; [`Containment::none`] for a bare child.
    pub containment: Arc<Containment>,
    /// `cwd`, opened and checked against the tenant's root when the command
    /// started (`security::open_inside`): the child is started in this
    /// directory (through `/proc/self/fd/N`), not in whatever the path names
    /// by then. `None`: started in `cwd` (no tenant root).
    pub dir: Option<Arc<std::os::fd::OwnedFd>>,
    /// The user the command runs as (`[exec] run_as`); `None`: the server's own.
    pub user: Option<Arc<Identity>>,
}

impl Job {
    /// The directory the child starts in: the held descriptor when there is
    /// one, else `cwd`.
    fn spawn_dir(&self) -> std::borrow::Cow<'_, Path> {
        use std::os::fd::AsRawFd;
        match &self.dir {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).into(),
            None => self.cwd.as_path().into(),
        }
    }
}

/// The two ways a running command can be stopped from outside, kept apart so the
/// outcome can tell a user's cancel from a server shutdown.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Fired by the client's `Cancel` (or by dropping the request).
    pub cancel: crate::Cancel,
    /// Fired when the server shuts down.
    pub shutdown: CancellationToken,
}

/// How a command ended; becomes the request's `Exit` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code for a normal exit (127 / 126 for a missing / non-executable program).
    pub code: Option<i32>,
    /// The signal that ended the main process, if any (`code` is then `None`).
    pub signal: Option<i32>,
    /// Some output was not forwarded because a stream reached `output_cap`.
    pub truncated: bool,
    /// Why the engine killed it, if it did.
    pub killed: KillReason,
    /// A process was started (false when exec answered for a program it
    /// could not start, as `sh` would: 127 or 126); what spawns are counted by.
    pub spawned: bool,
}

/// Spawns the job and streams its output into `sink` until it ends. Exactly one
/// `Outcome` or error.
///
/// The child runs in its own process group with a cleared environment, stdin from
/// `/dev/null` and piped stdout/stderr, with the job's rlimits and, when cgroups
/// are on, in a cgroup of its own. Every way out (exit, timeout, cancel,
/// shutdown, output cap, closed sink, dropped future) kills whatever is left of
/// the group and of the cgroup (daemonized descendants included) and reaps the child.
pub async fn run<S: OutputSink>(
    job: &Job,
    sink: &mut S,
    stop: &Stop,
) -> Result<Outcome, ExecError> {
    run_with(job, None, sink, stop).await
}

/// [`run`] for a command with live input (a `Spawn`): its stdin is a pipe fed
/// from `io.feed`, or, with `io.pty`, stdin, stdout and stderr are a terminal
/// of that size (output is then one stream, `Stdout`), and the command leads
/// a session of its own with the terminal as its controlling terminal. Every
/// other rule of [`run`] holds: limits, cgroup, timeout, output cap, kill.
pub async fn run_interactive<S: OutputSink>(
    job: &Job,
    io: Interactive,
    sink: &mut S,
    stop: &Stop,
) -> Result<Outcome, ExecError> {
    run_with(job, Some(io), sink, stop).await
}

async fn run_with<S: OutputSink>(
    job: &Job,
    io: Option<Interactive>,
    sink: &mut S,
    stop: &Stop,
) -> Result<Outcome, ExecError> {
    let dir = job.spawn_dir();
    let user = job.user.as_deref();
    let (feed, pty) = match io {
        Some(io) => {
            let pty = io.pty.map(Pty::open).transpose().map_err(ExecError::Io)?;
            (Some(io.feed), pty)
        }
        None => (None, None),
    };
    // On a terminal: `setsid --ctty --` first (the command leads a session
    // whose controlling terminal is its stdin). As another user:
    // `[prlimit <limits>] setpriv <ids> --` next.
    let leader = match &pty {
        Some(_) => Some(pty::session_leader().map_err(ExecError::Spawn)?),
        None => None,
    };
    let mut chain: Vec<&std::ffi::OsStr> = leader.iter().flatten().copied().collect();
    if let Some(user) = user {
        chain.extend(
            job.containment
                .chain()
                .iter()
                .chain(user.prefix())
                .map(|a| a.as_os_str()),
        );
    }
    let mut cmd = match job.line.plan()? {
        Plan::Shell => spawnable(&chain, Path::new("/bin/sh"), None, ["-c", job.line.text()]),
        Plan::Direct(argv) => {
            let prog = argv.first().map(String::as_str).unwrap_or_default();
            // Resolved here, in the job's PATH and directory: the spawner's
            // `posix_spawn` takes a path, not a name to search for.
            match lookup(prog, &dir, env_path(&job.env)) {
                // Behind a chain, `setpriv` or `setsid` finds the program the
                // same way (`execvp` over the same PATH from the same cwd) and
                // gives it the argv[0] a shell would.
                Lookup::Found(_) if !chain.is_empty() => {
                    spawnable(&chain, Path::new(prog), None, &argv[1..])
                }
                Lookup::Found(path) => {
                    // Found under the held directory: named relative to it (the
                    // child starts there), not through /proc/self/fd/N, which a
                    // script's interpreter could no longer open after exec.
                    let path = match (&job.dir, path.strip_prefix(&*dir)) {
                        (Some(_), Ok(rel)) => Path::new(".").join(rel),
                        _ => path,
                    };
                    spawnable(&[], &path, Some(prog), &argv[1..])
                }
                Lookup::NotExecutable => return cannot_run(sink, stop, prog, 126).await,
                Lookup::Missing => return cannot_run(sink, stop, prog, 127).await,
            }
        }
    };
    for (k, v) in job.env.iter().filter(|(k, _)| k != "PWD") {
        cmd.env(k, v);
    }
    cmd.env("PWD", &job.cwd);
    // The child's ends of its stdio (held here until it has been spawned)
    // and ours.
    let mut stdin_end = None;
    let mut ours_in = None;
    let mut pipes = None;
    match &pty {
        // No process group here: `setsid` makes the child the leader of a
        // new session and group (pgid = its pid), which it could not be if
        // it led a group already.
        Some(_) => {}
        None => {
            if feed.is_some() {
                let (r, w) = pipe()?;
                stdin_end = Some(r);
                ours_in = Some(w);
            }
            pipes = Some((pipe()?, pipe()?));
            cmd.own_group();
        }
    }
    let stdio = match (&pty, &pipes) {
        (Some(pty), _) => [Some(pty.terminal()); 3],
        (None, Some(((_, out), (_, err)))) => [
            stdin_end.as_ref().map(AsFd::as_fd),
            Some(out.as_fd()),
            Some(err.as_fd()),
        ],
        (None, None) => [None; 3],
    };
    let start_in = match &job.dir {
        Some(fd) => spawner::Dir::Held(fd.as_fd()),
        None => spawner::Dir::Path(&job.cwd),
    };

    // Subscribe before the child exists so its SIGCHLD cannot be missed.
    let mut sigchld = signal(SignalKind::child()).map_err(ExecError::Io)?;
    // The child is born inside its cell: the spawning thread enters it,
    // spawns and leaves (see `cgroup`).
    let mut cell = job.containment.cell().await?;
    let doors = cell
        .as_ref()
        .map(Cell::doors)
        .transpose()?
        .unwrap_or_default();
    let spawned = spawner::spawn(spawner::Request {
        program: cmd,
        stdio,
        dir: start_in,
        doors,
    })
    .await?;
    // The child's ends close here: from now on only the child holds them,
    // so their end is seen as the end of its output (or input).
    drop(stdin_end);
    let (ours_out, ours_err) = match pipes {
        Some(((out, theirs_out), (err, theirs_err))) => {
            drop((theirs_out, theirs_err));
            (Some(out), Some(err))
        }
        None => (None, None),
    };
    let mut master = pty
        .map(Pty::into_master)
        .transpose()
        .map_err(ExecError::Io)?;
    let pgid = match spawned {
        Ok(pid) => pid,
        Err(e) => return spawn_failed(e, job, sink, stop).await,
    };
    let mut child = Child::new(pgid);
    let mut guard = GroupGuard::new(pgid);
    // A child that switches users set its limits on itself (the chain).
    let limited = match user {
        Some(_) => Ok(()),
        None => job.containment.limit(pgid, cell.as_ref()),
    };
    if let Err(e) = limited {
        // Fail closed: a child that could not be limited does not keep running.
        signal_group(pgid, Signal::SIGKILL);
        if let Some(cell) = cell.as_mut() {
            cell.kill_all().await;
        }
        let _ = child.wait().await;
        guard.disarm();
        return Err(e.into());
    }
    let deadline = deadline_after(job.timeout);

    let mut streams = match &mut master {
        Some(m) => [
            Stream::new(StreamKind::Stdout, m.reader.take().map(Pipe::Pty)),
            Stream::new(StreamKind::Stderr, None),
        ],
        None => [
            Stream::new(StreamKind::Stdout, receiver(ours_out)?),
            Stream::new(StreamKind::Stderr, receiver(ours_err)?),
        ],
    };
    let writer = match &mut master {
        Some(m) => m.writer.take().map(input::Writer::Pty),
        None => ours_in
            .map(pipe::Sender::from_owned_fd)
            .transpose()
            .map_err(ExecError::Io)?
            .map(input::Writer::Pipe),
    };
    let mut input = feed.map(|feed| Input::new(feed, writer));
    // Which stream is polled first: the one that did not deliver last, so a
    // firehose on one pipe cannot starve the other.
    let mut turn = 0;
    let exit_watch = exited(&mut sigchld, pgid);
    tokio::pin!(exit_watch);

    let mut exited_seen = false;
    let mut killed = KillReason::None;
    let mut truncated = false;
    let mut failure: Option<io::Error> = None;
    // Set once the main child has exited: when to stop waiting for EOF.
    let mut linger: Option<Instant> = None;
    let mut group_killed = false;

    loop {
        if exited_seen && streams.iter().all(|s| s.pipe.is_none()) {
            break;
        }
        let (i1, i2) = (turn, 1 - turn);
        let [s0, s1] = &mut streams;
        let (first, second) = if turn == 0 { (s0, s1) } else { (s1, s0) };
        let (open1, open2) = (first.pipe.is_some(), second.pipe.is_some());
        let event = tokio::select! {
            biased;
            _ = stop.shutdown.cancelled() => Event::Kill(KillReason::Shutdown),
            _ = stop.cancel.cancelled() => Event::Kill(KillReason::Cancelled),
            _ = sleep_until(deadline) => Event::Kill(KillReason::Timeout),
            _ = sleep_until(linger.unwrap_or(deadline)), if linger.is_some() => Event::Linger,
            () = &mut exit_watch, if !exited_seen => Event::Exited,
            r = read_some(&mut first.pipe, &mut first.buf), if open1 => Event::Read(i1, r),
            r = read_some(&mut second.pipe, &mut second.buf), if open2 => Event::Read(i2, r),
            step = step_input(&mut input, master.as_ref()), if input.as_ref().is_some_and(Input::active) => Event::Input(step),
        };
        match event {
            Event::Kill(reason) => {
                killed = reason;
                break;
            }
            Event::Exited => {
                exited_seen = true;
                linger = Some(Instant::now() + EXIT_LINGER);
            }
            Event::Linger if group_killed => break,
            Event::Linger => {
                // Leftovers (e.g. `sleep 100 &`) hold the pipes: kill them; what they
                // and the main child already wrote stays readable until EOF.
                signal_group(pgid, Signal::SIGKILL);
                if let Some(cell) = &cell {
                    cell.signal(Signal::SIGKILL);
                }
                group_killed = true;
                linger = Some(Instant::now() + DRAIN_IDLE);
            }
            Event::Read(i, Ok(0)) => streams[i].pipe = None,
            Event::Read(i, Ok(n)) => {
                turn = 1 - i;
                if let Err(reason) = streams[i]
                    .deliver(n, job.output_cap, sink, stop, deadline)
                    .await
                {
                    truncated = reason == KillReason::OutputLimit;
                    killed = reason;
                    break;
                }
                if group_killed {
                    linger = Some(Instant::now() + DRAIN_IDLE);
                }
            }
            Event::Read(_, Err(e)) => {
                failure = Some(e);
                break;
            }
            Event::Input(input::Step::Consumed(n)) => {
                if sink.input_consumed(n).await.is_err() {
                    killed = KillReason::Cancelled;
                    break;
                }
            }
            Event::Input(input::Step::Quiet) => {}
            Event::Input(input::Step::Done) => input = None,
        }
    }

    // Closing our ends makes late writers fail (SIGPIPE) instead of blocking.
    drop(streams);
    drop(input);
    drop(master);
    if !exited_seen && (killed != KillReason::None || failure.is_some()) {
        signal_group(pgid, Signal::SIGTERM);
        if let Some(cell) = &cell {
            cell.signal(Signal::SIGTERM);
        }
        if !job.kill_grace.is_zero() {
            let _ = timeout(job.kill_grace, &mut exit_watch).await;
        }
    }
    // Always, and before reaping (while the zombie leader still pins the pgid):
    // nothing of the group, or of the cell, outlives its request.
    signal_group(pgid, Signal::SIGKILL);
    if let Some(cell) = cell.as_mut() {
        cell.kill_all().await;
    }
    let status = child.wait().await;
    guard.disarm();
    // After the reap, so the cell counts no zombie of ours and can be reused.
    drop(cell);
    let status = status.map_err(ExecError::Io)?;
    if let Some(e) = failure {
        return Err(ExecError::Io(e));
    }
    Ok(Outcome {
        code: status.code(),
        signal: status.signal(),
        truncated,
        killed,
        spawned: true,
    })
}

/// A pipe whose ends both close on exec: the child gets its end by `dup2`.
fn pipe() -> Result<(OwnedFd, OwnedFd), ExecError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ExecError::Spawn(e.into()))
}

/// Our end of an output pipe, read through the runtime.
fn receiver(fd: Option<OwnedFd>) -> Result<Option<Pipe>, ExecError> {
    fd.map(|fd| pipe::Receiver::from_owned_fd(fd).map(Pipe::Out))
        .transpose()
        .map_err(ExecError::Io)
}

/// What runs `program` with `args`: directly (with `arg0` as its argv[0]
/// when given), or, with a `run_as` user or a terminal, at the end of
/// `chain` (`[setsid --ctty --] [prlimit …] setpriv … --`, see
/// [`identity`](super::identity)).
fn spawnable<A: AsRef<std::ffi::OsStr>>(
    chain: &[&std::ffi::OsStr],
    program: &Path,
    arg0: Option<&str>,
    args: impl IntoIterator<Item = A>,
) -> Program {
    let mut p = match chain {
        [first, rest @ ..] => {
            let mut p = Program::new(Path::new(first), first);
            p.args(rest).arg(program);
            p
        }
        [] => Program::new(
            program,
            arg0.map_or(program.as_os_str(), std::ffi::OsStr::new),
        ),
    };
    p.args(args);
    p
}

enum Event {
    Kill(KillReason),
    Exited,
    Linger,
    /// A read finished on `streams[index]`.
    Read(usize, io::Result<usize>),
    /// The input side made a step.
    Input(input::Step),
}

async fn step_input(input: &mut Option<Input>, master: Option<&Master>) -> input::Step {
    match input {
        Some(input) => input.step(master).await,
        None => std::future::pending().await,
    }
}

/// One of the child's outputs: a pipe, or a terminal's controlling side
/// (its output, both streams in one, ended by EIO).
enum Pipe {
    Out(pipe::Receiver),
    Pty(pipe::Receiver),
}

/// Per-stream state: the pipe (None once at EOF or closed), its adaptive read
/// buffer and the count of forwarded bytes.
struct Stream {
    kind: StreamKind,
    pipe: Option<Pipe>,
    buf: Vec<u8>,
    sent: u64,
}

impl Stream {
    fn new(kind: StreamKind, pipe: Option<Pipe>) -> Self {
        Stream {
            kind,
            pipe,
            buf: vec![0; FIRST_CHUNK],
            sent: 0,
        }
    }

    /// Forwards the `n` bytes just read (up to the cap), then doubles the buffer if
    /// the read filled it: output is arriving faster than we drain it.
    async fn deliver<S: OutputSink>(
        &mut self,
        n: usize,
        cap: u64,
        sink: &mut S,
        stop: &Stop,
        deadline: Instant,
    ) -> Result<(), KillReason> {
        let room = cap.saturating_sub(self.sent);
        let take = usize::try_from(room).map_or(n, |room| room.min(n));
        if take > 0 {
            forward(sink, self.kind, &self.buf[..take], stop, deadline).await?;
            self.sent += take as u64;
        }
        if take < n {
            return Err(KillReason::OutputLimit);
        }
        if n == self.buf.len() && self.buf.len() < MAX_CHUNK {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(())
    }
}

/// Hands a chunk to the sink, but never waits on a slow client past a cancel,
/// shutdown or the deadline.
async fn forward<S: OutputSink>(
    sink: &mut S,
    kind: StreamKind,
    data: &[u8],
    stop: &Stop,
    deadline: Instant,
) -> Result<(), KillReason> {
    tokio::select! {
        biased;
        _ = stop.shutdown.cancelled() => Err(KillReason::Shutdown),
        _ = stop.cancel.cancelled() => Err(KillReason::Cancelled),
        _ = sleep_until(deadline) => Err(KillReason::Timeout),
        r = sink.chunk(kind, data) => r.map_err(|SinkClosed| KillReason::Cancelled),
    }
}

async fn read_some(pipe: &mut Option<Pipe>, buf: &mut [u8]) -> io::Result<usize> {
    match pipe {
        Some(Pipe::Out(r)) => r.read(buf).await,
        // Once the last holder of the terminal side has closed it, reading
        // the controlling side fails with EIO: that is its end of file.
        Some(Pipe::Pty(r)) => match r.read(buf).await {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            other => other,
        },
        None => std::future::pending().await,
    }
}

/// Resolves when `pid` has exited, *without* reaping it, so the group can still
/// be signalled safely. Driven by SIGCHLD, never by polling.
async fn exited(sigchld: &mut tokio::signal::unix::Signal, pid: Pid) {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                // Not ours to wait for any more; `Child::wait` will report the error.
                tracing::warn!(pid = pid.as_raw(), error = %e, "waitid failed");
                return;
            }
        }
        if sigchld.recv().await.is_none() {
            // The signal driver is gone (runtime shutting down): fall back to a slow poll.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    // A "no timeout" of Duration::MAX must not overflow Instant.
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn env_path(env: &[(String, String)]) -> Option<&str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
}

enum Lookup {
    Found(PathBuf),
    NotExecutable,
    Missing,
}

/// Finds `prog` the way `sh` would: as a path when it contains `/` (relative to
/// `cwd`), else in each `PATH` entry (an empty entry meaning `cwd`).
fn lookup(prog: &str, cwd: &Path, path: Option<&str>) -> Lookup {
    fn probe(p: &Path) -> Option<bool> {
        let m = std::fs::metadata(p).ok()?;
        Some(m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    if prog.is_empty() {
        return Lookup::Missing;
    }
    if prog.contains('/') {
        let p = cwd.join(prog);
        return match probe(&p) {
            Some(true) => Lookup::Found(p),
            Some(false) => Lookup::NotExecutable,
            None => Lookup::Missing,
        };
    }
    let mut denied = false;
    for dir in path.unwrap_or(DEFAULT_PATH).split(':') {
        let p = cwd.join(dir).join(prog);
        match probe(&p) {
            Some(true) => return Lookup::Found(p),
            // A directory of that name is skipped, like sh does; a plain file
            // without x bits makes the final verdict "Permission denied".
            Some(false) => denied |= p.is_file(),
            None => {}
        }
    }
    if denied {
        Lookup::NotExecutable
    } else {
        Lookup::Missing
    }
}

/// Answers like `sh` for a program that cannot be run: a message on stderr and
/// exit code 127 (not found) or 126 (not executable).
async fn cannot_run<S: OutputSink>(
    sink: &mut S,
    stop: &Stop,
    prog: &str,
    code: i32,
) -> Result<Outcome, ExecError> {
    let what = if code == 127 {
        "command not found"
    } else {
        "Permission denied"
    };
    let msg = format!("voxterm: {prog}: {what}\n");
    let killed = match forward(sink, StreamKind::Stderr, msg.as_bytes(), stop, far_future()).await {
        Ok(()) => KillReason::None,
        Err(reason) => reason,
    };
    Ok(Outcome {
        code: Some(code),
        signal: None,
        truncated: false,
        killed,
        spawned: false,
    })
}

fn far_future() -> Instant {
    deadline_after(Duration::MAX)
}

async fn spawn_failed<S: OutputSink>(
    e: io::Error,
    job: &Job,
    sink: &mut S,
    stop: &Stop,
) -> Result<Outcome, ExecError> {
    // posix_spawn reports a failed chdir with the same errno as a failed exec.
    if !job.cwd.is_dir() {
        return Err(ExecError::Spawn(io::Error::new(
            e.kind(),
            format!("working directory {}: {e}", job.cwd.display()),
        )));
    }
    let prog = match job.line.direct_argv() {
        Some(argv) => argv.first().map_or("", String::as_str),
        None => "/bin/sh",
    };
    match e.kind() {
        io::ErrorKind::NotFound => cannot_run(sink, stop, prog, 127).await,
        io::ErrorKind::PermissionDenied => cannot_run(sink, stop, prog, 126).await,
        _ if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
            cannot_run(sink, stop, prog, 126).await
        }
        _ => Err(ExecError::Spawn(e)),
    }
}

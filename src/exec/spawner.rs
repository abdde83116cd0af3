//! Spawning from a small descriptor table.
//!
//! A new process starts with a copy of its parent's descriptor table, and
//! `exec` then closes the close-on-exec ones one by one. A server with 10,000
//! connections holds 10,000 sockets, so every command it spawned paid for
//! copying and closing all of them: `perf` on the server at 10,000 users put
//! ~29 % of its samples there, and `cargo bench --bench spawn_fds` measures a
//! spawn and wait of `/bin/true` at ~1 ms with no connections and ~3.3 ms
//! with 10,000 (README "Spawning from a small descriptor table").
//!
//! So commands are spawned by one thread of the server that has a descriptor
//! table of its own ([`unshare`]`(CLONE_FILES)`, then every inherited
//! descriptor above stderr closed): its children copy a handful of entries,
//! whatever the server holds. The child is still the server's (a thread's
//! children are its process's), so waiting, signals, process groups and
//! cgroups are unchanged. The thread also has a working directory of its
//! own (`CLONE_FS`): it moves into the command's directory and spawns, so
//! the child starts there.
//!
//! The spawn is glibc's `posix_spawn` (through nix), as std's `Command`
//! used: a `vfork`-like clone, so the server's memory is not copied either.
//! std's `Command` is not used here because it cannot set the child's
//! signal mask: every command starts with no signal blocked and every
//! signal at its default (`POSIX_SPAWN_SETSIGMASK`, `POSIX_SPAWN_SETSIGDEF`),
//! whatever the server blocks or ignores (a server started in the
//! background of a script has SIGINT and SIGQUIT ignored; Ctrl-C on its
//! commands' terminals must still work).
//!
//! What crosses between the tables: the child's ends of its pipes or
//! terminal, the directory it starts in and the cgroup files the spawning
//! thread moves itself through. The caller names them by their numbers in
//! the server's table and awaits the spawner's answer, and they stay open
//! until it has come, even if the caller's future is dropped first (see
//! [`spawn`]). The caller's runtime thread is free meanwhile: a spawn into
//! a cgroup v1 cell takes milliseconds, and a thread that blocked for it
//! held up every cached answer queued behind it. A second thread, the
//! *desk*, in the server's table, waits for each answer and wakes the
//! caller (the spawner cannot: waking the runtime writes to a descriptor
//! its table does not hold); the spawner takes copies of its own with
//! `pidfd_getfd` (the server's table is its main thread's), spawns, and
//! closes the copies. Nothing opened in the server's table is ever closed
//! by the spawner, or the reverse. The spawner blocks every signal, so a
//! signal handler (tokio's writes to a pipe of the server's table) never
//! runs on it.
//!
//! Where `pidfd_getfd` is refused (a seccomp profile that denies it), the
//! thread shares the server's table and takes its copies with `dup`: the
//! spawn is then as costly as before, and the log says so once.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;

use nix::sched::{unshare, CloneFlags};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use rustix::process::{pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

use super::cgroup::{self, Control, Door};
use super::error::ContainError;

/// What to start: the program, its argv and its whole environment, as the
/// C strings `posix_spawn` takes, and whether it leads a process group of
/// its own.
#[derive(Debug)]
pub(crate) struct Program {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    own_group: bool,
    /// An argument or variable held a NUL byte: it cannot be passed, and
    /// the spawn fails with `InvalidInput`, as std's `Command` does.
    nul: bool,
}

impl Program {
    /// `path` (absolute, or relative to the directory it starts in) with
    /// `arg0` as its argv[0], an empty environment and no group of its own.
    pub(crate) fn new(path: &Path, arg0: &OsStr) -> Program {
        let mut p = Program {
            path: CString::default(),
            argv: Vec::new(),
            env: Vec::new(),
            own_group: false,
            nul: false,
        };
        p.path = p.c(path.as_os_str().as_bytes());
        p.arg(arg0);
        p
    }

    /// Appends an argument.
    pub(crate) fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Program {
        let c = self.c(arg.as_ref().as_bytes());
        self.argv.push(c);
        self
    }

    /// Appends arguments.
    pub(crate) fn args<A: AsRef<OsStr>>(
        &mut self,
        args: impl IntoIterator<Item = A>,
    ) -> &mut Program {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Adds `key=value` to the environment (the caller adds each key once).
    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Program {
        let mut kv = key.as_ref().as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(value.as_ref().as_bytes());
        let c = self.c(&kv);
        self.env.push(c);
        self
    }

    /// Makes the child lead a process group of its own (pgid = its pid).
    pub(crate) fn own_group(&mut self) -> &mut Program {
        self.own_group = true;
        self
    }

    fn c(&mut self, bytes: &[u8]) -> CString {
        CString::new(bytes).unwrap_or_else(|_| {
            self.nul = true;
            CString::default()
        })
    }
}

/// Where the child starts: a path, or a directory the caller holds open.
pub(crate) enum Dir<'a> {
    /// A path, as given.
    Path(&'a Path),
    /// An open directory.
    Held(BorrowedFd<'a>),
}

/// One spawn, as the caller sees it: the program, and the caller's
/// descriptors it needs.
pub(crate) struct Request<'a> {
    /// What to start.
    pub(crate) program: Program,
    /// The child's stdin, stdout and stderr; `None` is `/dev/null`.
    pub(crate) stdio: [Option<BorrowedFd<'a>>; 3],
    /// Where it starts.
    pub(crate) dir: Dir<'a>,
    /// The cell it is born in (empty: none).
    pub(crate) doors: Vec<Door<&'a Control>>,
}

/// What a spawn gives back: the child's pid, or why it did not start.
/// The outer error is the cell's (the spawning thread could not enter it),
/// the inner one the spawn's.
pub(crate) type Spawned = Result<io::Result<Pid>, ContainError>;

/// Spawns `req` from the spawner thread, awaiting its answer without
/// holding the runtime's thread: a spawn can take milliseconds (the spawner
/// moves into a cgroup v1 cell and back, the parent waits for the child's
/// `exec`, and spawns queue on the one thread), and a worker that blocked
/// meanwhile held up every cached answer on it: `quick` saw single polls of
/// 5–30 ms, the cached answers' ~10 ms p99. The descriptors `req` borrows
/// stay open until the spawner has answered, even if this future is dropped
/// first (see [`Pending`]).
pub(crate) async fn spawn(req: Request<'_>) -> Spawned {
    let wire = Wire::from(req);
    let Some(desk) = desk() else {
        return Ok(Err(io::Error::other(
            "the spawner thread could not start (see the log)",
        )));
    };
    let (value, answer) = mpsc::sync_channel(1);
    let (woken, wake) = tokio::sync::oneshot::channel();
    let mut pending = Pending {
        answer: Some(answer),
        _borrows: std::marker::PhantomData,
    };
    if desk.send(Ask { wire, value, woken }).is_err() {
        pending.answer = None;
        return stopped();
    }
    // An error here is the desk gone without a word: `take` says so.
    let _ = wake.await;
    pending.take()
}

/// One spawn on its way through the desk: the request, where its answer
/// goes, and the caller's wake-up.
struct Ask {
    wire: Wire,
    value: mpsc::SyncSender<Spawned>,
    woken: tokio::sync::oneshot::Sender<()>,
}

/// The spawner's front desk: a thread of the server's own descriptor table
/// that hands each request to the spawner, waits for its answer and wakes
/// the caller. The spawner cannot wake a task itself: waking tokio's driver
/// writes to a descriptor of the server's table, which the spawner's own
/// table does not hold. Spawns are one at a time on the spawner anyway, so
/// one thread waiting for them in turn costs nothing in parallelism.
fn desk() -> Option<&'static mpsc::Sender<Ask>> {
    static DESK: OnceLock<Option<mpsc::Sender<Ask>>> = OnceLock::new();
    DESK.get_or_init(|| {
        let spawner = spawner()?.clone();
        let (tx, rx) = mpsc::channel::<Ask>();
        let started = std::thread::Builder::new()
            .name("voxterm-spawn-desk".into())
            .spawn(move || {
                for ask in rx {
                    let (reply, answer) = mpsc::sync_channel(1);
                    // No answer (the spawner gone): `ask.value` is dropped
                    // unused, which the caller reads as `stopped`.
                    if spawner.send((ask.wire, reply)).is_ok() {
                        if let Ok(spawned) = answer.recv() {
                            let _ = ask.value.send(spawned);
                        }
                    }
                    let _ = ask.woken.send(());
                }
            });
        match started {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "the spawner's desk thread cannot start: no command can run");
                None
            }
        }
    })
    .as_ref()
}

/// A request the spawner has not answered yet, holding the lifetime of the
/// descriptors it names by number: because it has a `Drop`, the compiler
/// keeps them open for as long as it lives. Dropped unanswered (the caller's
/// future dropped mid-spawn), it waits for the answer, as every spawn once
/// did, and kills what was started, leaving its reaping to `child`'s orphans.
struct Pending<'a> {
    answer: Option<mpsc::Receiver<Spawned>>,
    _borrows: std::marker::PhantomData<BorrowedFd<'a>>,
}

impl Pending<'_> {
    /// The answer, which has been sent (or never will be).
    fn take(&mut self) -> Spawned {
        self.answer
            .take()
            .and_then(|a| a.recv().ok())
            .unwrap_or_else(stopped)
    }
}

/// The answer when the spawner (or its desk) is gone.
fn stopped() -> Spawned {
    Ok(Err(io::Error::other("the spawner thread has stopped")))
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.answer.is_some() {
            if let Ok(Ok(pid)) = self.take() {
                drop(super::group::GroupGuard::new(pid));
                drop(super::child::Child::new(pid));
            }
        }
    }
}

/// Starts the spawner now, while the server's table is still small (its
/// thread's table starts as a copy, trimmed at once, but the copy itself is
/// cheaper early). Idempotent; [`spawn`] starts it too.
pub(crate) fn start() {
    let _ = spawner();
}

/// True when commands are spawned from a descriptor table of their own
/// (false: the spawner shares the server's, see the module's doc).
#[cfg(test)]
fn small_table() -> bool {
    matches!(spawner_mode(), Some(Mode::OwnTable))
}

/// A request with the caller's descriptors as numbers in the server's
/// table, valid while the caller waits.
struct Wire {
    program: Program,
    stdio: [Option<RawFd>; 3],
    dir: WireDir,
    doors: Vec<Door<(RawFd, PathBuf)>>,
}

enum WireDir {
    Path(PathBuf),
    Held(RawFd),
}

impl From<Request<'_>> for Wire {
    fn from(req: Request<'_>) -> Wire {
        let side = |c: &Control| (c.fd().as_raw_fd(), c.path().to_path_buf());
        Wire {
            program: req.program,
            stdio: req.stdio.map(|fd| fd.map(|fd| fd.as_raw_fd())),
            dir: match req.dir {
                Dir::Path(p) => WireDir::Path(p.to_path_buf()),
                Dir::Held(fd) => WireDir::Held(fd.as_raw_fd()),
            },
            doors: req
                .doors
                .iter()
                .map(|d| Door {
                    into: side(d.into),
                    back: side(d.back),
                })
                .collect(),
        }
    }
}

type Job = (Wire, mpsc::SyncSender<Spawned>);

/// How the spawner takes the caller's descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A table of its own; copies through `pidfd_getfd`.
    OwnTable,
    /// The server's table; copies with `dup`.
    SharedTable,
}

struct Spawner {
    tx: mpsc::Sender<Job>,
    mode: Mode,
}

fn spawner_cell() -> &'static Option<Spawner> {
    static SPAWNER: OnceLock<Option<Spawner>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let own = launch(Mode::OwnTable);
        if let Err(e) = &own {
            tracing::warn!(error = %e, "commands are spawned from the server's own descriptor table: each spawn copies and closes every connection's descriptor");
        }
        match own.or_else(|_| launch(Mode::SharedTable)) {
            Ok(s) => {
                tracing::debug!(mode = ?s.mode, "the spawner thread is ready");
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, "the spawner thread cannot start: no command can run");
                None
            }
        }
    })
}

fn spawner() -> Option<&'static mpsc::Sender<Job>> {
    spawner_cell().as_ref().map(|s| &s.tx)
}

#[cfg(test)]
fn spawner_mode() -> Option<Mode> {
    spawner_cell().as_ref().map(|s| s.mode)
}

/// Starts the spawner thread in `mode` and waits until it is ready; with a
/// table of its own, until it has proved it takes copies of the server's
/// descriptors (of a pipe made here).
fn launch(mode: Mode) -> io::Result<Spawner> {
    let (probe, _keep) = rustix::pipe::pipe()?;
    let probe_fd = probe.as_raw_fd();
    let want = rustix::fs::fstat(&probe)?.st_ino;
    let (ready_tx, ready) = mpsc::sync_channel::<io::Result<()>>(1);
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("voxterm-spawner".into())
        .spawn(move || {
            let pull = match setup(mode, probe_fd, want) {
                Ok(pull) => pull,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            drop(ready_tx);
            for (wire, reply) in rx {
                #[cfg(test)]
                tests::hold_while_held();
                let _ = reply.send(execute(wire, &pull));
            }
        })?;
    ready
        .recv()
        .map_err(|_| io::Error::other("the spawner thread ended during start"))??;
    drop(probe);
    Ok(Spawner { tx, mode })
}

/// How the spawner thread takes a copy of a descriptor of the server's table.
enum Pull {
    /// Through a pidfd of the server.
    Pidfd(OwnedFd),
    /// With `dup`, in the shared table.
    Dup,
}

impl Pull {
    /// A copy numbered 3 or above, so that moving it onto the child's stdin,
    /// stdout or stderr cannot overwrite another one first.
    fn copy(&self, fd: RawFd) -> io::Result<OwnedFd> {
        let copy = match self {
            Pull::Pidfd(pidfd) => pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty())?,
            Pull::Dup => {
                // SAFETY: `fd` is borrowed by the caller of `spawn`, which
                // blocks until the spawn is done, so it is open.
                unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?
            }
        };
        above_stdio(copy)
    }
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// On the spawner thread: every signal blocked, a working directory of its
/// own and, with [`Mode::OwnTable`], a table of its own holding only stdin,
/// stdout and stderr and a pidfd of the server, checked on `probe` (a pipe
/// whose inode is `want`).
fn setup(mode: Mode, probe: RawFd, want: u64) -> io::Result<Pull> {
    use nix::sys::signal::{pthread_sigmask, SigmaskHow};
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None)?;
    if mode == Mode::SharedTable {
        unshare(CloneFlags::CLONE_FS)?;
        return Ok(Pull::Dup);
    }
    unshare(CloneFlags::CLONE_FILES | CloneFlags::CLONE_FS)?;
    // The copy holds every socket the server had open: closed here, or a
    // connection the server closes would stay open through this table.
    // SAFETY: a plain syscall on this thread's own table, which no other
    // thread shares since the unshare above; nothing on this thread holds
    // a descriptor above 2.
    let closed = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed != 0 {
        return Err(io::Error::last_os_error());
    }
    let pidfd = pidfd_open(rustix::process::getpid(), PidfdFlags::empty())?;
    let pull = Pull::Pidfd(pidfd);
    let copy = pull.copy(probe)?;
    if rustix::fs::fstat(&copy)?.st_ino != want {
        return Err(io::Error::other(
            "pidfd_getfd gave a different file than the server's",
        ));
    }
    Ok(pull)
}

/// Spawns `wire` from the spawner thread, taking the caller's descriptors
/// with `pull`. Every copy it takes is closed before it returns, in the
/// spawner's table.
fn execute(wire: Wire, pull: &Pull) -> Spawned {
    let Wire {
        program,
        stdio,
        dir,
        doors,
    } = wire;
    let doors = doors
        .into_iter()
        .map(|Door { into, back }| {
            let side = |(fd, path): (RawFd, PathBuf)| match pull.copy(fd) {
                Ok(file) => Ok(Control::from_parts(File::from(file), path)),
                Err(source) => Err(ContainError::Io { path, source }),
            };
            Ok(Door {
                into: side(into)?,
                back: side(back)?,
            })
        })
        .collect::<Result<Vec<_>, ContainError>>()?;
    let prepared = match prepare(&program, stdio, dir, pull) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let spawn = || {
        posix_spawn(
            program.path.as_c_str(),
            &prepared.actions,
            &prepared.attr,
            &program.argv,
            &program.env,
        )
        .map_err(io::Error::from)
    };
    if doors.is_empty() {
        Ok(spawn())
    } else {
        cgroup::inside(&doors, spawn)
    }
}

/// The spawn's file actions and attributes, with this thread moved into
/// the child's directory; holds the copies the actions name until the
/// spawn is done.
struct Prepared {
    actions: PosixSpawnFileActions,
    attr: PosixSpawnAttr,
    _copies: Vec<OwnedFd>,
}

fn prepare(
    program: &Program,
    stdio: [Option<RawFd>; 3],
    dir: WireDir,
    pull: &Pull,
) -> io::Result<Prepared> {
    if program.nul {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        ));
    }
    let mut actions = PosixSpawnFileActions::init()?;
    let mut copies = Vec::with_capacity(3);
    for (target, fd) in (0..).zip(stdio) {
        let copy = match fd {
            Some(fd) => pull.copy(fd)?,
            None => above_stdio(File::open("/dev/null")?.into())?,
        };
        actions.add_dup2(copy.as_raw_fd(), target)?;
        copies.push(copy);
    }
    let mut attr = PosixSpawnAttr::init()?;
    let mut flags =
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::all())?;
    if program.own_group {
        attr.set_pgroup(Pid::from_raw(0))?;
        flags |= PosixSpawnFlags::POSIX_SPAWN_SETPGROUP;
    }
    attr.set_flags(flags)?;
    match dir {
        WireDir::Path(p) => nix::unistd::chdir(&p)?,
        WireDir::Held(fd) => {
            let held = pull.copy(fd)?;
            nix::unistd::fchdir(held.as_fd())?;
        }
    }
    Ok(Prepared {
        actions,
        attr,
        _copies: copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Set by a test, it keeps the spawner from starting its next request.
    static HELD: AtomicBool = AtomicBool::new(false);
    /// Held by each test that sets [`HELD`], so that one does not let the
    /// spawner go while another holds it.
    static HOLDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    pub(super) fn hold_while_held() {
        while HELD.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets the spawner go after `after`, if nothing did before, so that a
    /// test of code that blocks fails instead of hanging; true once it has.
    fn release_after(after: Duration) -> Arc<AtomicBool> {
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            flag.store(true, Ordering::Release);
            HELD.store(false, Ordering::Release);
        });
        released
    }

    fn sleeper(out: BorrowedFd<'_>) -> Request<'_> {
        let mut program = Program::new(Path::new("/bin/sleep"), OsStr::new("sleep"));
        program.arg("30").own_group();
        Request {
            program,
            stdio: [None, Some(out), None],
            dir: Dir::Path(Path::new("/")),
            doors: Vec::new(),
        }
    }

    /// A spawn can take milliseconds: the thread of the runtime that asked
    /// runs other tasks meanwhile (on one thread, as `--threads 1` has).
    #[tokio::test(flavor = "current_thread")]
    async fn a_runtime_thread_runs_other_tasks_while_its_spawn_waits() {
        let _one_at_a_time = HOLDING.lock().await;
        HELD.store(true, Ordering::Release);
        let released = release_after(Duration::from_secs(5));
        let ran = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let ran = ran.clone();
            async move {
                ran.store(true, Ordering::Release);
                HELD.store(false, Ordering::Release);
            }
        });
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let pid = spawn(sleeper(w.as_fd()))
            .await
            .expect("no cell")
            .expect("spawned");
        assert!(
            ran.load(Ordering::Acquire),
            "the other task ran only after the spawn (released by the timer: {})",
            released.load(Ordering::Acquire)
        );
        task.await.expect("task");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        drop((r, w));
    }

    /// A spawn whose future is dropped before the spawner answered: the drop
    /// waits for the answer (the descriptors it named stay open until then)
    /// and kills the child it started.
    #[tokio::test(flavor = "current_thread")]
    async fn a_spawn_dropped_before_its_answer_waits_for_it_and_kills_the_child() {
        let _one_at_a_time = HOLDING.lock().await;
        HELD.store(true, Ordering::Release);
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mut asked = Box::pin(spawn(sleeper(w.as_fd())));
        let first = tokio::time::timeout(Duration::from_millis(20), &mut asked).await;
        assert!(first.is_err(), "answered while the spawner was held");
        let released = release_after(Duration::from_millis(100));
        drop(asked);
        assert!(
            released.load(Ordering::Acquire),
            "the drop returned before the spawner was let go"
        );
        drop(w);
        // The child held the pipe's other end: killed, it closes it now,
        // not in 30 s.
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = io::Read::read_to_end(&mut File::from(r), &mut rest);
            let _ = done.send(());
        });
        assert!(
            ended.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the dropped spawn's child still runs"
        );
    }

    #[tokio::test]
    async fn the_spawner_has_its_own_table_and_spawns_with_a_pipe_from_the_servers() {
        assert!(
            small_table(),
            "the spawner should have a table of its own here"
        );
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mut program = Program::new(Path::new("/bin/sh"), OsStr::new("sh"));
        program.args(["-c", "echo \"$0 in $PWD\"; pwd -P"]);
        let pid = spawn(Request {
            program,
            stdio: [None, Some(w.as_fd()), None],
            dir: Dir::Path(Path::new("/usr")),
            doors: Vec::new(),
        })
        .await
        .expect("no cell")
        .expect("spawned");
        drop(w);
        let mut out = String::new();
        io::Read::read_to_string(&mut File::from(r), &mut out).expect("read");
        // No PWD in its environment: sh sets it from where it started.
        assert_eq!(out, "sh in /usr\n/usr\n");
        let _ = nix::sys::wait::waitpid(pid, None);
    }

    /// The fallback, where `pidfd_getfd` is refused: a spawner sharing the
    /// server's table (started apart from the process's own).
    #[test]
    fn a_spawner_sharing_the_table_spawns_the_same() {
        let shared = launch(Mode::SharedTable).expect("a shared-table spawner");
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let dir = File::open("/usr").expect("/usr");
        let mut program = Program::new(Path::new("/bin/pwd"), OsStr::new("pwd"));
        program.arg("-P").own_group();
        let (reply, answer) = mpsc::sync_channel(1);
        let wire = Wire::from(Request {
            program,
            stdio: [None, Some(w.as_fd()), None],
            dir: Dir::Held(dir.as_fd()),
            doors: Vec::new(),
        });
        shared.tx.send((wire, reply)).expect("send");
        let pid = answer
            .recv()
            .expect("answer")
            .expect("no cell")
            .expect("spawned");
        drop(w);
        let mut out = String::new();
        io::Read::read_to_string(&mut File::from(r), &mut out).expect("read");
        assert_eq!(out, "/usr\n");
        // Its own process group, as asked.
        assert_eq!(nix::unistd::getpgid(Some(pid)).ok(), Some(pid));
        let _ = nix::sys::wait::waitpid(pid, None);
        // The caller's descriptors are still open: the spawner closed only its copies.
        assert!(rustix::fs::fstat(&dir).is_ok());
    }

    #[tokio::test]
    async fn a_nul_byte_in_an_argument_is_an_error_not_a_truncation() {
        let mut program = Program::new(Path::new("/bin/echo"), OsStr::new("echo"));
        program.arg("a\0b");
        let e = spawn(Request {
            program,
            stdio: [None; 3],
            dir: Dir::Path(Path::new("/")),
            doors: Vec::new(),
        })
        .await
        .expect("no cell")
        .expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

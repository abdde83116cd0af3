//! Per-command cgroups (v1 `pids`, optionally `memory`): a fork cap, a memory
//! bound, and a membership list that daemonized descendants cannot leave.
//!
//! A process group is left with one `setsid()`; a cgroup is not (only a process
//! with write access to cgroupfs can move itself, i.e. root children of a root
//! server: see README "Containing children"). So every command runs in a *cell*,
//! `<own cgroup>/voxterm-<pid>-<n>/c<id>` in each used hierarchy, and when it ends,
//! however it ends, every process listed in the cell is SIGKILLed until the cell
//! is empty.
//!
//! Getting the child into the cell without a race and without losing std's
//! `posix_spawn` fast path (no `pre_exec`): in cgroup v1 one *thread* can be
//! moved by writing its TID to `tasks`. The spawning thread moves itself into the
//! cell, spawns (the child is born inside, before it runs a single instruction),
//! and moves back, synchronously, with no `.await` in between, so no other task
//! runs on that thread meanwhile. Cells are reused (mkdir/rmdir of a memory
//! cgroup costs ~100 µs; a move in and out ~15–40 µs per hierarchy), and so are
//! the cell's control files: each cell keeps `tasks`, `pids.max` and
//! `pids.current` open, as the server keeps its own `tasks`, so a command costs
//! positioned reads and writes, not a path walk through cgroupfs per file.
//! `cgroup.procs` alone is opened for every read: v1 caches a pid list per open
//! file (for about a second), so a kept descriptor would show stale members.
//!
//! Killing a cell first sets its `pids.max` to 0, so a fork storm cannot refill it
//! while it is being emptied. Pids are read from `cgroup.procs` and killed by
//! number: a pid could only be recycled between the read and the kill after the
//! whole pid space wrapped around, within microseconds.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{gettid, Pid};

use super::error::ContainError;

pub use crate::config::CgroupMode;

/// Cells kept for reuse; more idle cells than this are removed.
const MAX_FREE: usize = 256;
/// Distinguishes several engines in one process (tests run many servers).
static NEXT_SET: AtomicU64 = AtomicU64::new(0);

/// One v1 hierarchy this engine uses: where its cells live and where the
/// spawning thread returns to.
#[derive(Debug)]
struct Hierarchy {
    /// `tasks` of the server's own cgroup in this hierarchy, open for writing.
    origin_tasks: Control,
    /// `voxterm-<pid>-<n>`, the parent of this engine's cells.
    parent: PathBuf,
}

/// The cgroups of one engine: its parent directories and its idle cells.
#[derive(Debug)]
pub(crate) struct Cgroups {
    pids: Hierarchy,
    memory: Option<Hierarchy>,
    pids_max: u64,
    memory_max: u64,
    free: Mutex<Vec<CellDirs>>,
    next_cell: AtomicU64,
    me: i32,
}

/// A cell's directories and open control files; `dirty` when its `pids.max`
/// was lowered to kill it.
#[derive(Debug)]
struct CellDirs {
    pids: PathBuf,
    memory: Option<PathBuf>,
    dirty: bool,
    /// `pids/<cell>/tasks`: the spawning thread enters the cell through it.
    tasks: Control,
    /// `memory/<cell>/tasks`, when the memory hierarchy is used.
    memory_tasks: Option<Control>,
    /// `pids.max`: the fork cap, 0 while the cell is being emptied.
    pids_max: Control,
    /// `pids.current`: tasks counted, zombies included.
    pids_current: Control,
}

/// A cgroup control file kept open: read and written at offset 0 each time
/// (cgroupfs files start over at offset 0, which `pread`/`pwrite` give without
/// a shared file position, so threads may share one).
#[derive(Debug)]
pub(crate) struct Control {
    file: File,
    path: PathBuf,
}

impl Control {
    /// A control file already open as `file` (received by a spawner thread).
    pub(crate) fn from_parts(file: File, path: PathBuf) -> Control {
        Control { file, path }
    }

    /// The open file, for a spawner thread to take its own copy of.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// Where it is, for errors.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn open(path: PathBuf, write: bool) -> Result<Control, ContainError> {
        let file = fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Control { file, path })
    }

    /// Writes `value` in one `pwrite` (cgroupfs takes one value per write).
    fn put(&self, value: &str) -> Result<(), ContainError> {
        match self.file.write_at(value.as_bytes(), 0) {
            Ok(n) if n == value.len() => Ok(()),
            Ok(_) => Err(io_err(
                &self.path,
                io::Error::new(io::ErrorKind::WriteZero, "short write"),
            )),
            Err(e) => Err(io_err(&self.path, e)),
        }
    }

    /// The whole current content.
    fn read(&self) -> io::Result<String> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.file.read_at(&mut chunk, out.len() as u64)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Where the v1 hierarchies are mounted and which cgroup this process is in.
struct Located {
    pids: Option<PathBuf>,
    memory: Option<PathBuf>,
}

/// Finds the server's own cgroup directory in the v1 hierarchy of `controller`.
fn locate(controller: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (mount_root, mount_point) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != "cgroup" {
            return None;
        }
        let opts = r.nth(1)?;
        if !opts.split(',').any(|o| o == controller) {
            return None;
        }
        let l: Vec<&str> = left.split_whitespace().collect();
        Some((l.get(3)?.to_string(), PathBuf::from(unescape(l.get(4)?))))
    })?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })?;
    // With a cgroup namespace or a bind mount, the mount shows a subtree.
    let rel = if mount_root == "/" {
        path.as_str()
    } else {
        path.strip_prefix(mount_root.as_str())?
    };
    let dir = mount_point.join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn locate_all() -> Located {
    Located {
        pids: locate("pids"),
        memory: locate("memory"),
    }
}

fn io_err(path: &Path, source: io::Error) -> ContainError {
    ContainError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), ContainError> {
    fs::write(path, value).map_err(|e| io_err(path, e))
}

/// Pids listed in `dir/cgroup.procs` (live members; zombies are not listed).
fn members(dir: &Path) -> io::Result<Vec<i32>> {
    let text = fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Sends `sig` to every member of `dir` but `me`; returns how many were listed.
fn signal_members(dir: &Path, sig: Signal, me: i32) -> usize {
    match members(dir) {
        Ok(pids) => signal_pids(&pids, sig, me),
        Err(_) => 0,
    }
}

/// Sends `sig` to every pid but `me` (and init); returns how many were not `me`.
fn signal_pids(pids: &[i32], sig: Signal, me: i32) -> usize {
    for &pid in pids {
        if pid == me || pid <= 1 {
            continue;
        }
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, ?sig, error = %e, "kill of a cgroup member failed"),
        }
    }
    pids.iter().filter(|&&p| p != me).count()
}

/// Kills everything in `dir` and removes it and its subdirectories; for stale
/// trees left by a crashed server. Blocking, bounded (~1 s).
fn remove_tree(dir: &Path, me: i32) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), me);
            }
        }
    }
    for attempt in 0..50 {
        if signal_members(dir, Signal::SIGKILL, me) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2 * attempt + 1));
    }
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup");
        }
    }
}

/// Removes `voxterm-<pid>-*` parents of servers that no longer run.
fn clean_stale(origin: &Path, me: i32) {
    let Ok(entries) = fs::read_dir(origin) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("voxterm-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %e.path().display(), "removing cgroup of an earlier server");
            remove_tree(&e.path(), me);
        }
    }
}

impl Cgroups {
    /// Checks, without side effects that outlive the call, that cells could be
    /// made: the hierarchies are mounted and the server may create cgroups there.
    pub(crate) fn probe(need_memory: bool) -> Result<(), ContainError> {
        let found = locate_all();
        let mut dirs = vec![found.pids.ok_or(ContainError::NotMounted("pids"))?];
        if need_memory {
            dirs.push(found.memory.ok_or(ContainError::NotMounted("memory"))?);
        }
        for origin in dirs {
            let probe = origin.join(format!("voxterm-probe-{}", std::process::id()));
            fs::create_dir(&probe).map_err(|e| io_err(&probe, e))?;
            let _ = fs::remove_dir(&probe);
        }
        Ok(())
    }

    /// Creates this engine's parent cgroups (after removing stale ones of dead
    /// servers) and checks with one real move that the spawning thread can enter
    /// a cell. `memory_max` 0 leaves the memory hierarchy out entirely.
    pub(crate) fn setup(pids_max: u64, memory_max: u64) -> Result<Arc<Cgroups>, ContainError> {
        let found = locate_all();
        let me = nix::unistd::getpid().as_raw();
        let name = format!("voxterm-{me}-{}", NEXT_SET.fetch_add(1, Ordering::Relaxed));
        let make = |origin: PathBuf| -> Result<Hierarchy, ContainError> {
            clean_stale(&origin, me);
            let origin_tasks = Control::open(origin.join("tasks"), true)?;
            let parent = origin.join(&name);
            fs::create_dir(&parent).map_err(|e| io_err(&parent, e))?;
            Ok(Hierarchy {
                origin_tasks,
                parent,
            })
        };
        let pids = make(found.pids.ok_or(ContainError::NotMounted("pids"))?)?;
        let memory = if memory_max > 0 {
            match found
                .memory
                .ok_or(ContainError::NotMounted("memory"))
                .and_then(make)
            {
                Ok(h) => Some(h),
                Err(e) => {
                    let _ = fs::remove_dir(&pids.parent);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let set = Arc::new(Cgroups {
            pids,
            memory,
            pids_max,
            memory_max,
            free: Mutex::new(Vec::new()),
            next_cell: AtomicU64::new(0),
            me,
        });
        // One real round trip now, so a server that cannot move threads (e.g. a
        // read-only `tasks`) finds out at start, not on its first command.
        let cell = set.take()?;
        inside(&cell.doors()?, || ())?;
        drop(cell);
        Ok(set)
    }

    /// Which hierarchies are in use, for the startup log.
    pub(crate) fn describe(&self) -> String {
        let pids = match self.pids_max {
            0 => "pids (no cap)".to_owned(),
            n => format!("pids.max={n}"),
        };
        match &self.memory {
            Some(_) => format!(
                "cgroup v1 {pids} memory={} under {}",
                self.memory_max,
                self.pids.parent.display()
            ),
            None => format!("cgroup v1 {pids} under {}", self.pids.parent.display()),
        }
    }

    /// An empty cell for one command: an idle one, or a new one.
    pub(crate) fn take(self: &Arc<Self>) -> Result<Cell, ContainError> {
        match self.reuse()? {
            Some(cell) => Ok(cell),
            None => self.make(),
        }
    }

    /// A cell handed back earlier, if there is one: a write to one cgroup
    /// file at most, cheap enough for any thread.
    pub(crate) fn reuse(self: &Arc<Self>) -> Result<Option<Cell>, ContainError> {
        let Some(mut dirs) = crate::sync::lock(&self.free).pop() else {
            return Ok(None);
        };
        if dirs.dirty {
            self.set_pids_max(&dirs.pids_max)?;
            dirs.dirty = false;
        }
        Ok(Some(self.cell_of(dirs)))
    }

    /// A new cell: a directory made in each hierarchy, which takes 1–30 ms
    /// in a memory hierarchy under load (`quick`).
    pub(crate) fn make(self: &Arc<Self>) -> Result<Cell, ContainError> {
        Ok(self.cell_of(self.make_cell()?))
    }

    fn cell_of(self: &Arc<Self>, dirs: CellDirs) -> Cell {
        Cell {
            set: Arc::clone(self),
            dirs: Some(dirs),
            emptied: false,
        }
    }

    fn set_pids_max(&self, pids_max: &Control) -> Result<(), ContainError> {
        let value = match self.pids_max {
            0 => "max".to_owned(),
            n => n.to_string(),
        };
        pids_max.put(&value)
    }

    fn make_cell(&self) -> Result<CellDirs, ContainError> {
        let id = format!("c{}", self.next_cell.fetch_add(1, Ordering::Relaxed));
        let pids = self.pids.parent.join(&id);
        fs::create_dir(&pids).map_err(|e| io_err(&pids, e))?;
        let memory = self.memory.as_ref().map(|h| h.parent.join(&id));
        let made = (|| {
            if let Some(dir) = &memory {
                fs::create_dir(dir).map_err(|e| io_err(dir, e))?;
                write(
                    &dir.join("memory.limit_in_bytes"),
                    &self.memory_max.to_string(),
                )?;
            }
            let dirs = CellDirs {
                tasks: Control::open(pids.join("tasks"), true)?,
                memory_tasks: match &memory {
                    Some(dir) => Some(Control::open(dir.join("tasks"), true)?),
                    None => None,
                },
                pids_max: Control::open(pids.join("pids.max"), true)?,
                pids_current: Control::open(pids.join("pids.current"), false)?,
                pids: pids.clone(),
                memory: memory.clone(),
                dirty: false,
            };
            self.set_pids_max(&dirs.pids_max)?;
            Ok(dirs)
        })();
        if made.is_err() {
            remove_dirs(&pids, memory.as_deref());
        }
        made
    }

    /// Returns an emptied cell to the idle list, or removes it when the list is
    /// full or the cell still counts tasks (zombies not yet reaped by their new
    /// parent would count against the next command's `pids.max`).
    fn release(&self, dirs: CellDirs) {
        let current = dirs.pids_current.read();
        let idle = current.is_ok_and(|c| c.trim() == "0");
        if idle {
            let mut free = crate::sync::lock(&self.free);
            if free.len() < MAX_FREE {
                free.push(dirs);
                return;
            }
        }
        remove_cell(dirs);
    }
}

/// Closes a cell's control files, then removes its directories.
fn remove_cell(dirs: CellDirs) {
    let CellDirs {
        pids,
        memory,
        tasks,
        memory_tasks,
        pids_max,
        pids_current,
        dirty: _,
    } = dirs;
    drop((tasks, memory_tasks, pids_max, pids_current));
    remove_dirs(&pids, memory.as_deref());
}

fn remove_dirs(pids: &Path, memory: Option<&Path>) {
    for dir in std::iter::once(pids).chain(memory) {
        if let Err(e) = fs::remove_dir(dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot remove cgroup cell");
            }
        }
    }
}

impl Drop for Cgroups {
    /// Every cell has been released (cells hold an `Arc` to this), so only idle,
    /// empty cells and the parents are left.
    fn drop(&mut self) {
        let free = std::mem::take(self.free.get_mut().unwrap_or_else(|e| e.into_inner()));
        for dirs in free {
            remove_cell(dirs);
        }
        for h in std::iter::once(&self.pids).chain(self.memory.as_ref()) {
            remove_tree(&h.parent, self.me);
        }
    }
}

/// The cgroup(s) of one running command. Dropping it kills whatever is still
/// inside and hands the cell back for reuse.
#[derive(Debug)]
pub(crate) struct Cell {
    set: Arc<Cgroups>,
    dirs: Option<CellDirs>,
    /// Set once [`Cell::kill_all`] saw the cell empty.
    emptied: bool,
}

impl Cell {
    /// The way into the cell and back out for a spawning thread, one door
    /// per hierarchy used: the cell's `tasks` and the server's own. The
    /// spawn itself happens in [`inside`], on whichever thread spawns.
    pub(crate) fn doors(&self) -> Result<Vec<Door<&Control>>, ContainError> {
        let Some(dirs) = &self.dirs else {
            return Err(ContainError::Released);
        };
        let set = &self.set;
        let mut doors = vec![Door {
            into: &dirs.tasks,
            back: &set.pids.origin_tasks,
        }];
        if let (Some(h), Some(tasks)) = (&set.memory, &dirs.memory_tasks) {
            doors.push(Door {
                into: tasks,
                back: &h.origin_tasks,
            });
        }
        Ok(doors)
    }

    /// The live processes in the cell (for rlimits on processes forked before
    /// the limits reached their parent).
    pub(crate) fn members(&self) -> Vec<i32> {
        let Some(dirs) = &self.dirs else {
            return Vec::new();
        };
        let mut pids = members(&dirs.pids).unwrap_or_default();
        pids.retain(|&p| p != self.set.me);
        pids
    }

    /// Sends `sig` once to every process in the cell (daemonized ones included).
    pub(crate) fn signal(&self, sig: Signal) {
        if let Some(dirs) = &self.dirs {
            signal_members(&dirs.pids, sig, self.set.me);
        }
    }

    /// SIGKILLs everything in the cell until it is empty: forks are stopped
    /// first (`pids.max` = 0), then every listed pid is killed, until the list is
    /// empty (dying processes stay listed for a moment). Gives up after ~2 s
    /// (e.g. a process stuck in uninterruptible sleep); the cell is then removed
    /// later instead of reused.
    pub(crate) async fn kill_all(&mut self) {
        let Some(dirs) = &mut self.dirs else { return };
        for attempt in 0u64..40 {
            let Ok(pids) = members(&dirs.pids) else {
                return;
            };
            if pids.iter().all(|&p| p == self.set.me) {
                self.emptied = true;
                return;
            }
            if !dirs.dirty {
                dirs.dirty = true;
                if let Err(e) = dirs.pids_max.put("0") {
                    tracing::debug!(error = %e, "cannot freeze forks of a cell");
                }
            }
            signal_pids(&pids, Signal::SIGKILL, self.set.me);
            tokio::time::sleep(Duration::from_millis((attempt + 1).min(100))).await;
        }
        tracing::warn!(cell = %dirs.pids.display(), "cgroup cell not empty after kill");
    }
}

/// Moves thread `tid` back to the server's own cgroup in each hierarchy.
/// One hierarchy's way in and out of a cell for the spawning thread: the
/// cell's `tasks` and the server's own, as kept open by the engine (`&Control`)
/// or as a spawner thread with a descriptor table of its own received them
/// (`Control`, see `spawner`).
#[derive(Debug)]
pub(crate) struct Door<C> {
    /// The cell's `tasks`.
    pub(crate) into: C,
    /// The server's own `tasks` in the same hierarchy.
    pub(crate) back: C,
}

/// Runs `spawn` with the calling thread inside the cell behind `doors`, so
/// whatever it forks is born inside. Synchronous on purpose: nothing else
/// can run on this thread between the move in and the move out.
pub(crate) fn inside<C: std::borrow::Borrow<Control>, T>(
    doors: &[Door<C>],
    spawn: impl FnOnce() -> T,
) -> Result<T, ContainError> {
    let tid = gettid().as_raw().to_string();
    for (n, door) in doors.iter().enumerate() {
        if let Err(e) = door.into.borrow().put(&tid) {
            leave(&doors[..n], &tid);
            return Err(e);
        }
    }
    let out = spawn();
    leave(doors, &tid);
    Ok(out)
}

fn leave<C: std::borrow::Borrow<Control>>(entered: &[Door<C>], tid: &str) {
    for door in entered {
        if let Err(e) = door.back.borrow().put(tid) {
            // Should never happen (our own cgroup exists); a thread left in a cell
            // is never killed (`me` is skipped), but its next spawns land there.
            tracing::error!(error = %e, "cannot move the spawning thread out of its cell");
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        let Some(mut dirs) = self.dirs.take() else {
            return;
        };
        if self.emptied {
            self.set.release(dirs);
            return;
        }
        // Dropped mid-run (the `run` future was dropped) or not emptied: kill now,
        // and finish on a helper thread if members are still dying.
        if !dirs.dirty {
            dirs.dirty = true;
            let _ = dirs.pids_max.put("0");
        }
        if signal_members(&dirs.pids, Signal::SIGKILL, self.set.me) == 0 {
            self.set.release(dirs);
            return;
        }
        let set = Arc::clone(&self.set);
        let spawned = std::thread::Builder::new()
            .name("voxterm-cell-reaper".into())
            .spawn(move || {
                for attempt in 0..100 {
                    std::thread::sleep(Duration::from_millis((attempt + 1).min(100)));
                    if signal_members(&dirs.pids, Signal::SIGKILL, set.me) == 0 {
                        set.release(dirs);
                        return;
                    }
                }
                tracing::warn!(cell = %dirs.pids.display(), "cgroup cell not empty after kill");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the cell reaper thread");
        }
    }
}

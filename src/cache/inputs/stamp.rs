//! Taking a stamp: file metadata, listings and trees, hashed in a fixed order.

use super::{MAX_ENTRIES, MAX_TREE_ENTRIES, RACY};
use nix::sys::statfs::{self, FsType};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a walk's program shows of each file it meets: what of it the stamp
/// compares at a lookup (its *key*). A key that leaves times out is paired,
/// when the answer is stored, with a *guard* of the full metadata taken
/// before and after the run (see [`Pass`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shows {
    /// Everything the metadata holds, times to the nanosecond: trees whose
    /// output sizes or orders by them (`du`, `ls -lt`), readers (`grep -r`).
    All,
    /// The columns of a long listing (`ls -l` without `-t` or `-c`): mode,
    /// links, owner, group, size, blocks, the date to the minute it prints,
    /// a symlink's target and the ACL or security-context mark after the
    /// mode. `.git`'s times change with every `git status` in the
    /// repository; the minute it shows, once a minute.
    Columns,
    /// Names and kinds only (`ls`, `ls -aF`).
    Names,
    /// Everything but the times (and inode numbers): what `find`'s tests
    /// other than the time-relative ones (refused) and `-empty` look at.
    /// `find . -name '*.rs'` in a repository walks `.git`, whose times every
    /// `git status` moves.
    Attrs,
}

/// Which stamp is being taken. A key that leaves times out ([`Shows::Columns`],
/// [`Shows::Names`]) cannot see a change undone while the command ran (a
/// file created and removed, a size grown and shrunk back): the command's
/// output may show the state in between, and a later lookup would find the
/// key equal. So the first stamp also hashes the full metadata of every file
/// its key looked at (the guard: ctimes move forward only), and the answer
/// is stored as stamped only when the guard taken after the run is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// Before a run: the key and the guard, racy times refused in both.
    First,
    /// At a lookup: the key alone, compared with the stored one.
    Lookup,
    /// After a run: the guard again, compared with the first (no racy
    /// refusal: any difference is one).
    Check,
}

/// Whole-minute `ls -l` dates are the same in every zone of the system's
/// database from this date (Liberia's last odd offset, 1972): older times
/// are compared to the second.
const WHOLE_MINUTE_ZONES_SINCE: i64 = 78_796_800;

/// The lowest ctime with a sub-second part that is not racy, in seconds since
/// the epoch. Files get their times from the kernel's coarse clock
/// (`CLOCK_REALTIME_COARSE`, one tick per `HZ`), or finer (multigrain
/// timestamps, Linux 6.13), never earlier: a change made after the clock
/// reads `T` gets a ctime of at least `T`. A ctime below `T` therefore cannot
/// be repeated by a later change, and with a tick and a millisecond of margin
/// below it, this is one to two ticks (1–20 ms) behind real time. A fixed
/// window would have to allow for the coarsest `HZ`: the 100 ms this replaced
/// refused a shared repository's `.git` most of the time under load.
fn coarse_floor() -> f64 {
    use rustix::time::{clock_getres, clock_gettime, ClockId};
    let secs = |t: rustix::time::Timespec| t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
    let tick = secs(clock_getres(ClockId::RealtimeCoarse));
    secs(clock_gettime(ClockId::RealtimeCoarse)) - tick - 1e-3
}

/// What is known of a directory's names under its times (see
/// [`Stamper::names`]).
#[derive(Clone)]
struct Listing {
    times: [i64; 4],
    names: Known,
}

#[derive(Clone)]
enum Known {
    /// All of them, sorted.
    Names(Arc<[OsString]>),
    /// More than this many: too many to keep, or more than a walk's bound.
    /// A walk that meets such a directory gives up; without this it read
    /// the bound's worth of names again on every lookup only to give up
    /// (`git log --stat`, `find .` over 10,000 users' directories: ~15 % of
    /// the server's CPU at capacity, in reading and allocating names).
    MoreThan(usize),
}

/// Listings kept, by (device, inode): at most this many directories of at
/// most [`KEPT_NAMES`] names each.
const LISTINGS_KEPT: usize = 1024;

/// The largest listing kept: a full loose-object store (256 fan-out
/// directories, `info`, `pack`) fits.
const KEPT_NAMES: usize = 512;

static LISTINGS: LazyLock<quick_cache::sync::Cache<(u64, u64), Listing>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(LISTINGS_KEPT));

/// Whether a listing of the directory whose metadata is `m` is kept, under
/// its times now.
#[cfg(test)]
pub(super) fn kept(m: &Metadata) -> bool {
    let times = [m.ctime(), m.ctime_nsec(), m.mtime(), m.mtime_nsec()];
    LISTINGS
        .get(&(m.dev(), m.ino()))
        .is_some_and(|l| l.times == times)
}

/// Whether the directory whose metadata is `m` is known, under its times
/// now, to hold more than `n` names.
#[cfg(test)]
pub(super) fn known_over(m: &Metadata, n: usize) -> bool {
    let times = [m.ctime(), m.ctime_nsec(), m.mtime(), m.mtime_nsec()];
    LISTINGS
        .get(&(m.dev(), m.ino()))
        .is_some_and(|l| l.times == times && matches!(l.names, Known::MoreThan(k) if k >= n))
}

/// `ls -l` shows the time of day for files younger than this, the year otherwise
/// (GNU coreutils: half a Gregorian year).
const SIX_MONTHS: u64 = 31_556_952 / 2;

/// How a walk goes down from an operand.
pub(super) struct Walk<'a> {
    /// Deepest level read: 0 stamps the operand only, 1 its entries (`ls`),
    /// `u32::MAX` the whole tree.
    pub depth: u32,
    /// `ls -a`: the operand's `..` is shown too.
    pub parent: bool,
    /// The program reads the files it meets (`grep -r`): devices, FIFOs and
    /// sockets are refused.
    pub reads: bool,
    /// The walk is a git worktree: its top `.git` is stamped, not entered, and a
    /// nested repository (another `.git`) is refused.
    pub git: bool,
    /// What the program shows of each file met. A shared repository's `ls`
    /// missed 99 % of the time in a 10,000-user run, and `ls -la` 98 %, while
    /// their keys held every time to the nanosecond: every `git status`
    /// anywhere rewrote `.git`'s times.
    pub shows: Shows,
    /// Directories the program is known not to enter, by their path as the
    /// program would write it (the operand as written, `/`, the relative path).
    pub prune: &'a dyn Fn(&str) -> bool,
}

/// The two values a first stamp takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// What a lookup compares.
    pub key: u128,
    /// The full metadata behind a key that leaves times out, to compare
    /// after the run ([`Pass::Check`]); None when the key holds it all.
    pub guard: Option<u128>,
}

/// One stamp being taken.
pub(super) struct Stamper {
    /// The key: what a lookup compares.
    hash: blake3::Hasher,
    /// The guard (not at a lookup, which compares the key alone: a hasher
    /// is 2 KB to set up), and whether anything went into it.
    guard: Option<blake3::Hasher>,
    guarded: bool,
    pass: Pass,
    /// Times after this (seconds since the epoch) are racy, when kept to the second.
    racy_after: f64,
    /// Times after this are racy, when they have a sub-second part.
    fine_after: f64,
    /// Now, in seconds: a listed date after it prints with its year until
    /// it passes.
    now: f64,
    /// [`coarse_floor`] when this stamp began, whatever windows it was
    /// given: what a listing kept for other stamps must be older than.
    coarse: f64,
    six_months: f64,
    margin: f64,
    /// The output shows `ls -l` dates: refuse those about to change format.
    pub dates: bool,
    /// `ls -l` dates print in a zone of the system's database, where a
    /// minute is the same minute everywhere: columns are compared to the
    /// minute (else to the second).
    pub whole_minutes: bool,
    /// A first stamp: refuse files on filesystems not known to keep ctime
    /// (a restamp need not ask: the device is in the stamp).
    pub check_fs: bool,
    /// Tree entries still allowed.
    budget: usize,
    /// Devices already found trusted in this stamp.
    trusted: Vec<u64>,
    /// Metadata read in this stamp that a later step asks for again (git's
    /// directory and its entries: `refs`, `objects`, `info`, `config` are
    /// listed as entries, then each stamped on its own): one call each.
    seen: Vec<(PathBuf, Metadata)>,
    /// Whether [`Stamper::dir`] records the entries it reads in `seen`.
    recording: bool,
}

/// At most this many paths are remembered in one stamp (git's directory
/// holds about a dozen entries).
const SEEN: usize = 32;

impl Stamper {
    /// A stamp refusing times within `racy` of now, and times with a
    /// sub-second part within `fine` of now, or by default within a tick of
    /// the coarse clock (see [`coarse_floor`]; tests pass windows to see
    /// what the metadata alone tells apart).
    pub fn new(
        life: Duration,
        pass: Pass,
        check_fs: bool,
        racy: Duration,
        fine: Option<Duration>,
    ) -> Option<Stamper> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let racy_after = now.saturating_sub(racy).as_secs_f64();
        let coarse = coarse_floor();
        let fine_after = match fine {
            Some(fine) => now.saturating_sub(fine).as_secs_f64(),
            None => coarse,
        };
        Some(Stamper {
            hash: blake3::Hasher::new(),
            guard: (pass != Pass::Lookup).then(blake3::Hasher::new),
            guarded: false,
            pass,
            racy_after,
            fine_after: fine_after.max(racy_after),
            now: now.as_secs_f64(),
            coarse,
            // `ls -l` dates within this window of "six months ago" may change format.
            six_months: (now.as_secs().saturating_sub(SIX_MONTHS)) as f64,
            margin: (life + racy).as_secs_f64(),
            dates: false,
            whole_minutes: true,
            check_fs,
            budget: MAX_TREE_ENTRIES,
            trusted: Vec::new(),
            seen: Vec::new(),
            recording: false,
        })
    }

    pub fn finish(self) -> Taken {
        let half = |h: blake3::Hasher| {
            let digest = h.finalize();
            let mut b = [0u8; 16];
            b.copy_from_slice(&digest.as_bytes()[..16]);
            u128::from_le_bytes(b)
        };
        Taken {
            key: half(self.hash),
            guard: self.guard.filter(|_| self.guarded).map(half),
        }
    }

    /// Hashes a value the stamp depends on (a name, a file's contents).
    pub fn tag(&mut self, bytes: &[u8]) {
        for h in std::iter::once(&mut self.hash).chain(self.guard.as_mut()) {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }

    /// A file that is read: a regular file on a trusted filesystem. A missing file
    /// is stamped as missing (the command fails then, and is not stored anyway).
    pub fn file(&mut self, path: &Path) -> Option<()> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && self.trusted_fs(path, m.dev()) => self.meta(&m),
            Ok(_) => None,
            Err(e) => self.error(&e),
        }
    }

    /// `symlink_metadata`, or what this stamp already read of `path`.
    pub(super) fn lstat(&self, path: &Path) -> std::io::Result<Metadata> {
        match self
            .seen
            .iter()
            .find(|(p, _)| p.as_os_str() == path.as_os_str())
        {
            Some((_, m)) => Ok(m.clone()),
            None => std::fs::symlink_metadata(path),
        }
    }

    /// Remembers what was read of `path` for a later step of this stamp.
    pub(super) fn saw(&mut self, path: &Path, m: &Metadata) {
        if self.seen.len() < SEEN {
            self.seen.push((path.to_owned(), m.clone()));
        }
    }

    /// A file a program may read if it is there (a config file): missing is
    /// stamped as missing, a symlink by itself and its target.
    pub fn optional(&mut self, path: &Path) -> Option<()> {
        match self.lstat(path) {
            Ok(m) if m.file_type().is_symlink() => {
                self.meta(&m)?;
                self.file(path)
            }
            Ok(m) if m.is_file() && self.trusted_fs(path, m.dev()) => self.meta(&m),
            Ok(_) => None,
            Err(e) => self.error(&e),
        }
    }

    /// What a path is (device, inode, type, permissions, owner), without its
    /// times: for directories whose identity matters but whose entries do not.
    /// Values compared as they are need no racy check.
    pub fn ident(&mut self, path: &Path) -> Option<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                self.ident_of(&m);
                Some(())
            }
            Err(e) => self.error(&e),
        }
    }

    /// [`Stamper::ident`] of metadata already read.
    pub(super) fn ident_of(&mut self, m: &Metadata) {
        for v in [m.dev(), m.ino(), u64::from(m.mode()), u64::from(m.uid())] {
            self.hash.update(&v.to_le_bytes());
        }
        self.hash.update(&u64::from(m.gid()).to_le_bytes());
    }

    /// A file met by a walk, at `path`, as the program shows it.
    fn shown(&mut self, m: &Metadata, path: &Path, shows: Shows) -> Option<()> {
        match shows {
            Shows::All => return self.meta(m),
            // What `ls -F` can show of a file besides its name: its type and
            // permission bits (`/`, `@`, `*`).
            Shows::Names => {
                self.hash.update(&u64::from(m.mode()).to_le_bytes());
            }
            Shows::Columns => self.columns(m, path)?,
            Shows::Attrs => put(&mut self.hash, &attrs(m)),
        }
        self.guard_of(m)
    }

    /// What the columns of `ls -l` print of a file (and `-i`, `-s`, `-n`).
    fn columns(&mut self, m: &Metadata, path: &Path) -> Option<()> {
        let mtime = m.mtime() as f64 + m.mtime_nsec() as f64 * 1e-9;
        // A date in the future prints with its year until it passes; one
        // near six months ago changes format while the entry lives.
        if mtime > self.now || self.dates && (mtime - self.six_months).abs() <= self.margin {
            return None;
        }
        let shown_time = if self.whole_minutes && m.mtime() >= WHOLE_MINUTE_ZONES_SINCE {
            m.mtime().div_euclid(60)
        } else {
            m.mtime() // never equal to a minute count of a date since 1972
        };
        put(&mut self.hash, &attrs(m));
        put(&mut self.hash, &[m.ino(), shown_time as u64]);
        if m.file_type().is_symlink() {
            // `name -> target`: the target's text, which no metadata holds.
            match std::fs::read_link(path) {
                Ok(t) => {
                    let t = t.into_os_string();
                    self.hash.update(&(t.len() as u64).to_le_bytes());
                    self.hash.update(t.as_encoded_bytes());
                }
                Err(e) => self.error(&e)?,
            }
        }
        self.marks(path)
    }

    /// The mark `ls -l` prints after the mode: `+` for an ACL, `.` for a
    /// security context. Their extended attributes by name, and the values
    /// of those: setting an ACL changes the ctime, which the key leaves out.
    fn marks(&mut self, path: &Path) -> Option<()> {
        use rustix::io::Errno;
        let mut names = [0u8; 1024];
        let n = match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => {
                self.hash.update(b"-");
                return Some(());
            }
            Err(e) => return self.error(&std::io::Error::from(e)),
        };
        self.hash.update(&(n as u64).to_le_bytes());
        self.hash.update(&names[..n]);
        for name in names[..n].split(|&b| b == 0).filter(|x| !x.is_empty()) {
            if !(name.starts_with(b"system.") || name.starts_with(b"security.")) {
                continue;
            }
            let name = std::ffi::OsStr::from_bytes(name);
            let mut value = [0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name, &mut value[..]).ok()?;
            self.hash.update(&(len as u64).to_le_bytes());
            self.hash.update(&value[..len]);
        }
        Some(())
    }

    /// The full metadata of a file whose key leaves some of it out (on a
    /// first stamp and after the run; a lookup compares the key alone).
    fn guard_of(&mut self, m: &Metadata) -> Option<()> {
        match self.pass {
            Pass::Lookup => return Some(()),
            Pass::First => self.racy(m)?,
            Pass::Check => {}
        }
        if let Some(guard) = &mut self.guard {
            self.guarded = true;
            full(guard, m);
        }
        Some(())
    }

    /// An operand and what lies under it, to `w.depth`: the operand itself and,
    /// through a symlink, its target (command-line symlinks are followed by `ls`,
    /// `grep -r`, `tree`; stamping the target too is only more than `find` and
    /// `du` need), then entries by sorted name with `lstat`, never following a
    /// symlink below the operand (none of these programs does).
    pub fn walk(&mut self, path: &Path, shown: &str, w: &Walk<'_>) -> Option<()> {
        self.tag(shown.as_bytes());
        let own = match self.lstat(path) {
            Ok(m) => m,
            Err(e) => return self.error(&e),
        };
        if w.shows == Shows::Names {
            // A listing shows the entries of a directory operand, not the
            // operand; its identity, and its times in the guard (a name
            // created and removed while the command ran).
            self.ident_of(&own);
            self.guard_of(&own)?;
        } else {
            self.shown(&own, path, w.shows)?;
        }
        // What it leads to: itself unless it is a symlink (no second call).
        let target = if own.file_type().is_symlink() {
            match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) => return self.error(&e),
            }
        } else {
            own
        };
        if w.shows == Shows::Names {
            self.ident_of(&target);
            self.guard_of(&target)?;
        } else {
            // Through a trailing `.`, what the target's own attributes are
            // (`ls -la link` prints the target directory as `.`).
            let through = if target.is_dir() {
                path.join(".")
            } else {
                path.to_owned()
            };
            self.shown(&target, &through, w.shows)?;
        }
        if w.reads && !(target.is_dir() || target.is_file() && self.trusted_fs(path, target.dev()))
        {
            return None;
        }
        if !target.is_dir() || w.depth == 0 {
            return Some(());
        }
        if w.parent && w.shows != Shows::Names {
            let parent = path.join("..");
            match std::fs::metadata(&parent) {
                Ok(m) => self.shown(&m, &parent, w.shows)?,
                Err(e) => self.error(&e)?,
            }
        }
        let mut rel = String::from(shown);
        self.dir(&mut path.to_owned(), &mut rel, &target, 1, w)
    }

    /// The entries under `path`, a directory whose metadata is `m` (`lstat`
    /// taken during this stamp), by sorted name; None when over the bound.
    fn dir(
        &mut self,
        path: &mut PathBuf,
        rel: &mut String,
        m: &Metadata,
        level: u32,
        w: &Walk<'_>,
    ) -> Option<()> {
        if !self.trusted_fs(path, m.dev()) {
            return None;
        }
        // A listing (`ls`) of one directory keeps the per-directory bound.
        let bound = if w.depth == 1 {
            MAX_ENTRIES.min(self.budget)
        } else {
            self.budget
        };
        let names = self.names(path, m, bound)?;
        self.budget -= names.len();
        for name in names.iter() {
            self.tag(name.as_encoded_bytes());
            path.push(name);
            let m = std::fs::symlink_metadata(&*path);
            let m = match m {
                Ok(m) if self.recording => {
                    self.saw(path, &m);
                    m
                }
                Ok(m) => m,
                Err(e) => {
                    path.pop();
                    self.error(&e)?;
                    continue;
                }
            };
            let is_git = w.git && *name == *".git";
            if is_git && level > 1 {
                return None; // a nested repository: its own state is not stamped
            }
            if is_git {
                // The git directory is stamped on its own (see `entries`).
                self.ident_of(&m);
            } else {
                self.shown(&m, path, w.shows)?;
            }
            let ft = m.file_type();
            if w.reads
                && (ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket())
            {
                return None;
            }
            if ft.is_symlink() {
                // `ls -lF`, `tree -F` classify the target: its kind is shown.
                match std::fs::metadata(&*path) {
                    Ok(t) => {
                        self.ident_of(&t);
                        if w.shows != Shows::All {
                            self.guard_of(&t)?;
                        }
                    }
                    Err(e) => self.error(&e)?,
                }
            }
            if ft.is_dir() && level < w.depth && !is_git {
                let len = rel.len();
                rel.push('/');
                rel.push_str(&name.to_string_lossy());
                if !(w.prune)(rel) {
                    self.dir(path, rel, &m, level + 1, w)?;
                }
                rel.truncate(len);
            }
            path.pop();
        }
        Some(())
    }

    /// The names in the directory at `path` whose metadata is `m`, sorted;
    /// None when there are more than `bound`. Read once per change of the
    /// directory: a listing read under a ctime that was not racy is reused
    /// while the directory's ctime and mtime are the same (any name added,
    /// removed or renamed sets both; a change after the `lstat` behind `m`
    /// gets a later ctime, so a listing read after it is never reused).
    /// Reading directories was a quarter of the server's CPU in a
    /// 10,000-user run: every lookup of a git line or a listing listed the
    /// same unchanged directories again.
    pub fn names(&mut self, path: &Path, m: &Metadata, bound: usize) -> Option<Arc<[OsString]>> {
        // Only the directory itself vouches for its names: not a symlink to
        // one, whose times do not move with the target's entries.
        let keep = m.is_dir();
        let id = (m.dev(), m.ino());
        let times = [m.ctime(), m.ctime_nsec(), m.mtime(), m.mtime_nsec()];
        if let Some(l) = LISTINGS.get(&id).filter(|l| keep && l.times == times) {
            match l.names {
                Known::Names(names) => return (names.len() <= bound).then_some(names),
                Known::MoreThan(n) if n >= bound => return None,
                Known::MoreThan(_) => {} // the bound is larger: read again
            }
        }
        let keep = keep && self.settled(m);
        let remember = |names: Known| {
            if keep {
                LISTINGS.insert(id, Listing { times, names });
            }
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).ok()? {
            if names.len() == bound {
                remember(Known::MoreThan(bound));
                return None;
            }
            names.push(entry.ok()?.file_name());
        }
        names.sort_unstable();
        let names: Arc<[OsString]> = names.into();
        if names.len() <= KEPT_NAMES {
            remember(Known::Names(names.clone()));
        } else {
            remember(Known::MoreThan(names.len() - 1));
        }
        Some(names)
    }

    /// Whether `m`'s times are settled by the default windows (not a
    /// test's): older than the coarse clock's tick, or a second for a time
    /// without nanoseconds. A change after the call that read `m` gets a
    /// later ctime, so what was read after `m` under settled times may be
    /// kept and reused while the times are the same.
    pub(super) fn settled(&self, m: &Metadata) -> bool {
        let before = |s: i64, ns: i64| {
            let t = s as f64 + ns as f64 * 1e-9;
            t < if ns != 0 {
                self.coarse
            } else {
                self.now - RACY.as_secs_f64()
            }
        };
        before(m.ctime(), m.ctime_nsec()) && before(m.mtime(), m.mtime_nsec())
    }

    /// A listing of one directory's entries (no descent): for git's own
    /// directories, where a new file (`MERGE_HEAD`, `rebase-merge/`) matters.
    /// Every name is read, so the directory's own times add nothing, and they
    /// would change on every `git status` (it creates and removes `index.lock`
    /// even when it writes nothing): only its identity is stamped.
    pub fn entries(&mut self, path: &Path) -> Option<()> {
        let m = match self.lstat(path) {
            Ok(m) => m,
            Err(e) => return self.error(&e),
        };
        self.ident_of(&m);
        if !m.is_dir() {
            return None;
        }
        let w = Walk {
            depth: 1,
            parent: false,
            reads: false,
            git: false,
            shows: Shows::All,
            prune: &|_| false,
        };
        self.recording = true;
        let listed = self.dir(&mut path.to_owned(), &mut String::new(), &m, 1, &w);
        self.recording = false;
        listed
    }

    /// Every field of a file's metadata, times to the nanosecond, in the key.
    pub fn meta(&mut self, m: &Metadata) -> Option<()> {
        self.racy(m)?;
        if self.dates {
            let mtime = m.mtime() as f64 + m.mtime_nsec() as f64 * 1e-9;
            if (mtime - self.six_months).abs() <= self.margin {
                return None;
            }
        }
        full(&mut self.hash, m);
        Some(())
    }

    /// Refuses a file whose times are too fresh to reveal a change made
    /// after this stamp (see the module docs and [`coarse_floor`]).
    fn racy(&self, m: &Metadata) -> Option<()> {
        let time = |s: i64, ns: i64| s as f64 + ns as f64 * 1e-9;
        let ctime = time(m.ctime(), m.ctime_nsec());
        let mtime = time(m.mtime(), m.mtime_nsec());
        // Nanoseconds in the ctime (set by the kernel, never by a user): the
        // filesystem keeps fine times, and the narrow window is enough.
        let after = if m.ctime_nsec() != 0 {
            self.fine_after
        } else {
            self.racy_after
        };
        (ctime < after && mtime < after).then_some(())
    }

    /// A path that could not be read is stamped by its error (missing is an
    /// answer too); an error without an OS code refuses the stamp.
    pub fn error(&mut self, e: &std::io::Error) -> Option<()> {
        let code = e.raw_os_error()?;
        for h in std::iter::once(&mut self.hash).chain(self.guard.as_mut()) {
            h.update(b"E");
            h.update(&code.to_le_bytes());
        }
        Some(())
    }

    /// True when `path` (on device `dev`) is on a filesystem known to keep the
    /// times; asked once per device and stamp, and only on a first stamp.
    pub fn trusted_fs(&mut self, path: &Path, dev: u64) -> bool {
        if !self.check_fs || self.trusted.contains(&dev) {
            return true;
        }
        let ok = trusted_fs(path);
        if ok {
            self.trusted.push(dev);
        }
        ok
    }
}

/// Hashes every field of `m`'s metadata.
fn full(h: &mut blake3::Hasher, m: &Metadata) {
    put(h, &attrs(m));
    put(
        h,
        &[
            m.ino(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
        ],
    );
}

/// What every kind of key holds of a file: all but its inode and times.
fn attrs(m: &Metadata) -> [u64; 8] {
    [
        m.dev(),
        u64::from(m.mode()),
        m.nlink(),
        u64::from(m.uid()),
        u64::from(m.gid()),
        m.rdev(),
        m.size(),
        m.blocks(),
    ]
}

fn put(h: &mut blake3::Hasher, values: &[u64]) {
    for v in values {
        h.update(&v.to_le_bytes());
    }
}

/// Filesystems known to keep ctime and mtime as the module docs assume. Network
/// and FUSE filesystems (cached or remote attributes) and pseudo-filesystems
/// (`/proc`, `/sys`: contents change, times do not) are not.
fn trusted_fs(path: &Path) -> bool {
    const TRUSTED: [FsType; 6] = [
        statfs::EXT4_SUPER_MAGIC,
        statfs::XFS_SUPER_MAGIC,
        statfs::BTRFS_SUPER_MAGIC,
        statfs::TMPFS_MAGIC,
        statfs::OVERLAYFS_SUPER_MAGIC,
        statfs::F2FS_SUPER_MAGIC,
    ];
    statfs::statfs(path).is_ok_and(|s| TRUSTED.contains(&s.filesystem_type()))
}

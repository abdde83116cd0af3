//! Taking a stamp: file metadata, listings and trees, hashed in a fixed order.

use super::{MAX_ENTRIES, MAX_TREE_ENTRIES};
use nix::sys::statfs::{self, FsType};
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// The program shows names and kinds only (`ls` without `-l`, `-t`,
    /// `-s`…): each file met is stamped by its name and mode, not its times
    /// or size. Every name is read, so nothing else can change the output;
    /// and the times that do not show cannot make the stamp racy. (A shared
    /// repository's `ls` missed 99 % of the time in a 10,000-user run: every
    /// `git status` anywhere rewrote `.git`'s times.)
    pub names_only: bool,
    /// Directories the program is known not to enter, by their path as the
    /// program would write it (the operand as written, `/`, the relative path).
    pub prune: &'a dyn Fn(&str) -> bool,
}

/// One stamp being taken.
pub(super) struct Stamper {
    hash: blake3::Hasher,
    /// Times after this (seconds since the epoch) are racy, when kept to the second.
    racy_after: f64,
    /// Times after this are racy, when they have a sub-second part.
    fine_after: f64,
    six_months: f64,
    margin: f64,
    /// The output shows `ls -l` dates: refuse those about to change format.
    pub dates: bool,
    /// A first stamp: refuse files on filesystems not known to keep ctime
    /// (a restamp need not ask: the device is in the stamp).
    pub check_fs: bool,
    /// Tree entries still allowed.
    budget: usize,
    /// Devices already found trusted in this stamp.
    trusted: Vec<u64>,
}

impl Stamper {
    /// A stamp refusing times within `racy` of now, or `fine` for times with a
    /// sub-second part (`super::RACY`, `super::RACY_FINE`; tests pass zero to
    /// see what the metadata alone tells apart).
    pub fn new(life: Duration, check_fs: bool, racy: Duration, fine: Duration) -> Option<Stamper> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(Stamper {
            hash: blake3::Hasher::new(),
            racy_after: now.saturating_sub(racy).as_secs_f64(),
            fine_after: now.saturating_sub(fine.min(racy)).as_secs_f64(),
            // `ls -l` dates within this window of "six months ago" may change format.
            six_months: (now.as_secs().saturating_sub(SIX_MONTHS)) as f64,
            margin: (life + racy).as_secs_f64(),
            dates: false,
            check_fs,
            budget: MAX_TREE_ENTRIES,
            trusted: Vec::new(),
        })
    }

    pub fn finish(self) -> u128 {
        let digest = self.hash.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest.as_bytes()[..16]);
        u128::from_le_bytes(b)
    }

    /// Hashes a value the stamp depends on (a name, a file's contents).
    pub fn tag(&mut self, bytes: &[u8]) {
        self.hash.update(&(bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
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

    /// A file a program may read if it is there (a config file): missing is
    /// stamped as missing, a symlink by itself and its target.
    pub fn optional(&mut self, path: &Path) -> Option<()> {
        match std::fs::symlink_metadata(path) {
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

    /// What `ls -F` can show of a file besides its name: its type and
    /// permission bits (`/`, `@`, `*`).
    fn kind_of(&mut self, m: &Metadata) {
        self.hash.update(&u64::from(m.mode()).to_le_bytes());
    }

    fn ident_of(&mut self, m: &Metadata) {
        for v in [m.dev(), m.ino(), u64::from(m.mode()), u64::from(m.uid())] {
            self.hash.update(&v.to_le_bytes());
        }
        self.hash.update(&u64::from(m.gid()).to_le_bytes());
    }

    /// An operand and what lies under it, to `w.depth`: the operand itself and,
    /// through a symlink, its target (command-line symlinks are followed by `ls`,
    /// `grep -r`, `tree`; stamping the target too is only more than `find` and
    /// `du` need), then entries by sorted name with `lstat`, never following a
    /// symlink below the operand (none of these programs does).
    pub fn walk(&mut self, path: &Path, shown: &str, w: &Walk<'_>) -> Option<()> {
        self.tag(shown.as_bytes());
        match std::fs::symlink_metadata(path) {
            Ok(m) if w.names_only => self.ident_of(&m),
            Ok(m) => self.meta(&m)?,
            Err(e) => return self.error(&e),
        }
        let target = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.error(&e),
        };
        if w.names_only {
            self.ident_of(&target);
        } else {
            self.meta(&target)?;
        }
        if w.reads && !(target.is_dir() || target.is_file() && self.trusted_fs(path, target.dev()))
        {
            return None;
        }
        if !target.is_dir() || w.depth == 0 {
            return Some(());
        }
        if w.parent && !w.names_only {
            match std::fs::metadata(path.join("..")) {
                Ok(m) => self.meta(&m)?,
                Err(e) => self.error(&e)?,
            }
        }
        let mut rel = String::from(shown);
        self.dir(&mut path.to_owned(), &mut rel, target.dev(), 1, w)
    }

    fn dir(
        &mut self,
        path: &mut PathBuf,
        rel: &mut String,
        dev: u64,
        level: u32,
        w: &Walk<'_>,
    ) -> Option<()> {
        if !self.trusted_fs(path, dev) {
            return None;
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&*path).ok()? {
            let entry = entry.ok()?;
            // A listing (`ls`) of one directory keeps the per-directory bound.
            if self.budget == 0 || (w.depth == 1 && names.len() == MAX_ENTRIES) {
                return None;
            }
            self.budget -= 1;
            names.push(entry.file_name());
        }
        names.sort_unstable();
        for name in names {
            self.tag(name.as_encoded_bytes());
            path.push(&name);
            let m = std::fs::symlink_metadata(&*path);
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    path.pop();
                    self.error(&e)?;
                    continue;
                }
            };
            let is_git = w.git && name == ".git";
            if is_git && level > 1 {
                return None; // a nested repository: its own state is not stamped
            }
            if is_git {
                // The git directory is stamped on its own (see `entries`).
                self.ident_of(&m);
            } else if w.names_only {
                self.kind_of(&m);
            } else {
                self.meta(&m)?;
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
                    Ok(t) => self.ident_of(&t),
                    Err(e) => self.error(&e)?,
                }
            }
            if ft.is_dir() && level < w.depth && !is_git {
                let len = rel.len();
                rel.push('/');
                rel.push_str(&name.to_string_lossy());
                if !(w.prune)(rel) {
                    self.dir(path, rel, m.dev(), level + 1, w)?;
                }
                rel.truncate(len);
            }
            path.pop();
        }
        Some(())
    }

    /// A listing of one directory's entries (no descent): for git's own
    /// directories, where a new file (`MERGE_HEAD`, `rebase-merge/`) matters.
    /// Every name is read, so the directory's own times add nothing, and they
    /// would change on every `git status` (it creates and removes `index.lock`
    /// even when it writes nothing): only its identity is stamped.
    pub fn entries(&mut self, path: &Path) -> Option<()> {
        let m = match std::fs::symlink_metadata(path) {
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
            names_only: false,
            prune: &|_| false,
        };
        self.dir(&mut path.to_owned(), &mut String::new(), m.dev(), 1, &w)
    }

    pub fn meta(&mut self, m: &Metadata) -> Option<()> {
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
        if ctime >= after || mtime >= after {
            return None;
        }
        if self.dates && (mtime - self.six_months).abs() <= self.margin {
            return None;
        }
        for v in [
            m.dev(),
            m.ino(),
            u64::from(m.mode()),
            m.nlink(),
            u64::from(m.uid()),
            u64::from(m.gid()),
            m.rdev(),
            m.size(),
            m.blocks(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
        ] {
            self.hash.update(&v.to_le_bytes());
        }
        Some(())
    }

    /// A path that could not be read is stamped by its error (missing is an
    /// answer too); an error without an OS code refuses the stamp.
    pub fn error(&mut self, e: &std::io::Error) -> Option<()> {
        let code = e.raw_os_error()?;
        self.hash.update(b"E");
        self.hash.update(&code.to_le_bytes());
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

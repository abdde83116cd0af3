//! Validated fs-read entries: answers checked against their inputs.
//!
//! A blind fs-read TTL must stay short (seconds), because files change outside
//! voxterm too, and even then it may serve an answer that is seconds out of date.
//! For the read-only commands whose inputs can be told from their words, the
//! engine does better: before the command runs it takes a *stamp* of those
//! inputs (device, inode, mode, links, owner, size, blocks, mtime and ctime of
//! each file and directory, BLAKE3-hashed in a fixed order), stores it with the
//! answer, and serves a hit only when a stamp taken at lookup is the same. Such
//! an entry lives as long as `[ttl] fs-read-validated` (minutes) and is never
//! stale, which is the way make and ccache's direct mode trust file metadata,
//! and git its index. Keys of validated lines leave the tenant's generation out
//! (an answer whose inputs cannot be stamped carries the generation instead;
//! see `entry::Validity`).
//!
//! # Why a stamp is enough
//!
//! On Linux any change to a file's data or metadata sets its ctime to the
//! current time, and no user can set a ctime; any change to a directory's
//! entries (a name added, removed, renamed) sets the directory's mtime and
//! ctime. Timestamps come from a coarse clock, though, so two changes within one
//! tick can leave every time equal: as git does for "racily clean" index
//! entries, a stamp is refused when any time in it is within a tick of the
//! coarse clock (times with nanoseconds: `stamp::coarse_floor`) or [`RACY`]
//! (whole seconds) of the moment it is taken. The stamp is taken before the
//! command runs, so a change made while it runs shows at the next lookup.
//! Values that are compared as they are (the text of a `.git` file, a
//! symlink target's inode and type) need no racy check.
//!
//! # Keys that show what the program shows
//!
//! A listing prints less than the metadata holds: `ls` names and kinds, `ls
//! -l` its columns, with the date to the minute. Its stamp's *key*, what a
//! lookup compares, holds just that (`stamp::Shows`), so that `.git`'s times,
//! which every `git status` in the repository moves, cost a miss once a
//! minute rather than at every lookup. Such a key can no longer see a change
//! undone while the command ran (a name created and removed, a size grown and
//! shrunk back) whose middle the output may show. So the first stamp also
//! takes a *guard*, the full metadata of every file the key looked at, racy
//! times refused, and the answer is stored as stamped only when the guard
//! taken after the run ([`Inputs::held`]) is the same. A long listing's key
//! also holds each symlink's target text and the ACL and security-context
//! attributes (`ls -l` marks them after the mode), which only the ctime
//! would otherwise reveal; a `find` is keyed by everything but the times and
//! inode numbers (its tests look at nothing else; with `-empty`, which asks
//! about the entries of directories at the depth bound, by every time); its dates are compared to the minute only in a
//! zone whose minutes are UTC's (`TZ` unset or a database name, and a date
//! since 1972), to the second otherwise; `-t` and `-c` order or print by the
//! full time, and keep every time in the key.
//!
//! # What is validated
//!
//! Each program has a grammar of the options it understands; any other word
//! (and any long option not listed) leaves the line unvalidated: it runs.
//!
//! * Readers, on the files named: `cat`, `head`, `tail`, `wc`, `grep` (without
//!   `-r`), the checksums, `tac`, `rev`, `base64`, `sort`, `cut`. Each must be a
//!   regular file (symlinks followed, as the program does).
//! * Listings, `ls` (operand: itself and its target; a directory: every entry,
//!   and `..` with `-a`; at most [`MAX_ENTRIES`] a directory). `ls -l` entries
//!   whose date format would switch (six months old) while the entry lives are
//!   refused.
//! * Trees, every entry under each operand with `lstat` by sorted name, never
//!   following a symlink below the operand (none of these programs does, and a
//!   symlink's target kind is stamped for `-F`), at most [`MAX_TREE_ENTRIES`] in
//!   all: `ls -R`, `grep -r` (devices, FIFOs and sockets refused; not `-R`,
//!   which follows symlinks), `du` (not `-L`/`-D`/`-H`), `tree` (to `-L`), and
//!   `find` with start points and an expression of tests that depend only on
//!   names, types, sizes, permissions, owners, link counts and depth (see
//!   `find.rs`), to its largest `-maxdepth`. A first operand `-path ./X -prune`
//!   or `\( -path ./A -o -path ./B \) -prune` with literal paths keeps the walk
//!   out of those directories, as it keeps find out (not with `-depth` or
//!   `-mindepth`, which stop it from pruning them).
//! * git (see `git.rs`), from the cwd's repository: `log`, `show`, `branch`
//!   (list), `tag` (list), `rev-parse`, `describe`, `remote -v`, `config --get`,
//!   `ls-files`, `status`, `diff`. The repository is found as git finds it, and
//!   the search itself is stamped (a `.git` appearing nearer). Always stamped:
//!   the git directory's top entries (HEAD, index, config, packed-refs, shallow,
//!   MERGE_HEAD…), the refs tree, `info/`, the object store's pack list and
//!   every loose-object directory (a new object can lengthen an abbreviated
//!   hash), the system, global and XDG config, ignore and attributes files, the
//!   worktree's `.mailmap`, and each operand's `lstat` in the cwd (git tells a
//!   revision from a path by whether the file exists). `status`, `diff` and
//!   `ls-files -m/-d` also stamp the worktree, leaving out top directories that
//!   git ignores by a plain line of the top `.gitignore` and tracks nothing
//!   in; diffs of commits (`log --stat`, `show`, `diff --cached`) stamp the
//!   whole worktree, whose `.gitattributes` decide how paths are shown.
//!   `git status` may rewrite the index while it runs (refreshing stat data):
//!   the next stamp then differs, or is racy, so that costs a hit, never a
//!   wrong answer.
//!
//! # What is never validated
//!
//! Stdin, files that are not regular files, files on filesystems not known to
//! keep these times (proc, sysfs, network and FUSE filesystems), trees over the
//! bound, time-relative options (`find -mtime`/`-newer`, `git log
//! --since`/`--date=relative`, `%ar`-style placeholders, `@{…}` revisions),
//! following options (`find -L`, `grep -R`), options that write or run
//! programs, git with global options (`-C`, `-c`, `--git-dir`), with any
//! `GIT_*` variable in the environment, in a bare repository, inside a git
//! directory, with submodules, nested repositories or alternates, or whose
//! config includes other files or could make output move with time
//! (`log.date = relative`, `include`, `core.excludesFile`…: see `git.rs`).
//!
//! Not seen: writes through a shared `mmap` before the kernel updates the times,
//! a clock stepped backwards, the programs themselves (an upgraded `git`),
//! system files such as the locale, the time zone or `/etc/passwd` (owner names
//! in `ls -l`), which the session class trusts as well, and `git status`'s
//! advice that enumerating untracked files took over two seconds (a line that
//! depends on the run's speed; the entry bound keeps a stamped worktree far
//! below that on a local filesystem). Git's global config is found from the
//! child's `HOME` and `XDG_CONFIG_HOME` (the environment the line runs with,
//! which is also in its key); its system config at `/etc/gitconfig` and
//! `/usr/local/etc/gitconfig` (the two prefixes git is built with in practice).

mod find;
mod git;
mod grammar;
mod stamp;

pub use stamp::Taken;
use stamp::{Pass, Shows, Stamper, Walk};
use std::path::Path;
use std::time::Duration;

/// A stamp is refused when a time in it is this close to the moment it is
/// taken: the window for times kept to the second (ext4 with 128-byte inodes).
pub const RACY: Duration = Duration::from_secs(1);

/// Largest directory a listing stamp reads (every entry costs an `lstat` per hit).
pub const MAX_ENTRIES: usize = 256;

/// Most entries a stamp reads under all of a line's operands (trees, a git
/// worktree and refs): a larger tree would cost more to stamp than to run.
pub const MAX_TREE_ENTRIES: usize = 2048;

/// Most operands a validated line may name.
const MAX_OPERANDS: usize = 32;

/// The inputs of one command line, when its words name them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs(What);

#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    /// Files read whole (paths as written; relative ones resolve against the cwd).
    Read(Box<[Box<str>]>),
    /// Operands walked to a depth.
    Walk(Tree),
    /// The cwd's git repository.
    Git(git::Git),
}

/// Operands walked, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    paths: Box<[Box<str>]>,
    /// 1 for a listing, `u32::MAX` for a whole tree.
    depth: u32,
    /// `ls -a`: a listed directory's `..` is shown too.
    parent: bool,
    /// The files met are read (`grep -r`).
    reads: bool,
    /// `ls -l` dates are shown.
    dates: bool,
    /// What of each file met is shown, so compared.
    shows: Shows,
    /// `find -path P -prune`: paths (as find writes them) not entered.
    prune: Box<[Box<str>]>,
}

impl Tree {
    fn new(paths: Box<[Box<str>]>, depth: u32) -> Tree {
        Tree {
            paths,
            depth,
            parent: false,
            reads: false,
            dates: false,
            shows: Shows::All,
            prune: Box::default(),
        }
    }
}

impl Inputs {
    /// The inputs of a directly executed argv (see `shell::Line::direct_argv`:
    /// no shell syntax, so every word is literal), or None when they cannot be
    /// told for sure.
    pub fn of(argv: &[String]) -> Option<Inputs> {
        let (program, args) = argv.split_first()?;
        match program.as_str() {
            "find" => find::parse(args),
            "git" => git::parse(args).map(What::Git),
            p => grammar::parse(p, args),
        }
        .map(Inputs)
    }

    /// The stamp of the inputs as they are now, resolved against `cwd` and the
    /// child's environment `env` (git's config files are found from its `HOME`
    /// and `XDG_CONFIG_HOME`); None when they cannot be trusted to reveal a
    /// change (see the module docs). `life` is how long an entry stamped now may
    /// be served. Taken before the command runs; see [`Inputs::held`] after.
    pub fn stamp(&self, cwd: &Path, env: &[(String, String)], life: Duration) -> Option<Taken> {
        self.take(cwd, env, life, Pass::First, RACY, None)
    }

    /// The stamp again, to compare with the key [`Inputs::stamp`] took: the
    /// same, without asking each filesystem's type or reading git's config
    /// text, since the device and the files' metadata are part of the stamp (a
    /// path now on another filesystem, or an edited config, cannot match), and
    /// without the guard. This is the cheaper half on the hit path.
    pub fn restamp(&self, cwd: &Path, env: &[(String, String)], life: Duration) -> Option<u128> {
        self.take(cwd, env, life, Pass::Lookup, RACY, None)
            .map(|t| t.key)
    }

    /// After the command ran: whether nothing its output may show changed
    /// while it ran, so that the output is the one `taken` stands for. Always
    /// so when the key holds every time (a change made after the stamp
    /// shows at the next lookup); otherwise the guard is taken again.
    pub fn held(
        &self,
        cwd: &Path,
        env: &[(String, String)],
        life: Duration,
        taken: &Taken,
    ) -> bool {
        let Some(guard) = taken.guard else {
            return true;
        };
        self.take(cwd, env, life, Pass::Check, RACY, None)
            .is_some_and(|t| t.guard == Some(guard))
    }

    fn take(
        &self,
        cwd: &Path,
        env: &[(String, String)],
        life: Duration,
        pass: Pass,
        racy: Duration,
        racy_fine: Option<Duration>,
    ) -> Option<Taken> {
        let check_fs = pass != Pass::Lookup;
        let mut s = Stamper::new(life, pass, check_fs, racy, racy_fine)?;
        match &self.0 {
            What::Read(paths) => {
                for p in paths.iter() {
                    s.tag(p.as_bytes());
                    s.file(&cwd.join(&**p))?;
                }
            }
            What::Walk(t) => {
                s.dates = t.dates;
                s.whole_minutes = zone_in_whole_minutes(env);
                for p in t.paths.iter() {
                    let prune = |rel: &str| t.prune.iter().any(|x| **x == *rel);
                    let w = Walk {
                        depth: t.depth,
                        parent: t.parent,
                        reads: t.reads,
                        git: false,
                        shows: t.shows,
                        prune: &prune,
                    };
                    s.walk(&cwd.join(&**p), p, &w)?;
                }
            }
            What::Git(g) => g.stamp(&mut s, cwd, env)?,
        }
        Some(s.finish())
    }
}

#[cfg(test)]
impl Inputs {
    /// The key of a first stamp.
    fn key(&self, cwd: &Path, env: &[(String, String)], life: Duration) -> Option<u128> {
        self.stamp(cwd, env, life).map(|t| t.key)
    }
}

/// Whether `ls -l` dates print, in the child's time zone, in whole minutes of
/// UTC: no `TZ` (the system's zone), or a name of the zone database or a
/// POSIX zone with whole-hour offsets (letters, digits, `_`, `/`, `+`, `-`;
/// not a file path, nor an offset with minutes or seconds, which a `:` or `<`
/// would bring), read from the system's database (no `TZDIR`).
fn zone_in_whole_minutes(env: &[(String, String)]) -> bool {
    let named = |v: &str| {
        !v.starts_with('/')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_/+-".contains(&b))
    };
    env.iter()
        .all(|(k, v)| k != "TZDIR" && (k != "TZ" || named(v)))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_git;

//! Validated fs-read entries: answers checked against their input files.
//!
//! A blind fs-read TTL must stay short (seconds), because files change outside
//! voxterm too, and even then it may serve an answer that is seconds out of date.
//! For the simple readers whose inputs are all named on their own command line
//! (`cat FILE`, `head -20 FILE`, `grep -n fn FILE`, `wc -l A B`, `ls -la DIR`), the
//! engine does better: before the command runs it takes a *stamp* of those inputs
//! (device, inode, mode, links, owner, size and times of each file; for a listing,
//! of the directory, its parent and every entry), stores it with the answer, and
//! serves a hit only when a stamp taken at lookup is the same. Such an entry lives
//! as long as `[ttl] fs-read-validated` (minutes) and is never stale, which is the
//! way make and ccache's direct mode trust file metadata, and git its index. The
//! stamp is also more precise than the tenant's generation, which every write of
//! the tenant bumps: keys of validated lines leave the generation out (an answer
//! whose inputs cannot be stamped carries the generation instead; see
//! `entry::Validity`).
//!
//! Why a stamp is enough: on Linux any change to a file's data or metadata sets its
//! ctime to the current time, and no user can set a ctime; any change to a
//! directory's entries sets the directory's mtime and ctime. Timestamps come from a
//! coarse clock, though, so two changes within one tick can leave every time equal:
//! as git does for "racily clean" index entries, a stamp is refused when any time in
//! it is within [`RACY`] of the moment it is taken.
//!
//! Refused (the line falls back to the blind fs-read TTL): any option not listed in
//! the program's grammar below (recursion, following, `-f`, long options), stdin as
//! an input, files that are not regular files, files on filesystems that are not
//! known to keep these times (proc, sysfs, network and FUSE filesystems), listings
//! of more than [`MAX_ENTRIES`] entries, and `ls` entries whose `ls -l` date format
//! would switch (six months old) while the entry lives.
//!
//! Not seen: writes through a shared `mmap` before the kernel updates the times,
//! a clock stepped backwards, and system files such as the locale or
//! `/etc/passwd` (owner names in `ls -l`), which the session class trusts as well.

use nix::sys::statfs::{self, FsType};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A stamp is refused when a time in it is this close to the moment it is taken.
pub const RACY: Duration = Duration::from_secs(1);

/// Largest directory a listing stamp reads (every entry costs an `lstat` per hit).
pub const MAX_ENTRIES: usize = 256;

/// Most operands a validated line may name.
const MAX_OPERANDS: usize = 32;

/// `ls -l` shows the time of day for files younger than this, the year otherwise
/// (GNU coreutils: half a Gregorian year).
const SIX_MONTHS: u64 = 31_556_952 / 2;

/// How one program's words are read.
struct Grammar {
    programs: &'static [&'static str],
    /// Short options without a value that keep the output a function of the inputs.
    flags: &'static str,
    /// Short options that take a value (the rest of the word, or the next word).
    valued: &'static str,
    /// `-NUM` is a count (`head -20`).
    numeric: bool,
    /// The first operand is a pattern, not a file, unless `-e` gave one (grep).
    pattern: bool,
    /// The operands are listed (`ls`), not read; none means `.`.
    listing: bool,
}

const fn reader(programs: &'static [&'static str], flags: &'static str) -> Grammar {
    Grammar {
        programs,
        flags,
        valued: "",
        numeric: false,
        pattern: false,
        listing: false,
    }
}

/// The programs whose inputs can be told from their words. Options not listed
/// make a line unvalidated (`ls -R`, `tail -f`, `grep -r`, `sort -R`, `grep -f`).
const GRAMMARS: &[Grammar] = &[
    reader(&["cat"], "AbeEnstTuv"),
    Grammar {
        valued: "nc",
        numeric: true,
        ..reader(&["head", "tail"], "qvz")
    },
    reader(&["wc"], "clmwL"),
    Grammar {
        valued: "mABCe",
        pattern: true,
        ..reader(&["grep", "egrep", "fgrep"], "EFGPiyvwxcLlHhnbToOsqUzaI")
    },
    reader(
        &[
            "md5sum",
            "sha1sum",
            "sha224sum",
            "sha256sum",
            "sha384sum",
            "sha512sum",
            "b2sum",
            "cksum",
        ],
        "btz",
    ),
    Grammar {
        valued: "s",
        ..reader(&["tac"], "br")
    },
    reader(&["rev"], ""),
    Grammar {
        valued: "w",
        ..reader(&["base64"], "di")
    },
    Grammar {
        valued: "ktST",
        ..reader(&["sort"], "bdfgiMhnrVsuzcmC")
    },
    Grammar {
        valued: "bcdf",
        ..reader(&["cut"], "snz")
    },
    Grammar {
        listing: true,
        ..reader(&["ls"], "aAlh1FprtSXvisdngoGBQNkc")
    },
];

/// The inputs of one command line, when its words name them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// Listed (`ls`) rather than read.
    listing: bool,
    /// `ls -a`: a listed directory's `..` is shown too.
    parent: bool,
    /// Paths as written (relative ones resolve against the session's cwd).
    paths: Box<[Box<str>]>,
}

impl Inputs {
    /// The inputs of a directly executed argv (see `exec::plan`: no shell syntax,
    /// so every word is literal), or None when they cannot be told for sure.
    pub fn of(argv: &[String]) -> Option<Inputs> {
        let (program, args) = argv.split_first()?;
        let g = GRAMMARS.iter().find(|g| g.programs.contains(&&**program))?;
        let mut operands: Vec<&str> = Vec::new();
        let mut pattern_given = false;
        let mut all = false;
        let mut options_done = false;
        let mut words = args.iter();
        while let Some(w) = words.next() {
            if w == "-" {
                return None; // stdin
            }
            if options_done || !w.starts_with('-') {
                operands.push(w);
                continue;
            }
            // An option after an operand is one only where getopt permutes
            // (not with POSIXLY_CORRECT): refuse rather than guess.
            if !operands.is_empty() || w.starts_with("--") && w != "--" {
                return None;
            }
            if w == "--" {
                options_done = true;
                continue;
            }
            let body = &w[1..];
            if g.numeric && body.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            for (i, c) in body.char_indices() {
                if g.flags.contains(c) {
                    all |= c == 'a';
                    continue;
                }
                if !g.valued.contains(c) {
                    return None;
                }
                pattern_given |= g.pattern && c == 'e';
                if i + c.len_utf8() == body.len() {
                    words.next()?; // the value is the next word
                }
                break; // or the rest of this one
            }
        }
        if g.pattern && !pattern_given {
            if operands.is_empty() {
                return None;
            }
            operands.remove(0);
        }
        if operands.is_empty() {
            if !g.listing {
                return None; // would read stdin
            }
            operands.push(".");
        }
        if operands.len() > MAX_OPERANDS {
            return None;
        }
        Some(Inputs {
            listing: g.listing,
            parent: g.listing && all,
            paths: operands.into_iter().map(Box::from).collect(),
        })
    }

    /// The stamp of the inputs as they are now, resolved against `cwd`; None when
    /// they cannot be trusted to reveal a change (see the module docs). `life` is
    /// how long an entry stamped now may be served.
    pub fn stamp(&self, cwd: &Path, life: Duration) -> Option<u128> {
        self.take(cwd, life, true)
    }

    /// The stamp again, to compare with one [`Inputs::stamp`] took: the same,
    /// without asking each filesystem's type, since the device is part of the
    /// stamp (a path now on another filesystem cannot match). This is the
    /// cheaper half on the hit path.
    pub fn restamp(&self, cwd: &Path, life: Duration) -> Option<u128> {
        self.take(cwd, life, false)
    }

    fn take(&self, cwd: &Path, life: Duration, check_fs: bool) -> Option<u128> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let mut s = Stamper {
            hash: blake3::Hasher::new(),
            racy_after: now.saturating_sub(RACY).as_secs_f64(),
            // `ls -l` dates within this window of "six months ago" may change format.
            six_months: (now.as_secs().saturating_sub(SIX_MONTHS)) as f64,
            margin: (life + RACY).as_secs_f64(),
            listing: self.listing,
            parent: self.parent,
            check_fs,
        };
        for p in self.paths.iter() {
            let path = cwd.join(&**p);
            s.hash.update(p.as_bytes());
            s.hash.update(&[0]);
            if self.listing {
                s.listing_of(&path)?;
            } else {
                s.file(&path)?;
            }
        }
        let digest = s.hash.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest.as_bytes()[..16]);
        Some(u128::from_le_bytes(b))
    }
}

/// One stamp being taken.
struct Stamper {
    hash: blake3::Hasher,
    /// Times after this (seconds since the epoch) are racy.
    racy_after: f64,
    six_months: f64,
    margin: f64,
    listing: bool,
    parent: bool,
    /// Refuse files on filesystems not known to keep ctime (a first stamp).
    check_fs: bool,
}

impl Stamper {
    /// A file that is read: a regular file on a trusted filesystem. A missing file
    /// is stamped as missing (the command fails then, and is not stored anyway).
    fn file(&mut self, path: &Path) -> Option<()> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && (!self.check_fs || trusted_fs(path)) => self.meta(&m),
            Ok(_) => None,
            Err(e) => self.error(&e),
        }
    }

    /// A listed operand: the path itself (`ls -l` shows a symlink, `ls` its target
    /// directory), and when it is a directory, every entry by name, and its parent
    /// when `ls -a` shows `..`.
    fn listing_of(&mut self, path: &Path) -> Option<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => self.meta(&m)?,
            Err(e) => return self.error(&e),
        }
        let target = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.error(&e),
        };
        self.meta(&target)?;
        if !target.is_dir() {
            return Some(());
        }
        if self.check_fs && !trusted_fs(path) {
            return None;
        }
        if self.parent {
            match std::fs::metadata(path.join("..")) {
                Ok(m) => self.meta(&m)?,
                Err(e) => self.error(&e)?,
            }
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).ok()? {
            let entry = entry.ok()?;
            if names.len() == MAX_ENTRIES {
                return None;
            }
            names.push(entry.file_name());
        }
        names.sort_unstable();
        for name in names {
            self.hash.update(name.as_encoded_bytes());
            self.hash.update(&[0]);
            match std::fs::symlink_metadata(path.join(&name)) {
                Ok(m) => self.meta(&m)?,
                Err(e) => self.error(&e)?,
            }
        }
        Some(())
    }

    fn meta(&mut self, m: &Metadata) -> Option<()> {
        let time = |s: i64, ns: i64| s as f64 + ns as f64 * 1e-9;
        let ctime = time(m.ctime(), m.ctime_nsec());
        let mtime = time(m.mtime(), m.mtime_nsec());
        if ctime >= self.racy_after || mtime >= self.racy_after {
            return None;
        }
        if self.listing && (mtime - self.six_months).abs() <= self.margin {
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

    fn error(&mut self, e: &std::io::Error) -> Option<()> {
        let code = e.raw_os_error()?;
        self.hash.update(b"E");
        self.hash.update(&code.to_le_bytes());
        Some(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str) -> Option<Inputs> {
        let argv = shell_words::split(line).ok()?;
        Inputs::of(&argv)
    }

    fn paths(line: &str) -> Option<Vec<String>> {
        of(line).map(|i| i.paths.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn operands_are_told_from_options() {
        assert_eq!(paths("cat README.md").unwrap(), ["README.md"]);
        assert_eq!(paths("head -20 docs/guide.md").unwrap(), ["docs/guide.md"]);
        assert_eq!(paths("head -n 5 a b").unwrap(), ["a", "b"]);
        assert_eq!(paths("tail -n5 a").unwrap(), ["a"]);
        assert_eq!(paths("wc -l src/main.rs src/lib.rs").unwrap().len(), 2);
        assert_eq!(paths("grep -n fn src/lib.rs").unwrap(), ["src/lib.rs"]);
        assert_eq!(paths("grep -c -e fn -e x a b").unwrap(), ["a", "b"]);
        assert_eq!(paths("grep -A 3 fn a").unwrap(), ["a"]);
        assert_eq!(paths("cat -- -n").unwrap(), ["-n"]);
        assert_eq!(paths("ls").unwrap(), ["."]);
        assert_eq!(paths("ls -la src").unwrap(), ["src"]);
        assert!(of("ls -la").unwrap().listing);
        assert!(!of("cat a").unwrap().listing);
    }

    #[test]
    fn what_cannot_be_told_is_refused() {
        for line in [
            "cat",             // stdin
            "cat -",           // stdin
            "grep fn",         // stdin
            "ls -R",           // recursive
            "ls -lu",          // access times change on every read
            "ls --color=auto", // long options
            "tail -f log",     // follows
            "grep -r fn .",    // recursive
            "grep -f pats a",  // reads another file
            "sort -R a",       // random
            "cat a -n",        // option after operand
            "head -n",         // value missing
            "git status",      // not a simple reader
            "stat a",          // shows the access time
            "find . -name x",  // walks a tree
        ] {
            assert_eq!(of(line), None, "{line}");
        }
        let many = format!("cat {}", "a ".repeat(MAX_OPERANDS + 1));
        assert_eq!(of(&many), None);
    }

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "one\n").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        d
    }

    const LIFE: Duration = Duration::from_secs(600);

    #[test]
    fn fresh_changes_are_racy_and_refused() {
        let d = dir();
        // Everything was just written: ctime is now, so nothing can be stamped.
        assert_eq!(of("cat a").unwrap().stamp(d.path(), LIFE), None);
        assert_eq!(of("ls -la").unwrap().stamp(d.path(), LIFE), None);
    }

    #[test]
    fn a_stamp_changes_with_what_it_covers() {
        let d = dir();
        // ctime cannot be set back: wait out the racy window instead.
        std::thread::sleep(RACY + Duration::from_millis(50));
        let cat = of("cat a").unwrap();
        let ls = of("ls").unwrap();
        let ls_sub = of("ls -la sub").unwrap();
        let s_cat = cat.stamp(d.path(), LIFE).expect("stampable");
        let s_ls = ls.stamp(d.path(), LIFE).expect("stampable");
        let s_sub = ls_sub.stamp(d.path(), LIFE).expect("stampable");
        assert_eq!(cat.stamp(d.path(), LIFE), Some(s_cat), "stable");
        assert_eq!(ls.stamp(d.path(), LIFE), Some(s_ls), "stable");
        // The lookup's cheaper restamp agrees with the stamp stored.
        assert_eq!(cat.restamp(d.path(), LIFE), Some(s_cat));
        assert_eq!(ls_sub.restamp(d.path(), LIFE), Some(s_sub));
        // Same length, other content: the times tell (and the stamp is racy now).
        std::fs::write(d.path().join("a"), "two\n").unwrap();
        assert_ne!(cat.stamp(d.path(), LIFE), Some(s_cat));
        // A listing sees a changed entry (its size and times in `ls -l`)...
        assert_ne!(ls.stamp(d.path(), LIFE), Some(s_ls));
        // ...and `ls -la sub` a change of its parent (`..`): a new entry there
        // (`ls sub` does not show `..`, so it need not care).
        let ls_sub_names = of("ls sub").unwrap();
        let s_sub_names = ls_sub_names.stamp(d.path(), LIFE);
        assert!(s_sub_names.is_some());
        assert_eq!(ls_sub.stamp(d.path(), LIFE), Some(s_sub), "not yet");
        std::fs::write(d.path().join("b"), "").unwrap();
        assert_ne!(ls_sub.stamp(d.path(), LIFE), Some(s_sub));
        assert_eq!(ls_sub_names.stamp(d.path(), LIFE), s_sub_names);
    }

    proptest::proptest! {
        /// Any argv: an answer, never a panic; stdin (`-`) is never an input.
        #[test]
        fn any_argv_is_handled(
            program in proptest::sample::select(vec!["cat", "head", "grep", "ls", "sort", "cut"]),
            words in proptest::collection::vec("-?-?[a-zA-Z0-9+.]{0,4}", 0..6),
        ) {
            let mut argv = vec![program.to_owned()];
            argv.extend(words);
            if let Some(i) = Inputs::of(&argv) {
                proptest::prop_assert!(!i.paths.is_empty());
                proptest::prop_assert!(i.paths.iter().all(|p| &**p != "-"));
            }
        }
    }

    #[test]
    fn non_regular_and_pseudo_files_are_refused() {
        let d = dir();
        assert_eq!(of("cat /dev/null").unwrap().stamp(d.path(), LIFE), None);
        assert_eq!(of("cat /proc/loadavg").unwrap().stamp(d.path(), LIFE), None);
        assert_eq!(of("ls /proc").unwrap().stamp(d.path(), LIFE), None);
        assert_eq!(of("cat sub").unwrap().stamp(d.path(), LIFE), None);
    }
}

//! The cache's promise, checked by an oracle (issue 18): an answer served from a
//! cache tier (L1, L2, L3, prefetch) must be what running the line again, at that
//! moment, prints.
//!
//! One real server with the cache on (L1 + L2, L3 on request) and prediction and
//! prefetch on; its session works in a scratch directory holding small files and a
//! real git repository. Each line is run with `CacheMode::Default` and right after
//! with `CacheMode::Bypass` (which neither reads nor stores: `session::runner`
//! runs it like an uncacheable line), and stdout, stderr and the exit code are
//! compared. Between lines, this process changes the directory *outside* the
//! engine (edits in place of the same size within the same second, saves through
//! a new inode, creates, removes, renames, `touch -d` to an old date, git commit /
//! checkout / stash / branch), time passes, and the session's cwd and environment
//! change (`cd`, `export`).
//!
//! * A difference where the Default run came from a cache tier fails, with the
//!   line, the recent changes, both outputs and `served_from`.
//! * A difference where the Default run itself executed is not a cache error (it
//!   is reported as a warning: the line is nondeterministic and belongs in
//!   [`Kind::never_cached`] instead).
//! * Lines that are genuinely nondeterministic (`/dev/urandom`, `/proc`, `/sys`,
//!   `date`, `$$`, `$RANDOM`) must never come from a cache tier at all.
//!
//! Three tests:
//! * `fixed_scenario_one_step_per_issue_bullet`: deterministic, one named step per
//!   bullet of issue 18 (plus controls that pass on today's code), so a failure
//!   says which promise broke.
//! * `random_interleavings`: proptest-generated interleavings of lines, outside
//!   changes, sleeps and `cd`/`export`, run against one live server. Shrinking is
//!   off (a live server with timing is not replayable step by step); instead every
//!   finding of every case is reported, with the seed that generated the cases.
//! * `corpus_lines_are_deterministic`: every comparison line, run twice fresh,
//!   prints the same thing (else the oracle would raise false alarms).
//!
//! Knobs (environment):
//! * `VOXTERM_ORACLE_CASES` (default 8) and `VOXTERM_ORACLE_STEPS` (default 40):
//!   the number of interleavings and their length. The long, fuzz-style run (not
//!   in CI): `VOXTERM_ORACLE_CASES=500 cargo test --test cache_oracle
//!   random_interleavings -- --nocapture`.
//! * `VOXTERM_ORACLE_SEED=<u64>`: regenerate the same interleavings.
//! * `VOXTERM_ORACLE_L3=1`: add L3 with a `redis-server` started by the test.

mod cache_support;

use cache_support::{config, run_mode, Redis, TempDir, TestServer};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use voxterm::cache::inputs::RACY;
use voxterm::client::{Client, Completed};
use voxterm_protocol::{CacheMode, ServedFrom};

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

/// What a line depends on, as far as issue 18 is concerned (decides which
/// bullet a finding belongs to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Only the line and the environment.
    Pure,
    /// Who and where (tenant, host, cwd).
    Session,
    /// Expands a variable the shell or the engine sets (`$PWD`, `$HOME`...).
    ShellVar,
    /// A reader whose inputs are all named on its command line: today's code
    /// stamps them (when the stamp is not racy).
    Validated,
    /// A reader whose inputs cannot be told from its words (git, recursion,
    /// globs, pipelines...).
    Unstamped,
    /// Reads `/dev/urandom` or `/dev/random`.
    Device,
    /// Reads `/proc` or `/sys`.
    Kernel,
    /// The clock, `$$`, `$RANDOM`.
    Clock,
}

impl Kind {
    /// Nondeterministic: must never be served from a cache tier.
    fn never_cached(self) -> bool {
        matches!(self, Kind::Device | Kind::Kernel | Kind::Clock)
    }
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    kind: Kind,
}

/// Files the validated readers are run on (`new.txt` exists only after a change
/// creates it).
const READ_FILES: &[&str] = &[
    "a.txt",
    "b.txt",
    "notes.md",
    "src/main.rs",
    "docs/guide.md",
    "new.txt",
];

/// Readers whose inputs today's code can stamp (`cache::inputs` grammars).
const VALIDATED_READERS: &[&str] = &[
    "cat {f}",
    "cat -n {f}",
    "head -2 {f}",
    "head -n 1 {f}",
    "tail -1 {f}",
    "tail -n 2 {f}",
    "wc {f}",
    "wc -l {f}",
    "wc -c {f}",
    "grep -n alpha {f}",
    "grep -c a {f}",
    "grep -i todo {f}",
    "md5sum {f}",
    "sha1sum {f}",
    "sha256sum {f}",
    "b2sum {f}",
    "cksum {f}",
    "base64 {f}",
    "sort {f}",
    "sort -r {f}",
    "tac {f}",
    "rev {f}",
    "cut -c1-4 {f}",
];

/// Readers of one file that today's code does not stamp.
const OTHER_READERS: &[&str] = &[
    "stat -c '%n %s %Y %Z' {f}",
    "nl {f}",
    "od -c {f} | head -3",
    "xxd {f} | head -2",
    "fold -w 8 {f}",
    "uniq {f}",
    "sort {f} | uniq -c",
    "cat {f} | tr a-z A-Z",
    "cat {f} | wc -l",
    "file {f}",
    "strings {f}",
    "expand {f}",
    "fmt {f}",
    "git log --oneline -- {f}",
];

const LISTINGS: &[&str] = &[
    "ls",
    "ls -a",
    "ls -la",
    "ls -l",
    "ls -1",
    "ls -A",
    "ls -F",
    "ls -lS",
    "ls -lt",
    "ls -lh",
    "ls -la docs",
    "ls -l src",
    "ls -1 docs",
    "ls -la src docs",
    "ls -d src docs",
    "ls new.txt",
];

const UNSTAMPED: &[&str] = &[
    // Recursive listings, globs and pipelines over listings.
    "ls -R",
    "ls -R src",
    "ls -laR docs",
    "ls *.txt",
    "ls *.md",
    "ls -l *.txt",
    "ls docs/*.md",
    "ls src/*.rs",
    "ls | wc -l",
    "ls -la | grep txt",
    "ls -1 | sort -r",
    "cat *.md",
    "cat *.txt",
    "wc -l *.txt",
    "head -1 docs/*.md",
    "grep -l alpha *.md",
    "md5sum *.txt",
    "cat src/*.rs | wc -l",
    "echo *.txt",
    "echo docs/*",
    // find (never into .git: a background `git status` may hold index.lock).
    "find . -path ./.git -prune -o -type f -print",
    "find . -name '*.md' -not -path './.git/*'",
    "find . -name '*.rs' -not -path './.git/*'",
    "find src -type f",
    "find docs -name '*.md'",
    "find src -name '*.rs' | sort",
    "find . -maxdepth 1 -type f | sort",
    "find docs src -newer a.txt",
    "find . -path ./.git -prune -o -type f -print | wc -l",
    "find src -size -1k",
    // du
    "du -a src",
    "du -a docs",
    "du -s src docs",
    "du -sh docs",
    "du -ab src",
    "du -ab docs",
    // grep -r
    "grep -r alpha src docs",
    "grep -rn --exclude-dir=.git alpha .",
    "grep -rl alpha src docs",
    "grep -rc alpha docs",
    "grep -r --include='*.rs' fn src",
    "grep -rh alpha docs | sort",
    "grep -rL alpha src docs",
    // git, read-only
    "git status",
    "git status -s",
    "git status --short",
    "git status --short --branch",
    "git status --porcelain",
    "git status --ignored",
    "git diff",
    "git diff --stat",
    "git diff --name-only",
    "git diff --cached",
    "git diff --cached --stat",
    "git diff HEAD",
    "git diff HEAD~1 --stat",
    "git diff main feature --stat",
    "git log",
    "git log --oneline",
    "git log --oneline --all",
    "git log -3 --format='%h %s'",
    "git log --stat -2",
    "git log --graph --oneline --all",
    "git show --stat",
    "git show HEAD:README.md",
    "git show --name-only HEAD~1",
    "git show -s --format=%s HEAD",
    "git branch",
    "git branch -a",
    "git branch -v",
    "git branch --list 'f*'",
    "git rev-parse HEAD",
    "git rev-parse --abbrev-ref HEAD",
    "git rev-parse --show-toplevel",
    "git rev-parse HEAD~1",
    "git ls-files",
    "git ls-files -m",
    "git ls-files --others --exclude-standard",
    "git ls-files -s",
    "git ls-files --deleted",
    "git describe --always",
    "git describe --tags",
    "git shortlog -sn HEAD",
    "git remote -v",
    // At HEAD: blaming the worktree prints the current time for uncommitted lines.
    "git blame HEAD -- a.txt",
    "git stash list",
    // Other readers.
    "diff a.txt b.txt",
    "diff a.txt a.txt",
    "cmp c.txt c.txt",
    "test -f new.txt && echo yes || echo no",
    "[ -e docs/new.md ] && echo present || echo absent",
    "which git",
    "paste a.txt b.txt",
    "column -s, -t data.csv",
    "jq .name data.json",
    "jq -c .items data.json",
    "zcat a.txt.gz",
    "cut -d, -f1 data.csv",
    "sort -t, -k2 -n data.csv",
    "head -c 20 README.md | base64",
    "realpath docs/guide.md",
    "readlink -f src",
];

/// More stamped readers: several operands, other files.
const VALIDATED_MORE: &[&str] = &[
    "cat README.md notes.md",
    "wc -c a.txt b.txt",
    "head -3 nums.txt",
    "sort -n nums.txt",
    "md5sum c.txt",
    "sha256sum a.txt b.txt",
];

const SHELL_VARS: &[&str] = &[
    "echo $PWD",
    "basename $PWD",
    "dirname $PWD",
    "echo \"$PWD\"",
    "printenv PWD",
    "echo ${PWD##*/}",
    "echo $PWD/a.txt",
    "ls $PWD",
    "echo $OLDPWD",
    "echo $HOME",
    "printenv HOME",
    "echo $MYVAR",
    "printenv MYVAR",
    "echo ${MYVAR:-unset}",
    "echo $LC_ALL",
    // The parent of the engine's /bin/sh is this test process: constant here.
    "echo $PPID",
];

const PURE: &[&str] = &[
    "echo hello",
    "printf '%s\\n' a b",
    "seq 3",
    "expr 2 + 3",
    "factor 12",
    "basename /a/b/c.txt",
    "dirname /a/b/c.txt",
    "true",
    "false",
    "echo a; echo b",
    "numfmt --to=iec 2048",
    "printf '%05d\\n' 42",
];

const SESSION: &[&str] = &[
    "pwd",
    "whoami",
    "id -un",
    "hostname",
    "uname -s",
    "nproc",
    "getconf PAGESIZE",
];

const DEVICE: &[&str] = &[
    "head -c 12 /dev/urandom | base64",
    "od -An -N8 -tx1 /dev/urandom",
    "xxd -l 8 -p /dev/urandom",
    "tr -dc a-z0-9 < /dev/urandom | head -c 12",
    "head -c 16 /dev/urandom | md5sum",
    "base64 -w 0 /dev/urandom | head -c 16",
    "head -c 4 /dev/random | od -An -tu4",
];

const KERNEL: &[&str] = &[
    "cat /proc/uptime",
    "head -1 /proc/uptime",
    "cut -d' ' -f1 /proc/uptime",
    "cat /proc/loadavg",
    "cat /proc/sys/kernel/random/uuid",
    "grep ctxt /proc/stat",
    "head -c 40 /proc/self/stat",
    "readlink /proc/self",
    "cat /sys/class/net/lo/statistics/rx_bytes",
];

const CLOCK: &[&str] = &[
    "date",
    "date +%s%N",
    "echo $$",
    // dash (/bin/sh here) has no $RANDOM, but the shells people expect do.
    "echo $RANDOM",
    "date +%N | md5sum",
    "shuf -i 1-1000000 -n 1",
    "echo $(date +%N)",
];

/// Every line of the corpus, comparison lines first.
fn corpus() -> Vec<Line> {
    let mut v = Vec::new();
    let mut add = |kind: Kind, lines: &mut dyn Iterator<Item = String>| {
        v.extend(lines.map(|text| Line { text, kind }));
    };
    for f in READ_FILES {
        add(
            Kind::Validated,
            &mut VALIDATED_READERS.iter().map(|t| t.replace("{f}", f)),
        );
        add(
            Kind::Unstamped,
            &mut OTHER_READERS.iter().map(|t| t.replace("{f}", f)),
        );
    }
    let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    add(Kind::Validated, &mut own(LISTINGS).into_iter());
    add(Kind::Validated, &mut own(VALIDATED_MORE).into_iter());
    add(Kind::Unstamped, &mut own(UNSTAMPED).into_iter());
    add(Kind::ShellVar, &mut own(SHELL_VARS).into_iter());
    add(Kind::Pure, &mut own(PURE).into_iter());
    add(Kind::Session, &mut own(SESSION).into_iter());
    add(Kind::Device, &mut own(DEVICE).into_iter());
    add(Kind::Kernel, &mut own(KERNEL).into_iter());
    add(Kind::Clock, &mut own(CLOCK).into_iter());
    v
}

fn line(text: &str) -> Line {
    corpus()
        .into_iter()
        .find(|l| l.text == text)
        .unwrap_or_else(|| panic!("`{text}` is not in the corpus"))
}

// ---------------------------------------------------------------------------
// The scratch directory and changes made outside the engine
// ---------------------------------------------------------------------------

const INITIAL: &[(&str, &str)] = &[
    (
        "README.md",
        "# demo\n\nalpha project readme\nTODO: write docs\n",
    ),
    ("notes.md", "notes\nalpha\nbeta\n"),
    ("a.txt", "alpha beta\ngamma delta\nalpha omega\n"),
    ("b.txt", "one\ntwo\nthree\ntwo\n"),
    ("c.txt", "0123456789\n"),
    ("nums.txt", "10\n2\n33\n4\n2\n"),
    ("data.csv", "name,qty\napple,3\npear,5\n"),
    ("data.json", "{\"name\":\"demo\",\"items\":[1,2,3]}\n"),
    (
        "src/main.rs",
        "fn main() {\n    // TODO alpha\n    println!(\"hi\");\n}\n",
    ),
    ("src/lib.rs", "pub fn alpha() -> u32 {\n    1\n}\n"),
    ("src/util/mod.rs", "pub fn beta() {}\n"),
    ("docs/guide.md", "# Guide\nalpha usage\n"),
    (".gitignore", "*.log\nbuild/\n.mark*\n*.gz\n"),
];

/// Files the outside changes pick from (the last three do not exist at first).
const CHANGED_FILES: &[&str] = &[
    "a.txt",
    "b.txt",
    "c.txt",
    "notes.md",
    "README.md",
    "nums.txt",
    "src/main.rs",
    "src/lib.rs",
    "docs/guide.md",
    "untracked.txt",
    "new.txt",
    "docs/new.md",
    "src/extra.rs",
];

/// A change made by this process, not by the engine.
#[derive(Debug, Clone)]
enum Outside {
    /// Rewritten in place (same inode), same size, other bytes.
    EditSameSize(usize),
    /// Same size, other bytes, saved as editors do: a temp file renamed over it.
    SaveNewInode(usize),
    Append(usize),
    Remove(usize),
    /// `f` <-> `f.bak`.
    Rename(usize),
    /// `touch -d` to a date in 2001.
    TouchOld(usize),
    /// Exactly this content, in place or through a new inode (fixed scenario).
    Write {
        file: usize,
        text: &'static str,
        new_inode: bool,
    },
    GitAddAll,
    GitCommit,
    GitCheckout(&'static str),
    GitStash,
    GitStashPop,
    GitBranch,
}

/// A git command as another program (an IDE, a terminal) runs it.
fn git(dir: &Path, args: &[&str], date: u64) -> (bool, String) {
    // A prefetched `git status` of the engine may hold index.lock for a moment.
    for _ in 0..200 {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Outside")
            .env("GIT_AUTHOR_EMAIL", "outside@example.com")
            .env("GIT_COMMITTER_NAME", "Outside")
            .env("GIT_COMMITTER_EMAIL", "outside@example.com")
            // Fixed dates: `git log` prints the same thing on every run.
            .env("GIT_AUTHOR_DATE", format!("@{date} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{date} +0000"))
            .output()
            .expect("git runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() && text.contains(".lock") {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        return (out.status.success(), text);
    }
    panic!("git {args:?}: index.lock held for 2 s");
}

/// One scratch directory with a git repository.
struct Workspace {
    dir: PathBuf,
    commits: u64,
    edits: usize,
}

impl Workspace {
    fn create(parent: &Path, name: &str) -> Workspace {
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["src/util", "docs", "build"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        for (path, text) in INITIAL {
            std::fs::write(dir.join(path), text).expect("write");
        }
        let mut ws = Workspace {
            dir,
            commits: 0,
            edits: 0,
        };
        ws.git_ok(&["init", "-q", "-b", "main"]);
        ws.commit("initial");
        ws.git_ok(&["tag", "v0.1"]);
        std::fs::write(ws.path("docs/api.md"), "# API\nfn alpha\n").expect("write");
        std::fs::write(ws.path("notes.md"), "notes\nalpha\nbeta\ngamma\n").expect("write");
        ws.commit("api docs");
        ws.git_ok(&["checkout", "-q", "-b", "feature"]);
        std::fs::write(ws.path("src/lib.rs"), "pub fn alpha() -> u32 {\n    2\n}\n")
            .expect("write");
        ws.commit("feature: two");
        ws.git_ok(&["checkout", "-q", "main"]);
        // Untracked, ignored, and an ignored archive for `zcat`.
        std::fs::write(ws.path("untracked.txt"), "not yet added\n").expect("write");
        std::fs::write(ws.path("app.log"), "ignored log\n").expect("write");
        std::fs::write(ws.path("build/out.bin"), [0u8, 1, 2, 3]).expect("write");
        let gz = Command::new("gzip")
            .args(["-c", "-n", "a.txt"])
            .current_dir(&ws.dir)
            .output()
            .expect("gzip runs");
        std::fs::write(ws.path("a.txt.gz"), gz.stdout).expect("write");
        ws
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn git_ok(&mut self, args: &[&str]) -> String {
        let (ok, text) = git(&self.dir, args, self.date());
        assert!(ok, "git {args:?} in {}: {text}", self.dir.display());
        text
    }

    fn date(&self) -> u64 {
        1_600_000_000 + self.commits * 86_400
    }

    fn commit(&mut self, msg: &str) {
        self.git_ok(&["add", "-A"]);
        self.commits += 1;
        self.git_ok(&["commit", "-q", "--allow-empty", "-m", msg]);
    }

    /// `bytes` with one alphanumeric byte changed (which one rotates).
    fn flip(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        let spots: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i].is_ascii_alphanumeric())
            .collect();
        if spots.is_empty() {
            bytes.extend_from_slice(b"x\n");
            return bytes;
        }
        let i = spots[self.edits % spots.len()];
        self.edits += 1;
        bytes[i] = match bytes[i] {
            b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => bytes[i] + 1,
            b'9' => b'0',
            b'z' => b'a',
            _ => b'A',
        };
        bytes
    }

    /// Makes `rel` exist (for changes that need a file), saying so.
    fn ensure(&mut self, rel: &str, what: &mut String) {
        let p = self.path(rel);
        if !p.exists() {
            std::fs::write(&p, format!("created {rel}\nalpha new\n")).expect("write");
            what.push_str(" (created first: it was missing)");
        }
    }

    /// Applies one outside change; returns what it did.
    fn apply(&mut self, change: &Outside) -> String {
        let file = |i: &usize| CHANGED_FILES[*i % CHANGED_FILES.len()];
        match change {
            Outside::EditSameSize(i) => {
                let mut what = format!("edited {} in place, same size", file(i));
                self.ensure(file(i), &mut what);
                let p = self.path(file(i));
                let bytes = self.flip(std::fs::read(&p).expect("read"));
                std::fs::write(&p, bytes).expect("write");
                what
            }
            Outside::SaveNewInode(i) => {
                let mut what = format!("saved {} through a new inode, same size", file(i));
                self.ensure(file(i), &mut what);
                let p = self.path(file(i));
                let bytes = self.flip(std::fs::read(&p).expect("read"));
                let tmp = p.with_extension("swp~");
                std::fs::write(&tmp, bytes).expect("write");
                std::fs::rename(&tmp, &p).expect("rename");
                what
            }
            Outside::Append(i) => {
                let p = self.path(file(i));
                let mut bytes = std::fs::read(&p).unwrap_or_default();
                self.edits += 1;
                bytes.extend_from_slice(format!("alpha appended {}\n", self.edits).as_bytes());
                std::fs::write(&p, bytes).expect("write");
                format!("appended a line to {}", file(i))
            }
            Outside::Remove(i) => match std::fs::remove_file(self.path(file(i))) {
                Ok(()) => format!("removed {}", file(i)),
                Err(_) => format!("removed {} (no-op: missing)", file(i)),
            },
            Outside::Rename(i) => {
                let (p, bak) = (self.path(file(i)), self.path(&format!("{}.bak", file(i))));
                if p.exists() {
                    std::fs::rename(&p, &bak).expect("rename");
                    format!("renamed {0} to {0}.bak", file(i))
                } else if bak.exists() {
                    std::fs::rename(&bak, &p).expect("rename");
                    format!("renamed {0}.bak back to {0}", file(i))
                } else {
                    let mut what = format!("rename of {} (no-op)", file(i));
                    self.ensure(file(i), &mut what);
                    what
                }
            }
            Outside::TouchOld(i) => {
                let mut what = format!("touch -d 2001-02-03 {}", file(i));
                self.ensure(file(i), &mut what);
                let ok = Command::new("touch")
                    .args(["-d", "2001-02-03 04:05:06", file(i)])
                    .current_dir(&self.dir)
                    .status()
                    .expect("touch runs")
                    .success();
                assert!(ok, "touch -d {}", file(i));
                what
            }
            Outside::Write {
                file: i,
                text,
                new_inode,
            } => {
                let p = self.path(file(i));
                if *new_inode {
                    let tmp = p.with_extension("swp~");
                    std::fs::write(&tmp, text).expect("write");
                    std::fs::rename(&tmp, &p).expect("rename");
                    format!("saved {} through a new inode: {text:?}", file(i))
                } else {
                    std::fs::write(&p, text).expect("write");
                    format!("rewrote {} in place: {text:?}", file(i))
                }
            }
            Outside::GitAddAll => self.git_step(&["add", "-A"], "git add -A"),
            Outside::GitCommit => {
                self.commits += 1;
                let msg = format!("outside commit {}", self.commits);
                let (ok, _) = git(&self.dir, &["add", "-A"], self.date());
                let (ok2, text) = git(
                    &self.dir,
                    &["commit", "-q", "--allow-empty", "-m", &msg],
                    self.date(),
                );
                format!("git add -A && git commit ({})", outcome(ok && ok2, &text))
            }
            Outside::GitCheckout(b) => self.git_step(
                &["checkout", "-q", "-f", b],
                &format!("git checkout -f {b}"),
            ),
            Outside::GitStash => self.git_step(&["stash", "-q"], "git stash"),
            Outside::GitStashPop => self.git_step(&["stash", "pop", "-q"], "git stash pop"),
            Outside::GitBranch => {
                self.edits += 1;
                let name = format!("topic{}", self.edits);
                self.git_step(&["branch", &name], &format!("git branch {name}"))
            }
        }
    }

    fn git_step(&mut self, args: &[&str], what: &str) -> String {
        let (ok, text) = git(&self.dir, args, self.date());
        format!("{what} ({})", outcome(ok, &text))
    }
}

fn outcome(ok: bool, text: &str) -> String {
    if ok {
        "ok".into()
    } else {
        format!("failed: {}", text.lines().next().unwrap_or(""))
    }
}

// ---------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------

/// What one run printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
    signal: Option<i32>,
}

impl Output {
    fn of(line: &str, c: &Completed) -> (Output, ServedFrom) {
        let exit = c.exit.as_ref().unwrap_or_else(|| {
            panic!(
                "`{line}` ended with an error frame, not an Exit: {:?} (a harness problem, not a cache answer)",
                c.error
            )
        });
        let out = Output {
            stdout: c.stdout.clone(),
            stderr: c.stderr.clone(),
            code: exit.code,
            signal: exit.signal,
        };
        (out, exit.served_from)
    }

    fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "-".into(),
        }
    }

    fn render(&self, into: &mut String) {
        let _ = writeln!(into, "exit {}", self.status());
        for (prefix, bytes) in [("      |", &self.stdout), ("    2>|", &self.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().collect();
            for l in lines.iter().take(12) {
                let _ = writeln!(into, "{prefix} {l}");
            }
            if lines.len() > 12 {
                let _ = writeln!(into, "{prefix} … {} more lines", lines.len() - 12);
            }
        }
    }
}

/// How two outputs differ, in one line: the exit status, or the lines only one
/// of them has.
fn difference(cached: &Output, fresh: &Output) -> String {
    if cached.code != fresh.code || cached.signal != fresh.signal {
        return format!(
            "exit {} (cached) vs {} (fresh)",
            cached.status(),
            fresh.status()
        );
    }
    let mut parts = Vec::new();
    for (name, a, b) in [
        ("stdout", &cached.stdout, &fresh.stdout),
        ("stderr", &cached.stderr, &fresh.stderr),
    ] {
        if a == b {
            continue;
        }
        let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        let only = |x: &str, y: &str| -> Vec<String> {
            let mut rest: Vec<&str> = y.lines().collect();
            x.lines()
                .filter(|l| match rest.iter().position(|r| r == l) {
                    Some(i) => {
                        rest.remove(i);
                        false
                    }
                    None => true,
                })
                .take(3)
                .map(|l| format!("{l:?}"))
                .collect()
        };
        let (gone, new) = (only(&a, &b), only(&b, &a));
        let mut p = format!("{name}:");
        if !gone.is_empty() {
            let _ = write!(p, " only cached {}", gone.join(", "));
        }
        if !new.is_empty() {
            let _ = write!(p, " only fresh {}", new.join(", "));
        }
        if gone.is_empty() && new.is_empty() {
            p.push_str(" same lines, in another order or other bytes");
        }
        parts.push(p);
    }
    parts.join("; ")
}

fn cache_tier(s: ServedFrom) -> bool {
    matches!(
        s,
        ServedFrom::L1 | ServedFrom::L2 | ServedFrom::L3 | ServedFrom::Prefetch
    )
}

/// The bullet of issue 18 a wrong answer belongs to (a nondeterministic line is
/// one whatever the tier: the summary shows which).
fn bullet(kind: Kind, served: ServedFrom) -> &'static str {
    match kind {
        Kind::Device => "1. /dev/urandom readers served from cache",
        Kind::Kernel => "2. /proc and /sys readers served from cache",
        Kind::Clock => "6. volatile shell values ($$, $RANDOM) and the clock served from cache",
        _ if served == ServedFrom::Prefetch => "4. a prefetched answer served stale",
        Kind::Unstamped => "3. unstampable fs-read lines served stale (blind 5 s TTL)",
        Kind::Validated => "5. validated readers served stale (racy stamp, blind TTL)",
        Kind::ShellVar => "6. shell-set variables ($PWD...) keyed without the cwd",
        Kind::Pure | Kind::Session => "-. not named in issue 18",
    }
}

/// A wrong answer, or a nondeterministic line served from a cache tier.
struct Finding {
    at: String,
    line: String,
    bullet: &'static str,
    served: Vec<ServedFrom>,
    text: String,
}

#[derive(Default)]
struct Stats {
    checks: u64,
    served: BTreeMap<&'static str, u64>,
    /// Cached answers that the fresh run confirmed.
    verified_hits: u64,
}

/// The engine, a client acting as one user, and what was found so far.
struct Oracle {
    server: TestServer,
    client: Client,
    ws: Workspace,
    /// The session's cwd as this test tracks it (for the reports).
    cwd: PathBuf,
    prev_cwd: Option<PathBuf>,
    recent: VecDeque<(String, Instant)>,
    at: String,
    stats: Stats,
    findings: Vec<Finding>,
    /// Comparison lines that printed differently in two fresh runs.
    fresh_diffs: BTreeMap<String, String>,
    /// Where the last checked line's Default run was answered from.
    last_served: ServedFrom,
    _redis: Option<Redis>,
}

impl Oracle {
    /// A server over `root` (cache on, prediction and prefetch on) and one client.
    async fn start(root: &TempDir, tenant: &str) -> Oracle {
        let redis = std::env::var("VOXTERM_ORACLE_L3")
            .is_ok_and(|v| v == "1")
            .then(Redis::start);
        let mut cfg = config(root.path());
        assert!(cfg.cache.enabled && cfg.predict.enabled && cfg.predict.prefetch);
        cfg.cache.redis_url = redis.as_ref().map(|r| r.url.clone());
        // Prefetch limited by the model only, not by the per-tenant budget: the
        // oracle runs far more lines per second than a person speaks.
        cfg.predict.tenant_rate = 0.0;
        // Every case goes on as a new user: old sessions need not linger.
        cfg.session.idle_ttl = Duration::from_secs(5);
        let server = TestServer::start(cfg).await;
        let client = server
            .client(&format!("{tenant}-{}", cache_support::nonce()))
            .await;
        let ws = Workspace::create(root.path(), "ws-0");
        let cwd = root.path().to_owned();
        let mut o = Oracle {
            server,
            client,
            ws,
            cwd,
            prev_cwd: None,
            recent: VecDeque::new(),
            at: String::new(),
            stats: Stats::default(),
            findings: Vec::new(),
            fresh_diffs: BTreeMap::new(),
            last_served: ServedFrom::Exec,
            _redis: redis,
        };
        let dir = o.ws.dir.clone();
        o.cd_to(&dir).await;
        o
    }

    /// A fresh workspace named `name`, and a new user working in it.
    async fn new_workspace(&mut self, name: &str) {
        let parent = self.ws.dir.parent().expect("parent").to_owned();
        let old = std::mem::replace(&mut self.ws, Workspace::create(&parent, name));
        self.new_user(name).await;
        let _ = std::fs::remove_dir_all(&old.dir);
        self.recent.clear();
    }

    /// Goes on as another tenant (a new session in the workspace): the
    /// predictor keeps a few dozen contexts per tenant, and a long history
    /// crowds out the few transitions a prefetch needs.
    async fn new_user(&mut self, name: &str) {
        let tenant = format!("{name}-{}", cache_support::nonce());
        self.client = self.server.client(&tenant).await;
        self.prev_cwd = None;
        let dir = self.ws.dir.clone();
        self.cd_to(&dir).await;
    }

    async fn cd_to(&mut self, dir: &Path) {
        let line = format!("cd {}", dir.display());
        let code = self.builtin(&line).await;
        assert_eq!(code, Some(0), "`{line}`");
    }

    fn noted(&mut self, what: String) {
        self.recent.push_back((what, Instant::now()));
        if self.recent.len() > 5 {
            self.recent.pop_front();
        }
    }

    fn recent_changes(&self) -> String {
        if self.recent.is_empty() {
            return "none since the workspace was made".into();
        }
        let mut s = String::new();
        for (i, (what, when)) in self.recent.iter().rev().enumerate() {
            let sep = if i == 0 { "" } else { "; before: " };
            let _ = write!(s, "{sep}{what} ({} ms ago)", when.elapsed().as_millis());
        }
        s
    }

    fn cwd_shown(&self) -> String {
        match self.cwd.strip_prefix(&self.ws.dir) {
            Ok(rel) if rel.as_os_str().is_empty() => "<workspace>".into(),
            Ok(rel) => format!("<workspace>/{}", rel.display()),
            Err(_) => self.cwd.display().to_string(),
        }
    }

    async fn run(&mut self, line: &str, mode: CacheMode) -> (Output, ServedFrom) {
        let c = run_mode(&mut self.client, line, mode).await;
        Output::of(line, &c)
    }

    /// An engine builtin (`cd`, `export`, `unset`): run once, tracked.
    async fn builtin(&mut self, line: &str) -> Option<i32> {
        let (out, served) = self.run(line, CacheMode::Default).await;
        assert_eq!(served, ServedFrom::Builtin, "`{line}` is a builtin");
        if out.code == Some(0) {
            if let Some(arg) = line.strip_prefix("cd ") {
                let to = if arg == "-" {
                    self.prev_cwd.clone().unwrap_or_else(|| self.cwd.clone())
                } else {
                    self.cwd.join(arg)
                };
                let to = std::fs::canonicalize(&to).unwrap_or(to);
                self.prev_cwd = Some(std::mem::replace(&mut self.cwd, to));
            }
        }
        self.noted(format!("engine: `{line}`"));
        out.code
    }

    /// A line that writes, run through the engine once.
    async fn engine_write(&mut self, line: &str) {
        let (out, _) = self.run(line, CacheMode::Default).await;
        self.noted(format!("engine: `{line}` (exit {})", out.status()));
    }

    /// A change outside the engine, once nothing of the engine runs any more (a
    /// prefetch started before the change may otherwise still be reading).
    async fn outside(&mut self, change: &Outside) {
        self.quiesce().await;
        let what = self.ws.apply(change);
        self.noted(format!("outside: {what}"));
    }

    /// Waits until no worker runs (prefetches included).
    async fn quiesce(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        // A prefetch is spawned before the Exit that triggered it is sent, and
        // takes its worker right away: a few ms cover the hand-over.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut idle = 0;
        while idle < 2 {
            idle = if self.server.engine.sampled().busy_workers == 0 {
                idle + 1
            } else {
                0
            };
            assert!(Instant::now() < deadline, "workers stayed busy for 10 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn count(&mut self, s: ServedFrom) {
        *self.stats.served.entry(s.as_str()).or_default() += 1;
    }

    /// The oracle: `line` through the cache, then fresh; returns the fresh output.
    async fn check(&mut self, line: &Line) -> Output {
        let (cached, served) = self.run(&line.text, CacheMode::Default).await;
        let (fresh, _) = self.run(&line.text, CacheMode::Bypass).await;
        self.last_served = served;
        self.stats.checks += 1;
        self.count(served);
        if line.kind.never_cached() {
            if cache_tier(served) {
                self.never_cached_finding(line, vec![served], &[cached]);
            }
            return fresh;
        }
        if cached == fresh {
            if cache_tier(served) {
                self.stats.verified_hits += 1;
            }
            return fresh;
        }
        if !cache_tier(served) {
            // Two fresh runs disagree: not a cache answer.
            let diff = difference(&cached, &fresh);
            self.fresh_diffs.entry(line.text.clone()).or_insert(diff);
            return fresh;
        }
        let mut text = String::new();
        let _ = writeln!(text, "WRONG ANSWER FROM THE CACHE  [{}]", self.at);
        let _ = writeln!(text, "  line:         {}", line.text);
        let _ = writeln!(text, "  cwd:          {}", self.cwd_shown());
        let _ = writeln!(text, "  served_from:  {}", served.as_str());
        let _ = writeln!(text, "  last changes: {}", self.recent_changes());
        let _ = writeln!(text, "  difference:   {}", difference(&cached, &fresh));
        let _ = write!(text, "  cached ({}): ", served.as_str());
        cached.render(&mut text);
        let _ = write!(text, "  fresh (bypass): ");
        fresh.render(&mut text);
        self.findings.push(Finding {
            at: self.at.clone(),
            line: line.text.clone(),
            bullet: bullet(line.kind, served),
            served: vec![served],
            text,
        });
        fresh
    }

    /// A nondeterministic line, run three times back to back: never from a tier.
    async fn thrice(&mut self, line: &Line) {
        let mut served = Vec::new();
        let mut outs = Vec::new();
        for _ in 0..3 {
            let (out, s) = self.run(&line.text, CacheMode::Default).await;
            self.count(s);
            served.push(s);
            outs.push(out);
        }
        self.stats.checks += 3;
        if served.iter().any(|s| cache_tier(*s)) {
            self.never_cached_finding(line, served, &outs);
        }
    }

    fn never_cached_finding(&mut self, line: &Line, served: Vec<ServedFrom>, outs: &[Output]) {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "NONDETERMINISTIC LINE SERVED FROM THE CACHE  [{}]",
            self.at
        );
        let _ = writeln!(text, "  line:         {}", line.text);
        let names: Vec<&str> = served.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(text, "  served_from:  {}", names.join(", "));
        let _ = writeln!(text, "  last changes: {}", self.recent_changes());
        for (s, out) in served.iter().zip(outs) {
            let _ = write!(text, "  {}: ", s.as_str());
            out.render(&mut text);
        }
        let tier = served
            .iter()
            .copied()
            .find(|s| cache_tier(*s))
            .unwrap_or(ServedFrom::Exec);
        self.findings.push(Finding {
            at: self.at.clone(),
            line: line.text.clone(),
            bullet: bullet(line.kind, tier),
            served,
            text,
        });
    }

    /// Prefetches started, stored, and skipped for any reason, so far.
    fn prefetch_counters(&self) -> (f64, f64, f64) {
        let e = &self.server.engine;
        let text = e.metrics.render_prometheus(e.sampled());
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(name)?;
                    let (labels, value) = rest.rsplit_once(' ')?;
                    (labels.is_empty() || labels.starts_with('{'))
                        .then(|| value.parse::<f64>().ok())?
                })
                .sum()
        };
        (
            sum("voxterm_prefetch_started_total"),
            sum("voxterm_prefetch_stored_total"),
            sum("voxterm_prefetch_skipped_total"),
        )
    }

    fn stats_line(&self) -> String {
        let served: Vec<String> = self
            .stats
            .served
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "{} answers checked (served from: {}); {} cached answers confirmed by a fresh run; {} findings",
            self.stats.checks,
            served.join(", "),
            self.stats.verified_hits,
            self.findings.len()
        )
    }

    /// Every finding, then a summary by bullet; empty when there is none.
    fn report(&self, detailed: usize) -> String {
        let mut s = String::new();
        for f in self.findings.iter().take(detailed) {
            let _ = writeln!(s, "{}", f.text);
        }
        if self.findings.len() > detailed {
            let _ = writeln!(
                s,
                "… {} more findings, summarized below\n",
                self.findings.len() - detailed
            );
        }
        let mut by_bullet: BTreeMap<&str, BTreeMap<&str, (usize, BTreeSet<&str>)>> =
            BTreeMap::new();
        for f in &self.findings {
            let e = by_bullet
                .entry(f.bullet)
                .or_default()
                .entry(&f.line)
                .or_default();
            e.0 += 1;
            e.1.extend(
                f.served
                    .iter()
                    .filter(|s| cache_tier(**s))
                    .map(|s| s.as_str()),
            );
        }
        let _ = writeln!(s, "SUMMARY by issue-18 bullet (line: times, tiers):");
        for (b, lines) in &by_bullet {
            let _ = writeln!(s, "  {b}");
            for (line, (n, tiers)) in lines {
                let tiers: Vec<&str> = tiers.iter().copied().collect();
                let _ = writeln!(s, "      {line}: {n}x, {}", tiers.join("/"));
            }
        }
        s
    }

    fn warnings(&self) -> String {
        let mut s = String::new();
        for (line, diff) in &self.fresh_diffs {
            let _ = writeln!(
                s,
                "warning: `{line}` printed differently in two fresh runs ({diff}): not a cache error; if it is genuinely nondeterministic, move it to the never-cached kinds"
            );
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Fixed scenario
// ---------------------------------------------------------------------------

/// A step of the fixed scenario: every change it makes must change the fresh
/// answer of the lines it targets, or the step could not fail.
async fn targeted(o: &mut Oracle, lines: &[&str], changes: &[Outside]) {
    let lines: Vec<Line> = lines.iter().map(|l| line(l)).collect();
    let mut before = Vec::new();
    for l in &lines {
        // Twice: the first run stores, the second may be a hit.
        o.check(l).await;
        before.push(o.check(l).await);
    }
    for c in changes {
        o.outside(c).await;
    }
    for (l, before) in lines.iter().zip(before) {
        let after = o.check(l).await;
        assert_ne!(
            before, after,
            "scenario bug in step {}: {changes:?} did not change what `{}` prints",
            o.at, l.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_scenario_one_step_per_issue_bullet() {
    let started = Instant::now();
    let root = TempDir::new("oracle-fixed");
    let mut o = Oracle::start(&root, "fixed").await;
    let made = Instant::now();
    let files = |name: &str| {
        CHANGED_FILES
            .iter()
            .position(|f| *f == name)
            .expect("a changed file")
    };
    let mut steps: Vec<String> = Vec::new();
    let mut step = |o: &mut Oracle, name: &str| {
        o.at = format!("fixed: {name}");
        steps.push(o.at.clone());
    };

    step(&mut o, "1 /dev/urandom readers, 3 runs each");
    for l in DEVICE {
        o.thrice(&line(l)).await;
    }

    step(&mut o, "2 /proc and /sys readers, 3 runs each");
    for l in KERNEL {
        o.thrice(&line(l)).await;
    }

    step(&mut o, "6 $$, $RANDOM and the clock, 3 runs each");
    for l in CLOCK {
        o.thrice(&line(l)).await;
    }

    // Control: a validated reader whose stamp is trusted (inputs older than the
    // racy window) sees a same-size edit at once, on today's code too.
    step(&mut o, "control: validated readers, stamp trusted");
    let trusted = made + RACY + Duration::from_millis(100);
    tokio::time::sleep(trusted.saturating_duration_since(Instant::now())).await;
    targeted(
        &mut o,
        &["cat a.txt", "md5sum c.txt", "wc -l b.txt"],
        &[
            Outside::EditSameSize(files("a.txt")),
            Outside::EditSameSize(files("c.txt")),
            Outside::Append(files("b.txt")),
        ],
    )
    .await;

    step(&mut o, "control: export changes the key");
    o.builtin("export MYVAR=one").await;
    targeted_engine(
        &mut o,
        &["echo $MYVAR", "printenv MYVAR"],
        "export MYVAR=two",
    )
    .await;
    o.builtin("unset MYVAR").await;

    step(&mut o, "3 unstampable fs-read lines after an outside edit");
    targeted(
        &mut o,
        &[
            "git status",
            "git status -s",
            "git diff",
            "git diff --stat",
            "git ls-files --others --exclude-standard",
            "grep -r alpha src docs",
            "grep -rl alpha src docs",
            "ls -R src",
            "find src -type f",
            "find . -name '*.rs' -not -path './.git/*'",
            "du -a src",
            "du -ab docs",
        ],
        &[
            Outside::Append(files("src/main.rs")),
            Outside::Append(files("docs/guide.md")),
            Outside::Append(files("src/extra.rs")),
        ],
    )
    .await;

    step(&mut o, "4 prefetched answers after an outside change");
    o.new_user("fixed-prefetch").await;
    prefetched_then_changed(
        &mut o,
        files("README.md"),
        files("src/lib.rs"),
        files("notes.md"),
    )
    .await;

    step(
        &mut o,
        "5 validated readers, file saved within the last second",
    );
    let write = |f: &str, text: &'static str, new_inode: bool| Outside::Write {
        file: files(f),
        text,
        new_inode,
    };
    for (l, f, saved, edited) in [
        (
            "cat a.txt",
            "a.txt",
            "alpha beta\ngamma\n",
            "alpha BETA\ngamma\n",
        ),
        ("md5sum c.txt", "c.txt", "abcdefghij\n", "abcdefghiJ\n"),
        ("sha256sum b.txt", "b.txt", "one\ntwo\n", "one\nTWO\n"),
        ("head -3 nums.txt", "nums.txt", "1\n2\n3\n", "1\n5\n3\n"),
        (
            "grep -n alpha notes.md",
            "notes.md",
            "notes\nalpha\nbeta\n",
            "notes\nbeta\nalpha\n",
        ),
        (
            "wc a.txt",
            "a.txt",
            "alpha beta\n",
            "alpha beta\nand more\n",
        ),
    ] {
        // Saved now (racy), read twice, saved again within the same second.
        o.outside(&write(f, saved, true)).await;
        targeted(&mut o, &[l], &[write(f, edited, false)]).await;
    }
    o.outside(&write("docs/guide.md", "# Guide\nsaved\n", true))
        .await;
    targeted(
        &mut o,
        &["ls -la docs"],
        &[Outside::Append(files("docs/new.md"))],
    )
    .await;

    step(&mut o, "6 $PWD lines after cd");
    targeted_engine(
        &mut o,
        &[
            "echo $PWD",
            "basename $PWD",
            "dirname $PWD",
            "printenv PWD",
            "echo ${PWD##*/}",
            "pwd",
            "ls",
        ],
        "cd docs",
    )
    .await;
    let ws = o.ws.dir.clone();
    o.cd_to(&ws).await;

    let mut report = String::new();
    for s in &steps {
        let found: Vec<&Finding> = o.findings.iter().filter(|f| &f.at == s).collect();
        let verdict = if found.is_empty() {
            "ok".to_owned()
        } else {
            let lines: BTreeSet<&str> = found.iter().map(|f| f.line.as_str()).collect();
            let mut v = format!("FAILED, {} wrong answers:", found.len());
            for l in lines {
                let _ = write!(v, "\n      {l}");
            }
            v
        };
        let _ = writeln!(report, "  {s}: {verdict}");
    }
    eprintln!("{}", o.warnings());
    eprintln!(
        "fixed scenario: {} steps in {:.1} s; {}\n{report}",
        steps.len(),
        started.elapsed().as_secs_f64(),
        o.stats_line()
    );
    assert!(
        o.findings.is_empty(),
        "the cache served wrong answers:\n\n{}\nper step:\n{report}",
        o.report(usize::MAX)
    );
}

/// Like [`targeted`], the change being an engine builtin (`cd`, `export`).
async fn targeted_engine(o: &mut Oracle, lines: &[&str], builtin: &str) {
    let lines: Vec<Line> = lines.iter().map(|l| line(l)).collect();
    let mut before = Vec::new();
    for l in &lines {
        o.check(l).await;
        before.push(o.check(l).await);
    }
    assert_eq!(o.builtin(builtin).await, Some(0), "`{builtin}`");
    for (l, before) in lines.iter().zip(before) {
        let after = o.check(l).await;
        assert_ne!(
            before, after,
            "scenario bug in step {}: `{builtin}` did not change what `{}` prints",
            o.at, l.text
        );
    }
}

/// Trains the predictor on `touch .markN` → target, lets it prefetch the target
/// once more, changes what the target prints from outside, and checks it.
async fn prefetched_then_changed(o: &mut Oracle, readme: usize, lib: usize, notes: usize) {
    let routines: [(&str, &str, Outside); 4] = [
        (
            "touch .mark1",
            "git status --short",
            Outside::EditSameSize(readme),
        ),
        ("touch .mark2", "git branch", Outside::GitBranch),
        (
            "touch .mark3",
            "git ls-files -m",
            Outside::EditSameSize(lib),
        ),
        // A validated reader: prefetchable even where the lines above run every
        // time. Its trained answer stays valid through the marks (they are not
        // its input), so nothing would be prefetched: it is edited once after
        // the training, and given time to be stamped again.
        ("touch .mark4", "cat notes.md", Outside::EditSameSize(notes)),
    ];
    // The mark files are ignored by git: the marks change nothing a target prints.
    for _ in 0..3 {
        for (trigger, target, _) in &routines {
            o.engine_write(trigger).await;
            o.run(target, CacheMode::Default).await;
        }
    }
    o.outside(&Outside::EditSameSize(notes)).await;
    let stampable = Instant::now() + RACY + Duration::from_millis(100);
    for (trigger, target, change) in &routines {
        if *target == "cat notes.md" {
            tokio::time::sleep(stampable.saturating_duration_since(Instant::now())).await;
        }
        // Nothing left over from the training: every prefetch counted below is
        // the trigger's.
        o.quiesce().await;
        let (started, stored, skipped) = o.prefetch_counters();
        o.engine_write(trigger).await;
        // Until every prefetch the trigger started is stored, or the target was
        // refused (a skip and no start).
        let deadline = Instant::now() + Duration::from_secs(3);
        let prefetched = loop {
            let now = o.prefetch_counters();
            if now.0 > started && now.1 - stored >= now.0 - started {
                break true;
            }
            if (now.0 == started && now.2 > skipped) || Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if !prefetched {
            // Nothing can be served from prefetch (e.g. the target is no longer
            // prefetchable): this routine cannot fail, say so.
            eprintln!("note: `{target}` was not prefetched after `{trigger}`");
        }
        let before = o.run(target, CacheMode::Bypass).await.0;
        o.outside(change).await;
        let after = o.check(&line(target)).await;
        if prefetched && o.last_served != ServedFrom::Prefetch {
            eprintln!(
                "note: `{target}` was prefetched, then answered from {}",
                o.last_served.as_str()
            );
        }
        assert_ne!(
            before, after,
            "scenario bug: {change:?} did not change what `{target}` prints"
        );
    }
}

// ---------------------------------------------------------------------------
// Random interleavings
// ---------------------------------------------------------------------------

/// A change through the engine.
#[derive(Debug, Clone)]
enum EngineOp {
    Builtin(&'static str),
    /// `cd` back to the workspace.
    CdHome,
    Write(&'static str),
}

#[derive(Debug, Clone)]
enum Step {
    /// A line of the case's working set, through the oracle.
    Run(Index),
    Outside(Outside),
    Engine(EngineOp),
    Sleep(u64),
    /// The case's routine (trigger, then target): what the predictor learns and
    /// prefetches; an outside change may come between the two.
    Routine(Option<Outside>),
}

#[derive(Debug, Clone)]
struct Case {
    /// Indices into the corpus: a few lines per case, so that they repeat (and
    /// can be answered from the cache).
    working: Vec<usize>,
    routine: usize,
    steps: Vec<Step>,
}

const ROUTINES: &[(&str, &str)] = &[
    ("touch .mark1", "git status --short"),
    ("touch .mark2", "git branch"),
    ("touch .mark3", "git ls-files -m"),
    ("touch .mark4", "ls -la"),
    ("touch .mark5", "cat a.txt"),
    ("touch .mark6", "grep -r alpha src docs"),
];

fn outside_strategy() -> impl Strategy<Value = Outside> {
    let f = 0..CHANGED_FILES.len();
    prop_oneof![
        4 => f.clone().prop_map(Outside::EditSameSize),
        3 => f.clone().prop_map(Outside::SaveNewInode),
        3 => f.clone().prop_map(Outside::Append),
        1 => f.clone().prop_map(Outside::Remove),
        1 => f.clone().prop_map(Outside::Rename),
        1 => f.prop_map(Outside::TouchOld),
        1 => Just(Outside::GitAddAll),
        1 => Just(Outside::GitCommit),
        1 => prop_oneof![Just("main"), Just("feature")].prop_map(Outside::GitCheckout),
        1 => Just(Outside::GitStash),
        1 => Just(Outside::GitStashPop),
        1 => Just(Outside::GitBranch),
    ]
}

fn engine_strategy() -> impl Strategy<Value = EngineOp> {
    prop_oneof![
        Just(EngineOp::Builtin("cd docs")),
        Just(EngineOp::Builtin("cd src")),
        Just(EngineOp::Builtin("cd -")),
        Just(EngineOp::CdHome),
        Just(EngineOp::Builtin("export MYVAR=one")),
        Just(EngineOp::Builtin("export MYVAR=two")),
        Just(EngineOp::Builtin("unset MYVAR")),
        Just(EngineOp::Builtin("export LC_ALL=C")),
        Just(EngineOp::Builtin("unset LC_ALL")),
        Just(EngineOp::Write("touch b.txt")),
        Just(EngineOp::Write("echo engine >> notes.md")),
        Just(EngineOp::Write("echo made > new.txt")),
        Just(EngineOp::Write("rm -f new.txt")),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => any::<Index>().prop_map(Step::Run),
        5 => outside_strategy().prop_map(Step::Outside),
        1 => engine_strategy().prop_map(Step::Engine),
        // Time passing: a moment, within the racy window, and across it.
        2 => prop_oneof![
            3 => Just(20u64),
            2 => Just(250),
            1 => Just(RACY.as_millis() as u64 + 50),
        ]
        .prop_map(Step::Sleep),
        2 => proptest::option::of(outside_strategy()).prop_map(Step::Routine),
    ]
}

fn case_strategy(corpus: usize, steps: usize) -> impl Strategy<Value = Case> {
    (
        proptest::sample::subsequence((0..corpus).collect::<Vec<_>>(), 8),
        0..ROUTINES.len(),
        proptest::collection::vec(step_strategy(), steps),
    )
        .prop_map(|(working, routine, steps)| Case {
            working,
            routine,
            steps,
        })
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

async fn run_case(o: &mut Oracle, corpus: &[Line], case: &Case, n: u64, cases: u64) {
    let total = case.steps.len();
    let (trigger, target) = ROUTINES[case.routine];
    let target = line(target);
    for (i, step) in case.steps.iter().enumerate() {
        o.at = format!("case {}/{cases}, step {}/{total}", n + 1, i + 1);
        match step {
            Step::Run(ix) => {
                let l = &corpus[case.working[ix.index(case.working.len())]];
                o.check(l).await;
            }
            Step::Outside(c) => o.outside(c).await,
            Step::Engine(EngineOp::Builtin(b)) => {
                o.builtin(b).await;
            }
            Step::Engine(EngineOp::CdHome) => {
                let ws = o.ws.dir.clone();
                o.cd_to(&ws).await;
            }
            Step::Engine(EngineOp::Write(w)) => o.engine_write(w).await,
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Step::Routine(change) => {
                o.engine_write(trigger).await;
                if let Some(c) = change {
                    o.outside(c).await;
                }
                o.check(&target).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings() {
    let started = Instant::now();
    let cases = env_number("VOXTERM_ORACLE_CASES", 8);
    let steps = env_number("VOXTERM_ORACLE_STEPS", 40) as usize;
    let seed = env_number("VOXTERM_ORACLE_SEED", fastrand::u64(..));
    let corpus = corpus();
    let root = TempDir::new("oracle-random");
    let mut o = Oracle::start(&root, "random").await;

    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        PtConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let strategy = case_strategy(corpus.len(), steps);
    let mut ran = 0;
    for n in 0..cases {
        let case = strategy
            .new_tree(&mut runner)
            .expect("generate a case")
            .current();
        o.new_workspace(&format!("ws-{}", n + 1)).await;
        run_case(&mut o, &corpus, &case, n, cases).await;
        ran += case.steps.len();
        if (n + 1) % 25 == 0 {
            eprintln!(
                "… {} interleavings, {ran} steps, {} findings so far",
                n + 1,
                o.findings.len()
            );
        }
    }

    eprint!("{}", o.warnings());
    eprintln!(
        "random interleavings: {cases} interleavings, {ran} steps in {:.1} s (VOXTERM_ORACLE_SEED={seed}); {}",
        started.elapsed().as_secs_f64(),
        o.stats_line()
    );
    assert!(
        o.stats.served.keys().any(|k| cache_tier_name(k)),
        "no answer came from the cache: the oracle checked nothing"
    );
    assert!(
        o.findings.is_empty(),
        "the cache served wrong answers (VOXTERM_ORACLE_SEED={seed} regenerates these interleavings):\n\n{}",
        o.report(40)
    );
}

fn cache_tier_name(name: &str) -> bool {
    ServedFrom::ALL
        .iter()
        .any(|s| s.as_str() == name && cache_tier(*s))
}

// ---------------------------------------------------------------------------
// The corpus itself
// ---------------------------------------------------------------------------

/// Two fresh runs of every comparison line print the same thing, so a
/// difference in the oracle is the cache's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_lines_are_deterministic() {
    let corpus = corpus();
    let compared: Vec<&Line> = corpus.iter().filter(|l| !l.kind.never_cached()).collect();
    assert!(
        compared.len() >= 200,
        "a few hundred lines: {}",
        compared.len()
    );
    let root = TempDir::new("oracle-corpus");
    let mut o = Oracle::start(&root, "corpus").await;
    let mut differ = Vec::new();
    for l in &compared {
        let a = o.run(&l.text, CacheMode::Bypass).await.0;
        let b = o.run(&l.text, CacheMode::Bypass).await.0;
        if a != b {
            differ.push(format!("  {}: {}", l.text, difference(&a, &b)));
        }
    }
    assert!(
        differ.is_empty(),
        "lines that print differently in two fresh runs belong to the never-cached kinds:\n{}",
        differ.join("\n")
    );
}

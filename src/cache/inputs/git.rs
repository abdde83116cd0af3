//! git's read-only subcommands: which options each understands, and the stamp of
//! what its answer depends on (the repository's own files, the configuration,
//! and for some the index and the worktree).

use super::stamp::{Shows, Stamper, Walk};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// What a git line's answer depends on beyond the repository (HEAD, the index,
/// refs, objects, config: always stamped, the index as one of the git
/// directory's top entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Git {
    pub(super) worktree: Worktree,
    /// Operands that git tells apart as revision or path by whether a file of
    /// that name exists (`git log main`, `git diff src`): their `lstat` in the cwd.
    pub(super) names: Box<[Box<str>]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Worktree {
    /// Not read.
    No,
    /// Every entry (diffs read `.gitattributes` anywhere, ignored or not).
    Full,
    /// Every entry but the top directories git ignores and tracks nothing in
    /// (`status`, `diff` of worktree against index, `ls-files -m`).
    Tracked,
}

/// Options of every diff-printing subcommand that print paths or nothing.
const DIFF_NAMES: &[&str] = &[
    "--name-only",
    "--name-status",
    "--raw",
    "--summary",
    "--no-renames",
    "--no-color",
    "--color=never",
    "--full-index",
    "-R",
    "-q",
    "--quiet",
    "--exit-code",
    "--no-ext-diff",
];

/// Diff options that print contents or counts: the attributes (`binary`,
/// `diff=…`, textconv) of every path shown decide them.
const DIFF_CONTENTS: &[&str] = &[
    "--stat",
    "--shortstat",
    "--numstat",
    "-p",
    "-u",
    "--patch",
    "-w",
    "--ignore-all-space",
    "-b",
    "--ignore-space-change",
    "--minimal",
    "--patience",
    "--histogram",
    "--binary",
];

/// `log` and `show` options (besides the diff ones, counts and formats).
const LOG: &[&str] = &[
    "--oneline",
    "--graph",
    "--decorate",
    "--no-decorate",
    "--decorate=short",
    "--decorate=full",
    "--decorate=no",
    "--all",
    "--branches",
    "--tags",
    "--reverse",
    "--first-parent",
    "--no-merges",
    "--merges",
    "--topo-order",
    "--date-order",
    "--abbrev-commit",
    "--no-abbrev-commit",
    "--parents",
    "--children",
    "--boundary",
    "--no-walk",
];

/// `--date=` styles that print a fixed time (not `relative`, `human`, `auto:…`).
const DATES: &[&str] = &[
    "default",
    "iso",
    "iso8601",
    "iso-strict",
    "iso8601-strict",
    "rfc",
    "rfc2822",
    "short",
    "raw",
    "unix",
];

/// Placeholders (lowercased) whose text changes as time passes (`%ar`, `%ch`)
/// or with outside state (`%G?`: signatures, keyrings and expiry; `%g`: reflogs).
const MOVING: &[&str] = &["%ar", "%cr", "%ah", "%ch", "%g"];

/// The inputs of `git args`, when the subcommand and every option is understood.
pub(super) fn parse(args: &[String]) -> Option<Git> {
    // Global options (-C, -c, --git-dir, --work-tree…) are refused: the
    // subcommand must be the first word.
    let (sub, rest) = args.split_first()?;
    let mut g = Git {
        worktree: Worktree::No,
        names: Box::default(),
    };
    let mut names: Vec<&str> = Vec::new();
    let mut paths = false; // after `--`
    let mut contents = false; // a diff option that prints contents
    let mut names_only = false; // show -s / --name-only
    let mut cached = false;
    let mut operands = 0usize;
    let mut words = rest.iter();
    while let Some(w) = words.next() {
        let w = w.as_str();
        if paths || !w.starts_with('-') {
            operands += 1;
            match sub.as_str() {
                "status" | "ls-files" => pathspec(w)?,
                "config" if operands == 1 && !paths => config_name(w)?,
                "log" | "show" | "rev-parse" | "describe" | "diff" if paths => pathspec(w)?,
                "log" | "show" | "rev-parse" | "describe" | "diff" => {
                    revision(w)?;
                    names.push(w);
                }
                _ => return None,
            }
            continue;
        }
        if w == "--" {
            paths = true;
            continue;
        }
        let ok = match sub.as_str() {
            "log" | "show" | "diff" => {
                contents |= DIFF_CONTENTS.contains(&w) || unified(w);
                names_only |= matches!(w, "-s" | "--no-patch" | "--name-only" | "--name-status");
                cached |= matches!(w, "--cached" | "--staged");
                DIFF_NAMES.contains(&w)
                    || DIFF_CONTENTS.contains(&w)
                    || unified(w)
                    || match sub.as_str() {
                        "diff" => matches!(w, "--cached" | "--staged"),
                        _ => {
                            LOG.contains(&w)
                                || matches!(w, "-s" | "--no-patch")
                                || count(w, &mut words)?
                                || format(w)?
                        }
                    }
            }
            "branch" => matches!(
                w,
                "-a" | "--all"
                    | "-r"
                    | "--remotes"
                    | "-v"
                    | "-vv"
                    | "--verbose"
                    | "--list"
                    | "-l"
                    | "--no-color"
                    | "--show-current"
                    | "--no-abbrev"
            ),
            "tag" => matches!(w, "-l" | "--list" | "-n") || number_after(w, "-n"),
            "remote" => matches!(w, "-v" | "--verbose"),
            "rev-parse" => {
                matches!(
                    w,
                    "--short"
                        | "--verify"
                        | "-q"
                        | "--quiet"
                        | "--abbrev-ref"
                        | "--symbolic-full-name"
                        | "--show-toplevel"
                        | "--show-prefix"
                        | "--show-cdup"
                        | "--git-dir"
                        | "--absolute-git-dir"
                        | "--git-common-dir"
                        | "--is-inside-work-tree"
                        | "--is-inside-git-dir"
                        | "--is-bare-repository"
                ) || number_after(w, "--short=")
            }
            "describe" => {
                matches!(
                    w,
                    "--tags" | "--all" | "--always" | "--long" | "--exact-match" | "--first-parent"
                ) || number_after(w, "--abbrev=")
            }
            "config" => matches!(
                w,
                "--get"
                    | "--get-all"
                    | "--list"
                    | "-l"
                    | "--global"
                    | "--system"
                    | "--local"
                    | "--show-origin"
                    | "--show-scope"
                    | "-z"
                    | "--null"
                    | "--name-only"
            ),
            "ls-files" => {
                let worktree = matches!(w, "-m" | "--modified" | "-d" | "--deleted");
                if worktree {
                    g.worktree = Worktree::Tracked;
                }
                worktree
                    || matches!(
                        w,
                        "-c" | "--cached"
                            | "-s"
                            | "--stage"
                            | "-z"
                            | "-t"
                            | "--full-name"
                            | "--deduplicate"
                    )
            }
            // Not --ignored: the worktree stamp leaves ignored directories out.
            "status" => matches!(
                w,
                "-s" | "--short"
                    | "-b"
                    | "--branch"
                    | "--porcelain"
                    | "--porcelain=v1"
                    | "--porcelain=v2"
                    | "--long"
                    | "-z"
                    | "-u"
                    | "-uno"
                    | "-unormal"
                    | "-uall"
                    | "--untracked-files=no"
                    | "--untracked-files=normal"
                    | "--untracked-files=all"
                    | "--renames"
                    | "--no-renames"
            ),
            _ => return None,
        };
        if !ok {
            return None;
        }
    }
    match sub.as_str() {
        "branch" | "tag" | "remote" if operands > 0 => return None,
        "config" if operands > 1 => return None,
        "status" => g.worktree = Worktree::Tracked,
        "diff" => {
            // Only the worktree against the index is about tracked paths alone;
            // a commit's paths may lie in an ignored directory.
            g.worktree = if cached || !names.is_empty() {
                Worktree::Full
            } else {
                Worktree::Tracked
            };
        }
        // Diffs of commits read `.gitattributes` from the worktree (and the index).
        "log" | "show" if contents || (sub == "show" && !names_only) => {
            g.worktree = Worktree::Full;
        }
        _ => {}
    }
    if names.len() > super::MAX_OPERANDS {
        return None;
    }
    g.names = names.into_iter().map(Box::from).collect();
    Some(g)
}

/// `-U3`, `--unified=3`.
fn unified(w: &str) -> bool {
    number_after(w, "-U") || number_after(w, "--unified=")
}

fn number_after(w: &str, prefix: &str) -> bool {
    w.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `-20`, `-n 20`, `-n20`, `--max-count=20`, `--skip=3`; None when `-n` lacks
/// its value.
fn count<'a>(w: &str, words: &mut impl Iterator<Item = &'a String>) -> Option<bool> {
    if w == "-n" {
        let n = words.next()?;
        return Some(!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    }
    Some(
        number_after(w, "-")
            || number_after(w, "-n")
            || number_after(w, "--max-count=")
            || number_after(w, "--skip="),
    )
}

/// `--format=`, `--pretty=` without moving placeholders, `--date=` with a fixed
/// style; Some(false) for other words.
fn format(w: &str) -> Option<bool> {
    if let Some(style) = w.strip_prefix("--date=") {
        let style = style.strip_suffix("-local").unwrap_or(style);
        return DATES.contains(&style).then_some(true);
    }
    let Some(f) = w
        .strip_prefix("--format=")
        .or_else(|| w.strip_prefix("--pretty="))
    else {
        return Some(false);
    };
    let f = f.to_ascii_lowercase();
    (!MOVING.iter().any(|m| f.contains(m))).then_some(true)
}

/// A revision operand: names, `~`, `^`, `..`; not `@{…}` (reflogs, and dates
/// such as `main@{yesterday}`), not `:` (paths in trees, searches).
fn revision(w: &str) -> Option<()> {
    let ok = !w.is_empty()
        && !w.starts_with('-')
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./~^-".contains(&b));
    ok.then_some(())
}

/// A pathspec without magic (`:(…)`, `:/`).
fn pathspec(w: &str) -> Option<()> {
    (!w.is_empty() && !w.starts_with(':')).then_some(())
}

fn config_name(w: &str) -> Option<()> {
    let ok = w.contains('.')
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(())
}

/// Where a repository's files are.
struct Repo {
    worktree: PathBuf,
    gitdir: PathBuf,
    /// `commondir` of a linked worktree (refs, objects, config), else `gitdir`.
    common: PathBuf,
}

/// Configuration text (lowercased) that makes an answer depend on something the
/// stamp does not cover: other files (`include`, `excludesFile`,
/// `attributesFile`, `mailmap.file`), the passing time (`log.date = relative`,
/// `human`, relative placeholders in `pretty.*`), signatures, or a worktree
/// elsewhere (`core.worktree`), refs outside `refs/` (reftable).
const CONFIG_REFUSED: &[&str] = &[
    "include",
    "refstorage",
    "relative",
    "human",
    "mailmap",
    "excludesfile",
    "attributesfile",
    "signature",
    "worktree =",
    "worktree=",
    "%ar",
    "%cr",
    "%ah",
    "%ch",
    "%g",
];

/// `GIT_*` variables that cannot change what a stamped (read-only) git line
/// prints: a pager starts only on a terminal (and these lines have none), an
/// editor and a credential prompt only for commands that write or fetch. The
/// session environment sets them (`session::env::NON_INTERACTIVE`); their
/// values are in the cache key like every variable.
const INERT: [&str; 3] = ["GIT_PAGER", "GIT_EDITOR", "GIT_TERMINAL_PROMPT"];

impl Git {
    /// Stamps the repository `cwd` is in (see the module docs), or None.
    pub(super) fn stamp(
        &self,
        s: &mut Stamper,
        cwd: &Path,
        env: &[(String, String)],
    ) -> Option<()> {
        // GIT_DIR, GIT_INDEX_FILE, GIT_CONFIG_*, GIT_CEILING_DIRECTORIES… move
        // what git reads: not followed here. The engine's own non-interactive
        // defaults are the exception (see `INERT`).
        if env
            .iter()
            .any(|(k, _)| k.starts_with("GIT_") && !INERT.contains(&k.as_str()))
        {
            return None;
        }
        let repo = discover(s, cwd)?;
        let common = (repo.common != repo.gitdir).then_some(&repo.common);
        for dir in [Some(&repo.gitdir), common, Some(&repo.worktree)]
            .into_iter()
            .flatten()
        {
            let dev = match s.lstat(dir) {
                Ok(m) if !m.is_symlink() => m.dev(),
                _ => std::fs::metadata(dir).ok()?.dev(),
            };
            if !s.trusted_fs(dir, dev) {
                return None;
            }
        }
        // HEAD, index, config, packed-refs, shallow, MERGE_HEAD, rebase-*/…:
        // the top of the git directory, and its refs.
        s.entries(&repo.gitdir)?;
        tree(s, &repo.gitdir.join("refs"))?;
        if repo.common != repo.gitdir {
            s.entries(&repo.common)?;
            tree(s, &repo.common.join("refs"))?;
        }
        s.entries(&repo.common.join("info"))?; // exclude, grafts, attributes, sparse-checkout
        objects(s, &repo.common.join("objects"))?;
        let mut configs = vec![
            repo.common.join("config"),
            repo.gitdir.join("config.worktree"),
            PathBuf::from("/etc/gitconfig"),
            PathBuf::from("/usr/local/etc/gitconfig"),
        ];
        let var = |k: &str| {
            env.iter()
                .find(|(n, v)| n == k && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        };
        let home = var("HOME");
        let xdg = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
        if let Some(h) = &home {
            configs.push(h.join(".gitconfig"));
        }
        let mut others = vec![repo.worktree.join(".mailmap")];
        if let Some(x) = &xdg {
            configs.push(x.join("git/config"));
            others.push(x.join("git/ignore"));
            others.push(x.join("git/attributes"));
        }
        for c in &configs {
            s.optional(c)?;
            if s.check_fs {
                // A first stamp reads them; equal metadata later means equal text.
                refuse_config(c)?;
            }
        }
        for o in &others {
            s.optional(o)?;
        }
        for n in self.names.iter() {
            s.ident(&cwd.join(&**n))?;
        }
        let prune = match self.worktree {
            Worktree::No => return Some(()),
            Worktree::Full => Arc::from([]),
            Worktree::Tracked => ignored_untracked(s, &repo, xdg.as_deref()),
        };
        if std::fs::symlink_metadata(repo.worktree.join(".gitmodules")).is_ok() {
            return None; // submodules: their own repositories are not stamped
        }
        let top = repo.worktree.to_string_lossy().into_owned();
        let w = Walk {
            depth: u32::MAX,
            parent: false,
            reads: false,
            git: true,
            shows: Shows::All,
            prune: &|rel: &str| {
                rel.strip_prefix(top.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|name| prune.iter().any(|p| p == name))
            },
        };
        s.walk(&repo.worktree, &top, &w)
    }
}

/// A directory's whole tree (refs), missing or not.
fn tree(s: &mut Stamper, path: &Path) -> Option<()> {
    let w = Walk {
        depth: u32::MAX,
        parent: false,
        reads: false,
        git: false,
        shows: Shows::All,
        prune: &|_| false,
    };
    s.walk(path, "", &w)
}

/// The object store, so far as what git prints of it can change: a new object
/// can lengthen an abbreviated hash that shares its prefix, a new pack the
/// abbreviation length. Every loose-object directory's times (a new object
/// changes its directory's), the packs, and no alternates (objects elsewhere).
///
/// Only the loose-object directories that exist are looked at, found by one
/// listing of the store: making or removing one changes the store's own
/// times, which are stamped. (It used to be an `lstat` of all 256 possible
/// names for every stamp: ~20 % of the server's CPU in a 10,000-user run,
/// where most repositories have a few dozen.)
fn objects(s: &mut Stamper, dir: &Path) -> Option<()> {
    let m = match s.lstat(dir) {
        Ok(m) => m,
        Err(e) => {
            s.error(&e)?;
            return s.error(&e);
        }
    };
    s.ident_of(&m);
    s.meta(&m)?;
    if std::fs::symlink_metadata(dir.join("info/alternates")).is_ok() {
        return None;
    }
    s.entries(&dir.join("pack"))?;
    // Read once per change of the store (see `Stamper::names`).
    let names = s.names(dir, &m, 1024)?;
    let fanout = names.iter().filter(|name| {
        let b = name.as_encoded_bytes();
        b.len() == 2 && b.iter().all(u8::is_ascii_hexdigit)
    });
    let mut path = dir.to_owned();
    for name in fanout {
        s.tag(name.as_encoded_bytes());
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) => s.meta(&m)?,
            Err(e) => s.error(&e)?,
        }
        path.pop();
    }
    Some(())
}

fn refuse_config(path: &Path) -> Option<()> {
    let text = match std::fs::read(path) {
        Ok(t) => t.to_ascii_lowercase(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    let found = CONFIG_REFUSED
        .iter()
        .any(|r| text.windows(r.len()).any(|w| w == r.as_bytes()));
    (!found).then_some(())
}

/// Finds the repository the way git does from `cwd` (no GIT_DIR): in each
/// directory up from the cwd, `.git` (a directory, or a file `gitdir: …`), else
/// the directory itself if it is a bare repository. Stamps what that search
/// saw, so that a `.git` or `HEAD` appearing nearer, a moved `gitdir:` or a
/// change of owner (git's safe.directory check) changes the stamp. Refused: a
/// cwd inside a git directory, a bare repository, a search that would cross a
/// filesystem boundary (git stops there), no repository at all.
fn discover(s: &mut Stamper, cwd: &Path) -> Option<Repo> {
    let cwd = std::fs::canonicalize(cwd).ok()?;
    s.tag(cwd.as_os_str().as_encoded_bytes());
    let dev = std::fs::metadata(&cwd).ok()?.dev();
    let mut dir: &Path = &cwd;
    loop {
        if dir.file_name().is_some_and(|n| n == ".git") {
            return None;
        }
        let meta = std::fs::symlink_metadata(dir).ok()?;
        if meta.dev() != dev {
            return None;
        }
        s.ident_of(&meta);
        let dot = dir.join(".git");
        match std::fs::symlink_metadata(&dot) {
            Ok(m) if m.is_dir() => {
                s.ident_of(&m);
                s.saw(dir, &meta);
                s.saw(&dot, &m);
                return linked(s, dir, dot);
            }
            Ok(m) if m.is_file() => {
                s.ident_of(&m);
                let text = std::fs::read_to_string(&dot).ok()?;
                s.tag(text.as_bytes());
                let target = text.strip_prefix("gitdir:")?.trim();
                return linked(s, dir, dir.join(target));
            }
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => s.error(&e)?,
            Err(_) => return None,
        }
        match std::fs::symlink_metadata(dir.join("HEAD")) {
            Ok(_) => return None, // maybe a bare repository
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => s.error(&e)?,
            Err(_) => return None,
        }
        dir = dir.parent()?;
    }
}

/// The repository whose git directory is `gitdir`, with its `commondir`.
fn linked(s: &mut Stamper, worktree: &Path, gitdir: PathBuf) -> Option<Repo> {
    let common = match std::fs::read_to_string(gitdir.join("commondir")) {
        Ok(text) => {
            s.tag(text.as_bytes());
            gitdir.join(text.trim())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => gitdir.clone(),
        Err(_) => return None,
    };
    Some(Repo {
        worktree: worktree.to_owned(),
        gitdir,
        common,
    })
}

/// What [`ignored_untracked`] found, by the metadata of the files it read.
type Pruned = quick_cache::sync::Cache<[u64; 24], Arc<[String]>>;

/// Decisions kept: one per repository and state of its ignore files and index.
static PRUNED: LazyLock<Pruned> = LazyLock::new(|| Pruned::new(256));

/// Top directories that `git status` does not enter (see [`prune_of`]).
/// Decided once per change of the files it depends on: every lookup of a
/// `git status` read them all, the whole index included (~4 % of the
/// server's CPU at 10,000 users). Their metadata, all settled (a change
/// after the `lstat` gets a later ctime), stands for their text: the
/// decision is reused while it is the same.
fn ignored_untracked(s: &Stamper, repo: &Repo, xdg: Option<&Path>) -> Arc<[String]> {
    let files = [
        Some(repo.worktree.join(".gitignore")),
        Some(repo.common.join("info/exclude")),
        xdg.map(|x| x.join("git/ignore")),
        Some(repo.gitdir.join("index")),
    ];
    let mut id = [0u64; 24];
    let mut settled = true;
    for (slot, file) in id.chunks_mut(6).zip(&files) {
        let Some(file) = file else { continue };
        match std::fs::symlink_metadata(file) {
            Ok(m) => {
                // Through a symlink the text could change under the same
                // metadata: decided afresh every time.
                settled &= m.is_file() && s.settled(&m);
                let t = |s: i64, ns: i64| ((s as u64) << 30) ^ ns as u64;
                slot.copy_from_slice(&[
                    m.dev(),
                    m.ino(),
                    m.size(),
                    u64::from(m.mode()),
                    t(m.mtime(), m.mtime_nsec()),
                    t(m.ctime(), m.ctime_nsec()),
                ]);
            }
            Err(e) => slot[0] = e.raw_os_error().map_or(u64::MAX, |c| c as u64 | 1 << 63),
        }
    }
    if settled {
        if let Some(kept) = PRUNED.get(&id) {
            return kept;
        }
    }
    let pruned: Arc<[String]> = prune_of(repo, xdg).into();
    if settled {
        PRUNED.insert(id, pruned.clone());
    }
    pruned
}

/// Top directories that `git status` does not enter: named by a plain line of
/// the top `.gitignore` (`users/`, `/target`), with no `!` line in any ignore
/// file that applies there (none could re-include them), and with nothing
/// tracked under them (the index, version 2 or 3, has no path that starts with
/// the name: its paths are stored whole). Anything less certain prunes nothing.
fn prune_of(repo: &Repo, xdg: Option<&Path>) -> Vec<String> {
    let Ok(top) = std::fs::read_to_string(repo.worktree.join(".gitignore")) else {
        return Vec::new();
    };
    let mut files = vec![top.clone()];
    for p in [
        Some(repo.common.join("info/exclude")),
        xdg.map(|x| x.join("git/ignore")),
    ]
    .into_iter()
    .flatten()
    {
        match std::fs::read_to_string(&p) {
            Ok(t) => files.push(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Vec::new(),
        }
    }
    if files
        .iter()
        .any(|f| f.lines().any(|l| l.trim_start().starts_with('!')))
    {
        return Vec::new();
    }
    let index = match std::fs::read(repo.gitdir.join("index")) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(_) => return Vec::new(),
    };
    if !index.is_empty() {
        let v2_or_3 = index.len() >= 8
            && &index[..4] == b"DIRC"
            && matches!(index[4..8], [0, 0, 0, 2] | [0, 0, 0, 3]);
        // A split index keeps entries in another file.
        if !v2_or_3 || index.windows(4).any(|w| w == b"link") {
            return Vec::new();
        }
    }
    top.lines()
        .filter(|l| !l.contains('\\'))
        .map(|l| l.trim_end_matches(' '))
        .map(|l| l.strip_prefix('/').unwrap_or(l))
        .map(|l| l.strip_suffix('/').unwrap_or(l))
        .filter(|n| {
            !n.is_empty()
                && !n.contains(['/', '*', '?', '[', '#'])
                && !matches!(*n, "." | ".." | ".git")
        })
        .filter(|n| {
            let prefix = format!("{n}/");
            !index.windows(prefix.len()).any(|w| w == prefix.as_bytes())
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::stamp::Pass;
    use super::*;
    use std::time::Duration;

    /// The object store's stamp, with racy windows of a millisecond (after a
    /// pause, so that every time in it is settled).
    fn stamp_of(dir: &Path) -> Option<u128> {
        std::thread::sleep(Duration::from_millis(20));
        let ms = Duration::from_millis(1);
        let mut s = Stamper::new(Duration::from_secs(60), Pass::First, false, ms, Some(ms))?;
        objects(&mut s, dir)?;
        Some(s.finish().key)
    }

    #[test]
    fn a_new_object_or_loose_object_directory_changes_the_store_stamp() {
        let root = std::env::temp_dir().join(format!("voxterm-objects-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("objects");
        std::fs::create_dir_all(dir.join("pack")).unwrap();
        std::fs::create_dir_all(dir.join("info")).unwrap();
        std::fs::create_dir_all(dir.join("ab")).unwrap();
        std::fs::write(dir.join("ab/cdef"), b"x").unwrap();
        let first = stamp_of(&dir).expect("a stamp");
        assert_eq!(stamp_of(&dir), Some(first), "nothing changed");
        // A new object in an existing directory.
        std::fs::write(dir.join("ab/0123"), b"y").unwrap();
        let second = stamp_of(&dir).expect("a stamp");
        assert_ne!(second, first);
        // A new loose-object directory (a prefix never seen before).
        std::fs::create_dir_all(dir.join("12")).unwrap();
        let third = stamp_of(&dir).expect("a stamp");
        assert_ne!(third, second);
        // A new pack.
        std::fs::write(dir.join("pack/pack-1.idx"), b"z").unwrap();
        assert_ne!(stamp_of(&dir).expect("a stamp"), third);
        // Alternates: objects elsewhere, refused.
        std::fs::write(dir.join("info/alternates"), b"/elsewhere\n").unwrap();
        assert_eq!(stamp_of(&dir), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}

//! git: grammar, what changes a stamp (from other processes), and refusals.

use super::tests::{exact, of, strict, LIFE};
use super::*;
use std::fs;
use std::process::Command;

/// Runs git in `dir` as another program would, with a private HOME.
fn git(dir: &Path, home: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@x",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository like the load tester's: tracked files, an ignored `users/`.
struct Repo {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        let home = tmp.path().join("home");
        fs::create_dir_all(root.join("src/deep")).unwrap();
        fs::create_dir_all(root.join("users/u1")).unwrap();
        fs::create_dir_all(&home).unwrap();
        fs::write(root.join("README.md"), "# demo\n").unwrap();
        fs::write(root.join("src/lib.rs"), "fn a() {}\n").unwrap();
        fs::write(root.join(".gitignore"), "users/\n").unwrap();
        fs::write(root.join("users/u1/notes"), "n\n").unwrap();
        let r = Repo {
            _tmp: tmp,
            root,
            home,
        };
        r.git(&["init", "-q"]);
        r.git(&["add", "-A"]);
        r.git(&["commit", "-qm", "one"]);
        r
    }

    fn git(&self, args: &[&str]) {
        git(&self.root, &self.home, args)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("HOME".into(), self.home.display().to_string())]
    }

    fn stamp(&self, line: &str) -> Option<u128> {
        exact(&of(line).expect(line), &self.root, &self.env())
    }
}

use std::path::PathBuf;

const LINES: &[&str] = &[
    "git status",                 // 0
    "git status --short",         // 1
    "git diff",                   // 2
    "git log --oneline -20",      // 3
    "git log --stat -5",          // 4
    "git branch -v",              // 5
    "git tag",                    // 6
    "git rev-parse HEAD",         // 7
    "git describe --always",      // 8
    "git config --get user.name", // 9
    "git ls-files",               // 10
    "git remote -v",              // 11
    "git show --stat",            // 12
    "git diff --cached --stat",   // 13
];

fn all(r: &Repo) -> Vec<Option<u128>> {
    LINES.iter().map(|l| r.stamp(l)).collect()
}

/// Which lines' stamps differ between two snapshots.
fn changed(a: &[Option<u128>], b: &[Option<u128>]) -> Vec<&'static str> {
    LINES
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x != y)
        .map(|(l, _)| *l)
        .collect()
}

#[test]
fn git_lines_are_told_apart() {
    for line in LINES {
        assert!(of(line).is_some(), "{line}");
    }
    let g = |l: &str| match of(l) {
        Some(Inputs(What::Git(g))) => g,
        other => panic!("{l}: {other:?}"),
    };
    // What each reads besides the repository.
    use git::Worktree::*;
    assert_eq!(g("git log --oneline -20").worktree, No);
    assert_eq!(g("git log --stat -5").worktree, Full);
    assert_eq!(g("git show -s").worktree, No);
    assert_eq!(g("git show").worktree, Full);
    assert_eq!(g("git status").worktree, Tracked);
    assert_eq!(g("git diff").worktree, Tracked);
    assert_eq!(g("git diff --cached").worktree, Full);
    assert_eq!(g("git diff HEAD~1").worktree, Full);
    assert_eq!(g("git ls-files").worktree, No);
    assert_eq!(g("git ls-files -m").worktree, Tracked);
    assert_eq!(&*g("git log main").names, &[Box::from("main")]);
    assert!(g("git log -- src").names.is_empty());
    assert!(of("git log -n 5 --format=%H%x09%s --date=iso").is_some());
    assert!(of("git ls-files -m").is_some());
}

#[test]
fn git_refuses_what_it_cannot_vouch_for() {
    for line in [
        "git log --date=relative",
        "git log --relative-date",
        "git log --date=human",
        "git log --since=2.weeks",
        "git log --format=%ar",
        "git log --pretty=format:%h%x20%cr",
        "git log --format=%G?",
        "git log HEAD@{1}",
        "git show main@{yesterday}",
        "git show HEAD:README.md",
        "git log --show-signature",
        "git log --follow a",
        "git log -n",
        "git status --ignored",
        "git -C x status",
        "git -c a.b=c log",
        "git --git-dir=x log",
        "git branch new",
        "git tag v1",
        "git remote add o u",
        "git diff --output=x",
        "git diff --ext-diff",
        "git config user.name X",
        "git describe --dirty",
        "git ls-files -o",
        "git ls-files :/x",
        "git stash list",
        "git",
    ] {
        assert_eq!(of(line), None, "{line}");
    }
}

#[test]
fn git_stamps_change_with_every_change_that_matters() {
    let r = Repo::new();
    let base = all(&r);
    assert!(base.iter().all(Option::is_some), "{base:?}");
    assert_eq!(all(&r), base, "stable");
    // The first status may refresh the index (stat data): that changes stamps
    // that cover the index, never wrongly; settle it, then start.
    let base = all(&r);

    // A tracked file edited, same size: status and diffs see it, log does not.
    fs::write(r.root.join("README.md"), "# dema\n").unwrap();
    let s = all(&r);
    let c = changed(&base, &s);
    for l in [
        "git status",
        "git status --short",
        "git diff",
        "git log --stat -5",
    ] {
        assert!(c.contains(&l), "{l}: {c:?}");
    }
    for l in [
        "git log --oneline -20",
        "git tag",
        "git config --get user.name",
    ] {
        assert!(!c.contains(&l), "{l}: {c:?}");
    }

    // A new untracked file, at the top and deep down.
    for f in ["new.txt", "src/deep/new.rs"] {
        let before = all(&r);
        fs::write(r.root.join(f), "x").unwrap();
        let c = changed(&before, &all(&r));
        assert!(c.contains(&"git status"), "{f}: {c:?}");
        assert!(c.contains(&"git status --short"), "{f}: {c:?}");
    }

    // In the ignored users/: status does not look, a diff of commits does.
    let before = all(&r);
    fs::write(r.root.join("users/u1/more"), "x").unwrap();
    let c = changed(&before, &all(&r));
    assert!(!c.contains(&"git status"), "{c:?}");
    assert!(c.contains(&"git log --stat -5"), "{c:?}");

    // A staged change (the index).
    let before = all(&r);
    r.git(&["add", "README.md"]);
    let c = changed(&before, &all(&r));
    for l in [
        "git status",
        "git diff",
        "git diff --cached --stat",
        "git ls-files",
    ] {
        assert!(c.contains(&l), "{l}: {c:?}");
    }

    // A commit from another process.
    let before = all(&r);
    r.git(&["commit", "-qm", "two"]);
    let c = changed(&before, &all(&r));
    for l in [
        "git log --oneline -20",
        "git rev-parse HEAD",
        "git show --stat",
        "git status",
    ] {
        assert!(c.contains(&l), "{l}: {c:?}");
    }

    // A branch switch.
    let before = all(&r);
    r.git(&["checkout", "-qb", "other"]);
    let c = changed(&before, &all(&r));
    for l in ["git status", "git branch -v", "git log --oneline -20"] {
        assert!(c.contains(&l), "{l}: {c:?}");
    }

    // A ref update (a tag).
    let before = all(&r);
    r.git(&["update-ref", "refs/tags/v1", "HEAD"]);
    let c = changed(&before, &all(&r));
    for l in ["git tag", "git describe --always", "git log --oneline -20"] {
        assert!(c.contains(&l), "{l}: {c:?}");
    }

    // A config change, in the repository and in the child's HOME.
    let before = all(&r);
    r.git(&["config", "user.name", "someone"]);
    let c = changed(&before, &all(&r));
    assert!(c.contains(&"git config --get user.name"), "{c:?}");
    let before = all(&r);
    fs::write(r.home.join(".gitconfig"), "[color]\n\tui = never\n").unwrap();
    let c = changed(&before, &all(&r));
    assert_eq!(
        c.len(),
        LINES.len(),
        "every line reads the global config: {c:?}"
    );

    // A new loose object can lengthen an abbreviated hash.
    let before = all(&r);
    fs::write(r.root.join("users/blob"), "a new object").unwrap();
    r.git(&["hash-object", "-w", "users/blob"]);
    let c = changed(&before, &all(&r));
    assert!(c.contains(&"git log --oneline -20"), "{c:?}");

    // An operand that may name a file: a new file `main` makes
    // `git log main` ambiguous.
    let log_main = r.stamp("git log --oneline main");
    fs::write(r.root.join("main"), "").unwrap();
    assert_ne!(r.stamp("git log --oneline main"), log_main);

    // A repository appearing nearer the cwd.
    let sub = r.root.join("src/deep");
    let here = exact(&of("git log --oneline").unwrap(), &sub, &r.env());
    assert!(here.is_some());
    git(&sub, &r.home, &["init", "-q"]);
    assert_ne!(
        exact(&of("git log --oneline").unwrap(), &sub, &r.env()),
        here
    );
}

#[test]
fn git_stamps_follow_linked_worktrees() {
    let r = Repo::new();
    let wt = r.root.parent().unwrap().join("wt");
    r.git(&["worktree", "add", "-q", wt.to_str().unwrap()]);
    let log = of("git log --oneline").unwrap();
    let status = of("git status").unwrap();
    let s_log = exact(&log, &wt, &r.env());
    let s_status = exact(&status, &wt, &r.env());
    assert!(s_log.is_some() && s_status.is_some());
    // A commit in the linked worktree moves its branch (refs in the common dir).
    fs::write(wt.join("README.md"), "# other\n").unwrap();
    assert_ne!(exact(&status, &wt, &r.env()), s_status);
    git(&wt, &r.home, &["commit", "-qam", "in wt"]);
    assert_ne!(exact(&log, &wt, &r.env()), s_log);
}

#[test]
fn git_stamps_are_refused_where_they_cannot_vouch() {
    let r = Repo::new();
    let status = of("git status").unwrap();
    let log = of("git log --oneline").unwrap();
    assert!(exact(&status, &r.root, &r.env()).is_some());
    // GIT_* in the child's environment moves what git reads.
    let mut env = r.env();
    // The engine's non-interactive defaults do not (they are in every session).
    for (k, v) in [
        ("GIT_PAGER", "cat"),
        ("GIT_EDITOR", "false"),
        ("GIT_TERMINAL_PROMPT", "0"),
    ] {
        env.push((k.into(), v.into()));
    }
    assert!(exact(&log, &r.root, &env).is_some());
    env.push(("GIT_DIR".into(), "/elsewhere".into()));
    assert_eq!(exact(&log, &r.root, &env), None);
    // Inside the git directory; outside any repository.
    assert_eq!(exact(&log, &r.root.join(".git/refs"), &r.env()), None);
    assert_eq!(exact(&log, &r.home, &r.env()), None);
    // A config that makes dates relative, or includes another file.
    fs::write(r.home.join(".gitconfig"), "[log]\n\tdate = relative\n").unwrap();
    assert_eq!(exact(&log, &r.root, &r.env()), None);
    fs::write(r.home.join(".gitconfig"), "[include]\n\tpath = x\n").unwrap();
    assert_eq!(exact(&log, &r.root, &r.env()), None);
    fs::remove_file(r.home.join(".gitconfig")).unwrap();
    assert!(exact(&log, &r.root, &r.env()).is_some());
    // A worktree over the bound: status runs, log (no worktree) is still stamped.
    fs::create_dir(r.root.join("big")).unwrap();
    for i in 0..=MAX_TREE_ENTRIES {
        fs::write(r.root.join(format!("big/f{i}")), "").unwrap();
    }
    assert_eq!(exact(&status, &r.root, &r.env()), None);
    assert!(exact(&log, &r.root, &r.env()).is_some());
    // Ignored, and nothing tracked in it: status does not enter it.
    fs::write(r.root.join(".gitignore"), "users/\n/big/\n").unwrap();
    assert!(exact(&status, &r.root, &r.env()).is_some());
    // A `!` line could re-include it: not pruned then.
    fs::write(r.root.join(".gitignore"), "users/\n/big/\n!big/keep\n").unwrap();
    assert_eq!(exact(&status, &r.root, &r.env()), None);
    // Something tracked under it: git looks there, so must the stamp.
    fs::write(r.root.join(".gitignore"), "users/\n/big/\n").unwrap();
    r.git(&["add", "-f", "big/f0"]);
    assert_eq!(exact(&status, &r.root, &r.env()), None);
    // Submodules' state is elsewhere.
    fs::write(r.root.join(".gitmodules"), "").unwrap();
    fs::remove_dir_all(r.root.join("big")).unwrap();
    assert_eq!(exact(&status, &r.root, &r.env()), None);
}

#[test]
fn git_stamps_are_racy_after_a_change_and_stable_after() {
    let r = Repo::new();
    let log = of("git log --oneline -20").unwrap();
    // Just committed: refused (with the whole-second window, so that a slow
    // machine cannot pass the sub-second one between commit and stamp).
    assert_eq!(strict(&log, &r.root, &r.env()), None);
    std::thread::sleep(RACY + Duration::from_millis(50));
    let s = log
        .key(&r.root, &r.env(), LIFE)
        .expect("stampable once settled");
    assert_eq!(log.restamp(&r.root, &r.env(), LIFE), Some(s));
    // Running `git status` takes and drops `index.lock` (and may refresh the
    // index once): once settled, running it again leaves its stamp alone, so
    // its answer can be served.
    let status = of("git status").unwrap();
    r.git(&["status"]);
    std::thread::sleep(RACY + Duration::from_millis(50));
    let s = status.key(&r.root, &r.env(), LIFE).expect("stampable");
    r.git(&["status"]);
    r.git(&["diff"]);
    assert_eq!(status.restamp(&r.root, &r.env(), LIFE), Some(s));
}

/// What `git status` prunes is decided once per state of the files it is
/// read from (the ignore files and the index), and again at once after any
/// of them changed: a settled decision is never reused for a new state.
#[test]
fn the_pruned_directories_are_decided_again_when_their_files_change() {
    let r = Repo::new();
    let status = of("git status").unwrap();
    fs::create_dir(r.root.join("big")).unwrap();
    for i in 0..=MAX_TREE_ENTRIES {
        fs::write(r.root.join(format!("big/f{i}")), "").unwrap();
    }
    fs::write(r.root.join(".gitignore"), "users/\n/big/\n").unwrap();
    std::thread::sleep(RACY + Duration::from_millis(50));
    // Settled: decided (big/ pruned) and kept; the same decision again.
    let pruned = exact(&status, &r.root, &r.env());
    assert!(pruned.is_some(), "big/ is ignored and untracked: pruned");
    assert_eq!(exact(&status, &r.root, &r.env()), pruned);
    // Something tracked under it, at once: the index changed.
    r.git(&["add", "-f", "big/f0"]);
    assert_eq!(
        exact(&status, &r.root, &r.env()),
        None,
        "git looks there now"
    );
    std::thread::sleep(RACY + Duration::from_millis(50));
    assert_eq!(
        exact(&status, &r.root, &r.env()),
        None,
        "and still, settled"
    );
    r.git(&["rm", "-q", "--cached", "big/f0"]);
    std::thread::sleep(RACY + Duration::from_millis(50));
    assert!(exact(&status, &r.root, &r.env()).is_some(), "pruned again");
    // A `!` line written into the ignore file, at once.
    fs::write(r.root.join(".gitignore"), "users/\n/big/\n!big/keep\n").unwrap();
    assert_eq!(exact(&status, &r.root, &r.env()), None);
}

//! Readers, listings and trees: grammars, stamps, refusals.

use super::stamp::Shows;
use super::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

pub(super) fn of(line: &str) -> Option<Inputs> {
    let argv = shell_words::split(line).ok()?;
    Inputs::of(&argv)
}

fn paths(line: &str) -> Option<Vec<String>> {
    let ps = match of(line)?.0 {
        What::Read(p) => p,
        What::Walk(t) => t.paths,
        What::Git(_) => return None,
    };
    Some(ps.iter().map(|p| p.to_string()).collect())
}

fn tree(line: &str) -> Tree {
    match of(line) {
        Some(Inputs(What::Walk(t))) => t,
        other => panic!("{line}: {other:?}"),
    }
}

pub(super) const LIFE: Duration = Duration::from_secs(600);

/// A stamp that refuses nothing as racy: what the metadata alone tells apart
/// (the times of a change just made are exact, only a later equal change
/// within one clock tick could hide behind them).
pub(super) fn exact(i: &Inputs, cwd: &Path, env: &[(String, String)]) -> Option<u128> {
    i.take(
        cwd,
        env,
        LIFE,
        Pass::First,
        Duration::ZERO,
        Some(Duration::ZERO),
    )
    .map(|t| t.key)
}

/// A stamp with the whole-second window for every time: what "just changed"
/// tests assert with, so that a loaded machine taking more than
/// a coarse-clock tick between a write and the stamp cannot make them pass by
/// accident or fail.
pub(super) fn strict(i: &Inputs, cwd: &Path, env: &[(String, String)]) -> Option<u128> {
    i.take(cwd, env, LIFE, Pass::First, RACY, Some(RACY))
        .map(|t| t.key)
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
    assert!(matches!(of("cat a"), Some(Inputs(What::Read(_)))));
    let ls = tree("ls -la");
    assert_eq!((ls.depth, ls.parent, ls.dates), (1, true, true));
}

#[test]
fn trees_are_told_apart() {
    let t = tree("ls -R");
    assert_eq!((t.depth, &*t.paths[0]), (u32::MAX, "."));
    let t = tree("grep -rn 'line 1' docs");
    assert_eq!((t.depth, t.reads, &*t.paths[0]), (u32::MAX, true, "docs"));
    assert_eq!(&*tree("grep -r fn").paths[0], ".");
    assert_eq!(tree("du -sh src").paths.len(), 1);
    assert_eq!(&*tree("du").paths[0], ".");
    assert_eq!(tree("du --apparent-size -s").depth, u32::MAX);
    assert_eq!(tree("tree -L 2 docs").depth, 2);
    assert_eq!(tree("tree -a --noreport").depth, u32::MAX);
    let f = tree("find . -path ./users -prune -o -name '*.rs' -print");
    assert_eq!(
        (&*f.paths[0], &*f.prune),
        (".", &[Box::from("./users")][..])
    );
    let f = tree("find . \\( -path ./users -o -path ./.git \\) -prune -o -type f -print");
    assert_eq!(f.prune.len(), 2);
    let f = tree("find src docs -maxdepth 1 -type f -name x");
    assert_eq!((f.paths.len(), f.depth), (2, 1));
    assert_eq!(&*tree("find -P -name x").paths[0], ".");
    assert_eq!(
        tree("find . -size +1k ! -empty -perm -u+x -links 1").depth,
        u32::MAX
    );
    // Prunes that find would not (or might not) do are not honoured.
    for line in [
        "find . -depth -path ./users -prune -o -print",
        "find . -mindepth 1 -path ./users -prune -o -print",
        "find . -path './u*' -prune -o -print",
        "find . -name users -prune -o -print",
        "find . -print -o -path ./users -prune",
        "find . -not -path ./users -prune -o -print",
    ] {
        assert!(tree(line).prune.is_empty(), "{line}");
    }
}

#[test]
fn what_cannot_be_told_is_refused() {
    for line in [
        "cat",             // stdin
        "cat -",           // stdin
        "grep fn",         // stdin
        "ls -lu",          // access times change on every read
        "ls --color=auto", // long options
        "tail -f log",     // follows
        "grep -R fn .",    // follows every symlink
        "grep -f pats a",  // reads another file
        "sort -R a",       // random
        "cat a -n",        // option after operand
        "head -n",         // value missing
        "stat a",          // shows the access time
        "du -L",           // follows
        "du --time",       // shows times
        "tree -D",         // dates
        "tree -l",         // follows
        "tree -o out",     // writes
        "find -L .",
        "find -H . -name x",
        "find . -follow",
        "find . -mtime -1",
        "find . -mmin 5",
        "find . -newer a",
        "find . -anewer a",
        "find . -used 1",
        "find . -exec cat {} ;",
        "find . -printf %p",
        "find . -fprint out",
        "find . -delete",
        "find . -ls",
        "find . -name",
        "find . -maxdepth x",
    ] {
        assert_eq!(of(line), None, "{line}");
    }
    let many = format!("cat {}", "a ".repeat(MAX_OPERANDS + 1));
    assert_eq!(of(&many), None);
}

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a"), "one\n").unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    d
}

#[test]
fn fresh_changes_are_racy_and_refused() {
    let d = dir();
    // Everything was just written: ctime is now, so nothing can be stamped.
    assert_eq!(strict(&of("cat a").unwrap(), d.path(), &[]), None);
    assert_eq!(strict(&of("ls -la").unwrap(), d.path(), &[]), None);
    assert_eq!(strict(&of("find .").unwrap(), d.path(), &[]), None);
    assert!(exact(&of("find .").unwrap(), d.path(), &[]).is_some());
}

/// The sub-second window: a file a few coarse-clock ticks old is stamped
/// (where the filesystem keeps nanoseconds), and a same-size edit made after
/// that stamp still shows, the soundness `coarse_floor` rests on.
#[test]
fn fine_times_are_trusted_after_the_short_window_and_still_see_changes() {
    let d = dir();
    let cat = of("cat a").unwrap();
    let written = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    let fine = fs::metadata(d.path().join("a")).unwrap().ctime_nsec() != 0;
    let s = cat.key(d.path(), &[], LIFE);
    if !fine {
        return; // a second-granular filesystem: the whole-second window applies
    }
    let s = s.expect("older than a tick with nanosecond times: stampable");
    if written.elapsed() < RACY - Duration::from_millis(200) {
        assert_eq!(
            strict(&cat, d.path(), &[]),
            None,
            "the whole-second window refuses it"
        );
    }
    fs::write(d.path().join("a"), "two\n").unwrap();
    assert_ne!(
        exact(&cat, d.path(), &[]),
        Some(s),
        "a same-size edit shows"
    );
}

#[test]
fn a_stamp_changes_with_what_it_covers() {
    let d = dir();
    // ctime cannot be set back: wait out the racy window instead.
    std::thread::sleep(RACY + Duration::from_millis(50));
    let cat = of("cat a").unwrap();
    let ls = of("ls").unwrap();
    let ls_long = of("ls -l").unwrap();
    let ls_sub = of("ls -la sub").unwrap();
    let s_cat = cat.key(d.path(), &[], LIFE).expect("stampable");
    let s_long = ls_long.key(d.path(), &[], LIFE).expect("stampable");
    let s_ls = ls.key(d.path(), &[], LIFE).expect("stampable");
    let s_sub = ls_sub.key(d.path(), &[], LIFE).expect("stampable");
    assert_eq!(cat.key(d.path(), &[], LIFE), Some(s_cat), "stable");
    assert_eq!(ls.key(d.path(), &[], LIFE), Some(s_ls), "stable");
    // The lookup's cheaper restamp agrees with the stamp stored.
    assert_eq!(cat.restamp(d.path(), &[], LIFE), Some(s_cat));
    assert_eq!(ls_sub.restamp(d.path(), &[], LIFE), Some(s_sub));
    // Same length, other content: the times tell (and the stamp is racy now).
    fs::write(d.path().join("a"), "two\n").unwrap();
    assert_ne!(cat.key(d.path(), &[], LIFE), Some(s_cat));
    // `ls -l` sees a changed entry (its size and times)...
    assert_ne!(ls_long.key(d.path(), &[], LIFE), Some(s_long));
    // ...`ls` shows its name only, which is the same (at a lookup: a first
    // stamp refuses the fresh times in its guard).
    assert_eq!(ls.restamp(d.path(), &[], LIFE), Some(s_ls));
    // ...and `ls -la sub` a change of its parent (`..`): a new directory
    // there adds a link (`ls sub` does not show `..`, so it need not care).
    let ls_sub_names = of("ls sub").unwrap();
    let s_sub_names = ls_sub_names.key(d.path(), &[], LIFE);
    assert!(s_sub_names.is_some());
    assert_eq!(ls_sub.key(d.path(), &[], LIFE), Some(s_sub), "not yet");
    fs::create_dir(d.path().join("b")).unwrap();
    assert_ne!(ls_sub.restamp(d.path(), &[], LIFE), Some(s_sub));
    assert_eq!(ls_sub_names.restamp(d.path(), &[], LIFE), s_sub_names);
}

/// A ctime at or past the coarse clock's reading is refused by the default
/// window: a change made after the stamp could carry the same ctime.
#[test]
fn a_ctime_within_the_coarse_tick_is_racy() {
    use rustix::time::{clock_gettime, ClockId};
    let d = dir();
    let cat = of("cat a").unwrap();
    let mut checked = 0;
    for i in 0..50 {
        fs::write(d.path().join("a"), format!("{i}\n")).unwrap();
        let s = cat.key(d.path(), &[], LIFE);
        // Read after the stamp: the stamp's own reading was at most this.
        let t = clock_gettime(ClockId::RealtimeCoarse);
        let coarse = i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
        let m = fs::metadata(d.path().join("a")).unwrap();
        let ctime = i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
        if m.ctime_nsec() != 0 && ctime >= coarse {
            assert_eq!(s, None, "a ctime in this tick");
            checked += 1;
        }
    }
    println!("{checked} of 50 writes had a ctime in the tick");
}

/// Sets a file's mtime (the ctime moves to now).
fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, nsec);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn listings_are_keyed_by_what_they_show() {
    for (line, shows) in [
        ("ls", Shows::Names),
        ("ls -1aFpR", Shows::Names),
        ("ls -la", Shows::Columns),
        ("ls -s", Shows::Columns),
        ("ls -lhin", Shows::Columns),
        ("ls -t", Shows::All),
        ("ls -lc", Shows::All),
        ("ls -latr", Shows::All),
        ("find . -name '*.rs'", Shows::Attrs),
        (
            "find . -path ./users -prune -o -type f -print",
            Shows::Attrs,
        ),
        ("find . -empty", Shows::All),
    ] {
        assert!(
            matches!(&of(line).unwrap().0, What::Walk(t) if t.shows == shows),
            "{line}"
        );
    }
}

#[test]
fn a_plain_listing_is_keyed_by_names_and_kinds_only() {
    let d = dir();
    let p = d.path();
    fs::create_dir(p.join(".git")).unwrap();
    let ls = of("ls -aF").unwrap();
    // The lookup's key: fresh times are not part of it.
    let s = ls.restamp(p, &[], LIFE).expect("a key at once");
    // What a `git status` does to `.git` (it creates and renames `index.lock`),
    // and a write to a listed file: no name or kind changed.
    fs::write(p.join(".git/index.lock"), "x").unwrap();
    fs::rename(p.join(".git/index.lock"), p.join(".git/index")).unwrap();
    fs::write(p.join("a"), "a longer content\n").unwrap();
    assert_eq!(
        ls.restamp(p, &[], LIFE),
        Some(s),
        "names and kinds are the same"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ls.key(p, &[], LIFE), Some(s), "the first stamp's key too");
    // A new name, a name gone, another kind (`ls -F` marks executables).
    fs::write(p.join("b"), "").unwrap();
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "a new file");
    fs::remove_file(p.join("b")).unwrap();
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s), "the same names again");
    fs::rename(p.join("a"), p.join("c")).unwrap();
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "a rename");
    fs::rename(p.join("c"), p.join("a")).unwrap();
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p.join("a"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "now executable: `a*`");
}

#[test]
fn a_long_listing_is_keyed_by_its_columns_with_dates_to_the_minute() {
    // `ls -la` lists `..` too: a parent of its own, not the shared temporary
    // directory, whose times other tests running beside this one move.
    let parent = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir_in(parent.path()).unwrap();
    fs::write(d.path().join("a"), "one\n").unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    let p = d.path();
    fs::create_dir(p.join(".git")).unwrap();
    std::os::unix::fs::symlink("aaa", p.join("l")).unwrap();
    let ls = of("ls -la").unwrap();
    // An hour ago, 10 s into a minute: `ls -l` prints the minute.
    let minute = (now_secs() - 3600).div_euclid(60) * 60;
    set_mtime(&p.join(".git"), minute + 10, 1);
    ls.restamp(p, &[], LIFE).expect("a key");
    // `git status`: a name created and renamed in `.git`, its mtime now
    // later in the same minute (the ctime moves on: not in the key).
    fs::write(p.join(".git/index.lock"), "x").unwrap();
    fs::rename(p.join(".git/index.lock"), p.join(".git/index")).unwrap();
    set_mtime(&p.join(".git"), minute + 10, 1);
    let s = ls.restamp(p, &[], LIFE).expect("a key");
    fs::write(p.join(".git/index.lock"), "x").unwrap();
    fs::rename(p.join(".git/index.lock"), p.join(".git/index")).unwrap();
    set_mtime(&p.join(".git"), minute + 50, 999);
    assert_eq!(
        ls.restamp(p, &[], LIFE),
        Some(s),
        "the same minute, the same columns"
    );
    // In a zone whose minutes may not be UTC's, the second counts.
    let odd = [("TZ".to_string(), "<+0030>-0:30".to_string())];
    let s_odd = ls.restamp(p, &odd, LIFE).expect("a key");
    set_mtime(&p.join(".git"), minute + 10, 1);
    assert_ne!(ls.restamp(p, &odd, LIFE), Some(s_odd), "another second");
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s));
    // Another minute, size, mode, target text, attribute: another key.
    set_mtime(&p.join(".git"), minute + 70, 1);
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "another minute");
    set_mtime(&p.join(".git"), minute + 10, 1);
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s));
    let t = fs::metadata(p.join("a")).unwrap();
    fs::write(p.join("a"), "a longer content\n").unwrap();
    set_mtime(&p.join("a"), t.mtime(), t.mtime_nsec());
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "another size");
    fs::write(p.join("a"), "one\n").unwrap();
    set_mtime(&p.join("a"), t.mtime(), t.mtime_nsec());
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s), "the same columns");
    fs::remove_file(p.join("l")).unwrap();
    std::os::unix::fs::symlink("bbb", p.join("l")).unwrap();
    let l = fs::symlink_metadata(p.join("l")).unwrap();
    let s2 = ls.restamp(p, &[], LIFE).expect("a key");
    fs::remove_file(p.join("l")).unwrap();
    std::os::unix::fs::symlink("ccc", p.join("l")).unwrap();
    set_mtime(&p.join("l"), l.mtime(), l.mtime_nsec());
    assert_ne!(
        ls.restamp(p, &[], LIFE),
        Some(s2),
        "`l -> ccc`, not `l -> bbb`"
    );
    let s3 = ls.restamp(p, &[], LIFE).expect("a key");
    if rustix::fs::lsetxattr(
        p.join("a"),
        "user.voxterm",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok()
    {
        assert_ne!(ls.restamp(p, &[], LIFE), Some(s3), "an attribute");
    }
    // A date in the future prints with its year until it passes.
    set_mtime(&p.join("a"), now_secs() + 120, 0);
    assert_eq!(ls.restamp(p, &[], LIFE), None, "a future date");
}

#[test]
fn a_find_is_keyed_by_everything_but_the_times() {
    let d = dir();
    let p = d.path();
    let find = of("find . -name '*.rs'").unwrap();
    let s = find.restamp(p, &[], LIFE).expect("a key");
    // A write of the same size, a touch, a name created and removed: the
    // times move, nothing a test looks at does.
    fs::write(p.join("a"), "two\n").unwrap();
    set_mtime(&p.join("sub"), 1_000_000_000, 0);
    fs::write(p.join("sub/tmp"), "").unwrap();
    fs::remove_file(p.join("sub/tmp")).unwrap();
    assert_eq!(find.restamp(p, &[], LIFE), Some(s));
    // A size (`-size`), a mode (`-perm`, `-type`), a name: another key.
    fs::write(p.join("a"), "three\n").unwrap();
    assert_ne!(find.restamp(p, &[], LIFE), Some(s), "a size");
    let s = find.restamp(p, &[], LIFE).expect("a key");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p.join("a"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(find.restamp(p, &[], LIFE), Some(s), "a mode");
    let s = find.restamp(p, &[], LIFE).expect("a key");
    fs::write(p.join("sub/x.rs"), "").unwrap();
    assert_ne!(find.restamp(p, &[], LIFE), Some(s), "a name");
}

/// A directory is read once per change: its listing is kept while its times
/// are the same, never reused after a change, and not kept while fresh.
#[test]
fn a_listing_is_read_again_only_when_the_directory_changed() {
    let d = dir();
    let p = d.path();
    let meta = || fs::metadata(p.join("sub")).unwrap();
    let ls = of("ls -l sub").unwrap();
    fs::write(p.join("sub/x"), "").unwrap();
    let fresh = ls.restamp(p, &[], LIFE).expect("a key");
    assert!(!super::stamp::kept(&meta()), "fresh times: not kept");
    std::thread::sleep(Duration::from_millis(50));
    let s = ls.restamp(p, &[], LIFE).expect("a key");
    assert_eq!(s, fresh);
    assert!(super::stamp::kept(&meta()), "settled: kept");
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s), "read from what was kept");
    // A new name, at once: the directory's times moved, so it is read again.
    fs::write(p.join("sub/y"), "").unwrap();
    assert!(!super::stamp::kept(&meta()));
    assert_ne!(ls.restamp(p, &[], LIFE), Some(s), "the new name shows");
    fs::remove_file(p.join("sub/y")).unwrap();
    assert_eq!(ls.restamp(p, &[], LIFE), Some(s), "the same names again");
}

/// A directory over a walk's bound is known to be so while its times are
/// the same: the next walk gives up without reading its names again, and
/// one made small again is read (and stamped) again.
#[test]
fn a_directory_over_the_bound_is_not_read_again_until_it_changes() {
    use super::stamp::{Pass, Stamper};
    let d = dir();
    let p = d.path();
    let big = p.join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..40 {
        fs::write(big.join(i.to_string()), "").unwrap();
    }
    let names = |bound: usize| {
        let m = fs::symlink_metadata(&big).unwrap();
        let mut s = Stamper::new(LIFE, Pass::First, false, RACY, None).unwrap();
        s.names(&big, &m, bound).map(|n| n.len())
    };
    let meta = || fs::symlink_metadata(&big).unwrap();
    assert_eq!(names(10), None, "over the bound");
    assert!(!super::stamp::known_over(&meta(), 10), "fresh: not kept");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(names(10), None);
    assert!(super::stamp::known_over(&meta(), 10), "settled: known");
    assert_eq!(names(5), None, "a smaller bound: known too");
    assert_eq!(names(100), Some(40), "a larger one: read again");
    assert_eq!(names(10), None);
    for i in 1..40 {
        fs::remove_file(big.join(i.to_string())).unwrap();
    }
    assert_eq!(names(10), Some(1), "changed: read again at once");
}

/// A symlink's times do not move when its target directory's entries do: its
/// listing is never kept (git's object store may be one).
#[test]
fn a_symlink_to_a_directory_does_not_vouch_for_its_names() {
    use super::stamp::{Pass, Stamper};
    let d = dir();
    let p = d.path();
    std::os::unix::fs::symlink(p.join("sub"), p.join("link")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let names = || {
        let link = fs::symlink_metadata(p.join("link")).unwrap();
        let mut s = Stamper::new(LIFE, Pass::First, false, RACY, None).unwrap();
        let n = s.names(&p.join("link"), &link, 100).unwrap().len();
        (n, super::stamp::kept(&link))
    };
    assert_eq!(names(), (0, false));
    fs::write(p.join("sub/new"), "").unwrap();
    assert_eq!(names(), (1, false), "read again: the new name");
}

/// A key that leaves times out cannot see a change undone while the command
/// ran; the guard, taken again after the run, does.
#[test]
fn the_guard_sees_a_change_undone_while_the_command_ran() {
    let d = dir();
    let p = d.path();
    std::thread::sleep(Duration::from_millis(50));
    for line in ["ls", "ls -la", "ls -lR", "find . -type f"] {
        let ls = of(line).unwrap();
        let taken = ls.stamp(p, &[], LIFE).expect("settled: stampable");
        assert!(
            taken.guard.is_some(),
            "{line}: a key without times has a guard"
        );
        assert!(ls.held(p, &[], LIFE, &taken), "{line}: nothing changed");
        // A name created and removed: the names are the same again.
        fs::write(p.join("tmp"), "").unwrap();
        fs::remove_file(p.join("tmp")).unwrap();
        assert_eq!(
            ls.restamp(p, &[], LIFE),
            Some(taken.key),
            "{line}: the same key"
        );
        assert!(!ls.held(p, &[], LIFE, &taken), "{line}: the guard saw it");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A size grown and shrunk back, within the minute the columns show.
    let ls = of("ls -l").unwrap();
    let taken = ls.stamp(p, &[], LIFE).expect("stampable");
    let t = fs::metadata(p.join("a")).unwrap();
    fs::write(p.join("a"), "a longer content\n").unwrap();
    fs::write(p.join("a"), "one\n").unwrap();
    set_mtime(&p.join("a"), t.mtime(), t.mtime_nsec());
    assert_eq!(ls.restamp(p, &[], LIFE), Some(taken.key));
    assert!(!ls.held(p, &[], LIFE, &taken));
    // A key with every time needs no guard: a change shows in it.
    let cat = of("cat a").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let taken = cat.stamp(p, &[], LIFE).expect("stampable");
    assert_eq!(taken.guard, None);
    // The first stamp refuses fresh times in the guard too.
    fs::write(p.join("b"), "").unwrap();
    assert_eq!(strict(&of("ls").unwrap(), p, &[]), None);
}

/// A small project with a large ignored scratch directory.
fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::create_dir_all(p.join("src/deep/er")).unwrap();
    fs::create_dir_all(p.join("users/u1")).unwrap();
    fs::create_dir_all(p.join("docs")).unwrap();
    fs::write(p.join("src/lib.rs"), "fn a() {}\n").unwrap();
    fs::write(p.join("src/deep/er/x.rs"), "fn x() {}\n").unwrap();
    fs::write(p.join("docs/guide.md"), "line 1\n").unwrap();
    fs::write(p.join("users/u1/notes"), "n\n").unwrap();
    d
}

#[test]
fn tree_stamps_see_deep_changes_and_keep_out_of_pruned_directories() {
    let d = project();
    let p = d.path();
    let lines = [
        "find .",
        "find . -path ./users -prune -o -name '*.rs' -print",
        "find . \\( -path ./users -o -path ./.git \\) -prune -o -type f -print",
        "du -s",
        "tree",
        "ls -R",
        "grep -rn fn src",
    ];
    let ins: Vec<Inputs> = lines.iter().map(|l| of(l).expect(l)).collect();
    let all =
        |ins: &[Inputs]| -> Vec<Option<u128>> { ins.iter().map(|i| exact(i, p, &[])).collect() };
    let before = all(&ins);
    assert!(before.iter().all(Option::is_some), "{before:?}");
    assert_eq!(all(&ins), before, "stable");
    // A new file deep in a tree.
    fs::write(p.join("src/deep/er/y.rs"), "").unwrap();
    let after = all(&ins);
    for (l, (b, a)) in lines.iter().zip(before.iter().zip(&after)) {
        assert_ne!(a, b, "{l}: new deep file");
    }
    // A same-size edit deep down: ctime tells.
    let before = after;
    fs::write(p.join("src/deep/er/x.rs"), "fn z() {}\n").unwrap();
    let after = all(&ins);
    assert_ne!(after[6], before[6], "grep -r sees an edit");
    // find's tests look at no time: the same size and mode print the same.
    assert_eq!(after[0], before[0], "find's key holds no times");
    // Under the pruned directory: only the lines that enter it see it.
    let before = after;
    fs::write(p.join("users/u1/more"), "").unwrap();
    let after = all(&ins);
    assert_ne!(after[0], before[0], "find . enters users");
    assert_eq!(after[1], before[1], "-path ./users -prune keeps out");
    assert_eq!(
        after[2], before[2],
        "\\( -path ./users -o -path ./.git \\) -prune"
    );
    assert_eq!(after[6], before[6], "grep -r src does not look there");
    // A depth bound: `find -maxdepth 1` does not see a deep change.
    let shallow = of("find . -maxdepth 1").unwrap();
    let s = exact(&shallow, p, &[]);
    fs::write(p.join("src/deep/er/z.rs"), "").unwrap();
    assert_eq!(exact(&shallow, p, &[]), s);
}

#[test]
fn trees_over_the_bound_and_symlinks_are_handled_soundly() {
    let d = project();
    let p = d.path();
    for i in 0..=MAX_TREE_ENTRIES {
        fs::write(p.join(format!("users/u1/f{i}")), "").unwrap();
    }
    let pruned = of("find . -path ./users -prune -o -print").unwrap();
    assert!(
        exact(&pruned, p, &[]).is_some(),
        "the big directory is pruned"
    );
    assert_eq!(
        exact(&of("find .").unwrap(), p, &[]),
        None,
        "over the bound"
    );
    assert_eq!(
        exact(&of("du -sh").unwrap(), p, &[]),
        None,
        "over the bound"
    );
    // A symlink inside the tree is not followed: its target's contents are
    // not the program's inputs, but the target's kind is stamped (`-F`).
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.join("src/link")).unwrap();
    let src = of("ls -RF src").unwrap();
    let s = exact(&src, p, &[]);
    assert!(s.is_some());
    fs::write(outside.path().join("new"), "").unwrap();
    assert_eq!(exact(&src, p, &[]), s);
    // grep -r refuses devices and FIFOs it would meet.
    nix::unistd::mkfifo(&p.join("src/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(exact(&of("grep -r x src").unwrap(), p, &[]), None);
    assert!(exact(&of("find src").unwrap(), p, &[]).is_some());
}

proptest::proptest! {
    /// Any argv: an answer, never a panic; stdin (`-`) is never an input.
    #[test]
    fn any_argv_is_handled(
        program in proptest::sample::select(vec!["cat", "head", "grep", "ls", "sort", "cut", "find", "du", "tree", "git"]),
        words in proptest::collection::vec("-?-?[a-zA-Z0-9+.()!]{0,4}", 0..6),
    ) {
        let mut argv = vec![program.to_owned()];
        argv.extend(words);
        if let Some(Inputs(What::Read(p) | What::Walk(Tree { paths: p, .. }))) = Inputs::of(&argv) {
            proptest::prop_assert!(!p.is_empty());
            proptest::prop_assert!(p.iter().all(|p| &**p != "-"));
        }
    }
}

#[test]
fn non_regular_and_pseudo_files_are_refused() {
    let d = dir();
    let stamp = |l: &str| of(l).unwrap().key(d.path(), &[], LIFE);
    assert_eq!(stamp("cat /dev/null"), None);
    assert_eq!(stamp("cat /proc/loadavg"), None);
    assert_eq!(stamp("ls /proc"), None);
    assert_eq!(stamp("cat sub"), None);
    assert_eq!(stamp("find /proc/self"), None);
    assert_eq!(stamp("grep -r x /dev/null"), None);
}

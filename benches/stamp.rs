//! What validating a cached answer costs: the restamp of a line's inputs (the
//! file system calls a hit makes before it is served), per line of the load
//! tester's profiles, in a project shaped like its fixture (a git repository
//! with a few files, and `users/` holding one directory per user, ignored).
//! At 10,000 users the server spends about half its CPU here.
//!
//! Each row is one `Inputs::restamp`; the `lstat` row is one bare
//! `symlink_metadata` of a file in the same tree, the floor every row is a
//! multiple of. Lines whose inputs cannot be stamped (over the walk's bound)
//! measure how fast they give up, which every request of theirs pays twice.
//!
//! (`benches/cache.rs`'s `validate` group sets a first stamp beside spawning
//! the command, in a small project; this one is the lookup's restamp at the
//! load tester's scale, where an over-the-bound directory is met.)
//!
//! Run: `cargo bench --bench stamp` (`VOXTERM_STAMP_USERS` sets the number
//! of user directories, 10,000 by default).

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use voxterm::cache::Inputs;

/// The lines measured, as the profiles send them (`{scratch}` is `users/u7`).
const LINES: &[&str] = &[
    "git status",
    "git status --short",
    "ls",
    "ls -la",
    "ls -la users/u7",
    "cat README.md",
    "wc -l src/main.rs src/lib.rs",
    "git log --oneline -5",
    "git log --stat -5",
    "find . -name *.rs",
];

fn fixture(root: &Path, users: usize) {
    let write = |p: &str, text: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("a file in a directory")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("README.md", "# demo project\n\nA sample project.\n");
    write("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n");
    write(
        "src/lib.rs",
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
    );
    let guide: String = (1..=400).map(|i| format!("guide line {i}\n")).collect();
    write("docs/guide.md", &guide);
    write(
        "logs/app.log",
        "2024-01-01T00:00:00Z INFO request handled\n",
    );
    write(".gitignore", "users/\n");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(root)
            .env("HOME", root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git {args:?} failed (is git installed?)");
    };
    git(&["init", "-q", "."]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-qm",
        "initial import",
    ]);
    for u in 0..users {
        std::fs::create_dir_all(root.join(format!("users/u{u}"))).expect("mkdir");
    }
}

fn restamps(c: &mut Criterion) {
    let users = std::env::var("VOXTERM_STAMP_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    fixture(root, users);
    // Times settle (a stamp refuses times of the last few milliseconds).
    std::thread::sleep(Duration::from_millis(100));
    let home = root.to_string_lossy().into_owned();
    let env = vec![
        ("HOME".to_owned(), home),
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ];
    let life = Duration::from_secs(600);
    let mut g = c.benchmark_group("restamp");
    let file = root.join("src/lib.rs");
    g.bench_function("lstat (floor)", |b| {
        b.iter(|| std::fs::symlink_metadata(&file).map(|m| m.len()))
    });
    for line in LINES {
        let argv: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let inputs = Inputs::of(&argv).unwrap_or_else(|| panic!("{line}: inputs understood"));
        let stamped = inputs.restamp(root, &env, life).is_some();
        println!("{line}: {}", if stamped { "stamped" } else { "gives up" });
        g.bench_function(*line, |b| b.iter(|| inputs.restamp(root, &env, life)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = restamps
}
criterion_main!(benches);

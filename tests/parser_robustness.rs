//! The command-line parsers (cache classifier and command policy) on hostile
//! input: never a panic, a stack overflow or a hang. The proptest side of the
//! `classify` and `command_policy` fuzz targets (`fuzz/`), plus their regressions.

use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use voxterm::cache::{Class, Policy};
use voxterm::config::PolicyConfig;
use voxterm::security::CommandPolicy;
use voxterm::shell::{walk, Fact, Visitor};

/// The stack of a tokio worker, where both parsers run in the server.
const WORKER_STACK: usize = 2 << 20;

fn on_worker_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

fn classifier() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(Policy::builtin)
}

fn command_policy() -> &'static CommandPolicy {
    static P: OnceLock<CommandPolicy> = OnceLock::new();
    P.get_or_init(|| {
        CommandPolicy::new(&PolicyConfig {
            deny: vec!["rm".into(), "git push".into()],
            ..PolicyConfig::default()
        })
        .unwrap()
        .unwrap()
    })
}

fn classify(line: &str) -> Class {
    on_worker_stack(|| classifier().classify(line).class)
}

fn check(line: &str) -> Result<(), String> {
    on_worker_stack(|| command_policy().check(line))
}

/// Nested constructs, `n` levels deep.
fn nested(n: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "subshell",
            format!("{}true{}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "group",
            format!("{}true;{}", "{ ".repeat(n), " }".repeat(n)),
        ),
        (
            "substitution",
            format!("echo {}x{}", "$(".repeat(n), ")".repeat(n)),
        ),
        (
            "quoted substitution",
            format!("echo {}x{}", "\"$(echo ".repeat(n), ")\"".repeat(n)),
        ),
        (
            "if",
            format!("{}true{}", "if true; then ".repeat(n), "; fi".repeat(n)),
        ),
        (
            "while",
            format!("{}true{}", "while true; do ".repeat(n), "; done".repeat(n)),
        ),
        (
            "parameter",
            format!("echo {}x{}", "${a:-".repeat(n), "}".repeat(n)),
        ),
        (
            "arithmetic",
            format!("echo $(({}1{}))", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "function",
            format!("{}true{}", "f() { ".repeat(n), "; }".repeat(n)),
        ),
        (
            "continued keyword",
            format!("{}true{}", "i\\\nf true; then ".repeat(n), "; fi".repeat(n)),
        ),
    ]
}

/// Regression (found while fuzzing): `brush-parser` recurses once per nesting
/// level, and ~600 nested `(` (a 1.2 KB line) overflowed a 2 MiB stack, which
/// aborts the whole server. Such lines are now unknown, and refused by a policy.
#[test]
fn deep_nesting_is_unknown_not_a_stack_overflow() {
    for n in [100, 1_000, 20_000] {
        for (shape, line) in nested(n) {
            assert_eq!(classify(&line), Class::Unknown, "{shape} × {n}");
            let why = check(&line).expect_err(shape);
            assert!(why.contains("cannot check"), "{shape}: {why}");
        }
    }
}

/// The nesting bound leaves ordinary lines alone: 60 levels still parse, on a
/// worker's stack, in a debug build.
#[test]
fn moderate_nesting_is_still_classified() {
    for (shape, line) in nested(60) {
        let class = classify(&line);
        // `$(...)` is followed 8 levels deep only.
        if shape.contains("substitution") {
            assert_eq!(class, Class::Unknown, "{shape}");
            continue;
        }
        if shape == "function" {
            // Unknown to the classifier by design; two openers per level.
            assert_eq!(check(&nested(30)[8].1), Ok(()), "{shape}");
            continue;
        }
        assert_ne!(class, Class::Unknown, "{shape}: {line}");
        assert_eq!(check(&line), Ok(()), "{shape}");
    }
    let wide = vec!["(echo $(ls) ${A:-x})"; 20].join(" && ");
    assert_eq!(classify(&wide), Class::FsRead);
}

/// Flat lines of 1 MiB (the default `max_frame_bytes`) take linear time.
#[test]
fn long_flat_lines_are_handled() {
    for line in [
        vec!["echo a"; 100_000].join(" | "),
        vec!["echo a"; 100_000].join(" && "),
        format!("echo {}", "'a' ".repeat(200_000)),
        format!("echo {}", "(".repeat(1 << 20)),
    ] {
        let _ = classify(&line);
        let _ = check(&line);
    }
}

/// A visitor that only counts, to see whether the parser itself panicked
/// (`walk` catches that and returns false; the panic hook still prints it).
#[derive(Default)]
struct Count(usize);

impl Visitor for Count {
    fn simple(&mut self, _program: &str, _args: &[&str]) {
        self.0 += 1;
    }
    fn fact(&mut self, _fact: Fact<'_>) {}
    fn opaque(&mut self, _why: &'static str) {}
}

fn parser_panics(line: &str) -> bool {
    on_worker_stack(|| !walk(line, &mut Count::default()))
}

/// Regression (found by the `classify` fuzz target): brush-parser unwraps the fd
/// number of a redirection as a `u32`, so `4294967296>x` panicked inside the
/// parser. `walk` caught it, but each one printed a panic report to the server's
/// stderr. Such lines are now unknown without being parsed.
#[test]
fn huge_fd_numbers_do_not_reach_the_parser() {
    for line in [
        "lll 22<> o 1o&L&333333333333333333333333333333333333333333333333>$)b,dx",
        "echo 4294967296>x",
        "cat 99999999999<in",
        "ls 42949\
67296>x",
        "echo $(ls 4294967296>x)",
    ] {
        assert!(!parser_panics(line), "{line:?}");
        assert_eq!(classify(line), Class::Unknown, "{line:?}");
        assert!(check(line).is_err(), "{line:?}");
    }
    assert_eq!(classify("ls 2>/dev/null"), Class::FsRead);
    assert_eq!(classify("echo 4294967296 > x"), Class::Mutating);
}

/// Found by the `classify` fuzz target: brush-parser 0.2's tokenizer panics
/// (`unwrap` on `None`, tokenizer.rs:1011) on an unterminated `${` after another
/// `${...}` on a here-document line. Not avoidable from outside without a second
/// tokenizer; `walk` catches it, so the line is unknown and refused by a policy.
/// (The other property tests do not assert "no parser panic" for this reason.)
#[test]
fn parser_panics_are_contained() {
    let line = "cat <<E ${A:-x} ${A B\nE\n";
    assert_eq!(classify(line), Class::Unknown);
    assert!(check(line).is_err());
}

/// Runs `f` on a worker stack and fails if it takes longer than `limit` (the
/// thread is left behind: a hang must fail the test, not stall it).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || tx.send(f()))
        .unwrap();
    rx.recv_timeout(limit).expect("took too long")
}

/// Regression (found by the `classify` fuzz target, a 10 s timeout): an
/// expanding here-document body never goes through the tokenizer, and
/// brush-parser's word parser backtracks exponentially on unbalanced `$((`:
/// `cat <<E`⏎ + 12 × `$((` ran for minutes, in the classifier and in the policy
/// check (which runs on the connection's reader task). Such bodies are now opaque.
#[test]
fn unbalanced_heredoc_substitutions_are_not_exponential() {
    let u = "$((".repeat(40);
    for line in [
        format!("cat <<E\n{u}\nE\n"),
        format!("cat <<E\n\\{u}\nE\n"),
        format!("cat <<E\n${{{u}\nE\n"),
        format!("cat <<E\n{}\nE\n", "$( (".repeat(30)),
        "c$E$BA~SHPIDM<<EOF\nWWheWWWl<&s >/\"?\"echo $((iusr/bin/e((((((((((((((*(((((((om x)\nEOF"
            .to_owned(),
    ] {
        let l = line.clone();
        let class = within(Duration::from_secs(20), move || {
            classifier().classify(&l).class
        });
        assert_eq!(class, Class::Unknown, "{line:?}");
        let l = line.clone();
        let refused = within(Duration::from_secs(20), move || {
            command_policy().check(&l).is_err()
        });
        assert!(refused, "{line:?}");
    }
    // Balanced bodies are still looked into; plain text with a lone `)` too.
    let cat = |body: &str| classify(&format!("cat <<E\n{body}\nE\n"));
    assert_eq!(cat("$(echo $(( (1) + 2 )))"), Class::FsRead);
    assert_eq!(cat("$(rm x)"), Class::Mutating);
    assert_eq!(cat("1) milk\n2) eggs"), Class::FsRead);
}

/// Regression (found by `parsers_never_panic_on_bracket_soup`, which grew to
/// 16 GB before it was killed): brush-parser 0.2's tokenizer loops, pushing to a
/// `Vec` without end, when a here-document tag that unquotes to nothing (`''`,
/// `""`, `"'"`) is followed by an empty token at the end of the input (`cat <<'' `,
/// trailing blank, no newline). The 400-byte case minimized to `''<<"" `. Lines
/// with an empty here-document delimiter are now unknown without being parsed.
#[test]
fn empty_heredoc_tags_do_not_loop_the_tokenizer() {
    let found = "m$\n\n)$\"\"{\\\"i\\$$e\n<$\\v&(<\n\n\\\n'<(\\j\\6$53'9r<s\"\\\\0$$\"`$$\\<\">\\6&\\mq\\5< $6>43`(aa4t\"&\n``${<>\\\"\\  \"`;\"{\\\n6(i>\\b\nk><c\n0>>\n\\ls\">\"\nj) \ng\">;\"$<>\\r8\" 5\n($}`z;v2\"\"oke\"<\\o<>> >l'\n<><b&'}\n2\n>&;>\"\\efrj'>m)\\<)\n\nd`\\\\t\"\n2);\\\n4`\"$v>$\"d2><$\">$ '<\\\"\"\\v\\7\">\\\"$a$(<<\"\" ";
    for line in [
        found,
        "''<<\"\" ",
        "cat <<'' ",
        "cat <<\"\" x ",
        "cat <<-\"'\" ",
        "cat << ''\"\" ",
        "cat <<'' <<E ",
        "echo $(cat <<'' ",
        "echo `cat <<'' `",
        "cat <<\\\n'' ",
        "cat <<''\\\n ",
        "cat <<'';",
        "cat <<''\nbody\n\n",
    ] {
        let l = line.to_owned();
        let class = within(Duration::from_secs(20), move || {
            classifier().classify(&l).class
        });
        assert_eq!(class, Class::Unknown, "{line:?}");
        let l = line.to_owned();
        let refused = within(Duration::from_secs(20), move || {
            command_policy().check(&l).is_err()
        });
        assert!(refused, "{line:?}");
    }
    // Delimiters that are not empty are still looked into.
    assert_eq!(classify("cat <<'E'\nhi\nE\n"), Class::FsRead);
    assert_eq!(classify("cat <<\"E\"\n$(rm x)\nE\n"), Class::FsRead);
    assert_eq!(classify("cat <<E\n$(rm x)\nE\n"), Class::Mutating);
    assert_eq!(classify("cat <<-'E'\n\thi\n\tE\n"), Class::FsRead);
    assert_eq!(classify("cat <<''E\nhi\nE\n"), Class::FsRead);
    assert_eq!(check("cat <<'E'\nhi\nE\n"), Ok(()));
}

/// Every committed fuzz seed goes through both parsers.
#[test]
fn fuzz_seeds_are_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/classify");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("seed-") {
            continue;
        }
        let line = std::fs::read_to_string(entry.path()).unwrap();
        let _ = classify(&line);
        let _ = check(&line);
        n += 1;
    }
    assert!(n >= 10, "{} seeds in {}", n, dir.display());
}

/// Shell-like lines built from the constructs the walk descends into.
fn shellish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("ls".to_owned()),
        Just("echo a".to_owned()),
        Just("rm -f x".to_owned()),
        Just("cat < f".to_owned()),
        Just("git push".to_owned()),
        Just("x=1".to_owned()),
        "[a-z$*?'\"\\\\ ]{0,8}",
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("({c})")),
            inner.clone().prop_map(|c| format!("{{ {c}; }}")),
            inner.clone().prop_map(|c| format!("echo $({c})")),
            inner.clone().prop_map(|c| format!("echo \"`{c}`\"")),
            inner.clone().prop_map(|c| format!("sh -c '{c}'")),
            inner.clone().prop_map(|c| format!("if {c}; then {c}; fi")),
            inner
                .clone()
                .prop_map(|c| format!("for i in a *; do {c}; done")),
            inner.clone().prop_map(|c| format!("f() {{ {c}; }}")),
            inner.clone().prop_map(|c| format!("cat <<E\n$({c})\nE\n")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a}; {b} > out")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parser_never_panics_on_fd_numbers(
        line in "[a-z ]{0,4}[0-9]{1,14}(\\\\\n)?[0-9]{0,3}[<>]{1,2}&?[a-z0-9-]{0,3}",
    ) {
        prop_assert!(!parser_panics(&line), "{:?}", line);
    }

    #[test]
    fn parsers_never_panic_on_shellish_lines(line in shellish()) {
        let class = classify(&line);
        prop_assert_eq!(class, classifier().classify(&line).class);
        let _ = check(&line);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_lines(line in "\\PC{0,200}") {
        let _ = classify(&line);
        let _ = check(&line);
    }

    #[test]
    fn parsers_never_panic_on_bracket_soup(line in "[()${}`\"' ;|&<>a-z0-9\\\\\n]{0,400}") {
        let _ = classify(&line);
        let _ = check(&line);
    }
}

//! Engine builtins: `cd`, `pwd`, `export`, `unset`.
//!
//! These change or read session state, so they cannot run in a child (a child's
//! `cd` dies with it). They are recognized only when the whole line is one plain
//! invocation; anything with shell operators or expansions goes to `/bin/sh`, where
//! it behaves as in any shell but does not persist (documented in the README).

use super::state::Session;
use crate::shell::Line;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A recognized builtin invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builtin {
    /// `cd [dir]`, with `~`, `~/x` and `-`.
    Cd(Vec<String>),
    /// `pwd`.
    Pwd,
    /// `export [NAME=value | NAME]...`; no arguments lists the session's variables.
    Export(Vec<String>),
    /// `unset NAME...`.
    Unset(Vec<String>),
}

/// What a builtin printed and its exit status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuiltinOutput {
    /// Bytes for stdout.
    pub stdout: Vec<u8>,
    /// Bytes for stderr.
    pub stderr: Vec<u8>,
    /// Exit status, 0 on success.
    pub code: i32,
}

/// Characters after which a line is shell syntax, not a plain builtin call.
const SHELL_OPERATORS: &[char] = &['|', '&', ';', '<', '>', '(', ')', '`', '$', '\n'];

impl Builtin {
    /// Recognizes a parsed line that is exactly one builtin invocation, from
    /// the words it was split into when it was parsed.
    pub fn from_line(line: &Line) -> Option<Builtin> {
        let words = line.words()?;
        // Most lines are not builtins: tell from the first word, before the
        // scan for operators (asked on every request) and before copying any.
        if !matches!(
            words.first().map(String::as_str),
            Some("cd" | "pwd" | "export" | "unset")
        ) {
            return None;
        }
        if line.text().contains(SHELL_OPERATORS) {
            return None;
        }
        Builtin::from_words(words.to_vec())
    }

    /// Recognizes a line of text (parsing it) that is exactly one builtin
    /// invocation; the engine asks [`Builtin::from_line`] with the line it parsed.
    pub fn parse(line: &str) -> Option<Builtin> {
        Builtin::from_line(&Line::parse(line))
    }

    /// The builtin a split line calls, if its first word names one.
    fn from_words(words: Vec<String>) -> Option<Builtin> {
        let mut words = words.into_iter();
        let name = words.next()?;
        let args: Vec<String> = words.collect();
        Some(match name.as_str() {
            "cd" => Builtin::Cd(args),
            "pwd" => Builtin::Pwd,
            "export" => Builtin::Export(args),
            "unset" => Builtin::Unset(args),
            _ => return None,
        })
    }

    /// Runs the builtin against `session`. `home` is where `cd` and `~` go; with a
    /// `jail` (the tenant's root, canonical) `cd` refuses to leave it.
    pub fn run(&self, session: &Session, home: &Path, jail: Option<&Path>) -> BuiltinOutput {
        let mut out = BuiltinOutput::default();
        match self {
            Builtin::Cd(args) => cd(session, home, jail, args, &mut out),
            Builtin::Pwd => {
                out.stdout = format!("{}\n", session.cwd().display()).into_bytes();
            }
            Builtin::Export(args) => export(session, args, &mut out),
            Builtin::Unset(args) => {
                let mut state = session.lock();
                for name in args {
                    if valid_name(name) {
                        state.remove_var(name);
                    } else {
                        fail(&mut out, format!("unset: `{name}': not a valid identifier"));
                    }
                }
            }
        }
        out
    }
}

impl Builtin {
    /// Whether running it may change the session (its directory or
    /// variables): such a session is written to the durable store.
    pub fn changes_session(&self) -> bool {
        match self {
            Builtin::Cd(_) | Builtin::Unset(_) => true,
            Builtin::Export(args) => !args.is_empty(),
            Builtin::Pwd => false,
        }
    }

    /// Puts a session inside `root` (canonical): its cwd moves there unless it is
    /// already inside, and `HOME` defaults to it. Idempotent; every connection calls
    /// it when it attaches to a session, before running anything in it, and the
    /// root is kept on the session so builtins need not resolve it again.
    pub fn confine(session: &Session, root: &Path) {
        let mut state = session.lock();
        state.root = Some(root.to_owned());
        if !state.cwd.starts_with(root) {
            state.cwd = root.to_owned();
            state.prev_cwd = None;
        }
        state.default_var("HOME", || root.display().to_string());
    }
}

fn fail(out: &mut BuiltinOutput, message: String) {
    out.stderr.extend_from_slice(message.as_bytes());
    out.stderr.push(b'\n');
    out.code = 1;
}

fn cd(
    session: &Session,
    home: &Path,
    jail: Option<&Path>,
    args: &[String],
    out: &mut BuiltinOutput,
) {
    let cwd = session.cwd();
    let (target, announce): (PathBuf, bool) = match args {
        [] => (home.to_owned(), false),
        [arg] if arg == "-" => match session.lock().prev_cwd.clone() {
            Some(prev) => (prev, true),
            None => return fail(out, "cd: OLDPWD not set".into()),
        },
        [arg] if arg == "~" => (home.to_owned(), false),
        [arg] => match arg.strip_prefix("~/") {
            Some(rest) => (home.join(rest), false),
            None => (cwd.join(arg), false),
        },
        _ => return fail(out, "cd: too many arguments".into()),
    };
    let shown = args
        .first()
        .map_or_else(|| home.display().to_string(), |a| a.clone());
    match std::fs::canonicalize(&target) {
        // Canonical on both sides: `..` and symlinks cannot lead out.
        Ok(dir) if jail.is_some_and(|root| !dir.starts_with(root)) => fail(
            out,
            format!("cd: {shown}: outside this tenant's root (permission denied)"),
        ),
        Ok(dir) if dir.is_dir() => {
            if announce {
                out.stdout = format!("{}\n", dir.display()).into_bytes();
            }
            session.set_cwd(&dir);
        }
        Ok(_) => fail(out, format!("cd: {shown}: Not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fail(out, format!("cd: {shown}: No such file or directory"))
        }
        Err(e) => fail(out, format!("cd: {shown}: {e}")),
    }
}

fn export(session: &Session, args: &[String], out: &mut BuiltinOutput) {
    let mut state = session.lock();
    if args.is_empty() {
        let mut listing = String::new();
        for (k, v) in state.vars() {
            let _ = writeln!(listing, "export {k}={}", shell_words::quote(v));
        }
        out.stdout = listing.into_bytes();
        return;
    }
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        if !valid_name(name) {
            fail(out, format!("export: `{arg}': not a valid identifier"));
            continue;
        }
        if let Some(value) = value {
            state.set_var(name, value);
        }
    }
}

/// POSIX variable names: a letter or underscore, then letters, digits, underscores.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn session(dir: &Path) -> Session {
        Session::new(Arc::from("t"), "s", dir.to_owned(), 8)
    }

    #[test]
    fn recognizes_only_plain_invocations() {
        assert_eq!(
            Builtin::parse("cd /tmp"),
            Some(Builtin::Cd(vec!["/tmp".into()]))
        );
        assert_eq!(Builtin::parse("  pwd "), Some(Builtin::Pwd));
        assert_eq!(
            Builtin::parse("export A='x y'"),
            Some(Builtin::Export(vec!["A=x y".into()]))
        );
        assert_eq!(Builtin::parse("cd /tmp && ls"), None);
        assert_eq!(Builtin::parse("export A=$HOME"), None);
        assert_eq!(Builtin::parse("pwd > f"), None);
        assert_eq!(Builtin::parse("ls"), None);
        assert_eq!(Builtin::parse("cd 'unterminated"), None);
        assert_eq!(
            Builtin::parse("'cd' /tmp"),
            Some(Builtin::Cd(vec!["/tmp".into()]))
        );
    }

    proptest::proptest! {
        /// Recognition from a parsed line answers as splitting the whole line would.
        #[test]
        fn the_shortcut_agrees_with_a_full_split(
            line in proptest::string::string_regex("(cd|pwd|export|unset|ls|c|'|\"|\\\\| |\t|\r|\x0c|#|=|a){0,8}").expect("regex")
        ) {
            let full = if line.contains(SHELL_OPERATORS) {
                None
            } else {
                shell_words::split(&line).ok().and_then(Builtin::from_words)
            };
            proptest::prop_assert_eq!(Builtin::parse(&line), full, "{:?}", line);
        }
    }

    #[test]
    fn cd_relative_home_dash_and_missing() {
        let root = std::env::temp_dir().join(format!("voxterm-cd-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let s = session(&root);
        let home = root.join("sub");

        let o = Builtin::parse("cd sub").unwrap().run(&s, &home, None);
        assert_eq!((o.code, s.cwd()), (0, root.join("sub")));
        let o = Builtin::parse("cd ..").unwrap().run(&s, &home, None);
        assert_eq!((o.code, s.cwd()), (0, root.clone()));
        let o = Builtin::parse("cd -").unwrap().run(&s, &home, None);
        assert_eq!(
            o.stdout,
            format!("{}\n", root.join("sub").display()).into_bytes()
        );
        let o = Builtin::parse("cd /").unwrap().run(&s, &home, None);
        assert_eq!(o.code, 0);
        Builtin::parse("cd ~").unwrap().run(&s, &home, None);
        assert_eq!(s.cwd(), home);

        let o = Builtin::parse("cd nope").unwrap().run(&s, &home, None);
        assert_eq!(o.code, 1);
        assert_eq!(o.stderr, b"cd: nope: No such file or directory\n");
        assert_eq!(s.cwd(), home, "a failed cd leaves cwd alone");
    }

    #[test]
    fn cd_stays_inside_the_jail() {
        let base = std::env::temp_dir().join(format!("voxterm-jail-{}", std::process::id()));
        std::fs::create_dir_all(base.join("root/sub")).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        let _ = std::os::unix::fs::symlink(base.join("other"), base.join("root/link"));
        let base = std::fs::canonicalize(base).unwrap();
        let root = base.join("root");
        let s = session(&base);
        Builtin::confine(&s, &root);
        assert_eq!(s.cwd(), root);
        assert_eq!(s.var("HOME"), Some(root.display().to_string()));
        let j = Some(root.as_path());
        let run = |line: &str| Builtin::parse(line).unwrap().run(&s, &root, j);
        assert_eq!(run("cd sub").code, 0);
        assert_eq!(s.cwd(), root.join("sub"));
        for out in ["cd ../..", "cd /", "cd ../link", "cd /tmp"] {
            let o = run(out);
            assert_eq!(o.code, 1, "{out}");
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("outside"),
                "{out}"
            );
            assert_eq!(s.cwd(), root.join("sub"), "{out}");
        }
        assert_eq!(run("cd ..").code, 0);
        assert_eq!(s.cwd(), root);
        assert_eq!(run("cd").code, 0);
        assert_eq!(s.cwd(), root);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn export_unset_and_listing() {
        let s = session(Path::new("/"));
        let home = Path::new("/");
        assert_eq!(
            Builtin::parse("export A=1 B='two words'")
                .unwrap()
                .run(&s, home, None)
                .code,
            0
        );
        assert_eq!(s.var("B").as_deref(), Some("two words"));
        let o = Builtin::parse("export").unwrap().run(&s, home, None);
        assert_eq!(o.stdout, b"export A=1\nexport B='two words'\n");
        let o = Builtin::parse("export 1x=3").unwrap().run(&s, home, None);
        assert_eq!(o.code, 1);
        Builtin::parse("unset A").unwrap().run(&s, home, None);
        assert_eq!(s.var("A"), None);
    }
}

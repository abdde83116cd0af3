//! The rule that decides how a command line is started: the program itself, or
//! `/bin/sh -c`. Decided once, when the line is parsed ([`super::Line::plan`]);
//! exec starts what it says and the cache stamps the inputs of a direct argv.
//!
//! Skipping the shell saves one exec and a shell start-up (≈0.5–1 ms) for the
//! common simple commands (`ls -la`, `git status`, `cat 'a b.txt'`). The rule is
//! deliberately conservative: any character or word whose meaning depends on the
//! shell sends the line to the shell, so the direct path can never change what a
//! command does, only how fast it starts.

/// How a command line will be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan<'a> {
    /// Exec this argv directly (argv\[0\] is looked up in the job's `PATH`).
    Direct(&'a [String]),
    /// Run the line verbatim as `/bin/sh -c <line>`.
    Shell,
}

/// Why a command line cannot be started at all.
///
/// These are the caller's input errors: they are reported to the client, never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Nothing to run: the line is empty or only whitespace.
    #[error("empty command")]
    Empty,
    /// The line has an unterminated single or double quote.
    #[error("unbalanced quotes in command")]
    Unbalanced,
}

/// Words that only mean something to a shell: reserved words and builtins that
/// have no standalone program, or whose program would act on the wrong process
/// (`cd`, `exit`, `umask`…).
const SHELL_WORDS: &[&str] = &[
    // reserved words
    "if",
    "then",
    "else",
    "elif",
    "fi",
    "case",
    "esac",
    "for",
    "while",
    "until",
    "do",
    "done",
    "in",
    "function",
    "select",
    "time",
    "coproc",
    // shell-only builtins
    ".",
    ":",
    "alias",
    "unalias",
    "bg",
    "fg",
    "jobs",
    "break",
    "continue",
    "builtin",
    "cd",
    "command",
    "declare",
    "typeset",
    "local",
    "eval",
    "exec",
    "exit",
    "logout",
    "export",
    "readonly",
    "unset",
    "set",
    "shift",
    "getopts",
    "hash",
    "let",
    "pushd",
    "popd",
    "dirs",
    "read",
    "return",
    "shopt",
    "source",
    "suspend",
    "times",
    "trap",
    "type",
    "ulimit",
    "umask",
    "wait",
    "fc",
    "history",
    "disown",
    "enable",
    "mapfile",
    "readarray",
];

/// Decides whether `command`, split into `words` (`None`: its quotes do not
/// balance), can be exec'd directly (`true`) or needs `/bin/sh -c`.
///
/// Direct only when the line has no shell syntax at all (no `| & ; < > ( ) $ \` * ?
/// [ ] { } ~ # !` or newline outside quotes, no `$ \` \` inside double quotes, no
/// `\` outside quotes but one that makes the printable character after it
/// literal, as in `find . \( -name a -o -name b \)`), no
/// leading `NAME=value` word, and its first word is not a shell keyword or a
/// shell-only builtin. Quotes are removed the way `sh` would (via `shell-words`).
pub(super) fn direct(command: &str, words: Option<&[String]>) -> Result<bool, PlanError> {
    if command.trim().is_empty() {
        return Err(PlanError::Empty);
    }
    let words = words.ok_or(PlanError::Unbalanced)?;
    let Some(first) = words.first() else {
        // Only a comment, e.g. `# note`: let the shell do nothing, as it would.
        return Ok(false);
    };
    Ok(!(has_shell_syntax(command)
        || is_assignment(first)
        || SHELL_WORDS.contains(&first.as_str())))
}

/// True when some character would be interpreted by `sh` rather than taken literally.
fn has_shell_syntax(line: &str) -> bool {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut q = Q::None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                }
            }
            Q::Double => match c {
                '"' => q = Q::None,
                '$' | '`' | '\\' => return true,
                _ => {}
            },
            Q::None => match c {
                '\'' => q = Q::Single,
                '"' => q = Q::Double,
                ' ' | '\t' => {}
                // `\X` is the character X, for `sh` and for `shell-words`
                // alike; not a line continuation, nor a control character.
                '\\' => match chars.next() {
                    Some(x) if !x.is_control() => {}
                    _ => return true,
                },
                '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | ']'
                | '{' | '}' | '~' | '#' | '!' | '\n' => return true,
                // Other control characters (\r, \0…): tokenisation differences are
                // not worth reasoning about; the shell decides.
                c if c.is_control() => return true,
                _ => {}
            },
        }
    }
    false
}

/// `NAME=value` as a first word is a variable assignment for the command, not a program.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::Line;

    /// A plan, owned: `Some(argv)` for a direct one.
    type Planned = Result<Option<Vec<String>>, PlanError>;

    const SHELL: Planned = Ok(None);

    #[test]
    fn plan_table() {
        let direct = |v: &[&str]| Ok(Some(v.iter().map(|s| s.to_string()).collect()));
        let cases: &[(&str, Planned)] = &[
            ("ls -la", direct(&["ls", "-la"])),
            ("  git   status  ", direct(&["git", "status"])),
            ("cat 'a b.txt'", direct(&["cat", "a b.txt"])),
            ("echo \"hello world\"", direct(&["echo", "hello world"])),
            ("grep 'a|b' file", direct(&["grep", "a|b", "file"])),
            ("echo 'it''s'", direct(&["echo", "its"])),
            ("echo '$HOME'", direct(&["echo", "$HOME"])),
            ("echo \"a*b\"", direct(&["echo", "a*b"])),
            (
                "env A=1 printenv A",
                direct(&["env", "A=1", "printenv", "A"]),
            ),
            ("/bin/true", direct(&["/bin/true"])),
            ("echo a=b", direct(&["echo", "a=b"])),
            ("echo \"$HOME\"", SHELL),
            ("echo \"a\\\"b\"", SHELL),
            ("VAR=x cmd", SHELL),
            ("_V1=x cmd", SHELL),
            ("ls | wc -l", SHELL),
            ("true && false", SHELL),
            ("sleep 1 &", SHELL),
            ("a; b", SHELL),
            ("echo hi > f", SHELL),
            ("wc < f", SHELL),
            ("(cd /)", SHELL),
            ("echo $HOME", SHELL),
            ("echo `id`", SHELL),
            ("echo a\\ b", direct(&["echo", "a b"])),
            (
                "find . \\( -name a -o -name b \\) -print",
                direct(&[
                    "find", ".", "(", "-name", "a", "-o", "-name", "b", ")", "-print",
                ]),
            ),
            ("ls \\*.rs", direct(&["ls", "*.rs"])),
            ("echo a\\\nb", SHELL),
            ("echo a\\\rb", SHELL),
            ("echo a\\", SHELL),
            ("ls *.rs", SHELL),
            ("ls ?.rs", SHELL),
            ("ls [ab].rs", SHELL),
            ("echo {a,b}", SHELL),
            ("ls ~", SHELL),
            ("echo hi # note", SHELL),
            ("! true", SHELL),
            ("echo a\necho b", SHELL),
            ("echo a\rb", SHELL),
            ("if true; then echo; fi", SHELL),
            ("for x in a b", SHELL),
            ("while true", SHELL),
            ("exit 3", SHELL),
            ("set -e", SHELL),
            (". ./env.sh", SHELL),
            ("source x", SHELL),
            ("eval ls", SHELL),
            ("exec ls", SHELL),
            ("alias x=y", SHELL),
            ("ulimit -n", SHELL),
            ("umask", SHELL),
            ("read x", SHELL),
            ("trap '' INT", SHELL),
            ("wait", SHELL),
            ("command -v ls", SHELL),
            ("type ls", SHELL),
            (": nothing", SHELL),
            ("cd /tmp", SHELL),
            ("# only a comment", SHELL),
            ("", Err(PlanError::Empty)),
            ("  \t \n ", Err(PlanError::Empty)),
            ("echo 'oops", Err(PlanError::Unbalanced)),
            ("echo \"oops", Err(PlanError::Unbalanced)),
            ("ls | echo 'oops", Err(PlanError::Unbalanced)),
        ];
        for (line, want) in cases {
            assert_eq!(&plan(line), want, "plan({line:?})");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// A line run directly gets the very words `/bin/sh` would give it:
        /// quotes and backslashes removed the same way.
        #[test]
        fn a_direct_line_has_the_words_sh_gives_it(
            words in proptest::collection::vec(
                "[ab]{0,2}(\\\\[ (*\\\\'\"a]|'[ab \\\\]*'|\"[ab ]*\")?[ab]{0,2}",
                1..5,
            )
        ) {
            let line = words.join(" ");
            let argv = plan(&format!("echo {line}"));
            proptest::prop_assert!(matches!(argv, Ok(Some(_))), "{:?} runs directly", line);
            let Ok(Some(argv)) = argv else { unreachable!() };
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s\\0' x {line}"))
                .output()
                .unwrap();
            let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_terminator('\0')
                .skip(1)
                .map(String::from)
                .collect();
            proptest::prop_assert_eq!(&argv[1..], &words[..], "{:?}", line);
        }
    }

    /// The plan of `line`, owned.
    fn plan(line: &str) -> Planned {
        let line = Line::parse(line);
        line.plan().map(|p| match p {
            Plan::Direct(argv) => Some(argv.to_vec()),
            Plan::Shell => None,
        })
    }
}

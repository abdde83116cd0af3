//! Deciding how to start a command line: the program itself, or `/bin/sh -c`.
//!
//! Skipping the shell saves one exec and a shell start-up (≈0.5–1 ms) for the
//! common simple commands (`ls -la`, `git status`, `cat 'a b.txt'`). The rule is
//! deliberately conservative: any character or word whose meaning depends on the
//! shell sends the line to the shell, so the direct path can never change what a
//! command does, only how fast it starts.

use super::error::PlanError;

/// How a command line will be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Exec this argv directly (argv\[0\] is looked up in the job's `PATH`).
    Direct(Vec<String>),
    /// Run the line verbatim as `/bin/sh -c <line>`.
    Shell,
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

/// Decides whether `command` can be exec'd directly or needs `/bin/sh -c`.
///
/// Direct only when the line has no shell syntax at all (no `| & ; < > ( ) $ \` \ * ?
/// [ ] { } ~ # !` or newline outside quotes, no `$ \` \` inside double quotes), no
/// leading `NAME=value` word, and its first word is not a shell keyword or a
/// shell-only builtin. Quotes are removed the way `sh` would (via `shell-words`).
pub fn plan(command: &str) -> Result<Plan, PlanError> {
    if command.trim().is_empty() {
        return Err(PlanError::Empty);
    }
    let words = shell_words::split(command).map_err(|_| PlanError::Unbalanced)?;
    let Some(first) = words.first() else {
        // Only a comment, e.g. `# note`: let the shell do nothing, as it would.
        return Ok(Plan::Shell);
    };
    if has_shell_syntax(command) || is_assignment(first) || SHELL_WORDS.contains(&first.as_str()) {
        return Ok(Plan::Shell);
    }
    Ok(Plan::Direct(words))
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
    for c in line.chars() {
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
                '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '\\' | '*' | '?' | '['
                | ']' | '{' | '}' | '~' | '#' | '!' | '\n' => return true,
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

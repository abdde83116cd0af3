//! The command policy: allow and deny lists checked on every simple command of a
//! line before anything of it runs.
//!
//! The line is walked with the cache classifier's walk (`cache::policy::walk`), so
//! pipelines, `&&`/`||` lists, subshells, groups, loops, conditionals, command
//! substitutions and function bodies are all seen. On top of that the check looks
//! through the usual wrappers (`env rm`, `xargs rm`, `sudo rm`, `timeout 5 rm`,
//! `find -exec rm`) and into `sh -c '...'` and `eval` strings.
//!
//! When a policy is configured, anything the walk cannot see through is refused:
//! a parse error, a computed program word (`$CMD`, `` `x` ``), a computed
//! subcommand of a program with subcommand rules, `[[ ]]`, arithmetic. A deny list
//! stays best-effort (an interpreter can always run what it is fed: `python -c`,
//! `perl -e`, a script file); an allow list is the real boundary.

use crate::cache::policy::{walk, Visitor};
use crate::config::PolicyConfig;

/// Nesting of `sh -c` / `eval` strings followed before the line is refused.
const MAX_NESTING: u32 = 4;

/// Always allowed by an allow list (still subject to the deny list): the engine
/// builtins and no-ops.
const IMPLICIT_ALLOW: &[&str] = &["cd", "pwd", "export", "unset", "true", "false", ":"];

/// Programs that run another program named among their arguments.
const WRAPPERS: &[&str] = &[
    "env", "command", "builtin", "exec", "nice", "nohup", "sudo", "doas", "xargs", "timeout",
    "stdbuf", "setsid", "time", "ionice", "chrt", "taskset", "watch", "strace", "ltrace",
    "unbuffer", "flock", "chroot", "runuser", "su",
];

/// Shells whose `-c` argument is a command line.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"];

/// Directories whose programs an allow list may name by their bare name.
const STD_DIRS: &[&str] = &[
    "/bin/",
    "/usr/bin/",
    "/usr/local/bin/",
    "/sbin/",
    "/usr/sbin/",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    program: String,
    sub: Option<String>,
}

impl Rule {
    fn parse(entry: &str) -> Result<Rule, String> {
        let words: Vec<&str> = entry.split_whitespace().collect();
        match words.as_slice() {
            [p] | [p, _] if p.contains('/') => {
                Err(format!("{entry:?}: name the program, not a path"))
            }
            [p] => Ok(Rule {
                program: (*p).to_owned(),
                sub: None,
            }),
            [p, s] => Ok(Rule {
                program: (*p).to_owned(),
                sub: Some((*s).to_owned()),
            }),
            _ => Err(format!(
                "{entry:?}: an entry is `program` or `program subcommand`"
            )),
        }
    }

    fn shown(&self) -> String {
        match &self.sub {
            Some(s) => format!("{} {s}", self.program),
            None => self.program.clone(),
        }
    }
}

/// Lines whose verdict is remembered: a check is a full shell parse, and voice
/// clients repeat their lines.
const CHECK_MEMO: usize = 4096;
/// Longer lines are checked every time (rare, and they would crowd the memo).
const CHECK_MEMO_MAX_LINE: usize = 512;

/// Compiled allow and deny lists, with the verdicts of recent lines.
pub struct CommandPolicy {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    memo: quick_cache::sync::Cache<String, Result<(), String>>,
}

impl std::fmt::Debug for CommandPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandPolicy")
            .field("deny", &self.deny)
            .field("allow", &self.allow)
            .field("remembered", &self.memo.len())
            .finish()
    }
}

impl CommandPolicy {
    /// `None` when both lists are empty (no policy: nothing is checked).
    pub fn new(config: &PolicyConfig) -> Result<Option<CommandPolicy>, String> {
        let compile = |list: &[String]| -> Result<Vec<Rule>, String> {
            list.iter().map(|e| Rule::parse(e)).collect()
        };
        let policy = CommandPolicy {
            deny: compile(&config.deny)?,
            allow: compile(&config.allow)?,
            memo: quick_cache::sync::Cache::new(CHECK_MEMO),
        };
        Ok((!policy.deny.is_empty() || !policy.allow.is_empty()).then_some(policy))
    }

    /// `Ok` when every command of the line may run; otherwise why not, naming
    /// the refused part. The verdict depends on the line alone, so it is
    /// remembered for short lines.
    pub fn check(&self, line: &str) -> Result<(), String> {
        if line.len() > CHECK_MEMO_MAX_LINE {
            return self.check_parsed(line);
        }
        if let Some(v) = self.memo.get(line) {
            return v;
        }
        let v = self.check_parsed(line);
        self.memo.insert(line.to_owned(), v.clone());
        v
    }

    fn check_parsed(&self, line: &str) -> Result<(), String> {
        let mut check = Check {
            policy: self,
            denied: None,
            nesting: 0,
        };
        check.line(line);
        match check.denied {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

struct Check<'a> {
    policy: &'a CommandPolicy,
    denied: Option<String>,
    nesting: u32,
}

impl Visitor for Check<'_> {
    fn simple(&mut self, program: &str, args: &[&str]) {
        if self.denied.is_some() {
            return;
        }
        let args: Vec<Option<String>> = args.iter().map(|a| dequote(a)).collect();
        match dequote(program) {
            Some(p) => self.command(&p, &args),
            None => self.deny(format!(
                "the program word `{program}` is computed and cannot be checked"
            )),
        }
    }

    fn opaque(&mut self) {
        self.deny("part of the line cannot be analysed (parse error, `[[ ]]`, arithmetic or nesting too deep)".into());
    }

    fn function_bodies(&self) -> bool {
        true
    }
}

impl Check<'_> {
    fn deny(&mut self, why: String) {
        if self.denied.is_none() {
            self.denied = Some(why);
        }
    }

    fn line(&mut self, line: &str) {
        if self.nesting > MAX_NESTING {
            return self.deny("`sh -c` / `eval` nesting is too deep to check".into());
        }
        self.nesting += 1;
        if !walk(line, self) {
            self.deny("the line cannot be analysed".into());
        }
        self.nesting -= 1;
    }

    /// One command: the program (dequoted) and its arguments (dequoted; `None`
    /// when computed).
    fn command(&mut self, program: &str, args: &[Option<String>]) {
        if self.denied.is_some() {
            return;
        }
        if program.is_empty() || program.contains(['*', '?', '[']) {
            return self.deny(format!("the program word `{program}` cannot be checked"));
        }
        let base = program.rsplit('/').next().unwrap_or(program);
        // Deny list: by base name, wherever the program lives.
        for rule in &self.policy.deny {
            if rule.program != base {
                continue;
            }
            match &rule.sub {
                None => return self.deny(format!("`{}` is denied by policy", rule.shown())),
                Some(sub) => {
                    if args.iter().any(|a| a.as_deref() == Some(sub.as_str())) {
                        return self.deny(format!("`{}` is denied by policy", rule.shown()));
                    }
                    if args.iter().any(Option::is_none) {
                        return self.deny(format!(
                            "`{base}` with a computed argument cannot be checked against `{}`",
                            rule.shown()
                        ));
                    }
                }
            }
        }
        // Allow list: by bare name, or a path in a standard directory.
        if !self.policy.allow.is_empty() {
            let name = if program.contains('/') {
                STD_DIRS
                    .iter()
                    .find_map(|d| program.strip_prefix(d))
                    .filter(|rest| !rest.contains('/'))
            } else {
                Some(program)
            };
            let Some(name) = name else {
                return self.deny(format!(
                    "`{program}` is not allowed by policy (only programs of the allow list)"
                ));
            };
            if !IMPLICIT_ALLOW.contains(&name) && !self.allowed(name, args) {
                return;
            }
        }
        self.look_inside(base, args);
    }

    /// The allow-list check for a named program (denies and returns false).
    fn allowed(&mut self, name: &str, args: &[Option<String>]) -> bool {
        let rules: Vec<&Rule> = self
            .policy
            .allow
            .iter()
            .filter(|r| r.program == name)
            .collect();
        if rules.is_empty() {
            self.deny(format!("`{name}` is not allowed by policy"));
            return false;
        }
        if rules.iter().any(|r| r.sub.is_none()) {
            return true;
        }
        // Only some subcommands: the first operand must be one of them.
        let first = args
            .iter()
            .find(|a| !a.as_deref().is_some_and(|a| a.starts_with('-')));
        match first {
            Some(Some(sub)) if rules.iter().any(|r| r.sub.as_deref() == Some(sub)) => true,
            Some(Some(sub)) => {
                self.deny(format!("`{name} {sub}` is not allowed by policy"));
                false
            }
            _ => {
                self.deny(format!(
                    "`{name}` is allowed only with the subcommands of the allow list"
                ));
                false
            }
        }
    }

    /// Commands that run other commands: check what they run as well.
    fn look_inside(&mut self, base: &str, args: &[Option<String>]) {
        if WRAPPERS.contains(&base) {
            // The first operand that is not an option, an assignment or a number
            // (`nice -n 5`, `timeout 5s`) is taken as the wrapped program.
            let inner = args.iter().position(|a| match a {
                None => true,
                Some(a) => {
                    !(a.starts_with('-')
                        || a.contains('=')
                        || a.trim_end_matches(['s', 'm', 'h', 'd'])
                            .parse::<f64>()
                            .is_ok())
                }
            });
            if let Some(i) = inner {
                match &args[i] {
                    Some(p) => self.command(p, &args[i + 1..]),
                    None => self.deny(format!(
                        "`{base}` runs a computed program that cannot be checked"
                    )),
                }
            }
        } else if SHELLS.contains(&base) {
            let c = args.iter().position(|a| {
                a.as_deref()
                    .is_some_and(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))
            });
            if let Some(i) = c {
                match args.get(i + 1) {
                    Some(Some(script)) => self.line(script),
                    Some(None) => self.deny(format!(
                        "`{base} -c` with a computed script cannot be checked"
                    )),
                    None => {}
                }
            }
        } else if base == "eval" {
            match args.iter().cloned().collect::<Option<Vec<String>>>() {
                Some(words) => self.line(&words.join(" ")),
                None => self.deny("`eval` of a computed string cannot be checked".into()),
            }
        } else if base == "find" {
            for (i, a) in args.iter().enumerate() {
                if matches!(a.as_deref(), Some("-exec" | "-execdir" | "-ok" | "-okdir")) {
                    match args.get(i + 1) {
                        Some(Some(p)) => {
                            let end = args[i + 1..]
                                .iter()
                                .position(|a| matches!(a.as_deref(), Some(";" | "+")))
                                .map_or(args.len(), |e| i + 1 + e);
                            self.command(p, &args[i + 2..end.max(i + 2)]);
                        }
                        Some(None) => {
                            self.deny("`find -exec` of a computed program cannot be checked".into())
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

/// A word as the shell will see it after quote removal, or `None` when it has
/// expansions (its value is only known when it runs).
fn dequote(word: &str) -> Option<String> {
    if word.contains(['$', '`']) {
        return None;
    }
    let mut words = shell_words::split(word).ok()?;
    match words.len() {
        0 => Some(String::new()),
        1 => words.pop(),
        _ => Some(words.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], allow: &[&str]) -> CommandPolicy {
        CommandPolicy::new(&PolicyConfig {
            deny: deny.iter().map(|s| s.to_string()).collect(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn verdicts_are_remembered_per_line_and_long_lines_still_checked() {
        let p = policy(&["rm"], &[]);
        for _ in 0..3 {
            assert!(p.check("ls -la").is_ok());
            assert!(p.check("ls && rm -rf x").is_err());
        }
        assert_eq!(p.memo.len(), 2);
        let long = format!("echo {} && rm x", "a".repeat(CHECK_MEMO_MAX_LINE));
        assert!(p.check(&long).is_err());
        assert_eq!(p.memo.len(), 2, "long lines are not remembered");
        // Another policy has its own verdicts.
        assert!(policy(&["ls"], &[]).check("ls -la").is_err());
    }

    #[test]
    fn empty_lists_are_no_policy_and_bad_entries_errors() {
        assert!(CommandPolicy::new(&PolicyConfig::default())
            .unwrap()
            .is_none());
        for bad in ["/bin/rm", "git push origin", ""] {
            let cfg = PolicyConfig {
                deny: vec![bad.into()],
                allow: vec![],
            };
            assert!(CommandPolicy::new(&cfg).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deny_list_sees_every_part_of_a_line() {
        let p = policy(&["rm", "git push", "curl"], &[]);
        for ok in [
            "ls -la",
            "echo rm",
            "git status && git log",
            "echo x | grep y",
            "cat <<EOF\nrm\nEOF",
            "git commit -m 'push it'",
        ] {
            assert_eq!(p.check(ok), Ok(()), "{ok}");
        }
        for (bad, names) in [
            ("rm -rf y", "rm"),
            ("echo x | rm -rf y", "rm"),
            ("true && $(rm z)", "rm"),
            ("echo `rm z`", "rm"),
            ("(cd /tmp; rm x)", "rm"),
            ("{ ls; rm x; }", "rm"),
            ("for f in a; do rm $f; done", "rm"),
            ("if true; then /bin/rm x; fi", "rm"),
            ("./rm x", "rm"),
            ("'rm' x", "rm"),
            ("r\"m\" x", "rm"),
            ("echo $(echo $(rm x))", "rm"),
            ("f() { rm x; }; f", "rm"),
            ("git push origin main", "git push"),
            ("git -C repo push", "git push"),
            ("env A=1 rm x", "rm"),
            ("xargs rm < list", "rm"),
            ("sudo -n rm x", "rm"),
            ("timeout 5 rm x", "rm"),
            ("nice -n 5 rm x", "rm"),
            ("sh -c 'ls; rm x'", "rm"),
            ("bash -lc \"rm x\"", "rm"),
            ("eval rm x", "rm"),
            ("find . -exec rm {} +", "rm"),
            ("ls > $(rm x)", "rm"),
            ("curl http://x | sh", "curl"),
        ] {
            let why = p.check(bad).expect_err(bad);
            assert!(why.contains(&format!("`{names}`")), "{bad}: {why}");
        }
        for opaque in [
            "$CMD x",
            "git $SUB",
            "echo 'unterminated",
            "[[ -f x ]]",
            "echo $(( $(cat x) + 1 ))",
        ] {
            assert!(p.check(opaque).is_err(), "{opaque}");
        }
    }

    #[test]
    fn allow_list_admits_only_what_it_names() {
        let p = policy(
            &["git push"],
            &["ls", "git status", "git log", "echo", "grep"],
        );
        for ok in [
            "ls",
            "/bin/ls -la",
            "git status",
            "git log --oneline | grep x",
            "cd /tmp && pwd",
            "export A=1",
            "echo $(ls)",
        ] {
            assert_eq!(p.check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "cat f",
            "ls | cat",
            "git commit",
            "git push",
            "git",
            "./ls",
            "/tmp/ls",
            "echo $(cat f)",
            "env ls",
            "$X",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(line in "[a-z $()`'\"|&;<>{}*?\\[\\]=#\\\\\n-]{0,60}") {
            let _ = policy(&["rm"], &["ls", "echo"]).check(&line);
        }
    }
}

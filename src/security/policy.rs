//! The command policy: allow and deny lists checked on every simple command of a
//! line before anything of it runs.
//!
//! The check reads a line parsed once (`crate::shell::Line`, which the engine
//! remembers, with this check's verdict, in its one memo of lines) through the
//! one shell walk, which fails closed: pipelines, lists, subshells, groups, loops, conditionals, command
//! substitutions, parameter-expansion operands, here-document bodies and
//! function bodies are all seen, and whatever the walk cannot see through (a
//! parse error, a computed program word, `[[ ]]`, arithmetic over variables,
//! quotes mixed with expansions inside `${…}`) refuses the line. On top of that
//! the check reads wrappers with their option grammars (`env -u A rm`, `timeout
//! -s KILL 5 rm`, `xargs -I {} rm {}`: see `wrappers`), walks the strings that
//! `sh -c`, `eval`, `trap`, `flock -c` and `watch` run (each such string is a
//! line of its own, parsed when it is met), and refuses what it
//! cannot follow (`source`, a shell reading a script, `alias` definitions,
//! `sudo` and other privilege or namespace changers).
//!
//! What an allow list guarantees, and what it does not, is written in the
//! README ("Command policy"): it bounds the programs a line starts, their
//! output redirections and the variables a line may set; it cannot bound what
//! an allowed interpreter does with a script it is fed, or what an allowed
//! program reads from the working tree (a `.git/config` written earlier).

use super::wrappers;
use crate::config::PolicyConfig;
use crate::shell::{self, dequote, AsLine, Fact, Line, Visitor};

/// Nesting of `sh -c` / `eval` strings followed before the line is refused.
const MAX_NESTING: u32 = 4;

/// Always allowed by an allow list (still subject to the deny list and the
/// variable rules): the engine builtins and no-ops.
const IMPLICIT_ALLOW: &[&str] = &["cd", "pwd", "export", "unset", "true", "false", ":"];

/// Refused under any policy: they change privileges, root or namespaces, so
/// what they run is out of the policy's sight (and never a voice command).
const PRIVILEGED: &[&str] = &[
    "sudo", "doas", "su", "runuser", "chroot", "pkexec", "setpriv", "nsenter", "unshare", "capsh",
    "ltrace", "sg", "newgrp",
];

/// Shells whose `-c` argument is a command line.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "rbash", "yash",
];

/// Builtins whose operands name variables they assign, export or unset.
const SETS_VARIABLES: &[&str] = &[
    "export", "unset", "readonly", "local", "declare", "typeset", "read", "getopts",
];

/// Variables a policy refuses to let a line assign, export or unset unless
/// `allow_variables` names them: each changes which programs run, what they
/// load, or how the shell reads the line. A trailing `*` matches a prefix.
pub const DEFAULT_DENY_VARIABLES: &[&str] = &[
    "PATH",
    "LD_*",
    "GIT_*",
    "BASH_ENV",
    "ENV",
    "PYTHON*",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5*",
    "PERLLIB",
    "RUBY*",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "CDPATH",
    "HOME",
    "PAGER",
    "GIT_PAGER",
    "MANPAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "ZDOTDIR",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "MALLOC_*",
    "SSH_ASKPASS",
    "TMPDIR",
    "SHELL",
    "TERMINFO",
    "HOSTALIASES",
    "FPATH",
];

/// Directories whose programs an allow list may name by their bare name (a path
/// elsewhere never matches an allow-list entry).
pub const STD_DIRS: &[&str] = &[
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

/// Compiled allow and deny lists.
pub struct CommandPolicy {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    allow_redirections: bool,
    /// Names (or `PREFIX*`) an allow list refuses to let a line set.
    deny_variables: Vec<String>,
    /// Exceptions to `deny_variables`.
    allow_variables: Vec<String>,
}

impl std::fmt::Debug for CommandPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandPolicy")
            .field("deny", &self.deny)
            .field("allow", &self.allow)
            .field("allow_redirections", &self.allow_redirections)
            .field("allow_variables", &self.allow_variables)
            .finish()
    }
}

impl CommandPolicy {
    /// `None` when both lists are empty (no policy: nothing is checked).
    pub fn new(config: &PolicyConfig) -> Result<Option<CommandPolicy>, String> {
        let compile = |list: &[String]| -> Result<Vec<Rule>, String> {
            list.iter().map(|e| Rule::parse(e)).collect()
        };
        for v in config.allow_variables.iter().chain(&config.deny_variables) {
            let name = v.strip_suffix('*').unwrap_or(v);
            if name.is_empty() && !v.is_empty() {
                continue;
            }
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || v.is_empty() {
                return Err(format!(
                    "{v:?}: a variable is a name, optionally ending in `*`"
                ));
            }
        }
        let policy = CommandPolicy {
            deny: compile(&config.deny)?,
            allow: compile(&config.allow)?,
            allow_redirections: config.allow_redirections,
            deny_variables: DEFAULT_DENY_VARIABLES
                .iter()
                .map(|v| (*v).to_owned())
                .chain(config.deny_variables.iter().cloned())
                .collect(),
            allow_variables: config.allow_variables.clone(),
        };
        Ok((!policy.deny.is_empty() || !policy.allow.is_empty()).then_some(policy))
    }

    /// `Ok` when every command of the line may run; otherwise why not, naming
    /// the refused part. The verdict depends on the line alone: the engine
    /// remembers it with the parsed line.
    pub fn check<L: AsLine + ?Sized>(&self, line: &L) -> Result<(), String> {
        let mut check = Check {
            policy: self,
            denied: None,
            nesting: 0,
        };
        check.walk(&line.as_line());
        match check.denied {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// Whether `name` matches a variable rule (`NAME`, or `PREFIX*`).
fn matches_variable(rules: &[String], name: &str) -> bool {
    rules.iter().any(|r| match r.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => r == name,
    })
}

/// One check in progress: the first refusal wins.
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

    fn fact(&mut self, fact: Fact<'_>) {
        if self.denied.is_some() {
            return;
        }
        match fact {
            Fact::Writes(target) => self.write(&format!("redirection to `{target}`")),
            Fact::Assigns(name) => self.variable(name),
            _ => {}
        }
    }

    fn opaque(&mut self, why: &'static str) {
        self.deny(format!("{why}, so the policy cannot check it"));
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

    /// Under an allow list, the line is held to more than its program names.
    fn restricted(&self) -> bool {
        !self.policy.allow.is_empty()
    }

    /// A string run as a command line (`sh -c`, `eval`, `trap`…): a line of
    /// its own, parsed here.
    fn line(&mut self, text: &str) {
        if self.too_deep() {
            return;
        }
        self.walk(&Line::parse(text));
    }

    fn walk(&mut self, line: &Line) {
        if self.too_deep() {
            return;
        }
        self.nesting += 1;
        if !shell::walk(line, self) {
            self.deny("the line cannot be analysed".into());
        }
        self.nesting -= 1;
    }

    fn too_deep(&mut self) -> bool {
        let deep = self.nesting > MAX_NESTING;
        if deep {
            self.deny("`sh -c` / `eval` nesting is too deep to check".into());
        }
        deep
    }

    /// An output to a file, refused under an allow list unless redirections are.
    fn write(&mut self, what: &str) {
        if self.restricted() && !self.policy.allow_redirections {
            self.deny(format!(
                "output {what} is not allowed by policy (an allow list refuses writes to \
                 files unless [policy] allow_redirections is set)"
            ));
        }
    }

    /// A variable the line sets, exports or unsets. Checked under any policy: a
    /// `PATH` or `GIT_CONFIG_*` of the line's choosing defeats a deny list too.
    fn variable(&mut self, name: &str) {
        let p = self.policy;
        if matches_variable(&p.deny_variables, name) && !matches_variable(&p.allow_variables, name)
        {
            self.deny(format!(
                "setting `{name}` is not allowed by policy (it changes which programs run or \
                 what they load; [policy] allow_variables can allow it)"
            ));
        }
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
        if PRIVILEGED.contains(&base) {
            return self.deny(format!(
                "`{base}` changes privileges, root or namespaces; what it runs cannot be checked"
            ));
        }
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
        if self.restricted() {
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

    /// Commands that run, define or set other things: check what they run.
    fn look_inside(&mut self, base: &str, args: &[Option<String>]) {
        if let Some(g) = wrappers::find(base) {
            return self.wrapper(g, base, args);
        }
        if SHELLS.contains(&base) {
            return self.shell(base, args);
        }
        if SETS_VARIABLES.contains(&base) {
            return self.sets_variables(base, args);
        }
        match base {
            "eval" => match args.iter().cloned().collect::<Option<Vec<String>>>() {
                Some(words) => self.line(&words.join(" ")),
                None => self.deny("`eval` of a computed string cannot be checked".into()),
            },
            "trap" => self.trap(args),
            "source" | "." => self.deny(format!("`{base}` runs a file the policy cannot see")),
            "alias"
                if args
                    .iter()
                    .any(|a| a.as_deref().map_or(true, |a| a.contains('='))) =>
            {
                self.deny("`alias` definitions would rename checked commands".into());
            }
            "find" => self.find(args),
            _ => {}
        }
    }

    /// A wrapper: the program it runs, read with its option grammar.
    fn wrapper(&mut self, g: &wrappers::Grammar, base: &str, args: &[Option<String>]) {
        let call = match wrappers::read(g, args) {
            Ok(call) => call,
            Err(why) => return self.deny(why),
        };
        if call.runs_nothing {
            return;
        }
        match base {
            "env" => {
                if call.has("-S", "--split-string") {
                    return self.deny("`env -S` splits a string the policy does not check".into());
                }
                for (o, v) in &call.options {
                    if matches!(o.as_str(), "-u" | "--unset") {
                        self.variable(v.unwrap_or_default());
                    }
                }
                // `NAME=value` operands set variables for the program.
                let mut rest = call.command;
                while let Some((Some(first), tail)) = rest.split_first() {
                    let Some((name, _)) = first.split_once('=') else {
                        break;
                    };
                    self.variable(name);
                    rest = tail;
                }
                if let Some((None, _)) = rest.split_first() {
                    return self
                        .deny("`env` runs a computed program that cannot be checked".into());
                }
                return self.run(base, rest);
            }
            "flock" => {
                if let Some((Some(c), tail)) = call.command.split_first() {
                    if c == "-c" || c == "--command" {
                        return match tail.first() {
                            Some(Some(script)) => self.line(script),
                            _ => self
                                .deny("`flock -c` of a computed string cannot be checked".into()),
                        };
                    }
                }
            }
            "watch" if !call.has("-x", "--exec") => {
                // Without -x, watch runs its words joined, with `sh -c`.
                return match call
                    .command
                    .iter()
                    .cloned()
                    .collect::<Option<Vec<String>>>()
                {
                    Some(words) => self.line(&words.join(" ")),
                    None => self.deny("`watch` of a computed string cannot be checked".into()),
                };
            }
            "time" | "strace" => {
                if let Some(file) = call.value("-o", "--output") {
                    if file != "/dev/null" {
                        self.write(&format!("`{base} -o {file}`"));
                    }
                }
            }
            "xargs" => {
                if let Some(var) = call.value("", "--process-slot-var") {
                    self.variable(var);
                }
                // Arguments come from its input: the program is known, its
                // arguments are not (and with -I, any word holding the
                // replacement string is computed, the program word too).
                let replace = call.value("-I", "--replace").or_else(|| {
                    call.value("-i", "")
                        .map(|r| if r.is_empty() { "{}" } else { r })
                });
                let mut words: Vec<Option<String>> = call
                    .command
                    .iter()
                    .map(|w| match (w, replace) {
                        (Some(w), Some(r)) if w.contains(r) => None,
                        (w, _) => w.clone(),
                    })
                    .collect();
                if words.is_empty() {
                    words.push(Some("echo".into()));
                }
                words.push(None);
                return self.run(base, &words);
            }
            _ => {}
        }
        self.run(base, call.command)
    }

    /// The program a wrapper runs (none: nothing to check).
    fn run(&mut self, base: &str, words: &[Option<String>]) {
        match words.split_first() {
            None => {}
            Some((Some(p), rest)) => self.command(p, rest),
            Some((None, _)) => self.deny(format!(
                "`{base}` runs a computed program that cannot be checked"
            )),
        }
    }

    /// A shell: the `-c` string is walked; a script file or standard input is
    /// out of sight.
    fn shell(&mut self, base: &str, args: &[Option<String>]) {
        let mut c = false;
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            let Some(arg) = arg.as_deref() else {
                return self.deny(format!("`{base}` has a computed option"));
            };
            if arg == "--" || arg == "-" {
                i += 1;
                break;
            }
            if let Some(long) = arg.strip_prefix("--") {
                if !matches!(
                    long,
                    "norc" | "noprofile" | "posix" | "login" | "noediting" | "verbose"
                ) {
                    return self.deny(format!(
                        "`{base}` option `{arg}` is not understood by the policy"
                    ));
                }
                i += 1;
                continue;
            }
            let Some(flags) = arg.strip_prefix(['-', '+']).filter(|f| !f.is_empty()) else {
                break;
            };
            if !flags.bytes().all(|b| b.is_ascii_alphabetic()) {
                return self.deny(format!(
                    "`{base}` option `{arg}` is not understood by the policy"
                ));
            }
            c |= flags.contains('c');
            if flags.contains('o') || flags.contains('O') {
                i += 1; // `-o name` takes the option's name.
            }
            i += 1;
        }
        match (c, args.get(i)) {
            (true, Some(Some(script))) => self.line(script),
            (true, Some(None)) => self.deny(format!(
                "`{base} -c` with a computed script cannot be checked"
            )),
            (true, None) => {}
            (false, _) => self.deny(format!(
                "`{base}` without -c runs a script or its input, which the policy cannot see"
            )),
        }
    }

    /// `export`, `unset`, `read` and the like: the variables they set.
    fn sets_variables(&mut self, base: &str, args: &[Option<String>]) {
        for a in args {
            match a.as_deref() {
                None => {
                    return self.deny(format!(
                        "`{base}` of a computed variable name cannot be checked"
                    ))
                }
                Some(a) if a.starts_with('-') || a.starts_with('+') => {}
                Some(a) => {
                    let name = a.split_once('=').map_or(a, |(n, _)| n);
                    self.variable(name.trim_end_matches('+'));
                }
            }
        }
    }

    /// `trap ACTION SIGNAL...`: the action is a command line run later.
    fn trap(&mut self, args: &[Option<String>]) {
        let args = match args.first() {
            Some(Some(a)) if a == "--" => &args[1..],
            _ => args,
        };
        match args.first() {
            None => {}
            Some(Some(a)) if a.is_empty() || a == "-" || a == "-p" || a == "-l" => {}
            Some(Some(action)) if args.len() == 1 && action.bytes().all(|b| b.is_ascii_digit()) => {
            }
            Some(Some(action)) => self.line(action),
            Some(None) => self.deny("`trap` of a computed action cannot be checked".into()),
        }
    }

    /// `find -exec PROGRAM ... ;` runs a program; `-fprint FILE` writes one.
    fn find(&mut self, args: &[Option<String>]) {
        for (i, a) in args.iter().enumerate() {
            match a.as_deref() {
                Some("-exec" | "-execdir" | "-ok" | "-okdir") => match args.get(i + 1) {
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
                },
                Some(w @ ("-fprint" | "-fprint0" | "-fprintf" | "-fls")) => {
                    self.write(&format!("`find {w}`"))
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], allow: &[&str]) -> CommandPolicy {
        CommandPolicy::new(&PolicyConfig {
            deny: deny.iter().map(|s| s.to_string()).collect(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..PolicyConfig::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_parsed_line_is_checked_as_its_text() {
        let p = policy(&["rm"], &[]);
        for text in [
            "ls -la",
            "ls && rm -rf x",
            "sh -c 'ls; rm x'",
            "f() { rm x; }",
        ] {
            let line = Line::parse(text);
            assert_eq!(p.check(&line), p.check(text), "{text}");
            assert_eq!(p.check(&line), p.check(&line), "{text}");
        }
        // Another policy, another verdict on the same parsed line.
        let line = Line::parse("ls -la");
        assert!(p.check(&line).is_ok());
        assert!(policy(&["ls"], &[]).check(&line).is_err());
    }

    #[test]
    fn empty_lists_are_no_policy_and_bad_entries_errors() {
        assert!(CommandPolicy::new(&PolicyConfig::default())
            .unwrap()
            .is_none());
        for bad in ["/bin/rm", "git push origin", ""] {
            let cfg = PolicyConfig {
                deny: vec![bad.into()],
                ..PolicyConfig::default()
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

    /// Issue 19, "Found" 1, 4 and 5: the exact lines that got past a policy.
    #[test]
    fn issue_19_bypasses_are_refused() {
        let readers = policy(&[], &["ls", "cat"]);
        for line in [
            "ls ${X:-$(id)}",
            "ls ${X:=$(id)}",
            "ls ${X#$(id)}",
            "ls \"${X:-$(id)}\"",
            ": ${X:=$(id)}",
            "cat <<EOF\n${X:-$(id)}\nEOF",
            "cat <<EOF\n'$(id)'\nEOF",
            "cat /dev/null $(( `sh -c \"id >&2; echo 0\"` ))",
            "ls \"${X:-'$(id)'}\"",
            "ls `ls \"\\$(id)\"`",
            "ls \"$(id \"$'x'\")\"",
            "ls > out",
            "cat f >> .profile",
            "PATH=.:$PATH ls",
            "export PATH=.:$PATH",
            "unset PATH",
            "LD_PRELOAD=x.so ls",
            "for PATH in .; do ls; done",
            "ls ${PATH:=.}",
        ] {
            assert!(readers.check(line).is_err(), "{line:?} was admitted");
        }
        let git = policy(&[], &["ls", "git status"]);
        for line in [
            "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0='id >&2; false' git status --short",
            "ls -d '[core]' 'fsmonitor = touch X' >> .git/config",
            "export GIT_DIR=/tmp/x",
        ] {
            assert!(git.check(line).is_err(), "{line:?} was admitted");
        }
        let no_rm = policy(&["rm"], &[]);
        for line in [
            "ls ${X:-$(rm x)}",
            "sh -c -- 'rm x'",
            "bash -c -- 'rm x'",
            "sh -ec 'rm x'",
            "env -u FOO rm x",
            "env -S 'rm x'",
            "env -C . rm x",
            "xargs -I {} rm {}",
            "echo rm x | xargs env",
            "timeout -s KILL 5 rm x",
            "stdbuf -o L rm x",
            "flock F rm x",
            "flock F -c 'rm x'",
            "su -c 'rm x'",
            "taskset 0x1 rm x",
            "strace -o /dev/null rm x",
            "alias r=rm\nr x",
            "trap 'rm x' EXIT",
            "sudo -u root rm x",
            "chroot / rm x",
            "runuser -u root -- rm x",
            "busybox rm x",
            "watch -n 1 rm x",
            "echo rm x | sh",
            "sh script.sh",
            ". ./script.sh",
            "command -p rm x",
            "exec -a ls rm x",
            "echo `\\\\rm x`",
            "r\\m x",
            "\\rm x",
            "\\r\\m x",
        ] {
            assert!(no_rm.check(line).is_err(), "{line:?} was admitted");
        }
        // What stays admitted: the policy is not a wall against ordinary lines.
        for line in [
            "ls -la",
            "ls ${X:-.}",
            "echo ${HOME%/*}",
            "timeout 5 ls",
            "env LANG=C ls",
            "xargs -n 1 echo < list",
            "command -v rm",
            "trap - EXIT",
            "export EDITOR_THEME=dark",
            "sh -c 'ls | wc -l'",
        ] {
            assert_eq!(no_rm.check(line), Ok(()), "{line:?}");
        }
        assert_eq!(readers.check("ls 2>/dev/null"), Ok(()));
        assert_eq!(readers.check("cat f 2>&1"), Ok(()));
        let writers = CommandPolicy::new(&PolicyConfig {
            allow: vec!["ls".into()],
            allow_redirections: true,
            allow_variables: vec!["GIT_*".into()],
            ..PolicyConfig::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(writers.check("ls > out"), Ok(()));
        assert_eq!(writers.check("GIT_PAGER=cat ls"), Ok(()));
        assert!(writers.check("PATH=. ls").is_err());
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(line in "[a-z $()`'\"|&;<>{}*?\\[\\]=#\\\\\n-]{0,60}") {
            let _ = policy(&["rm"], &["ls", "echo"]).check(&line);
        }
    }
}

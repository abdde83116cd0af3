//! What may be cached: the class table, and the classifier that maps the facts
//! of the one shell walk of a parsed line (`crate::shell::Line`) to a class.
//!
//! The classifier is pessimistic. Anything the walk does not fully understand
//! (a parse error, an expansion it cannot see into, a function definition,
//! `[[ ]]`, a program word built from expansions, a background job) is
//! [`Class::Unknown`], and a line takes the most restrictive class of its parts,
//! so a mistake can only cost a cache hit, never serve a wrong answer. Reading a
//! device, a kernel file (`/dev`, `/proc`, `/sys`) or a variable the shell sets
//! anew on every run (`$RANDOM`, `$$`) makes a line volatile: never cached.

use super::error::CacheError;
use super::inputs::Inputs;
use crate::shell::{self, AsLine, Fact};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The table that ships with voxterm, used when no `[cache] policy_file` is set.
pub const DEFAULT_POLICY: &str = include_str!("cache-policy.toml");

/// Variables the shell (or bash) sets anew on every run: a line that expands
/// one prints something else each time.
const VOLATILE_VARS: &[&str] = &[
    "$",
    "!",
    "RANDOM",
    "SRANDOM",
    "SECONDS",
    "BASHPID",
    "EPOCHSECONDS",
    "EPOCHREALTIME",
    "PPID",
    "LINENO",
    "HISTCMD",
    "BASH_COMMAND",
];

/// The cacheability class of a command, ordered from least to most restrictive so
/// that a compound line is the `max` of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Output depends on the line, its environment and the cwd only (still
    /// keyed per tenant: no tenant learns what another ran).
    Pure,
    /// Output depends on the tenant, its cwd and this host.
    Session,
    /// Output depends on the tenant's files: served only while a stamp of its
    /// inputs is unchanged (or, opt-in, for a blind TTL under the generation).
    FsRead,
    /// Output changes between runs: never cached.
    Volatile,
    /// Not in the table: never cached, and treated as possibly writing files.
    Unknown,
    /// Writes: never cached, and invalidates the tenant's fs-read entries.
    Mutating,
}

impl Class {
    /// Stable lowercase name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Pure => "pure",
            Class::Session => "session",
            Class::FsRead => "fs-read",
            Class::Volatile => "volatile",
            Class::Unknown => "unknown",
            Class::Mutating => "mutating",
        }
    }
}

/// The classifier's answer for one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The most restrictive class of the line's parts.
    pub class: Class,
    /// The shortest TTL of the line's parts (zero: do not cache).
    pub ttl: Duration,
    /// For an fs-read line whose input files are all named in its words: those
    /// inputs, so that an answer can be validated against them (see
    /// [`super::inputs`]) and live for `[ttl] fs-read-validated` instead of `ttl`.
    pub inputs: Option<Arc<Inputs>>,
    /// Why the line has its class, for a person (debug logs, `voxterm exec
    /// --stats`): the part that decided it.
    pub reason: Arc<str>,
}

impl Verdict {
    /// True when a clean result of this line may be stored and served: pure and
    /// session lines for their TTL, fs-read lines only when their inputs can be
    /// validated or an operator opted into a blind TTL.
    pub fn cacheable(&self) -> bool {
        match self.class {
            Class::Pure | Class::Session => !self.ttl.is_zero(),
            Class::FsRead => self.inputs.is_some() || !self.ttl.is_zero(),
            Class::Volatile | Class::Unknown | Class::Mutating => false,
        }
    }
}

/// Per-class TTLs of the policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TtlTable {
    #[serde(with = "humantime_serde")]
    pure: Duration,
    #[serde(with = "humantime_serde")]
    session: Duration,
    /// Opt-in: how long an fs-read answer that cannot be validated is served
    /// anyway (absent or 0: such lines run every time). It serves answers up to
    /// this old after a file changed outside voxterm.
    #[serde(rename = "fs-read-blind", with = "humantime_serde", default)]
    fs_read_blind: Duration,
    /// Entries of fs-read lines validated against their input files (absent: 0,
    /// no validation).
    #[serde(rename = "fs-read-validated", with = "humantime_serde", default)]
    fs_read_validated: Duration,
    /// The key of earlier versions (a blind TTL that was on by default):
    /// refused with a message that says what replaced it.
    #[serde(rename = "fs-read", default)]
    legacy_fs_read: Option<toml::Value>,
    /// Volatile lines are never cached; a non-zero value is refused.
    #[serde(with = "humantime_serde", default)]
    volatile: Duration,
}

/// A finer rule for one program or "program subcommand".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    program: String,
    #[serde(default)]
    class: Option<Class>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
    #[serde(default)]
    mutating_args: Vec<String>,
    #[serde(default)]
    max_operands: Option<usize>,
}

/// The policy file as written (see `cache-policy.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    ttl: TtlTable,
    #[serde(default)]
    classes: BTreeMap<Class, Vec<String>>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

/// What the table says about one program or subcommand.
#[derive(Debug, Clone, Default)]
struct Rule {
    class: Option<Class>,
    ttl: Option<Duration>,
    mutating_args: Vec<String>,
    max_operands: Option<usize>,
}

/// The compiled class table.
#[derive(Debug, Clone)]
pub struct Policy {
    ttl: TtlTable,
    /// Keyed by program, or by "program subcommand".
    rules: HashMap<String, Rule>,
    /// Programs that have at least one subcommand entry.
    has_sub: HashMap<String, ()>,
}

impl Policy {
    /// The built-in table.
    pub fn builtin() -> Policy {
        // The embedded file is tested (`default_policy_parses`); should it ever be
        // broken, an empty table (nothing cached) is the safe fallback.
        Policy::parse(DEFAULT_POLICY).unwrap_or_else(|_| Policy::empty())
    }

    /// A table that caches nothing.
    pub fn empty() -> Policy {
        Policy {
            ttl: TtlTable {
                pure: Duration::ZERO,
                session: Duration::ZERO,
                fs_read_blind: Duration::ZERO,
                fs_read_validated: Duration::ZERO,
                legacy_fs_read: None,
                volatile: Duration::ZERO,
            },
            rules: HashMap::new(),
            has_sub: HashMap::new(),
        }
    }

    /// Reads a policy file (the whole table; it replaces the built-in one).
    pub fn load(path: &Path) -> Result<Policy, CacheError> {
        let text = std::fs::read_to_string(path).map_err(|source| CacheError::PolicyRead {
            path: path.to_owned(),
            source,
        })?;
        Policy::parse(&text).map_err(|e| match e {
            CacheError::Policy(m) => CacheError::Policy(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses policy TOML.
    pub fn parse(text: &str) -> Result<Policy, CacheError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| CacheError::Policy(e.to_string()))?;
        if file.ttl.legacy_fs_read.is_some() {
            return Err(CacheError::Policy(
                "[ttl] fs-read is gone: fs-read answers are served only while their inputs \
                 are validated (fs-read-validated); a blind TTL for the others is the opt-in \
                 fs-read-blind (it may serve answers that are out of date)"
                    .into(),
            ));
        }
        if !file.ttl.volatile.is_zero() {
            return Err(CacheError::Policy(
                "[ttl] volatile must be 0: volatile lines print something new on every run \
                 and are never cached"
                    .into(),
            ));
        }
        let mut rules: HashMap<String, Rule> = HashMap::new();
        let mut has_sub = HashMap::new();
        let norm = |p: &str| p.split_whitespace().collect::<Vec<_>>().join(" ");
        for (class, programs) in &file.classes {
            for p in programs {
                let p = norm(p);
                if p.is_empty() {
                    return Err(CacheError::Policy("empty program name".into()));
                }
                rules.entry(p).or_default().class = Some(*class);
            }
        }
        for r in file.rule {
            let p = norm(&r.program);
            if p.is_empty() {
                return Err(CacheError::Policy("empty program name in [[rule]]".into()));
            }
            let e = rules.entry(p).or_default();
            if r.class.is_some() {
                e.class = r.class;
            }
            e.ttl = r.ttl.or(e.ttl);
            e.mutating_args.extend(r.mutating_args);
            e.max_operands = r.max_operands.or(e.max_operands);
        }
        for name in rules.keys() {
            if let Some((prog, _)) = name.split_once(' ') {
                has_sub.insert(prog.to_owned(), ());
            }
        }
        Ok(Policy {
            ttl: file.ttl,
            rules,
            has_sub,
        })
    }

    fn class_ttl(&self, class: Class) -> Duration {
        match class {
            Class::Pure => self.ttl.pure,
            Class::Session => self.ttl.session,
            Class::FsRead => self.ttl.fs_read_blind,
            Class::Volatile | Class::Unknown | Class::Mutating => Duration::ZERO,
        }
    }

    /// Classifies a command line (parsed already, or text parsed now). Never
    /// panics, whatever the input.
    pub fn classify<L: AsLine + ?Sized>(&self, line: &L) -> Verdict {
        let mut c = Classify {
            policy: self,
            class: Class::Pure,
            ttl: None,
            reason: None,
        };
        if !shell::walk(line, &mut c) {
            c.join(Class::Unknown, || {
                "the shell parser failed on the line".into()
            });
        }
        let ttl = match c.class {
            Class::Pure | Class::Session | Class::FsRead => c.ttl.unwrap_or(self.ttl.pure),
            _ => Duration::ZERO,
        };
        let reason = c
            .reason
            .unwrap_or_else(|| "nothing runs (assignments only)".into());
        Verdict {
            class: c.class,
            ttl,
            inputs: None,
            reason: reason.into(),
        }
    }

    /// How long an fs-read answer validated against its input files may live
    /// (zero: validation is off).
    pub fn validated_ttl(&self) -> Duration {
        self.ttl.fs_read_validated
    }

    /// The table entry of one simple command (program plus arguments).
    fn lookup(&self, program: &str, args: &[&str]) -> (Class, Option<Duration>) {
        let sub_key = args
            .first()
            .filter(|_| self.has_sub.contains_key(program))
            .map(|a| format!("{program} {a}"));
        let (rule, rest) = match sub_key.as_deref().and_then(|k| self.rules.get(k)) {
            Some(r) => (Some(r), &args[1..]),
            None => (self.rules.get(program), args),
        };
        let Some(rule) = rule else {
            return (Class::Unknown, None);
        };
        // Rules about the program itself (e.g. `find -delete`) apply to subcommands too.
        let base = self.rules.get(program);
        for r in [Some(rule), base].into_iter().flatten() {
            if rest.iter().any(|a| {
                r.mutating_args
                    .iter()
                    .any(|m| a == m || (a.starts_with(m.as_str()) && m.starts_with('-')))
            }) {
                return (Class::Mutating, None);
            }
        }
        if let Some(max) = rule.max_operands {
            if rest.iter().filter(|a| !a.starts_with('-')).count() > max {
                return (Class::Mutating, None);
            }
        }
        match rule.class {
            Some(c) => (c, rule.ttl),
            None => (Class::Unknown, None),
        }
    }
}

/// One classification in progress: the running max class, min TTL, and the
/// reason of the part that decided the class.
struct Classify<'a> {
    policy: &'a Policy,
    class: Class,
    /// Shortest TTL of the parts seen so far (None: no part yet).
    ttl: Option<Duration>,
    reason: Option<String>,
}

impl Classify<'_> {
    /// A part of the line has this class and the class's TTL.
    fn join(&mut self, class: Class, reason: impl FnOnce() -> String) {
        self.join_ttl(class, self.policy.class_ttl(class), reason);
    }

    fn join_ttl(&mut self, class: Class, ttl: Duration, reason: impl FnOnce() -> String) {
        if self.reason.is_none() || class > self.class {
            self.reason = Some(reason());
        }
        self.class = self.class.max(class);
        self.ttl = Some(self.ttl.map_or(ttl, |old| old.min(ttl)));
    }
}

impl shell::Visitor for Classify<'_> {
    fn simple(&mut self, program: &str, args: &[&str]) {
        let Some(name) = shell::program_name(program) else {
            return self.join(Class::Unknown, || {
                format!("the program word `{program}` is computed, quoted or a path")
            });
        };
        let (class, ttl) = self.policy.lookup(name, args);
        let ttl = ttl.unwrap_or_else(|| self.policy.class_ttl(class));
        if class < Class::Volatile {
            if let Some(a) = args.iter().find(|a| shell::touches_kernel_files(a)) {
                return self.join(Class::Volatile, || {
                    format!("`{name}` reads `{a}`: devices and kernel files change on every read")
                });
            }
        }
        self.join_ttl(class, ttl, || match class {
            Class::Unknown => format!("`{name}` is not in the class table"),
            c => format!("`{name}` is {} in the class table", c.as_str()),
        });
    }

    fn fact(&mut self, fact: Fact<'_>) {
        match fact {
            Fact::Glob(g) | Fact::Reads(g) if shell::touches_kernel_files(g) => self
                .join(Class::Volatile, || {
                    format!("reads `{g}`: devices and kernel files change on every read")
                }),
            Fact::Glob(g) => self.join(Class::FsRead, || {
                format!("the glob `{g}` depends on the directory")
            }),
            Fact::Reads(f) => self.join(Class::FsRead, || format!("reads `{f}`")),
            Fact::Writes(f) => self.join(Class::Mutating, || format!("writes `{f}`")),
            Fact::Background => self.join(Class::Unknown, || {
                "runs a job in the background (`&`)".into()
            }),
            Fact::Timed => self.join(Class::Volatile, || "`time` prints timings".into()),
            Fact::Expands(v) if VOLATILE_VARS.contains(&v) => self.join(Class::Volatile, || {
                format!("expands `${v}`, which changes on every run")
            }),
            Fact::Function => self.join(Class::Unknown, || "defines a function".into()),
            // The child's environment and cwd (hence `$PWD`) are in every key.
            Fact::Expands(_) | Fact::Assigns(_) => {}
        }
    }

    fn opaque(&mut self, why: &'static str) {
        self.join(Class::Unknown, || why.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let p = Policy::parse(DEFAULT_POLICY).expect("built-in policy");
        assert!(p.rules.contains_key("git status"));
    }

    #[test]
    fn classify_table() {
        use Class::*;
        let p = Policy::builtin();
        let cases: &[(&str, Class)] = &[
            ("echo hi", Pure),
            ("printf '%s\\n' a b", Pure),
            ("echo $HOME", Pure),
            ("A=1 echo $A", Pure),
            ("A=1", Pure),
            ("/bin/echo hi", Pure),
            ("pwd", Session),
            ("whoami", Session),
            ("ls", FsRead),
            ("ls -la /tmp", FsRead),
            ("echo *", FsRead),
            ("echo '*'", Pure),
            ("cat < file", FsRead),
            ("ls | wc -l", FsRead),
            ("echo a | grep a", FsRead),
            ("echo hi && ls", FsRead),
            ("ls || echo none", FsRead),
            ("echo a; echo b", Pure),
            ("(cd /tmp && ls)", FsRead),
            ("{ echo a; ls; }", FsRead),
            ("echo $(ls)", FsRead),
            ("echo `date`", Volatile),
            ("echo ${X:-$(ls)}", FsRead),
            ("ls ${X:-$(rm x)}", Mutating),
            ("ls ${X#$(id)}", FsRead),
            ("echo \"$(date)\"", Volatile),
            ("echo $(echo $(rm x))", Mutating),
            ("git status", FsRead),
            ("git log --oneline", FsRead),
            ("git commit -m x", Mutating),
            ("git checkout main", Mutating),
            ("git", Unknown),
            ("git frobnicate", Unknown),
            ("date", Volatile),
            ("uptime", Volatile),
            ("echo $$", Volatile),
            ("echo $RANDOM", Volatile),
            ("time ls", Volatile),
            ("ls && date", Volatile),
            ("frobnicate", Unknown),
            ("./script.sh", Unknown),
            ("$CMD", Unknown),
            ("\"ls\"", Unknown),
            ("ls &", Unknown),
            ("f() { ls; }", Unknown),
            ("echo hi > out", Mutating),
            ("echo hi >> out", Mutating),
            ("ls 2>/dev/null", FsRead),
            ("ls 2>&1", FsRead),
            ("ls >/dev/null 2>&1", FsRead),
            ("ls &> out", Mutating),
            ("ls | tee out", Mutating),
            ("rm -rf x", Mutating),
            ("touch new", Mutating),
            ("ls; touch new", Mutating),
            ("(touch a)", Mutating),
            ("echo $(touch a)", Mutating),
            ("find . -name x", FsRead),
            ("find . -delete", Mutating),
            ("find . -exec rm {} +", Mutating),
            ("sort -o f f", Mutating),
            ("uniq a", FsRead),
            ("uniq a b", Mutating),
            ("git branch", FsRead),
            ("git branch new", Mutating),
            ("git branch -D old", Mutating),
            ("git tag", FsRead),
            ("git tag -n", FsRead),
            ("git tag v1", Mutating),
            ("git tag -d v1", Mutating),
            ("git tag -a -m x v1", Mutating),
            ("git config --get user.name", FsRead),
            ("git config -l", FsRead),
            ("git config user.name x", Mutating),
            ("git config --unset user.name", Mutating),
            ("git config edit", Mutating),
            ("git config set user.name x", Mutating),
            ("for f in a b; do echo $f; done", Pure),
            ("for f in *; do echo $f; done", FsRead),
            ("if true; then echo y; fi", Pure),
            ("if test -f x; then cat x; fi", FsRead),
            ("while true; do rm x; done", Mutating),
            ("case a in a) echo a;; esac", Pure),
            ("echo 'unterminated", Unknown),
            ("((1+2))", Unknown),
            ("[[ -f x ]]", Unknown),
            // Not POSIX sh (the engine runs /bin/sh): unknown.
            ("diff <(ls a) <(ls b)", Unknown),
        ];
        for (line, want) in cases {
            assert_eq!(p.classify(line).class, *want, "classify({line:?})");
        }
    }

    #[test]
    fn ttl_is_the_shortest_part() {
        let p = Policy::builtin();
        assert_eq!(p.classify("echo hi").ttl, Duration::from_secs(3600));
        assert_eq!(p.classify("echo hi; whoami").ttl, Duration::from_secs(600));
        assert!(!p.classify("date").cacheable());
        assert!(!p.classify("touch x").cacheable());
        // fs-read: no blind TTL by default; cacheable only once the cache finds
        // inputs to validate (see `Cache::classify`).
        assert_eq!(p.classify("ls").ttl, Duration::ZERO);
        assert!(!p.classify("git status").cacheable());
        let blind = Policy::parse(
            "[ttl]\npure=\"1h\"\nsession=\"1m\"\nfs-read-blind=\"5s\"\n[classes]\nfs-read=[\"ls\"]\n",
        )
        .expect("opt-in blind TTL");
        assert_eq!(blind.classify("ls -R").ttl, Duration::from_secs(5));
        assert!(blind.classify("ls -R").cacheable());
    }

    #[test]
    fn old_and_unsafe_ttl_keys_are_refused_with_a_reason() {
        let old = Policy::parse("[ttl]\npure=\"1h\"\nsession=\"1m\"\nfs-read=\"5s\"\n");
        assert!(matches!(old, Err(CacheError::Policy(m)) if m.contains("fs-read-blind")));
        let vol = Policy::parse("[ttl]\npure=\"1h\"\nsession=\"1m\"\nvolatile=\"1s\"\n");
        assert!(matches!(vol, Err(CacheError::Policy(m)) if m.contains("never cached")));
    }

    /// Issue 18's and 19's lines: devices, kernel files, shell-set variables
    /// and expansions the walk used to skip. Each must be volatile or unknown
    /// (never cached), with a reason that names the part that decided it.
    #[test]
    fn lines_that_print_something_new_are_never_cached() {
        use Class::*;
        let p = Policy::builtin();
        for (line, want, says) in [
            ("head -c 12 /dev/urandom | base64", Volatile, "/dev/urandom"),
            ("cat /proc/uptime", Volatile, "/proc/uptime"),
            ("cat < /proc/loadavg", Volatile, "/proc/loadavg"),
            ("ls /sys/class", Volatile, "/sys/class"),
            ("cat ../../proc/uptime", Volatile, "proc"),
            ("echo /dev/*", Volatile, "/dev/*"),
            ("wc -c --files0-from=/dev/stdin", Volatile, "/dev/stdin"),
            ("echo $RANDOM", Volatile, "RANDOM"),
            ("echo ${RANDOM}", Volatile, "RANDOM"),
            ("echo \"$$\"", Volatile, "$$"),
            ("echo $PPID", Volatile, "PPID"),
            ("echo ${SECONDS:-0}", Volatile, "SECONDS"),
            ("echo ${X:-$(date)}", Volatile, "date"),
            ("echo ${X:-$(cat secret.txt)}", FsRead, "cat"),
            ("echo ${X:=$(touch y)}", Mutating, "touch"),
            ("printf '%s\\n' \"${MOTD:-$(cat motd.txt)}\"", FsRead, "cat"),
            ("echo \"${X:-'$(cat f)'}\"", Unknown, "quotes"),
            ("cat <<EOF\n'$(id)'\nEOF", Unknown, "here-document"),
            ("cat <<EOF\n${X:-$(rm x)}\nEOF", Mutating, "rm"),
            ("echo $((1 + $(cat n)))", Unknown, "arithmetic"),
            ("echo $((x))", Unknown, "arithmetic"),
            ("echo ${!X}", Unknown, "not recognised"),
            ("echo ${X[0]}", Unknown, "not recognised"),
            ("echo ${X/a/b}", Unknown, "not recognised"),
            ("echo `echo \\`id\\``", Session, "id"),
            ("echo `\\\\rm x`", Unknown, "backquotes"),
            ("cat <<< x", Unknown, "parse"),
        ] {
            let v = p.classify(line);
            assert_eq!(v.class, want, "classify({line:?}): {}", v.reason);
            assert!(want < Volatile || !v.cacheable(), "{line:?}");
            assert!(v.reason.contains(says), "{line:?}: {}", v.reason);
        }
        // What stays pure: the key holds the cwd ($PWD), env and tenant.
        for line in [
            "echo $PWD",
            "basename \"$PWD\"",
            "echo $((1 + 2))",
            "echo ${#HOME}",
            "echo ${HOME%/*}",
        ] {
            assert_eq!(
                p.classify(line).class,
                Pure,
                "{line:?}: {}",
                p.classify(line).reason
            );
        }
    }

    #[test]
    fn policy_errors_are_reported() {
        assert!(Policy::parse("[ttl]\npure = \"1s\"\n").is_err());
        assert!(Policy::parse(
            "[ttl]\npure=\"1s\"\nsession=\"1s\"\nfs-read=\"1s\"\n[classes]\nnope=[\"x\"]\n"
        )
        .is_err());
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(line in "\\PC{0,80}") {
            let _ = Policy::builtin().classify(&line);
        }

        #[test]
        fn classify_never_panics_on_shellish(line in "[a-z $()`'\"|&;<>{}*?\\[\\]=#\\\\\n-]{0,60}") {
            let _ = Policy::builtin().classify(&line);
        }
    }
}

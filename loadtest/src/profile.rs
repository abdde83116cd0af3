//! User profiles: how often a kind of user speaks a command and which command
//! follows which. Each profile is a Markov chain over realistic commands (`ls` →
//! `cat README.md`, `git status` → `git diff`) rather than uniform picks, so that
//! the server's next-command prediction has something real to learn.
//!
//! Profiles are TOML with built-in defaults (`loadtest --profiles FILE`), and every
//! command runs in a shared fixture project, except the mutating ones, which only
//! touch the user's own scratch directory `users/u<N>`.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// DESIGN §4's command classes, as the load tester labels its own commands (for the
/// per-class histograms and the cache-hit denominator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandClass {
    /// echo, printf, seq…
    Pure,
    /// pwd, whoami, id…
    Session,
    /// ls, cat, grep, find, git status…
    FsRead,
    /// date, uptime…
    Volatile,
    /// touch, mkdir…
    Mutating,
}

impl CommandClass {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandClass::Pure => "pure",
            CommandClass::Session => "session",
            CommandClass::FsRead => "fs-read",
            CommandClass::Volatile => "volatile",
            CommandClass::Mutating => "mutating",
        }
    }

    /// Whether DESIGN §4 lets the server answer this class from cache.
    pub fn cacheable(self) -> bool {
        matches!(
            self,
            CommandClass::Pure | CommandClass::Session | CommandClass::FsRead
        )
    }
}

/// One state of a profile's chain: a command and the weights of what follows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// The command line; `{scratch}` becomes the user's scratch directory.
    pub command: String,
    /// Its class.
    pub class: CommandClass,
    /// Next state name → weight.
    #[serde(default)]
    pub next: BTreeMap<String, u32>,
}

/// A profile as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Share of users with this profile (relative weight).
    pub weight: u32,
    /// Mean commands per minute (exponential think time between them).
    pub commands_per_minute: f64,
    /// State the chain starts in.
    pub start: String,
    /// The chain.
    pub states: BTreeMap<String, StateSpec>,
}

/// The TOML file: `[profiles.<name>]` tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesFile {
    /// Profiles by name.
    pub profiles: BTreeMap<String, ProfileSpec>,
}

/// A compiled profile: states by index, cumulative transition weights.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name, e.g. `light`.
    pub name: String,
    /// Relative share of users.
    pub weight: u32,
    /// Mean commands per minute.
    pub commands_per_minute: f64,
    /// Start state index.
    pub start: usize,
    /// States.
    pub states: Vec<State>,
}

/// A compiled state.
#[derive(Debug, Clone)]
pub struct State {
    /// Command template.
    pub command: String,
    /// Class.
    pub class: CommandClass,
    /// (cumulative weight, next state) pairs.
    pub next: Vec<(u32, usize)>,
}

impl Profile {
    /// The state after `state`, drawn from its weights.
    pub fn step(&self, state: usize, rng: &mut fastrand::Rng) -> usize {
        let s = &self.states[state];
        let total = s.next.last().map_or(0, |&(c, _)| c);
        if total == 0 {
            return self.start;
        }
        let pick = rng.u32(0..total);
        s.next
            .iter()
            .find(|&&(c, _)| pick < c)
            .map_or(self.start, |&(_, n)| n)
    }

    /// The command of `state` for the user whose scratch dir is `scratch`.
    pub fn command(&self, state: usize, scratch: &str) -> String {
        self.states[state].command.replace("{scratch}", scratch)
    }
}

/// The profile set of a run.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Compiled profiles, in name order.
    pub list: Vec<Profile>,
}

impl Profiles {
    /// Compiles a TOML profiles file, checking that every state name resolves.
    pub fn from_toml(text: &str) -> anyhow::Result<Profiles> {
        let file: ProfilesFile = toml::from_str(text).context("invalid profiles TOML")?;
        Profiles::compile(file)
    }

    /// The built-in profiles (Light 50%, Medium 30%, Heavy 15%, Power 5%).
    pub fn builtin() -> Profiles {
        // The built-in text is checked by a unit test, so this cannot fail at run time.
        Profiles::from_toml(DEFAULT_PROFILES).unwrap_or(Profiles { list: Vec::new() })
    }

    fn compile(file: ProfilesFile) -> anyhow::Result<Profiles> {
        let mut list = Vec::new();
        for (name, spec) in file.profiles {
            let names: Vec<&String> = spec.states.keys().collect();
            let index = |n: &str| names.iter().position(|k| k.as_str() == n);
            let Some(start) = index(&spec.start) else {
                bail!(
                    "profile {name}: start state `{}` is not defined",
                    spec.start
                );
            };
            if spec.commands_per_minute.is_nan() || spec.commands_per_minute <= 0.0 {
                bail!("profile {name}: commands_per_minute must be > 0");
            }
            let mut states = Vec::new();
            for (sname, s) in &spec.states {
                let mut acc = 0;
                let mut next = Vec::new();
                for (n, w) in &s.next {
                    let Some(i) = index(n) else {
                        bail!("profile {name}: state {sname} goes to undefined state `{n}`");
                    };
                    acc += w;
                    next.push((acc, i));
                }
                states.push(State {
                    command: s.command.clone(),
                    class: s.class,
                    next,
                });
            }
            list.push(Profile {
                name,
                weight: spec.weight,
                commands_per_minute: spec.commands_per_minute,
                start,
                states,
            });
        }
        if list.iter().map(|p| p.weight).sum::<u32>() == 0 {
            bail!("profiles: the weights add up to 0");
        }
        Ok(Profiles { list })
    }

    /// The profile of user `n`: deterministic, so that runs are comparable and the
    /// shares are exact over any block of users.
    pub fn for_user(&self, n: usize) -> usize {
        let total: u32 = self.list.iter().map(|p| p.weight).sum();
        // Spread users over a cycle of `total` slots in a stable, interleaved order.
        let slot = ((n as u64 * 7919) % total as u64) as u32;
        let mut acc = 0;
        for (i, p) in self.list.iter().enumerate() {
            acc += p.weight;
            if slot < acc {
                return i;
            }
        }
        0
    }

    /// Commands per second `users` users send on average at `time_scale`:
    /// the pace at which the server sees requests arrive, from which the
    /// run's floor is measured at the same spacing (`run::setup`).
    pub fn offered_per_s(&self, users: usize, time_scale: f64) -> f64 {
        (0..users)
            .map(|n| self.list[self.for_user(n)].commands_per_minute)
            .sum::<f64>()
            / 60.0
            * time_scale
    }
}

/// Built-in profiles, the suite's mix. Rates are per real minute before
/// `--time-scale`.
pub const DEFAULT_PROFILES: &str = r#"
[profiles.light]
weight = 50
commands_per_minute = 2.0
start = "ls"
[profiles.light.states.ls]
command = "ls"
class = "fs-read"
next = { pwd = 2, echo = 2, ls = 1 }
[profiles.light.states.pwd]
command = "pwd"
class = "session"
next = { ls = 3, echo = 1 }
[profiles.light.states.echo]
command = "echo ok"
class = "pure"
next = { ls = 2, pwd = 1 }

[profiles.medium]
weight = 30
commands_per_minute = 6.0
start = "ls"
[profiles.medium.states.ls]
command = "ls -la"
class = "fs-read"
next = { cat = 4, wc = 1, status = 2 }
[profiles.medium.states.cat]
command = "cat README.md"
class = "fs-read"
next = { head = 2, ls = 1, grep = 1 }
[profiles.medium.states.head]
command = "head -20 docs/guide.md"
class = "fs-read"
next = { ls = 2, wc = 1 }
[profiles.medium.states.wc]
command = "wc -l src/main.rs src/lib.rs"
class = "fs-read"
next = { ls = 1, cat = 1 }
[profiles.medium.states.status]
command = "git status --short"
class = "fs-read"
next = { ls = 1, cat = 1 }
[profiles.medium.states.grep]
command = "grep -n fn src/lib.rs"
class = "fs-read"
next = { ls = 1, status = 1 }

[profiles.heavy]
weight = 15
commands_per_minute = 15.0
start = "status"
[profiles.heavy.states.status]
command = "git status"
class = "fs-read"
next = { diff = 5, log = 2, ls = 1 }
[profiles.heavy.states.diff]
command = "git diff"
class = "fs-read"
next = { status = 2, log = 1, cat = 1 }
[profiles.heavy.states.log]
command = "git log --oneline -20"
class = "fs-read"
next = { status = 2, cat = 1 }
[profiles.heavy.states.cat]
command = "cat docs/guide.md"
class = "fs-read"
next = { grep = 2, status = 1 }
[profiles.heavy.states.grep]
command = "grep -rn 'line 1' docs"
class = "fs-read"
next = { find = 1, status = 2 }
[profiles.heavy.states.find]
command = "find . -path ./users -prune -o -name '*.rs' -print"
class = "fs-read"
next = { cat = 1, status = 2 }
[profiles.heavy.states.ls]
command = "ls -la src"
class = "fs-read"
next = { cat = 1, status = 1 }

[profiles.power]
weight = 5
commands_per_minute = 30.0
start = "status"
[profiles.power.states.status]
command = "git status"
class = "fs-read"
next = { diff = 4, log = 1, mkdir = 1 }
[profiles.power.states.diff]
command = "git diff"
class = "fs-read"
next = { status = 1, log = 1, tail = 1 }
[profiles.power.states.log]
command = "git log --stat -5"
class = "fs-read"
next = { status = 1, tail = 1 }
[profiles.power.states.tail]
command = "cat logs/app.log"
class = "fs-read"
next = { grep = 2, status = 1 }
[profiles.power.states.grep]
command = "grep -c INFO logs/app.log"
class = "fs-read"
next = { find = 1, touch = 1 }
[profiles.power.states.find]
command = "find . \\( -path ./users -o -path ./.git \\) -prune -o -type f -print"
class = "fs-read"
next = { status = 1, touch = 1 }
[profiles.power.states.mkdir]
command = "mkdir -p {scratch}/build"
class = "mutating"
next = { touch = 2 }
[profiles.power.states.touch]
command = "touch {scratch}/notes.txt"
class = "mutating"
next = { scratch = 2 }
[profiles.power.states.scratch]
command = "ls -la {scratch}"
class = "fs-read"
next = { status = 2, date = 1 }
[profiles.power.states.date]
command = "date"
class = "volatile"
next = { status = 1 }
"#;

/// The shell script that builds the fixture project at `root` with one scratch
/// directory per user. It runs on the server's host (as an `Exec`), so it works the
/// same against a server this tool started and one at `--url`.
pub fn fixture_script(root: &str, users: usize) -> String {
    let q = shell_quote(root);
    format!(
        r#"set -e
if [ -e {q}/users/.fixture-ready ]; then echo ready; exit 0; fi
mkdir -p {q}/users && cd {q}
printf '# demo project\n\nA sample project used by the voxterm load tester.\n\n## Build\n\n    cargo build\n' > README.md
mkdir -p src docs logs
printf 'fn main() {{\n    println!("hello");\n}}\n' > src/main.rs
printf 'pub fn add(a: i32, b: i32) -> i32 {{\n    a + b\n}}\n' > src/lib.rs
seq 1 400 | sed 's/^/guide line /' > docs/guide.md
seq 1 3000 | sed 's/^/2024-01-01T00:00:00Z INFO request handled id=/' > logs/app.log
printf 'users/\n' > .gitignore
if command -v git >/dev/null 2>&1; then
  git init -q . && git add -A && git -c user.name=loadtest -c user.email=loadtest@localhost commit -qm 'initial import'
  printf 'pub fn sub(a: i32, b: i32) -> i32 {{\n    a - b\n}}\n' >> src/lib.rs
fi
seq 0 {last} | sed 's|^|users/u|' | xargs mkdir -p
: > users/.fixture-ready
echo ready
"#,
        last = users.saturating_sub(1)
    )
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_compile_with_the_suite_mix() {
        let p = Profiles::from_toml(DEFAULT_PROFILES).unwrap();
        let w: BTreeMap<_, _> = p.list.iter().map(|p| (p.name.as_str(), p.weight)).collect();
        assert_eq!(w["light"], 50);
        assert_eq!(w["medium"], 30);
        assert_eq!(w["heavy"], 15);
        assert_eq!(w["power"], 5);
        let mut counts = vec![0; p.list.len()];
        for u in 0..1000 {
            counts[p.for_user(u)] += 1;
        }
        let light = p.list.iter().position(|p| p.name == "light").unwrap();
        assert_eq!(counts[light], 500);
    }

    #[test]
    fn the_offered_rate_adds_every_users_pace() {
        let two = "[profiles.a]\nweight = 1\ncommands_per_minute = 6.0\nstart = \"s\"\n[profiles.a.states.s]\ncommand = \"ls\"\nclass = \"fs-read\"\n\n[profiles.b]\nweight = 1\ncommands_per_minute = 18.0\nstart = \"s\"\n[profiles.b.states.s]\ncommand = \"pwd\"\nclass = \"session\"\n";
        let p = Profiles::from_toml(two).unwrap();
        // 10 users, half at 6/min and half at 18/min: 120/min = 2/s, ×3.
        let rate = p.offered_per_s(10, 3.0);
        assert!((rate - 6.0).abs() < 1e-9, "{rate}");
        assert_eq!(p.offered_per_s(0, 3.0), 0.0);
    }

    #[test]
    fn chains_follow_their_weights() {
        let p = Profiles::builtin();
        let heavy = p.list.iter().find(|p| p.name == "heavy").unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let status = heavy.start;
        let mut diff = 0;
        for _ in 0..8000 {
            let n = heavy.step(status, &mut rng);
            if heavy.states[n].command == "git diff" {
                diff += 1;
            }
        }
        // 5 of 8.
        assert!((4700..5300).contains(&diff), "{diff}");
    }

    #[test]
    fn undefined_states_are_errors() {
        let bad = "[profiles.x]\nweight = 1\ncommands_per_minute = 1.0\nstart = \"a\"\n[profiles.x.states.a]\ncommand = \"ls\"\nclass = \"fs-read\"\nnext = { b = 1 }\n";
        assert!(Profiles::from_toml(bad).is_err());
    }
}

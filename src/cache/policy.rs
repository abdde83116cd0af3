//! What may be cached: a command line is parsed with a real shell parser
//! (`brush-parser`) and every simple command in it is looked up in the class table.
//!
//! The walk is deliberately pessimistic. Anything it cannot place (a parse error,
//! a function definition, `[[ ]]`, arithmetic, a program word built from
//! expansions, a background job) is [`Class::Unknown`], and a line takes the most
//! restrictive class of its parts, so a mistake can only cost a cache hit, never
//! serve a wrong answer.

use super::error::CacheError;
use super::inputs::Inputs;
use brush_parser::ast;
use brush_parser::word::{WordPiece, WordPieceWithSource};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The table that ships with voxterm, used when no `[cache] policy_file` is set.
pub const DEFAULT_POLICY: &str = include_str!("cache-policy.toml");

/// How far `$(...)` nesting is followed before the line is declared unknown; it
/// bounds the work an adversarial line can cause.
const MAX_DEPTH: u32 = 8;

/// Most openers (see [`nesting_bound`]) a line may hold before it is declared
/// unknown without being parsed: `brush-parser` recurses once per nesting level on
/// the caller's stack, and about 600 nested `(` overflowed a 2 MiB tokio worker
/// stack (found while fuzzing; a stack overflow aborts the whole process).
const MAX_NESTING: usize = 64;

/// Most `$((` a line may hold before it is declared unknown without being parsed:
/// brush-parser tries each as arithmetic and then as `$( (`, so the work doubles
/// with every one (found by fuzzing: 20 of them took 5 s, 24 over 20 s).
const MAX_ARITHMETIC: usize = 8;

/// The cacheability class of a command, ordered from least to most restrictive so
/// that a compound line is the `max` of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Output depends on the line and its environment only: shared by all tenants.
    Pure,
    /// Output depends on the tenant, its cwd and this host.
    Session,
    /// Output depends on the tenant's files: keyed by the tenant's generation.
    FsRead,
    /// Output changes between runs (cached only if its TTL is configured above 0).
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
}

impl Verdict {
    /// True when a clean result of this line may be stored and served.
    pub fn cacheable(&self) -> bool {
        matches!(
            self.class,
            Class::Pure | Class::Session | Class::FsRead | Class::Volatile
        ) && !self.ttl.is_zero()
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
    #[serde(rename = "fs-read", with = "humantime_serde")]
    fs_read: Duration,
    #[serde(with = "humantime_serde", default)]
    volatile: Duration,
    /// Entries of fs-read lines validated against their input files (absent: 0,
    /// no validation, every fs-read line lives `fs-read`).
    #[serde(rename = "fs-read-validated", with = "humantime_serde", default)]
    fs_read_validated: Duration,
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
                fs_read: Duration::ZERO,
                volatile: Duration::ZERO,
                fs_read_validated: Duration::ZERO,
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
            Class::FsRead => self.ttl.fs_read,
            Class::Volatile => self.ttl.volatile,
            Class::Unknown | Class::Mutating => Duration::ZERO,
        }
    }

    /// Classifies a command line. Never panics, whatever the input.
    pub fn classify(&self, line: &str) -> Verdict {
        let mut c = Classify {
            policy: self,
            class: Class::Pure,
            ttl: None,
        };
        // The parser is third-party code fed with untrusted input: a panic in it
        // must cost a cache hit, not a request.
        let (class, ttl) = if walk(line, &mut c) {
            (c.class, c.ttl)
        } else {
            (Class::Unknown, None)
        };
        let ttl = match class {
            Class::Unknown | Class::Mutating => Duration::ZERO,
            _ => ttl.unwrap_or(self.ttl.pure),
        };
        Verdict {
            class,
            ttl,
            inputs: None,
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

/// What a walk of a command line reports, part by part. The classifier is one
/// visitor; the command policy (`crate::security`) is another.
pub trait Visitor {
    /// One simple command: its program word and argument words as written
    /// (quotes and expansions included). Assignment-only commands are not reported.
    fn simple(&mut self, program: &str, args: &[&str]);
    /// A cacheability fact about a part of the line (a glob, a redirection, a
    /// volatile variable, a background job...).
    fn class(&mut self, _class: Class) {}
    /// Part of the line could not be analysed (a parse error, nesting deeper than
    /// the walk follows, a NUL, `[[ ]]`, arithmetic): commands may hide there.
    fn opaque(&mut self);
    /// Whether function bodies are walked (the classifier stops at the definition).
    fn function_bodies(&self) -> bool {
        false
    }
}

/// Walks every simple command of `line`, in pipelines, lists, subshells, groups,
/// loops, conditionals, redirections and command substitutions (to a bounded
/// depth), reporting to `visitor`. Returns false when the parser panicked (the
/// visitor then saw only part of the line).
pub fn walk<V: Visitor>(line: &str, visitor: &mut V) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Walk { v: visitor }.line(line, 0)
    }))
    .is_ok()
}

/// One classification in progress: the running max class and min TTL.
struct Classify<'a> {
    policy: &'a Policy,
    class: Class,
    /// Shortest TTL of the parts seen so far (None: no part yet).
    ttl: Option<Duration>,
}

impl Classify<'_> {
    /// A part of the line has this class and the class's TTL.
    fn join(&mut self, class: Class) {
        self.join_ttl(class, self.policy.class_ttl(class));
    }

    fn join_ttl(&mut self, class: Class, ttl: Duration) {
        self.class = self.class.max(class);
        self.ttl = Some(self.ttl.map_or(ttl, |old| old.min(ttl)));
    }
}

impl Visitor for Classify<'_> {
    fn simple(&mut self, program: &str, args: &[&str]) {
        let Some(name) = program_name(program) else {
            return self.join(Class::Unknown);
        };
        let (class, ttl) = self.policy.lookup(name, args);
        self.join_ttl(class, ttl.unwrap_or_else(|| self.policy.class_ttl(class)));
    }

    fn class(&mut self, class: Class) {
        self.join(class);
    }

    fn opaque(&mut self) {
        self.join(Class::Unknown);
    }
}

/// The traversal itself, shared by every visitor.
struct Walk<'v, V> {
    v: &'v mut V,
}

fn parser_options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions {
        enable_extended_globbing: false,
        posix_mode: true,
        sh_mode: true,
        tilde_expansion: true,
    }
}

/// Shell variables whose value changes from one run to the next.
const VOLATILE_VARS: &[&str] = &[
    "$$",
    "$!",
    "${!}",
    "${$}",
    "$RANDOM",
    "${RANDOM",
    "$SRANDOM",
    "${SRANDOM",
    "$SECONDS",
    "${SECONDS",
    "$BASHPID",
    "${BASHPID",
    "$EPOCH",
    "${EPOCH",
    "$PPID",
    "${PPID",
    "$LINENO",
];

impl<V: Visitor> Walk<'_, V> {
    fn join(&mut self, class: Class) {
        self.v.class(class);
    }

    fn line(&mut self, line: &str, depth: u32) {
        if depth > MAX_DEPTH
            || line.contains('\0')
            || nesting_bound(line) > MAX_NESTING
            || huge_io_number(line)
            || arithmetic_openers(line) > MAX_ARITHMETIC
            || empty_here_tag(line)
        {
            return self.v.opaque();
        }
        let mut parser = brush_parser::Parser::new(
            std::io::Cursor::new(line.as_bytes()),
            &parser_options(),
            &brush_parser::SourceInfo::default(),
        );
        match parser.parse_program() {
            Ok(program) => {
                for cc in &program.complete_commands {
                    self.list(cc, depth);
                }
            }
            Err(_) => self.v.opaque(),
        }
    }

    fn list(&mut self, list: &ast::CompoundList, depth: u32) {
        for ast::CompoundListItem(and_or, sep) in &list.0 {
            if matches!(sep, ast::SeparatorOperator::Async) {
                // A background job outlives the answer: not something to replay.
                self.join(Class::Unknown);
            }
            self.pipeline(&and_or.first, depth);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, depth),
                }
            }
        }
    }

    fn pipeline(&mut self, p: &ast::Pipeline, depth: u32) {
        if p.timed.is_some() {
            self.join(Class::Volatile);
        }
        for c in &p.seq {
            self.command(c, depth);
        }
    }

    fn command(&mut self, c: &ast::Command, depth: u32) {
        match c {
            ast::Command::Simple(s) => self.simple(s, depth),
            ast::Command::Compound(cc, redirects) => {
                self.compound(cc, depth);
                if let Some(r) = redirects {
                    for io in &r.0 {
                        self.redirect(io, depth);
                    }
                }
            }
            ast::Command::Function(f) => {
                self.join(Class::Unknown);
                if self.v.function_bodies() {
                    self.compound(&f.body.0, depth);
                    for io in f.body.1.iter().flat_map(|r| r.0.iter()) {
                        self.redirect(io, depth);
                    }
                }
            }
            ast::Command::ExtendedTest(_) => self.v.opaque(),
        }
    }

    fn compound(&mut self, cc: &ast::CompoundCommand, depth: u32) {
        match cc {
            ast::CompoundCommand::BraceGroup(ast::BraceGroupCommand(l))
            | ast::CompoundCommand::Subshell(ast::SubshellCommand(l)) => self.list(l, depth),
            ast::CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(w, depth);
                }
                self.list(&f.body.0, depth);
            }
            ast::CompoundCommand::CaseClause(c) => {
                self.word(&c.value, depth);
                for item in &c.cases {
                    for w in &item.patterns {
                        self.word(w, depth);
                    }
                    if let Some(l) = &item.cmd {
                        self.list(l, depth);
                    }
                }
            }
            ast::CompoundCommand::IfClause(i) => {
                self.list(&i.condition, depth);
                self.list(&i.then, depth);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.list(c, depth);
                    }
                    self.list(&e.body, depth);
                }
            }
            ast::CompoundCommand::WhileClause(w) | ast::CompoundCommand::UntilClause(w) => {
                self.list(&w.0, depth);
                self.list(&w.1 .0, depth);
            }
            ast::CompoundCommand::Arithmetic(_) | ast::CompoundCommand::ArithmeticForClause(_) => {
                self.v.opaque()
            }
        }
    }

    fn item(&mut self, item: &ast::CommandPrefixOrSuffixItem, depth: u32) {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(io) => self.redirect(io, depth),
            ast::CommandPrefixOrSuffixItem::Word(w) => self.word(w, depth),
            ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => self.word(w, depth),
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, s) => self.list(&s.0, depth),
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, depth: u32) {
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(item, depth);
        }
        let mut args: Vec<&str> = Vec::new();
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            self.item(item, depth);
            if let ast::CommandPrefixOrSuffixItem::Word(w) = item {
                args.push(&w.value);
            }
        }
        let Some(program) = &s.word_or_name else {
            // Only assignments and redirections: nothing runs.
            return;
        };
        self.word(program, depth);
        self.v.simple(&program.value, &args);
    }

    fn redirect(&mut self, io: &ast::IoRedirect, depth: u32) {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T};
        match io {
            ast::IoRedirect::File(_, kind, target) => {
                match target {
                    T::Filename(w) | T::Duplicate(w) => self.word(w, depth),
                    T::ProcessSubstitution(_, s) => self.list(&s.0, depth),
                    T::Fd(_) => {}
                }
                match (kind, target) {
                    (K::Read, _) => self.join(Class::FsRead),
                    (K::DuplicateInput | K::DuplicateOutput, T::Fd(_)) => {}
                    (K::DuplicateInput | K::DuplicateOutput, T::Duplicate(w))
                        if w.value == "-" || w.value.bytes().all(|b| b.is_ascii_digit()) => {}
                    (_, T::Filename(w)) if w.value == "/dev/null" => {}
                    _ => self.join(Class::Mutating),
                }
            }
            ast::IoRedirect::HereDocument(_, doc) => {
                // The body never went through the tokenizer, and brush-parser's
                // word parser backtracks exponentially on unbalanced `$((`
                // (found by fuzzing: 46 bytes ran for minutes).
                if doc.requires_expansion {
                    let body = doc.doc.value.as_str();
                    if (body.contains("$(") || body.contains("${")) && !balanced(body) {
                        self.v.opaque();
                    } else {
                        self.word(&doc.doc, depth);
                    }
                }
            }
            ast::IoRedirect::HereString(_, w) => self.word(w, depth),
            ast::IoRedirect::OutputAndError(w, _) => {
                self.word(w, depth);
                if w.value != "/dev/null" {
                    self.join(Class::Mutating);
                }
            }
        }
    }

    /// Looks inside a word for what the table cannot see: command substitutions
    /// (classified recursively), globs (the answer depends on the directory) and
    /// variables that change every run.
    fn word(&mut self, w: &ast::Word, depth: u32) {
        let text = w.value.as_str();
        if VOLATILE_VARS.iter().any(|v| text.contains(v)) {
            self.join(Class::Volatile);
        }
        if !text
            .bytes()
            .any(|b| matches!(b, b'$' | b'`' | b'*' | b'?' | b'['))
        {
            return;
        }
        match brush_parser::word::parse(text, &parser_options()) {
            Ok(pieces) => self.pieces(&pieces, depth),
            Err(_) => self.v.opaque(),
        }
    }

    fn pieces(&mut self, pieces: &[WordPieceWithSource], depth: u32) {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(t) if t.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) => {
                    self.join(Class::FsRead)
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => self.pieces(inner, depth),
                WordPiece::CommandSubstitution(cmd)
                | WordPiece::BackquotedCommandSubstitution(cmd) => self.line(cmd, depth + 1),
                WordPiece::ArithmeticExpression(e) if e.value.contains("$(") => self.v.opaque(),
                _ => {}
            }
        }
    }
}

/// An upper bound of the nesting depth the parser can reach on `line`: every byte
/// and reserved word that can open a level counts, whether or not it does (quotes,
/// escapes and closers are ignored, so the bound never underestimates). Backslashes
/// and newlines are skipped inside words so that `i\<newline>f` counts as `if`.
fn nesting_bound(line: &str) -> usize {
    let mut count = 0;
    let mut word = [0u8; 6];
    let mut len = 0;
    for b in line.bytes().chain([b' ']) {
        match b {
            b'\\' | b'\n' => continue,
            b'a'..=b'z' => {
                if let Some(slot) = word.get_mut(len) {
                    *slot = b;
                }
                len += 1;
                continue;
            }
            b'(' | b'{' | b'`' => count += 1,
            _ => {}
        }
        if matches!(
            word.get(..len),
            Some(b"if" | b"for" | b"case" | b"while" | b"until" | b"select")
        ) {
            count += 1;
        }
        len = 0;
    }
    count
}

/// How many `$((` the line holds, line continuations (and any backslash or
/// newline) between the three bytes included.
fn arithmetic_openers(line: &str) -> usize {
    let mut last = [0u8; 2];
    let mut count = 0;
    for b in line.bytes().filter(|b| !matches!(b, b'\\' | b'\n')) {
        if b == b'(' && last == [b'$', b'('] {
            count += 1;
        }
        last = [last[1], b];
    }
    count
}

/// True when `(`/`)` and `{`/`}` pair up in order (quotes are not considered, so
/// some balanced text is refused: that only costs a verdict).
fn balanced(text: &str) -> bool {
    let (mut paren, mut brace) = (0usize, 0usize);
    for b in text.bytes() {
        let depth = match b {
            b'(' => {
                paren += 1;
                continue;
            }
            b'{' => {
                brace += 1;
                continue;
            }
            b')' => &mut paren,
            b'}' => &mut brace,
            _ => continue,
        };
        match depth.checked_sub(1) {
            Some(d) => *depth = d,
            None => return false,
        }
    }
    paren == 0 && brace == 0
}

/// True when a here-document delimiter may be empty once unquoted: `<<` (or
/// `<<-`) followed by a word of quotes only, as `''`, `""` or `"'"`. brush-parser
/// 0.2's tokenizer loops on such a tag when the line ends, without a newline, on
/// an empty token (`cat <<'' ` with a trailing blank): at the end of input it
/// finds the empty tag at the end of the empty token, ends the body, files that
/// (as the state is still "next line is the here-document") as a token pending
/// after the tag, and goes round again, pushing to a `Vec` forever (found by the
/// bracket-soup property test: a 400-byte line took 16 GB before it was killed;
/// minimized by hand to `''<<"" `). Also reached through `$(...)` and backquotes.
/// Every empty delimiter is refused, with a newline or not (rare in practice: the
/// body then ends at the first empty line). Conservative: backslashes and
/// newlines between `<`, `<`, `-` and the tag are skipped, as line continuations
/// would be, quotes are not paired, and a backslash counts as a quote.
fn empty_here_tag(line: &str) -> bool {
    let b = line.as_bytes();
    let skip = |mut i: usize, blanks: bool| {
        while let Some(&c) = b.get(i) {
            if !(matches!(c, b'\\' | b'\n') || blanks && matches!(c, b' ' | b'\t')) {
                break;
            }
            i += 1;
        }
        i
    };
    for (at, _) in line.match_indices('<') {
        let mut i = skip(at + 1, false);
        if b.get(i) != Some(&b'<') {
            continue;
        }
        i = skip(i + 1, false);
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        i = skip(i, true);
        let start = i;
        while matches!(b.get(i), Some(b'\'' | b'"' | b'\\')) {
            i += 1;
        }
        let word = &b[start..i];
        // The tag word ends here (at the end of the line or an operator byte).
        let ends = !matches!(b.get(i), Some(c) if !matches!(
            c,
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'`'
        ));
        if ends && word.iter().any(|c| matches!(c, b'\'' | b'"')) {
            return true;
        }
    }
    false
}

/// True when 10 or more digits stand right before a `<` or `>`: brush-parser 0.2
/// unwraps such a redirection's fd number as a `u32` and panics (found by
/// fuzzing). Backslashes and newlines inside the run are skipped, as line
/// continuations would join it.
fn huge_io_number(line: &str) -> bool {
    let mut digits = 0;
    for b in line.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'\\' | b'\n' => {}
            b'<' | b'>' if digits >= 10 => return true,
            _ => digits = 0,
        }
    }
    false
}

/// The program a command word names, when it names one plainly: quoted or
/// expanded program words are not guessed at. `/bin/ls` and `/usr/bin/ls` are
/// `ls`; any other path (`./script`) is a program the table cannot know.
fn program_name(word: &str) -> Option<&str> {
    if word.is_empty()
        || word
            .bytes()
            .any(|b| matches!(b, b'$' | b'`' | b'"' | b'\'' | b'\\' | b'*' | b'?' | b'['))
    {
        return None;
    }
    for dir in ["/bin/", "/usr/bin/", "/usr/local/bin/"] {
        if let Some(rest) = word.strip_prefix(dir) {
            return (!rest.contains('/')).then_some(rest);
        }
    }
    (!word.contains('/')).then_some(word)
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
    fn empty_here_tags_are_spotted() {
        for line in [
            "cat <<'' ",
            "cat <<\"\"",
            "cat <<-\"'\" x",
            "cat << \\\n''\"\";",
            "cat <\\\n<''",
            "echo $(cat <<'')",
            "cat <<''\nbody\n\n",
        ] {
            assert!(empty_here_tag(line), "{line:?}");
        }
        for line in [
            "cat <<E ",
            "cat <<'E'\nx\nE\n",
            "cat <<''E",
            "cat <<$'' ",
            "cat << -'' ",
            "echo a < '' b",
            "echo $((1 << 2))",
        ] {
            assert!(!empty_here_tag(line), "{line:?}");
        }
    }

    #[test]
    fn ttl_is_the_shortest_part() {
        let p = Policy::builtin();
        assert_eq!(p.classify("echo hi").ttl, Duration::from_secs(3600));
        assert_eq!(p.classify("echo hi; ls").ttl, Duration::from_secs(5));
        assert_eq!(p.classify("git log").ttl, Duration::from_secs(10));
        assert!(!p.classify("date").cacheable());
        assert!(!p.classify("touch x").cacheable());
        assert!(p.classify("ls").cacheable());
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

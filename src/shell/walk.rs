//! The walk: every part of a command line that can run something, expand
//! something or touch a file is reported to a [`Visitor`], or the line is
//! declared not understood. It is done once, when the line is parsed
//! ([`Line::parse`](super::Line::parse)), and what it found is kept with the
//! line and replayed to each visitor ([`walk`]): no visitor parses the line,
//! its words or its command substitutions again.
//!
//! It fails closed. Each construct the walk understands is listed in a `match`
//! below; everything else (and every parse error) is [`Visitor::opaque`]. An
//! expansion is understood only when every command it can run is itself walked:
//! the operands of `${X:-…}`, `${X:=…}`, `${X#…}` and the like, command
//! substitutions at any depth, here-document bodies, arithmetic. Where the
//! shells disagree on how to read a piece of text (quotes inside a
//! double-quoted `${X:-'…'}` or inside a here-document are literal to the shell
//! but quoting to a word parser; bash evaluates `a[$(cmd)]` in arithmetic, dash
//! does not), the text is not understood rather than guessed at.

use super::guards;
use super::AsLine;
use brush_parser::ast;
use brush_parser::word::{
    Parameter, ParameterExpr, SpecialParameter, WordPiece, WordPieceWithSource,
};

/// How far command substitutions (and `sh -c` strings a visitor walks again)
/// nest before the line is not understood; bounds an adversarial line's work.
const MAX_DEPTH: u32 = 8;

/// Something about a part of the line that is not a simple command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact<'a> {
    /// An unquoted word with glob characters: what it expands to depends on the
    /// directory (the text as written).
    Glob(&'a str),
    /// An input redirection (`<`) from this target, as written.
    Reads(&'a str),
    /// An output redirection (`>`, `>>`, `>|`, `<>`, `&>`, `>&file`) to this
    /// target, as written; never reported for `/dev/null` or a file descriptor.
    Writes(&'a str),
    /// A job put in the background (`&`): it outlives the line's answer.
    Background,
    /// `time` before a pipeline: the output holds timings.
    Timed,
    /// A parameter is expanded: a variable's name, a positional parameter's
    /// number, or a special parameter's symbol (`$`, `!`, `?`, `#`, `-`, `@`, `*`).
    Expands(&'a str),
    /// A variable is assigned (`NAME=value` before or as a command, `for NAME
    /// in`, `${NAME:=value}`, an assignment argument of `export` and the like).
    Assigns(&'a str),
    /// A function is defined: its name runs its body from now on.
    Function,
}

/// What a walk reports, part by part. The cache classifier is one visitor, the
/// command policy another.
pub trait Visitor {
    /// One simple command: its program word and argument words as written
    /// (quotes and expansions included; assignment arguments such as `export
    /// A=1`'s included). Commands of assignments only are not reported.
    fn simple(&mut self, program: &str, args: &[&str]);
    /// A fact about a part of the line.
    fn fact(&mut self, fact: Fact<'_>);
    /// Part of the line could not be seen through (why, for a person): commands
    /// may hide there.
    fn opaque(&mut self, why: &'static str);
    /// Whether function bodies are walked (the classifier stops at the definition).
    fn function_bodies(&self) -> bool {
        false
    }
}

/// Walks every part of `line`, reporting to `visitor`: the walk done when the
/// line was parsed, replayed (a [`Line`](super::Line) is not parsed again;
/// text is parsed now). Returns false when the parser panicked (the visitor
/// then saw only part of the line and must treat it as not understood).
pub fn walk<L: AsLine + ?Sized, V: Visitor>(line: &L, visitor: &mut V) -> bool {
    let line = line.as_line();
    let walked = line.walked();
    // A visitor's panic costs a verdict, as a parser's does.
    let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut events = walked.events.iter();
        while let Some(event) = events.next() {
            match event {
                Event::Simple { program, args } => {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    visitor.simple(program, &args);
                }
                Event::Fact(fact) => visitor.fact(fact.as_fact()),
                Event::Opaque(why) => visitor.opaque(why),
                Event::Body(len) => {
                    if !visitor.function_bodies() && *len > 0 {
                        events.nth(len - 1);
                    }
                }
            }
        }
    }));
    replayed.is_ok() && walked.complete
}

/// What the walk of a line found, in order: kept with the line, replayed to
/// every visitor.
#[derive(Debug, Clone, Default)]
pub(super) struct Walked {
    events: Vec<Event>,
    /// False when the parser panicked part way.
    complete: bool,
}

impl Walked {
    /// Walks `line` (parsing it, its words and its command substitutions).
    pub(super) fn of(line: &str) -> Walked {
        let mut walked = Walked::default();
        let mut open = Vec::new();
        // The parser is third-party code fed with untrusted input: a panic in it
        // must cost a verdict, not a request.
        walked.complete = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Walk {
                v: &mut Record {
                    events: &mut walked.events,
                    open: &mut open,
                },
            }
            .line(line, 0)
        }))
        .is_ok();
        // Bodies a panic left open end with what was seen.
        let end = walked.events.len();
        for at in open {
            if let Some(Event::Body(len)) = walked.events.get_mut(at) {
                *len = end - at - 1;
            }
        }
        walked
    }
}

/// One thing the walk found.
#[derive(Debug, Clone)]
enum Event {
    Simple {
        program: String,
        args: Vec<String>,
    },
    Fact(Found),
    Opaque(&'static str),
    /// A function body follows: this many events (skipped by visitors that do
    /// not walk bodies).
    Body(usize),
}

/// A [`Fact`], owned.
#[derive(Debug, Clone)]
enum Found {
    Glob(String),
    Reads(String),
    Writes(String),
    Background,
    Timed,
    Expands(String),
    Assigns(String),
    Function,
}

impl Found {
    fn of(fact: Fact<'_>) -> Found {
        match fact {
            Fact::Glob(s) => Found::Glob(s.to_owned()),
            Fact::Reads(s) => Found::Reads(s.to_owned()),
            Fact::Writes(s) => Found::Writes(s.to_owned()),
            Fact::Background => Found::Background,
            Fact::Timed => Found::Timed,
            Fact::Expands(s) => Found::Expands(s.to_owned()),
            Fact::Assigns(s) => Found::Assigns(s.to_owned()),
            Fact::Function => Found::Function,
        }
    }

    fn as_fact(&self) -> Fact<'_> {
        match self {
            Found::Glob(s) => Fact::Glob(s),
            Found::Reads(s) => Fact::Reads(s),
            Found::Writes(s) => Fact::Writes(s),
            Found::Background => Fact::Background,
            Found::Timed => Fact::Timed,
            Found::Expands(s) => Fact::Expands(s),
            Found::Assigns(s) => Fact::Assigns(s),
            Found::Function => Fact::Function,
        }
    }
}

/// The walk's one listener: records what it is told.
struct Record<'a> {
    events: &'a mut Vec<Event>,
    /// Where the function bodies being walked start.
    open: &'a mut Vec<usize>,
}

impl Record<'_> {
    fn simple(&mut self, program: &str, args: &[&str]) {
        self.events.push(Event::Simple {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        });
    }

    fn fact(&mut self, fact: Fact<'_>) {
        self.events.push(Event::Fact(Found::of(fact)));
    }

    fn opaque(&mut self, why: &'static str) {
        self.events.push(Event::Opaque(why));
    }

    fn body_starts(&mut self) {
        self.open.push(self.events.len());
        self.events.push(Event::Body(0));
    }

    fn body_ends(&mut self) {
        if let Some(at) = self.open.pop() {
            let len = self.events.len() - at - 1;
            if let Some(Event::Body(n)) = self.events.get_mut(at) {
                *n = len;
            }
        }
    }
}

/// The options of the one parse: POSIX `sh`, which is what runs the line.
pub(crate) fn parser_options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions {
        enable_extended_globbing: false,
        posix_mode: true,
        sh_mode: true,
        tilde_expansion: true,
    }
}

/// The traversal itself, done once per line.
struct Walk<'v, 'r> {
    v: &'v mut Record<'r>,
}

impl Walk<'_, '_> {
    fn line(&mut self, line: &str, depth: u32) {
        if depth > MAX_DEPTH {
            return self
                .v
                .opaque("command substitutions nest too deeply to be checked");
        }
        if let Some(why) = guards::refuse(line) {
            return self.v.opaque(why);
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
            Err(_) => self
                .v
                .opaque("the line does not parse as a POSIX shell line"),
        }
    }

    fn list(&mut self, list: &ast::CompoundList, depth: u32) {
        for ast::CompoundListItem(and_or, sep) in &list.0 {
            if matches!(sep, ast::SeparatorOperator::Async) {
                self.v.fact(Fact::Background);
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
            self.v.fact(Fact::Timed);
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
                for io in redirects.iter().flat_map(|r| r.0.iter()) {
                    self.redirect(io, depth);
                }
            }
            ast::Command::Function(f) => {
                self.v.fact(Fact::Function);
                self.v.body_starts();
                self.compound(&f.body.0, depth);
                for io in f.body.1.iter().flat_map(|r| r.0.iter()) {
                    self.redirect(io, depth);
                }
                self.v.body_ends();
            }
            ast::Command::ExtendedTest(_) => self.v.opaque("`[[ ]]` is not POSIX sh"),
        }
    }

    fn compound(&mut self, cc: &ast::CompoundCommand, depth: u32) {
        match cc {
            ast::CompoundCommand::BraceGroup(ast::BraceGroupCommand(l))
            | ast::CompoundCommand::Subshell(ast::SubshellCommand(l)) => self.list(l, depth),
            ast::CompoundCommand::ForClause(f) => {
                self.v.fact(Fact::Assigns(&f.variable_name));
                for w in f.values.iter().flatten() {
                    self.word(w, depth, false);
                }
                self.list(&f.body.0, depth);
            }
            ast::CompoundCommand::CaseClause(c) => {
                self.word(&c.value, depth, false);
                for item in &c.cases {
                    for w in &item.patterns {
                        // A pattern is matched, not expanded against files.
                        self.word(w, depth, true);
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
                self.v
                    .opaque("arithmetic commands `(( ))` are not POSIX sh")
            }
        }
    }

    fn item(&mut self, item: &ast::CommandPrefixOrSuffixItem, depth: u32) {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(io) => self.redirect(io, depth),
            ast::CommandPrefixOrSuffixItem::Word(w) => self.word(w, depth, false),
            ast::CommandPrefixOrSuffixItem::AssignmentWord(a, w) => {
                match &a.name {
                    ast::AssignmentName::VariableName(name) => self.v.fact(Fact::Assigns(name)),
                    ast::AssignmentName::ArrayElementName(..) => {
                        return self.v.opaque("array assignments are not POSIX sh")
                    }
                }
                match &a.value {
                    // The whole word: `NAME=` is plain text to the word parser.
                    ast::AssignmentValue::Scalar(_) => self.word(w, depth, false),
                    ast::AssignmentValue::Array(_) => {
                        self.v.opaque("array assignments are not POSIX sh")
                    }
                }
            }
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                self.v.opaque("process substitution `<( )` is not POSIX sh")
            }
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, depth: u32) {
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(item, depth);
        }
        let mut args: Vec<&str> = Vec::new();
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            self.item(item, depth);
            match item {
                ast::CommandPrefixOrSuffixItem::Word(w)
                | ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => args.push(&w.value),
                _ => {}
            }
        }
        let Some(program) = &s.word_or_name else {
            // Only assignments and redirections: nothing runs.
            return;
        };
        self.word(program, depth, false);
        self.v.simple(&program.value, &args);
    }

    fn redirect(&mut self, io: &ast::IoRedirect, depth: u32) {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T};
        match io {
            ast::IoRedirect::File(_, kind, target) => {
                let w = match target {
                    T::Filename(w) | T::Duplicate(w) => w,
                    T::Fd(_) => return,
                    T::ProcessSubstitution(..) => {
                        return self.v.opaque("process substitution `<( )` is not POSIX sh")
                    }
                };
                self.word(w, depth, false);
                let to_fd = matches!(target, T::Duplicate(_))
                    && (w.value == "-" || w.value.bytes().all(|b| b.is_ascii_digit()));
                match kind {
                    K::Read => self.v.fact(Fact::Reads(&w.value)),
                    K::DuplicateInput | K::DuplicateOutput if to_fd => {}
                    _ if w.value == "/dev/null" => {}
                    _ => self.v.fact(Fact::Writes(&w.value)),
                }
            }
            ast::IoRedirect::HereDocument(_, doc) => {
                if !doc.requires_expansion {
                    // A quoted delimiter: the body is literal text.
                    return;
                }
                let body = doc.doc.value.as_str();
                let expands = body.contains(['$', '`']);
                if expands && body.contains(['\'', '"']) {
                    // Quotes are literal in a here-document body, so `'$(cmd)'`
                    // runs `cmd`; a word parser would read them as quoting.
                    self.v
                        .opaque("a here-document body mixes quotes and expansions")
                } else if expands && !guards::balanced(body) {
                    // brush-parser backtracks exponentially on unbalanced `$((`
                    // (found by fuzzing: 46 bytes ran for minutes).
                    self.v
                        .opaque("a here-document body has unbalanced expansions")
                } else {
                    self.word(&doc.doc, depth, true);
                }
            }
            ast::IoRedirect::HereString(..) => self.v.opaque("here-strings `<<<` are not POSIX sh"),
            ast::IoRedirect::OutputAndError(w, _) => {
                self.word(w, depth, false);
                if w.value != "/dev/null" {
                    self.v.fact(Fact::Writes(&w.value));
                }
            }
        }
    }

    /// Looks inside a word for what can run or vary: command substitutions,
    /// parameter expansions (and their operands), arithmetic and globs.
    /// `quoted`: the word is not expanded against files (a pattern, a
    /// here-document body).
    fn word(&mut self, w: &ast::Word, depth: u32, quoted: bool) {
        self.text(&w.value, depth, quoted);
    }

    fn text(&mut self, text: &str, depth: u32, quoted: bool) {
        if !text
            .bytes()
            .any(|b| matches!(b, b'$' | b'`' | b'*' | b'?' | b'['))
        {
            return;
        }
        match brush_parser::word::parse(text, &parser_options()) {
            Ok(pieces) => self.pieces(&pieces, depth, quoted),
            Err(_) => self.v.opaque("a word does not parse"),
        }
    }

    fn pieces(&mut self, pieces: &[WordPieceWithSource], depth: u32, quoted: bool) {
        // The parser leaves what it could not read as an expansion as text, split
        // in runs (`$`, `{!X}`): runs are joined before they are looked at.
        for run in pieces.chunk_by(|a, b| is_text(a) && is_text(b)) {
            if run.len() > 1 || run.first().is_some_and(is_text) {
                let text: String = run
                    .iter()
                    .filter_map(|p| match &p.piece {
                        WordPiece::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                if hidden_expansion(&text) {
                    return self.v.opaque("an expansion was not recognised");
                }
            }
        }
        for p in pieces {
            match &p.piece {
                WordPiece::Text(t) => {
                    if !quoted && t.contains(['*', '?', '[']) {
                        self.v.fact(Fact::Glob(t));
                    }
                }
                WordPiece::SingleQuotedText(_)
                | WordPiece::AnsiCQuotedText(_)
                | WordPiece::EscapeSequence(_)
                | WordPiece::TildePrefix(_) => {}
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => self.pieces(inner, depth, true),
                WordPiece::CommandSubstitution(cmd) => self.line(cmd, depth + 1),
                WordPiece::BackquotedCommandSubstitution(cmd) => {
                    // Inside backquotes `\$`, `` \` `` and `\\` are unescaped before
                    // the command is parsed: a nested `` \`cmd\` `` runs.
                    if cmd.contains('\\') {
                        return self
                            .v
                            .opaque("backquotes with backslashes inside are not checked");
                    }
                    self.line(cmd, depth + 1)
                }
                WordPiece::ParameterExpansion(expr) => self.parameter(expr, depth, quoted),
                WordPiece::ArithmeticExpression(e) => self.arithmetic(&e.value),
            }
        }
    }

    fn parameter(&mut self, expr: &ParameterExpr, depth: u32, quoted: bool) {
        use ParameterExpr as E;
        let (parameter, indirect, operand, pattern) = match expr {
            E::Parameter {
                parameter,
                indirect,
            }
            | E::ParameterLength {
                parameter,
                indirect,
            } => (parameter, *indirect, None, false),
            E::UseDefaultValues {
                parameter,
                indirect,
                default_value: operand,
                ..
            }
            | E::IndicateErrorIfNullOrUnset {
                parameter,
                indirect,
                error_message: operand,
                ..
            }
            | E::UseAlternativeValue {
                parameter,
                indirect,
                alternative_value: operand,
                ..
            } => (parameter, *indirect, operand.as_deref(), false),
            E::AssignDefaultValues {
                parameter,
                indirect,
                default_value: operand,
                ..
            } => {
                match parameter {
                    Parameter::Named(name) => self.v.fact(Fact::Assigns(name)),
                    _ => {
                        return self
                            .v
                            .opaque("`${…:=…}` of a parameter that is not a variable")
                    }
                }
                (parameter, *indirect, operand.as_deref(), false)
            }
            E::RemoveSmallestSuffixPattern {
                parameter,
                indirect,
                pattern,
            }
            | E::RemoveLargestSuffixPattern {
                parameter,
                indirect,
                pattern,
            }
            | E::RemoveSmallestPrefixPattern {
                parameter,
                indirect,
                pattern,
            }
            | E::RemoveLargestPrefixPattern {
                parameter,
                indirect,
                pattern,
            } => (parameter, *indirect, pattern.as_deref(), true),
            E::Substring { .. }
            | E::Transform { .. }
            | E::UppercaseFirstChar { .. }
            | E::UppercasePattern { .. }
            | E::LowercaseFirstChar { .. }
            | E::LowercasePattern { .. }
            | E::ReplaceSubstring { .. }
            | E::VariableNames { .. }
            | E::MemberKeys { .. } => {
                return self
                    .v
                    .opaque("a `${…}` form beyond POSIX sh is not checked")
            }
        };
        if indirect {
            // bash evaluates `a[$(cmd)]` in the name an indirection yields.
            return self.v.opaque("indirect expansion `${!…}` is not checked");
        }
        let number;
        let name: &str = match parameter {
            Parameter::Named(n) => n,
            Parameter::Positional(n) => {
                number = n.to_string();
                &number
            }
            Parameter::Special(s) => special_symbol(s),
            Parameter::NamedWithIndex { .. } | Parameter::NamedWithAllIndices { .. } => {
                return self.v.opaque("arrays are not POSIX sh")
            }
        };
        self.v.fact(Fact::Expands(name));
        if let Some(operand) = operand {
            if operand.contains(['$', '`']) && operand.contains(['\'', '"']) {
                // Inside double quotes `"${X:-'$(cmd)'}"` runs `cmd` in dash: the
                // single quotes are literal there, quoting to a word parser.
                return self
                    .v
                    .opaque("quotes and expansions inside `${…}` are not checked");
            }
            self.text(operand, depth, quoted || pattern);
        }
    }

    /// Arithmetic is understood only over literal numbers: a variable's value
    /// is evaluated as an expression by bash, where `a[$(cmd)]` runs `cmd`.
    fn arithmetic(&mut self, text: &str) {
        let literal = text.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_whitespace() || b"+-*/%<>=!&|^~?:()".contains(&b)
        });
        if !literal {
            self.v
                .opaque("arithmetic over variables or substitutions is not checked");
        }
    }
}

fn is_text(p: &WordPieceWithSource) -> bool {
    matches!(p.piece, WordPiece::Text(_))
}

/// The symbol a special parameter is written with.
fn special_symbol(s: &SpecialParameter) -> &'static str {
    match s {
        SpecialParameter::AllPositionalParameters { concatenate: true } => "*",
        SpecialParameter::AllPositionalParameters { concatenate: false } => "@",
        SpecialParameter::PositionalParameterCount => "#",
        SpecialParameter::LastExitStatus => "?",
        SpecialParameter::CurrentOptionFlags => "-",
        SpecialParameter::ProcessId => "$",
        SpecialParameter::LastBackgroundProcessId => "!",
        SpecialParameter::ShellName => "0",
    }
}

/// True when plain text still holds what a shell would expand: a backquote, or
/// a `$` that opens an expansion. The word parser should have made those pieces
/// of their own; if it did not, the walk does not pretend to understand them.
fn hidden_expansion(text: &str) -> bool {
    let b = text.as_bytes();
    b.contains(&b'`')
        || b.windows(2).any(|w| {
            w[0] == b'$' && (w[1].is_ascii_alphanumeric() || b"_({@*#?$!-".contains(&w[1]))
        })
}

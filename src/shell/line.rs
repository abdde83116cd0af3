//! A command line, parsed once: its text, what the walk found in it, its words
//! and how it is started. Everything that reads a line (the command policy,
//! the cache, builtin recognition, exec) reads one of these.

use super::plan::{self, Plan, PlanError};
use super::walk::Walked;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Lines parsed since the process started (see [`parses`]).
static PARSES: AtomicU64 = AtomicU64::new(0);

/// How many times [`Line::parse`] ran in this process: what "a line is parsed
/// once per request" is measured by.
pub fn parses() -> u64 {
    PARSES.load(Ordering::Relaxed)
}

/// A command line, parsed.
#[derive(Debug, Clone)]
pub struct Line {
    text: Box<str>,
    /// The walk of the POSIX `sh` parse (or the guard's refusal, or the parse
    /// error), replayed by [`super::walk`].
    walked: Walked,
    /// The words as `sh` would split a line with no expansions (`None`: its
    /// quotes do not balance).
    words: Option<Vec<String>>,
    /// Whether [`Self::words`] may be exec'd as they are (see [`Line::plan`]).
    direct: Result<bool, PlanError>,
}

impl Line {
    /// Parses `text`: the one parse of a line, whatever asks about it later.
    /// Never panics, whatever the input.
    pub fn parse(text: &str) -> Line {
        PARSES.fetch_add(1, Ordering::Relaxed);
        let walked = Walked::of(text);
        let words = shell_words::split(text).ok();
        let direct = plan::direct(text, words.as_deref());
        Line {
            text: text.into(),
            walked,
            words,
            direct,
        }
    }

    /// The line as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The line's words with quotes removed, the way `sh` splits a line that
    /// has no expansions; `None` when its quotes do not balance. Only
    /// meaningful for a plain line (builtins check that first).
    pub fn words(&self) -> Option<&[String]> {
        self.words.as_deref()
    }

    /// How the line is started: its argv directly, or `/bin/sh -c` (the rule
    /// is in `shell::plan`).
    pub fn plan(&self) -> Result<Plan<'_>, PlanError> {
        Ok(match (self.direct?, self.words()) {
            (true, Some(argv)) => Plan::Direct(argv),
            _ => Plan::Shell,
        })
    }

    /// The literal argv when the line runs without a shell: then every word
    /// is known before it runs.
    pub fn direct_argv(&self) -> Option<&[String]> {
        match self.plan() {
            Ok(Plan::Direct(argv)) => Some(argv),
            _ => None,
        }
    }

    pub(super) fn walked(&self) -> &Walked {
        &self.walked
    }
}

/// A line to check: one parsed already, or text parsed on the spot (tools,
/// tests and fuzzers ask with text; the engine with the line it parsed).
pub trait AsLine {
    /// The parsed line.
    fn as_line(&self) -> Cow<'_, Line>;
}

impl AsLine for Line {
    fn as_line(&self) -> Cow<'_, Line> {
        Cow::Borrowed(self)
    }
}

impl AsLine for Arc<Line> {
    fn as_line(&self) -> Cow<'_, Line> {
        Cow::Borrowed(self)
    }
}

impl AsLine for str {
    fn as_line(&self) -> Cow<'_, Line> {
        Cow::Owned(Line::parse(self))
    }
}

impl AsLine for String {
    fn as_line(&self) -> Cow<'_, Line> {
        Cow::Owned(Line::parse(self))
    }
}

impl<T: AsLine + ?Sized> AsLine for &T {
    fn as_line(&self) -> Cow<'_, Line> {
        (**self).as_line()
    }
}

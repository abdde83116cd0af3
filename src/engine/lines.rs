//! The engine's one memo of parsed lines: a line is parsed once (`shell::Line`)
//! and what the engine asks of it, the command policy's verdict and the
//! cache's, is worked out once and kept with it. Voice clients repeat their
//! lines, so a repeated line is neither parsed nor walked again.

use crate::cache::{Cache, Verdict};
use crate::security::CommandPolicy;
use crate::shell::Line;
use std::sync::{Arc, OnceLock};

/// Lines remembered.
const MEMO: usize = 4096;
/// Longer lines are parsed on every request (rare, and they would crowd the memo).
const MEMO_MAX_LINE: usize = 512;

/// A line parsed once, with the verdicts asked of it so far. Each verdict
/// belongs to the engine that made the entry (one command policy, one cache).
#[derive(Debug)]
pub struct Parsed {
    line: Arc<Line>,
    admitted: OnceLock<Result<(), String>>,
    verdict: OnceLock<Verdict>,
    terminal_hint: OnceLock<Option<String>>,
    /// The line's id for the predictor and a shared copy of its text (both
    /// per line, not per request: a BLAKE3 hash and an allocation).
    predict: OnceLock<(crate::predict::CmdId, Arc<str>)>,
}

impl Parsed {
    fn new(line: Line) -> Parsed {
        Parsed {
            line: Arc::new(line),
            admitted: OnceLock::new(),
            verdict: OnceLock::new(),
            terminal_hint: OnceLock::new(),
            predict: OnceLock::new(),
        }
    }

    /// The parsed line (a job carries it to exec).
    pub fn line(&self) -> &Arc<Line> {
        &self.line
    }

    /// The command policy's verdict (the engine's one policy).
    pub(super) fn admitted(&self, policy: &CommandPolicy) -> &Result<(), String> {
        self.admitted.get_or_init(|| policy.check(&*self.line))
    }

    /// What to tell a person who runs this line without a terminal, when it
    /// starts a program that waits for one (`shell::needs_terminal`): worked
    /// out once per line, not on every request.
    pub fn terminal_hint(&self) -> Option<&str> {
        self.terminal_hint
            .get_or_init(|| crate::shell::needs_terminal(&self.line))
            .as_deref()
    }

    /// The line's predictor id and its text, shared.
    pub(super) fn predict_id(&self) -> &(crate::predict::CmdId, Arc<str>) {
        self.predict.get_or_init(|| {
            let text = self.line.text();
            (crate::predict::id_of(text), text.into())
        })
    }

    /// The cache's verdict (the engine's one cache).
    pub(super) fn verdict(&self, cache: &Cache) -> &Verdict {
        self.verdict.get_or_init(|| cache.classify(&self.line))
    }
}

/// Parsed lines by their text.
pub(super) struct Lines {
    memo: quick_cache::sync::Cache<String, Arc<Parsed>>,
}

impl Lines {
    pub(super) fn new() -> Lines {
        Lines {
            memo: quick_cache::sync::Cache::new(MEMO),
        }
    }

    /// The line `text`, parsed now or remembered. Concurrent first requests for
    /// the same text wait for one parse.
    pub(super) fn get(&self, text: &str) -> Arc<Parsed> {
        if text.len() > MEMO_MAX_LINE {
            return Arc::new(Parsed::new(Line::parse(text)));
        }
        let parsed = self.memo.get_or_insert_with(text, || {
            Ok::<_, std::convert::Infallible>(Arc::new(Parsed::new(Line::parse(text))))
        });
        match parsed {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.memo.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_once_and_long_lines_every_time() {
        let lines = Lines::new();
        let a = lines.get("ls -la");
        let b = lines.get("ls -la");
        assert!(Arc::ptr_eq(&a, &b), "remembered");
        assert_eq!(lines.len(), 1);
        let long = format!("echo {}", "a".repeat(MEMO_MAX_LINE));
        let (x, y) = (lines.get(&long), lines.get(&long));
        assert!(!Arc::ptr_eq(&x, &y));
        assert_eq!(lines.len(), 1, "long lines are not remembered");
        assert_eq!(x.line().text(), long);
    }

    #[test]
    fn verdicts_are_worked_out_once_per_line() {
        let policy = CommandPolicy::new(&crate::config::PolicyConfig {
            deny: vec!["rm".into()],
            ..Default::default()
        })
        .ok()
        .flatten()
        .expect("a policy");
        let lines = Lines::new();
        let ok = lines.get("ls -la");
        assert_eq!(ok.admitted(&policy), &Ok(()));
        let bad = lines.get("ls && rm -rf x");
        assert!(bad.admitted(&policy).is_err());
        assert!(std::ptr::eq(
            bad.admitted(&policy),
            lines.get("ls && rm -rf x").admitted(&policy)
        ));
    }
}

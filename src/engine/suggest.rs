//! Suggestions: the likely next commands shown to a person after each command
//! (`Configure.suggestions`), so a voice user can say "one" instead of the
//! whole line.
//!
//! They come from the same prediction that drives prefetch, with the same
//! privacy rule: only lines this tenant itself ran after this context are
//! offered (the global prior ranks, it never proposes another tenant's line),
//! and a line the command policy refuses now is left out. A suggestion is
//! only shown; running it is an ordinary request, classified and admitted
//! like any other.

use super::lines::Parsed;
use super::Engine;
use crate::session::Session;
use voxterm_protocol::Suggestion;

impl Engine {
    /// Up to `max` likely next lines of `session` after `line` (a request
    /// that just ended), most likely first; empty when nothing likely
    /// follows. None when prediction is off or another command of the session
    /// started since (its own end will suggest).
    pub fn suggest(&self, session: &Session, line: &Parsed, max: usize) -> Option<Vec<Suggestion>> {
        let predictor = self.predictor.as_ref()?;
        let (prev2, prev1) = session.context();
        if prev1 != crate::predict::id_of(line.line().text()) {
            return None;
        }
        let lines = predictor
            .predict(session.tenant(), prev2, prev1)
            .iter()
            .filter(|p| p.own)
            .filter(|p| self.admit(&self.lines.get(&p.line)).is_ok())
            .take(max)
            .map(|p| Suggestion {
                line: p.line.to_string(),
                score: (p.p.clamp(0.0, 1.0) * 1000.0).round() as u16,
            })
            .collect();
        Some(lines)
    }

    /// Suggestions per command this server can give: 0 without prediction.
    pub fn max_suggestions(&self) -> usize {
        match &self.predictor {
            Some(_) => self.config.predict.top_k,
            None => 0,
        }
    }
}

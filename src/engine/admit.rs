//! Admission by the command policy, in the engine so that it is built once
//! and asked the same way for a client's request and for a prefetch: a line
//! the policy refuses is never run, whoever asks. The line is parsed here, at
//! admission, once: the request carries it on to `execute`.

use super::lines::Parsed;
use super::Engine;
use std::sync::Arc;

impl Engine {
    /// A request's line (the command with surrounding whitespace removed, as
    /// it runs), parsed or remembered from an earlier request.
    pub fn parse(&self, command: &str) -> Arc<Parsed> {
        self.lines.get(command.trim())
    }

    /// The command policy's verdict on `line`: `Err(why)` when it may not run.
    /// Without a policy (no allow or deny list) every line is admitted.
    pub fn admit(&self, line: &Parsed) -> Result<(), String> {
        match &self.policy {
            Some(policy) => line.admitted(policy).clone(),
            None => Ok(()),
        }
    }
}

//! Admission by the command policy, in the engine so that it is built once
//! (one memo of verdicts) and asked the same way for a client's request and
//! for a prefetch: a line the policy refuses is never run, whoever asks.

use super::Engine;

impl Engine {
    /// The command policy's verdict on `line`: `Err(why)` when it may not run.
    /// Without a policy (no allow or deny list) every line is admitted.
    pub fn admit(&self, line: &str) -> Result<(), String> {
        match &self.policy {
            Some(policy) => policy.check(line).map_err(|why| why.to_string()),
            None => Ok(()),
        }
    }
}

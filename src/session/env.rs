//! The environment every child starts from.
//!
//! Children never inherit the server's environment wholesale (it may hold tokens
//! and credentials): they get a short allowlist of the server's variables, a fixed
//! PATH, and then the session's own variables on top.

use crate::config::SessionConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A child's complete environment, shared by the commands that start from it.
pub type ChildEnv = Arc<[(String, String)]>;

/// The scrubbed base environment, computed once at startup.
#[derive(Debug, Clone)]
pub struct BaseEnv {
    vars: Vec<(String, String)>,
}

impl BaseEnv {
    /// Allowlisted server variables plus PATH, SHELL and TERM.
    pub fn from_config(cfg: &SessionConfig) -> Self {
        let mut vars: Vec<(String, String)> = cfg
            .env_passthrough
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        vars.push(("PATH".into(), cfg.path.clone()));
        vars.push(("SHELL".into(), "/bin/sh".into()));
        vars.push(("TERM".into(), "dumb".into()));
        BaseEnv { vars }
    }

    /// The child environment: base variables the session does not override, then the session's.
    pub fn compose(&self, session: &BTreeMap<String, String>) -> ChildEnv {
        let mut env: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, _)| !session.contains_key(k))
            .cloned()
            .collect();
        env.extend(session.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.into()
    }

    /// A base variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

//! The environment every child starts from.
//!
//! Children never inherit the server's environment wholesale (it may hold tokens
//! and credentials): they get a short allowlist of the server's variables, a fixed
//! PATH, and then the session's own variables on top.
//!
//! Commands run without a terminal (stdin is `/dev/null`, output is a pipe),
//! so the base also says so to the programs that would otherwise wait for
//! one: [`NON_INTERACTIVE`].

use crate::config::SessionConfig;
use std::collections::BTreeMap;

/// Defaults for programs that would wait for a terminal that never comes: a
/// pager prints straight through (`cat`), an editor fails at once (`false`:
/// `git commit` without `-m` says "There was a problem with the editor
/// 'false'" instead of hanging until the timeout in an invisible `vi`), and
/// git never prompts for credentials. `TERM=dumb` tells programs not to send
/// colours or cursor movement; a session may `export TERM=xterm-256color`
/// (or a command may pass `--color=always`) to get colour. The session's own
/// variables override any of them.
pub const NON_INTERACTIVE: [(&str, &str); 7] = [
    ("TERM", "dumb"),
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
    ("EDITOR", "false"),
    ("VISUAL", "false"),
    ("GIT_EDITOR", "false"),
    ("GIT_TERMINAL_PROMPT", "0"),
];

/// A child's complete environment, shared by the commands that start from it
/// (with its digest, worked out once: see [`crate::env`]).
pub type ChildEnv = crate::env::Env;

/// The scrubbed base environment, computed once at startup.
#[derive(Debug, Clone)]
pub struct BaseEnv {
    vars: Vec<(String, String)>,
}

impl BaseEnv {
    /// Allowlisted server variables plus PATH, SHELL and [`NON_INTERACTIVE`].
    pub fn from_config(cfg: &SessionConfig) -> Self {
        let mut vars: Vec<(String, String)> = cfg
            .env_passthrough
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        vars.push(("PATH".into(), cfg.path.clone()));
        vars.push(("SHELL".into(), "/bin/sh".into()));
        vars.extend(
            NON_INTERACTIVE
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
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
        ChildEnv::from(env)
    }

    /// A base variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The environment of a command that runs on a terminal (`Spawn` with a
/// `pty`): `TERM` is the client's, and the [`NON_INTERACTIVE`] defaults that
/// stand in for a missing terminal are gone (git then pages with `less` and
/// edits with `vi`, as on any terminal). A value the session exported itself
/// stays, unless it equals the default it would replace.
pub fn on_terminal(env: &[(String, String)], term: &str) -> ChildEnv {
    env.iter()
        .filter(|(k, v)| k != "TERM" && !NON_INTERACTIVE.iter().any(|(dk, dv)| k == dk && v == dv))
        .cloned()
        .chain(std::iter::once(("TERM".to_owned(), term.to_owned())))
        .collect()
}

//! What running a line would do, told to a client before it runs it
//! (`Classify`): a voice client reads a line that changes something back to
//! the person and waits for a "yes", because speech recognition mishears.
//!
//! The answer comes from the verdicts the engine acts on, not from a second
//! opinion: the command policy's (a refused line is `Denied`), the builtins
//! (`cd`, `export`, `unset` change only the session), and the cache's class
//! from the one shell walk (pessimistic: what the walk cannot see into is
//! `Unknown`, never `ReadOnly`).

use super::lines::Parsed;
use super::Engine;
use crate::cache::{Class, Policy};
use crate::session::Builtin;
use std::sync::OnceLock;
use voxterm_protocol::LineClass;

impl Engine {
    /// The class of `line` and one line for a person saying why.
    pub fn classify(&self, line: &Parsed) -> (LineClass, String) {
        if let Err(why) = self.admit(line) {
            return (LineClass::Denied, format!("refused: {why}"));
        }
        match Builtin::from_line(line.line()) {
            Some(Builtin::Pwd) => {
                return (
                    LineClass::ReadOnly,
                    "pwd prints the session's directory".into(),
                )
            }
            Some(Builtin::Export(args)) if args.is_empty() => {
                return (
                    LineClass::ReadOnly,
                    "export lists the session's variables".into(),
                )
            }
            Some(_) => {
                return (
                    LineClass::Session,
                    "changes only this session (its directory or variables)".into(),
                )
            }
            None => {}
        }
        let verdict = match &self.cache {
            Some(cache) => line.verdict(cache).clone(),
            // Without a cache, the same table the cache would use.
            None => builtin_table().classify(&**line.line()),
        };
        let class = match verdict.class {
            Class::Pure | Class::Session | Class::FsRead | Class::Volatile => LineClass::ReadOnly,
            Class::Unknown => LineClass::Unknown,
            Class::Mutating => LineClass::Mutating,
        };
        (class, verdict.reason.to_string())
    }
}

/// The class table that ships with voxterm, compiled once.
fn builtin_table() -> &'static Policy {
    static TABLE: OnceLock<Policy> = OnceLock::new();
    TABLE.get_or_init(Policy::builtin)
}

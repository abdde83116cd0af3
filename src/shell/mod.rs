//! The one parse of a command line, and its walk, that the command policy, the
//! cache, builtin recognition and exec all read (DESIGN §4, §6).
//!
//! [`Line::parse`] parses a line once: with a real POSIX shell parser
//! (`brush-parser`), walked part by part there and then (every simple command
//! in pipelines, lists, subshells, groups, loops, conditionals, command
//! substitutions, parameter-expansion operands and here-document bodies, every
//! redirection, glob, expansion and assignment), and split into words the way
//! `sh` would split a plain line. [`walk`] replays what was found to a
//! [`Visitor`] as neutral facts: the cache maps them to classes, the policy
//! checks them. The walk fails closed: whatever it does not fully understand
//! is reported as [`Visitor::opaque`], which the cache treats as unknown
//! (never cached) and a policy refuses. [`Line::plan`] says whether the line
//! can be exec'd as its words or needs `/bin/sh -c`.
//!
//! Nothing here remembers lines: the engine keeps one memo of parsed lines.
//! [`parses`] counts the parses, so that tests can hold the engine to one per
//! request. `shell` depends on nothing else of the engine.

mod guards;
mod interactive;
mod line;
mod plan;
mod walk;
mod words;

pub use interactive::needs_terminal;
pub use line::{parses, AsLine, Line};
pub use plan::{Plan, PlanError};
pub use walk::{walk, Fact, Visitor};
pub use words::{dequote, program_name, touches_kernel_files};

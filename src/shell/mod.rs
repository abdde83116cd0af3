//! The one walk of a command line that the cache and the command policy both
//! read (DESIGN §4, §6).
//!
//! A line is parsed with a real POSIX shell parser (`brush-parser`) and walked
//! part by part: every simple command (in pipelines, lists, subshells, groups,
//! loops, conditionals, command substitutions, parameter-expansion operands and
//! here-document bodies), every redirection, glob, expansion and assignment is
//! reported to a [`Visitor`] as neutral facts. The cache maps them to classes,
//! the policy checks them. The walk fails closed: whatever it does not fully
//! understand is reported as [`Visitor::opaque`], which the cache treats as
//! unknown (never cached) and a policy refuses.
//!
//! `shell` depends on nothing else of the engine.

mod guards;
mod walk;
mod words;

pub use walk::{walk, Fact, Visitor};
pub use words::{dequote, program_name, touches_kernel_files};

//! Command execution: pooled worker slots, and spawning a command with limits
//! while streaming its output.
//!
//! The path of one command (DESIGN.md §2, steps 4–5):
//!
//! 1. The session takes a [`Slot`] from the shared [`Pool`] (`acquire`): at most
//!    `workers` children at once, queued by [`Priority`](voxterm_protocol::Priority)
//!    (high → normal → prefetch, FIFO within a class), with a per-tenant cap so
//!    one user cannot take every worker.
//! 2. [`run`] starts the job's parsed line as it was planned when it was parsed
//!    ([`Line::plan`](crate::shell::Line::plan): the program itself when there
//!    is no shell syntax, else `/bin/sh -c <line>`; nothing is split again here), spawns it in its own process group with
//!    the caller's scrubbed environment, stdin from `/dev/null`, in the session's
//!    cwd, and streams stdout/stderr to an [`OutputSink`](crate::output::OutputSink) in adaptive chunks
//!    (4 KiB first for a fast first byte, doubling up to 64 KiB under load).
//! 3. Timeout, cancel, shutdown, output cap, a closed sink or a dropped future all
//!    end in killing the whole group (SIGTERM, `kill_grace`, SIGKILL) and reaping
//!    the child; the [`Outcome`] says how it ended.
//!
//! Every child is spawned by one thread with a descriptor table and working
//! directory of its own (`spawner`), by glibc's `posix_spawn` (vfork-like:
//! the server's memory is not copied, and neither are its thousands of
//! connection descriptors), with an empty signal mask and every signal at its
//! default. The child is still the server's: `child` waits for it by pid.
//!
//! Commands may run as another user than the server (`[exec] run_as`,
//! [`RunAs`]): spawned through util-linux's `setpriv`, still by `posix_spawn`,
//! the server still their parent (see [`identity`]).
//!
//! Containment ([`Containment`], README "Containing children"): rlimits are set
//! with `prlimit` right after spawn ([`limits`]), and when cgroup v1 is writable
//! each command is born in its own cgroup ([`cgroup`]) that caps its pids and
//! memory and lets the kill reach daemonized descendants that left the group.

mod cgroup;
mod child;
mod contain;
mod error;
mod group;
mod identity;
mod input;
mod limits;
mod pool;
mod pty;
mod run;
mod spawner;

#[cfg(test)]
mod tests;

pub use cgroup::CgroupMode;
pub use contain::{CgroupStatus, Containment, ContainmentStatus};
pub use error::{ContainError, ExecError, IdentityError, PlanError, PoolError};
pub use identity::{Identity, RunAs};
pub use input::{Feed, Interactive};
pub use pool::{Pool, PoolConfig, Slot};
pub use pty::PtySize;
pub use run::{run, run_interactive, Job, Outcome, Stop};

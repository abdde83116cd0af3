//! The child's process group: signalling it, and killing it if `run` is dropped.
//!
//! Every command runs in its own process group (pgid = the child's pid), so one
//! `killpg` reaches the shell, its pipeline and anything it put in the background.
//! The group id stays reserved while the leader is an unreaped zombie, which is
//! why `run` signals the group *before* reaping: after reaping, a recycled pid
//! (pid_max can be as low as 32768) could make `killpg` hit a stranger.

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Sends `sig` to every process in group `pgid`; a group that is already gone is fine.
///
/// No such group while its leader is unreaped (callers guarantee that) means
/// the leader has not made its group yet: a command on a terminal becomes a
/// group leader by its own `setsid`, a moment after it is spawned. The leader
/// itself is signalled then (its pid is the pgid), so nothing escapes.
pub(crate) fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) => {}
        Err(Errno::ESRCH) => {
            let _ = kill(pgid, sig);
        }
        Err(e) => tracing::warn!(pgid = pgid.as_raw(), ?sig, error = %e, "killpg failed"),
    }
}

/// SIGKILLs the group on drop unless disarmed, so an aborted or dropped `run`
/// future never leaves processes behind.
pub(crate) struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl GroupGuard {
    pub(crate) fn new(pgid: Pid) -> Self {
        GroupGuard { pgid, armed: true }
    }

    /// Called once the group has been killed and the leader reaped: from then on
    /// the pgid may be recycled and must not be signalled.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            // The leader is not reaped yet (a dropped `Child` is reaped later,
            // see `child`), so the pgid is still ours.
            signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

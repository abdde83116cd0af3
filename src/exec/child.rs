//! A spawned command's main process, waited for by pid.
//!
//! The spawner hands back a pid, not a `tokio::process::Child` (see
//! `spawner`), so exec reaps its children itself: [`Child::wait`] waits for
//! SIGCHLD and reaps without blocking a thread. A `Child` dropped before it
//! was reaped (its `run` future dropped; the group has been SIGKILLed by
//! then, see `group`) is remembered and reaped later, at the next spawn or
//! reap, so no zombie piles up.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;

use nix::libc;
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

/// Children dropped before they were reaped.
static ORPHANS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// The main process of one command, until it is reaped.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Pid,
    reaped: bool,
}

impl Child {
    /// Takes charge of `pid`, a child of this process.
    pub(crate) fn new(pid: Pid) -> Child {
        reap_orphans();
        Child { pid, reaped: false }
    }

    /// Waits for it to exit and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        // Subscribed before the first look, so an exit in between still wakes us.
        let mut sigchld = signal(SignalKind::child())?;
        loop {
            if let Some(status) = try_reap(self.pid)? {
                self.reaped = true;
                reap_orphans();
                return Ok(status);
            }
            if sigchld.recv().await.is_none() {
                // The signal driver is gone (runtime shutting down): poll slowly.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            ORPHANS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.pid);
        }
    }
}

/// Reaps `pid` if it has exited; `None` while it runs.
fn try_reap(pid: Pid) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a live local int.
        let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WNOHANG) };
        match r {
            0 => return Ok(None),
            r if r == pid.as_raw() => return Ok(Some(ExitStatus::from_raw(status))),
            _ => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            }
        }
    }
}

/// Reaps the dropped children that have exited since.
fn reap_orphans() {
    let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
    // An error (ECHILD) means it is not ours to wait for any more: forget it too.
    orphans.retain(|&pid| matches!(try_reap(pid), Ok(None)));
}

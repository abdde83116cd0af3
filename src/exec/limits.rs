//! Resource limits of one child, applied with `prlimit(2)` right after spawn.
//!
//! Setting them in the child before `exec` would need `pre_exec`, which makes std
//! fall back from `posix_spawn` to fork+exec (tens of milliseconds from a large
//! server), and rlimits are per process, so the server cannot lend its own to
//! the spawning thread the way it lends its cgroup. `prlimit` on the new pid
//! costs about a microsecond per limit, but it lands *after* the child started:
//! measured on a loaded 2-core machine, a direct `cat /proc/self/limits` read its
//! limits before they were set in 15–50 % of runs. What a child does in that
//! window stays done (fds opened, address space mapped, processes forked); CPU
//! seconds used count anyway and file writes are checked at each write. With a
//! cgroup, [`Containment::limit`](super::Containment) also limits every process
//! the child forked in the window; the race-free bounds are the cgroup ones
//! (`pids.max`, memory), see [`super::cgroup`].

use std::io;

use nix::errno::Errno;
use nix::libc;
use nix::sys::resource::{getrlimit, Resource};
use nix::unistd::Pid;

use crate::config::ExecConfig;

/// True when the server runs as root (limits can be raised, NPROC is ignored).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One limit: which resource, and the soft and hard values to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    resource: Resource,
    name: &'static str,
    soft: u64,
    hard: u64,
}

/// The rlimits every child gets; empty when all are off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rlimits {
    limits: Vec<Limit>,
}

impl Rlimits {
    /// The limits configured in `cfg` (0 = off). A server without
    /// `CAP_SYS_RESOURCE` cannot raise a hard limit, so values above the
    /// server's own hard limit are clamped to it (children inherit it anyway).
    pub(crate) fn from_config(cfg: &ExecConfig) -> Rlimits {
        let privileged = is_root();
        let mut limits = Vec::new();
        let mut add = |resource, name, value: u64, hard_extra: u64| {
            if value == 0 {
                return;
            }
            let mut soft = value;
            let mut hard = value.saturating_add(hard_extra);
            if !privileged {
                if let Ok((_, cur_hard)) = getrlimit(resource) {
                    soft = soft.min(cur_hard);
                    hard = hard.min(cur_hard);
                }
            }
            limits.push(Limit {
                resource,
                name,
                soft,
                hard,
            });
        };
        // CPU: SIGXCPU at the soft limit (a program may catch it and exit cleanly),
        // SIGKILL one second later at the hard limit.
        add(Resource::RLIMIT_CPU, "cpu", cfg.rlimit_cpu, 1);
        add(Resource::RLIMIT_AS, "as", cfg.rlimit_as_bytes, 0);
        add(Resource::RLIMIT_FSIZE, "fsize", cfg.rlimit_fsize_bytes, 0);
        add(Resource::RLIMIT_NOFILE, "nofile", cfg.rlimit_nofile, 0);
        add(Resource::RLIMIT_NPROC, "nproc", cfg.rlimit_nproc, 0);
        Rlimits { limits }
    }

    /// True when no limit is configured (nothing to do after spawn).
    pub(crate) fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// True when `RLIMIT_NPROC` is configured (it has no effect for root).
    pub(crate) fn has_nproc(&self) -> bool {
        self.limits
            .iter()
            .any(|l| l.resource == Resource::RLIMIT_NPROC)
    }

    /// Human-readable list for the startup log, e.g. `cpu=600s nofile=1024`.
    pub(crate) fn describe(&self) -> String {
        if self.limits.is_empty() {
            return "none".to_owned();
        }
        let parts: Vec<String> = self
            .limits
            .iter()
            .map(|l| match l.resource {
                Resource::RLIMIT_CPU => format!("{}={}s", l.name, l.soft),
                _ => format!("{}={}", l.name, l.soft),
            })
            .collect();
        parts.join(" ")
    }

    /// The limits as util-linux `prlimit` options (`--nofile=64:64`), for a
    /// child that sets them on itself before it switches users (see
    /// [`Containment::chain`](super::Containment)).
    pub(crate) fn as_options(&self) -> Vec<std::ffi::OsString> {
        self.limits
            .iter()
            .map(|l| format!("--{}={}:{}", l.name, l.soft, l.hard).into())
            .collect()
    }

    /// Sets every limit on `pid`. A child that already exited is fine.
    pub(crate) fn apply(&self, pid: Pid) -> io::Result<()> {
        for l in &self.limits {
            let rl = libc::rlimit {
                rlim_cur: l.soft as libc::rlim_t,
                rlim_max: l.hard as libc::rlim_t,
            };
            // SAFETY: `rl` is a valid rlimit that outlives the call; a null old-limit
            // pointer is allowed by prlimit(2). The cast of the resource matches how
            // nix passes it to setrlimit on this target.
            let r = unsafe {
                libc::prlimit(
                    pid.as_raw(),
                    l.resource as _,
                    &rl as *const libc::rlimit,
                    std::ptr::null_mut(),
                )
            };
            if r != 0 {
                match Errno::last() {
                    Errno::ESRCH => return Ok(()),
                    e => {
                        return Err(io::Error::other(format!(
                            "prlimit({}, {}): {e}",
                            pid.as_raw(),
                            l.name
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

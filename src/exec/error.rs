//! Error types of the exec module.

pub use crate::shell::PlanError;
use thiserror::Error;

/// Why a worker slot could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    /// `queue_capacity` waiters are already queued; the caller should shed load
    /// (answer "busy") instead of piling up unbounded work.
    #[error("worker queue is full")]
    QueueFull,
}

/// Why [`run`](super::run) could not produce an [`Outcome`](super::Outcome).
///
/// A missing or non-executable program is *not* an error: like a shell, `run`
/// reports it as exit code 127 / 126 with a message on stderr.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The command line could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The process could not be started (fork/exec failure, missing cwd, out of pids…).
    #[error("cannot start command: {0}")]
    Spawn(std::io::Error),
    /// Reading the child's pipes or waiting for it failed.
    #[error("i/o error while running command: {0}")]
    Io(std::io::Error),
    /// The command could not be confined as configured, so it was not run (or
    /// was killed at once): containment fails closed.
    #[error("cannot contain command: {0}")]
    Contain(#[from] ContainError),
}

/// Why a child could not be given its limits or its cgroup.
#[derive(Debug, Error)]
pub enum ContainError {
    /// The cgroup v1 hierarchy of this controller is not mounted (or this process
    /// is not listed in it).
    #[error("cgroup v1 `{0}` hierarchy is not mounted")]
    NotMounted(&'static str),
    /// A cgroup file or directory could not be created, written or read.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The cgroupfs path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Internal: a cell was used after it was handed back.
    #[error("cgroup cell already released")]
    Released,
    /// `exec.cgroup = "required"` and the server could not set cgroups up.
    #[error("cgroup confinement is required but unavailable: {0}")]
    Required(String),
    /// `prlimit` on the new child failed.
    #[error("cannot set resource limits: {0}")]
    Rlimit(std::io::Error),
}

/// Why commands cannot run as the configured `[exec] run_as` user.
#[derive(Debug, Clone, Error)]
pub enum IdentityError {
    /// The user database has no such user.
    #[error("exec.run_as: there is no user {0:?} on this machine (create it, e.g. `useradd --system --no-create-home {0}`)")]
    NoSuchUser(String),
    /// Looking the user up failed.
    #[error("exec.run_as: cannot look up user {0:?}: {1}")]
    Lookup(String, String),
    /// `run_as` names root.
    #[error("exec.run_as: {0:?} is root; commands would keep every privilege (name an unprivileged user)")]
    Root(String),
    /// util-linux's `setpriv` is not installed.
    #[error("exec.run_as needs util-linux's setpriv (/usr/bin/setpriv), which is not installed")]
    NoSetpriv,
    /// A trial run as the user failed.
    #[error("exec.run_as: cannot run commands as {0:?}: {1} (the server must run as root, or hold CAP_SETUID, CAP_SETGID and CAP_KILL as ambient capabilities)")]
    Probe(String, String),
}

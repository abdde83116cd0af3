//! Per-tenant working roots (`[session] tenant_roots = "/srv/voxterm/{tenant}"`).

use crate::config::SessionConfig;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a session's working directory cannot be used for a command.
#[derive(Debug, thiserror::Error)]
pub enum CwdError {
    /// It no longer exists or cannot be opened.
    #[error("the session's working directory {cwd} cannot be opened ({source}): cd to a directory inside this tenant's root")]
    Gone {
        /// The session's cwd.
        cwd: PathBuf,
        /// Why it could not be opened.
        source: nix::Error,
    },
    /// It now resolves outside the tenant's root (a component was replaced
    /// by a symlink, or moved, after the `cd`).
    #[error("the session's working directory {cwd} now resolves to {real}, outside this tenant's root {root} (was it replaced by a symlink?): the command was not run; cd to a directory inside the root")]
    Outside {
        /// The session's cwd, as `cd` left it.
        cwd: PathBuf,
        /// Where it leads now.
        real: PathBuf,
        /// The tenant's root.
        root: PathBuf,
    },
}

/// Opens the session's `cwd` (following symlinks, as a `chdir` would) and
/// checks that what it opened lies inside `root` (canonical). The descriptor
/// is what the child is started in (`/proc/self/fd/N`), so a swap of the path
/// after this check cannot move the command elsewhere: `cd` was checked when
/// it ran, and this re-checks at every command, when the directory is used.
pub fn open_inside(cwd: &Path, root: &Path) -> Result<OwnedFd, CwdError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fd = open(
        cwd,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| CwdError::Gone {
        cwd: cwd.to_owned(),
        source,
    })?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
        CwdError::Gone {
            cwd: cwd.to_owned(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)),
        }
    })?;
    if !real.starts_with(root) {
        return Err(CwdError::Outside {
            cwd: cwd.to_owned(),
            real,
            root: root.to_owned(),
        });
    }
    Ok(fd)
}

/// Tenant names: 1-64 characters of `[A-Za-z0-9._-]`, and not `.` or `..` (a
/// tenant name becomes a path component of its root).
pub fn valid_tenant(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The tenant's working root, created (mode 0700, owned by `owner` when
/// commands run as another user) on first use and returned canonical; `None`
/// when `tenant_roots` is off.
pub fn tenant_root(
    config: &SessionConfig,
    tenant: &str,
    owner: Option<(u32, u32)>,
) -> std::io::Result<Option<PathBuf>> {
    if config.tenant_roots.is_empty() {
        return Ok(None);
    }
    if !valid_tenant(tenant) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("tenant name {tenant:?} cannot name a directory"),
        ));
    }
    let dir = PathBuf::from(config.tenant_roots.replace("{tenant}", tenant));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        // The directories above with the usual mode (a command user must be
        // able to pass through them), the root itself private.
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            // Another session of the tenant created it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        // Only the root itself: the directories above it are the operator's.
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
    }
    std::fs::canonicalize(dir).map(Some)
}

//! Per-tenant working roots (`[session] tenant_roots = "/srv/voxterm/{tenant}"`).

use crate::config::SessionConfig;
use std::path::PathBuf;

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

/// The tenant's working root, created (mode 0700) on first use and returned
/// canonical; `None` when `tenant_roots` is off.
pub fn tenant_root(config: &SessionConfig, tenant: &str) -> std::io::Result<Option<PathBuf>> {
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
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    std::fs::canonicalize(dir).map(Some)
}

//! The process around the server: hardening at start, warnings about secrets
//! the commands could read, and the Unix signals (SIGHUP reloads the tokens,
//! SIGINT and SIGTERM shut down).
//!
//! None of this concerns one connection; it is kept out of the listener so the
//! accept loop reads on its own.

use crate::config::Config;
use crate::security::Security;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Makes the process non-dumpable: same-user processes (the commands it
/// runs) can then no longer read `/proc/<pid>/environ`, `cmdline`, `mem` or
/// `maps`, nor ptrace it; core dumps are off too. Children get their own
/// dumpable flag back at `execve`.
pub(super) fn harden() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the server non-dumpable: commands can read its /proc/<pid>/environ and memory");
    }
}

/// Warnings about secrets the commands could read: without `[exec] run_as`
/// children run as the server's user, so whatever that user can read, every
/// tenant's commands can; with it, whatever the command user can read.
pub(super) fn warn_about_secrets(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let run_as = crate::exec::RunAs::new(&config.exec.run_as).ok().flatten();
    // The fixed command user, when there is one (a per-tenant template has no
    // single user to check: the mode bits for "others" stand in for it).
    let user = run_as
        .as_ref()
        .filter(|r| !r.per_tenant())
        .and_then(|r| r.for_tenant("").ok());
    // (An unreadable tokens file fails the start elsewhere; no warning here.)
    let tokens = config
        .auth
        .tokens_file
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
    if let Some((path, meta)) = tokens {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "the tokens file is readable by other users: chmod 600 it"
            );
        }
        match (&run_as, &user) {
            (None, _) => tracing::warn!(
                file = %path.display(),
                "commands run as the server's own user and can read the tokens file (and so take any tenant's token): set [exec] run_as to an unprivileged user (see README, Containing children)"
            ),
            (Some(_), Some(user)) if user.may(&meta, 4) => tracing::warn!(
                file = %path.display(),
                user = user.name(),
                "the command user can read the tokens file (and so take any tenant's token): chmod 600 it, owned by the server's user"
            ),
            (Some(_), None) if mode & 0o004 != 0 => tracing::warn!(
                file = %path.display(),
                "the tenants' command users can read the tokens file: chmod 600 it"
            ),
            _ => {}
        }
    }
    if let Some(user) = &user {
        let start = &config.session.root;
        if !start.as_os_str().is_empty() && config.session.tenant_roots.is_empty() {
            if let Ok(meta) = std::fs::metadata(start) {
                if !user.may(&meta, 5) {
                    tracing::warn!(
                        dir = %start.display(),
                        user = user.name(),
                        "the command user cannot enter the sessions' starting directory: commands will fail with \"Permission denied\" (choose a session.root it may read)"
                    );
                }
            }
        }
    }
}

/// Reloads the tokens file on every SIGHUP until `stop`: the usual way to
/// rotate a daemon's credentials (`kill -HUP`, `systemctl reload`) without
/// dropping the connections whose tokens stay. Installed only when a tokens file
/// is configured; otherwise SIGHUP keeps its default meaning.
pub(super) async fn reload_tokens_on_hangup(security: Arc<Security>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(store) = &security.tokens else {
        return;
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler: tokens reload needs a restart");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                match store.reload() {
                    Ok(n) => tracing::info!(tokens = n, "tokens file reloaded"),
                    Err(e) => tracing::error!(error = %e, "tokens file not reloaded: the tokens in force stay"),
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; use the process manager's kill");
            std::future::pending::<()>().await
        }
    }
}

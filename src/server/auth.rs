//! What the two ways of authenticating share: the token in the upgrade
//! request's headers (`http`) and the token in `Hello` (`connection`).
//!
//! Both count an unknown token against the client's address, and both refuse
//! an address that must wait after too many such failures. Keeping that here,
//! rather than in either of them, lets `connection` use it without reaching
//! back into `http`.

use super::context::ServerContext;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long `ip` must still wait after its failed authentications, if it
/// must. Only with tokens configured: without them nothing can fail.
pub(super) fn must_wait(ctx: &ServerContext, ip: IpAddr) -> Option<Duration> {
    let security = &ctx.security;
    let (Some(throttle), Some(_)) = (&security.auth_throttle, &security.tokens) else {
        return None;
    };
    throttle.check(ip, Instant::now()).err()
}

/// A wait as the whole seconds a client is told to retry after (at least 1,
/// rounded up, so a client that obeys is never early).
pub(super) fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Counts an unknown token from `ip` against its address; logs when the
/// address starts to wait.
pub(super) fn failed(ctx: &ServerContext, ip: IpAddr) {
    ctx.engine.metrics.auth_failed();
    if let Some(throttle) = &ctx.security.auth_throttle {
        if let Some(wait) = throttle.failed(ip, Instant::now()) {
            tracing::warn!(%ip, wait_s = wait.as_secs(), "repeated failed authentications: this address must wait before it may try again");
        }
    }
}

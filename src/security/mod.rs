//! Who may connect and what they may do (DESIGN §6): tokens mapped to tenants,
//! the bind check, `Origin` allowlist, command policy, per-tenant rate limits and
//! per-tenant working roots.
//!
//! Everything here is built once from the configuration ([`Security::from_config`])
//! and shared by every connection (the tokens file alone can be reloaded while
//! serving, on SIGHUP); the hot path only touches the rate limiter's
//! lock and, when a policy is configured, one parse of the command line.

mod limits;
mod policy;
mod roots;
pub mod tls;
mod tokens;
mod wrappers;

pub use limits::{AuthThrottle, OutputBudget, RateLimiter, Slot, Slots};
pub use policy::{CommandPolicy, DEFAULT_DENY_VARIABLES, STD_DIRS};
pub use roots::{open_inside, tenant_root, valid_tenant, CwdError};
pub use tokens::{
    entropy_bits, AuthError, Grant, Revoked, TokenCheck, TokenId, TokenStore, Tokens,
};

use crate::config::Config;
use std::net::IpAddr;
use std::sync::Arc;

/// The security state of a running server.
#[derive(Debug)]
pub struct Security {
    /// Tokens → tenants, reloadable; `None` runs without authentication (loopback only).
    pub tokens: Option<TokenStore>,
    /// Per-tenant `Exec` rate; `None` when unlimited.
    pub rate: Option<RateLimiter>,
    /// Allowed `Origin`s for `/ws`, normalized (lowercase, no trailing `/`).
    pub origins: Vec<String>,
    /// Per-tenant output bytes/s; `None` when unlimited.
    pub output: Option<OutputBudget>,
    /// TCP connections per source address, from `accept`; `None` when unlimited.
    pub ip_connections: Option<Slots<IpAddr>>,
    /// Connections per source address still sending their request head;
    /// `None` when unlimited.
    pub ip_pending: Option<Slots<IpAddr>>,
    /// Failed authentications per source address; `None` when not throttled.
    pub auth_throttle: Option<AuthThrottle>,
    /// Host names `/healthz` and `/metrics` answer to besides `localhost` and
    /// IP literals, lowercase.
    pub hosts: Vec<String>,
    /// WebSocket connections per tenant; `None` when unlimited.
    pub tenant_connections: Option<Slots<Arc<str>>>,
    /// Open connections per tenant, always counted (a tenant's own `Stats`).
    pub tenant_open: Slots<Arc<str>>,
    /// TLS for every connection of the port; `None` serves plain TCP.
    pub tls: Option<Arc<tls::ServerConfig>>,
}

impl Security {
    /// Builds it from the configuration: checks the bind address, reads the
    /// tokens file (the command policy is the engine's: `engine::admit`).
    pub fn from_config(config: &Config) -> Result<Arc<Security>, AuthError> {
        check_bind(config)?;
        let tokens = match &config.auth.tokens_file {
            Some(path) => Some(TokenStore::load(path)?),
            None => None,
        };
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(AuthError::Tls(tls::TlsError::Pem {
                    what: "the TLS configuration",
                    path: Default::default(),
                    message: "server.tls_cert and server.tls_key go together".into(),
                }))
            }
        };
        let limits = &config.limits;
        Ok(Arc::new(Security {
            tokens,
            output: OutputBudget::new(limits.output_bytes_per_second, limits.output_burst),
            ip_connections: Slots::new(limits.max_connections_per_ip),
            ip_pending: Slots::new(limits.max_pending_per_ip),
            auth_throttle: AuthThrottle::new(limits.auth_failures_per_ip),
            hosts: config
                .server
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            tenant_connections: Slots::new(limits.max_connections_per_tenant),
            tenant_open: Slots::unbounded(),
            tls,
            rate: RateLimiter::new(config.limits.commands_per_second, config.limits.burst),
            origins: config
                .server
                .allowed_origins
                .iter()
                .map(|o| normalize_origin(o))
                .collect(),
        }))
    }

    /// Whether a request with this `Origin` header may open `/ws`. Requests without
    /// one (non-browser clients) may; browsers always send one, so a page on a
    /// foreign site cannot drive a local server unless its origin is listed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => {
                let o = normalize_origin(o);
                self.origins.contains(&o)
            }
        }
    }

    /// Whether a browser request with this `Origin` may open `/ws`: a listed
    /// origin, or the page's own origin (`scheme://Host`, as served by the
    /// engine at `/`), but only under a `Host` that [`Self::host_allowed`]
    /// accepts, since a DNS-rebinding page's origin and `Host` agree too.
    pub fn origin_allowed_for(&self, origin: Option<&str>, host: Option<&str>, tls: bool) -> bool {
        if self.origin_allowed(origin) {
            return true;
        }
        let (Some(origin), Some(host)) = (origin, host) else {
            return false;
        };
        let scheme = if tls { "https" } else { "http" };
        self.host_allowed(Some(host))
            && normalize_origin(origin)
                == format!("{scheme}://{}", host.trim().to_ascii_lowercase())
    }

    /// Whether `/healthz` and `/metrics` answer a request with this `Host`
    /// header: IP literals, `localhost` (and `*.localhost`) and the configured
    /// `allowed_hosts`, with any port. A DNS-rebinding page reaches a local
    /// server under a host name of its own, which is refused; a request without
    /// `Host` (HTTP/1.0 tools) does not come from a browser and is let through.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let name = host_name(host);
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.hosts.contains(&name)
    }

    /// Whether a grant sees server-wide figures in `Stats`: an admin token's,
    /// or any connection of a server without tokens (there the tenant is
    /// whatever the client names, so there is nothing to keep apart).
    pub fn sees_everything(&self, grant: Option<&Grant>) -> bool {
        self.tokens.is_none() || grant.is_some_and(|g| g.admin)
    }
}

/// The name part of a `Host` header value, lowercase: without the port, and
/// without the brackets of an IPv6 literal.
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Refuses a configuration that would expose command execution beyond loopback
/// without authentication, unless `insecure_no_auth` says so explicitly.
pub fn check_bind(config: &Config) -> Result<(), AuthError> {
    let ip = config.server.listen.ip();
    if ip.is_loopback() || config.auth.tokens_file.is_some() || config.auth.insecure_no_auth {
        return Ok(());
    }
    Err(AuthError::InsecureBind(config.server.listen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn non_loopback_bind_needs_tokens_or_explicit_opt_out() {
        let mut c = Preset::Production.config();
        assert!(check_bind(&c).is_ok(), "loopback without tokens is fine");
        for addr in ["0.0.0.0:7878", "[::]:7878", "192.168.1.10:7878"] {
            c.server.listen = addr.parse().unwrap();
            let err = check_bind(&c).unwrap_err();
            assert!(err.to_string().contains("--tokens"), "{err}");
        }
        c.server.listen = "[::1]:7878".parse().unwrap();
        assert!(check_bind(&c).is_ok());
        c.server.listen = "0.0.0.0:7878".parse().unwrap();
        c.auth.insecure_no_auth = true;
        assert!(check_bind(&c).is_ok());
        c.auth.insecure_no_auth = false;
        c.auth.tokens_file = Some("/some/tokens.toml".into());
        assert!(check_bind(&c).is_ok());
    }

    #[test]
    fn origins_are_refused_unless_listed() {
        let mut c = Preset::Development.config();
        c.server.allowed_origins = vec!["https://App.example.com/".into()];
        let s = Security::from_config(&c).unwrap();
        assert!(s.origin_allowed(None));
        assert!(s.origin_allowed(Some("https://app.example.com")));
        assert!(!s.origin_allowed(Some("https://evil.example.com")));
        assert!(!s.origin_allowed(Some("null")));
    }

    #[test]
    fn the_pages_own_origin_is_allowed_under_an_allowed_host() {
        let c = Preset::Development.config();
        let s = Security::from_config(&c).unwrap();
        let host = Some("127.0.0.1:7878");
        assert!(s.origin_allowed_for(Some("http://127.0.0.1:7878"), host, false));
        assert!(s.origin_allowed_for(Some("HTTP://127.0.0.1:7878/"), host, false));
        assert!(s.origin_allowed_for(Some("http://localhost:7878"), Some("localhost:7878"), false));
        assert!(s.origin_allowed_for(Some("https://127.0.0.1:7878"), host, true));
        // Another scheme, port or host is another origin.
        assert!(!s.origin_allowed_for(Some("https://127.0.0.1:7878"), host, false));
        assert!(!s.origin_allowed_for(Some("http://127.0.0.1:7879"), host, false));
        assert!(!s.origin_allowed_for(Some("http://localhost:7878"), host, false));
        assert!(!s.origin_allowed_for(Some("null"), host, false));
        assert!(!s.origin_allowed_for(Some("http://127.0.0.1:7878"), None, false));
        // A DNS-rebinding name agrees with its own origin, but is no allowed host.
        let evil = Some("evil.example:7878");
        assert!(!s.origin_allowed_for(Some("http://evil.example:7878"), evil, false));
        assert!(
            s.origin_allowed_for(None, evil, false),
            "non-browser clients"
        );
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_listed() {
        let mut c = Preset::Development.config();
        c.server.allowed_hosts = vec!["Term.Example.com".into()];
        let s = Security::from_config(&c).unwrap();
        for ok in [
            None,
            Some("localhost"),
            Some("LOCALHOST:7878"),
            Some("127.0.0.1"),
            Some("127.0.0.1:7878"),
            Some("[::1]:7878"),
            Some("[::1]"),
            Some("10.1.2.3:80"),
            Some("term.example.com:7878"),
            Some("term.example.com."),
            Some("app.localhost:3000"),
        ] {
            assert!(s.host_allowed(ok), "{ok:?}");
        }
        for bad in [
            Some("evil.example"),
            Some("evil.example:7878"),
            Some("localhost.evil.example"),
            Some("127.0.0.1.nip.io"),
            Some(""),
        ] {
            assert!(!s.host_allowed(bad), "{bad:?}");
        }
    }
}

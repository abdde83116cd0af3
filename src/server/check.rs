//! The whole configuration checked before anything starts: the values alone
//! (`Config::validate`), then what only each part can judge, asked of the part
//! itself. It lives in `server` because the server is the one module that
//! knows every part; `config` stays a leaf that knows none of them.

use crate::config::{Config, ConfigError};

/// Checks `config` as a whole, so `voxterm serve` (and the load tester's
/// server) refuse to start on a configuration that would fail later, with the
/// part's own words.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    config.validate()?;
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        crate::security::tls::server_config(cert, key).map_err(|e| invalid(e.to_string()))?;
    }
    crate::security::CommandPolicy::new(&config.policy)
        .map_err(|e| invalid(format!("policy: {e}")))?;
    if let Some(p) = &config.auth.tokens_file {
        crate::security::Tokens::load(p).map_err(|e| invalid(e.to_string()))?;
    }
    crate::security::check_bind(config).map_err(|e| invalid(e.to_string()))?;
    crate::exec::Containment::check(&config.exec)
        .map_err(|e| invalid(format!("exec.cgroup: {e}")))?;
    crate::exec::RunAs::check(&config.exec.run_as).map_err(|e| invalid(e.to_string()))?;
    if let Some(p) = &config.cache.policy_file {
        crate::cache::Policy::load(p).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn a_public_bind_without_tokens_is_refused_before_start() {
        let mut c = Preset::Production.config();
        assert!(check(&c).is_ok(), "{:?}", check(&c));
        c.server.listen = "0.0.0.0:7878".parse().expect("an address");
        let e = check(&c)
            .expect_err("public bind without tokens")
            .to_string();
        assert!(e.contains("--tokens"), "{e}");
    }
}

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
    use std::path::Path;
    use std::time::Duration;

    /// What `voxterm serve --config file` does before it starts.
    fn load_checked(file: &Path) -> Result<Config, ConfigError> {
        let c = Config::load(Preset::Production, Some(file))?;
        check(&c)?;
        Ok(c)
    }

    #[test]
    fn cache_section_layers_and_checks() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[cache]\nredis_url = \"redis://127.0.0.1:6399\"\nl3_deadline = \"7ms\"\n",
        )
        .unwrap();
        let c = Config::load(Preset::Production, Some(&file)).unwrap();
        assert_eq!(c.cache.redis_url.as_deref(), Some("redis://127.0.0.1:6399"));
        assert_eq!(c.cache.l3_deadline, Duration::from_millis(7));
        assert!(c.cache.enabled);
        std::fs::write(&file, "[cache]\nredis_url = \"nope://x\"\n").unwrap();
        assert!(load_checked(&file).is_err());
        std::fs::write(&file, "[cache]\npolicy_file = \"/nonexistent/p.toml\"\n").unwrap();
        assert!(load_checked(&file).is_err());
        std::fs::write(&file, "[cache]\nl1_bites = 3\n").unwrap();
        assert!(load_checked(&file).is_err());
    }

    #[test]
    fn security_sections_layer_and_check() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nallowed_origins = [\"https://a.example\"]\n\
             [session]\ntenant_roots = \"/srv/{tenant}\"\n\
             [policy]\ndeny = [\"rm\", \"git push\"]\n\
             [limits]\ncommands_per_second = 10\nburst = 20\nmax_sessions_per_tenant = 8\n",
        )
        .unwrap();
        let c = Config::load(Preset::Production, Some(&file)).unwrap();
        assert_eq!(c.server.allowed_origins, ["https://a.example"]);
        assert_eq!(c.policy.deny, ["rm", "git push"]);
        assert_eq!(c.limits.commands_per_second, 10.0);
        assert_eq!((c.limits.burst, c.limits.max_sessions_per_tenant), (20, 8));
        assert!(c.auth.hello_token && c.auth.tokens_file.is_none());
        for bad in [
            "[policy]\ndeny = [\"/bin/rm\"]\n",
            "[session]\ntenant_roots = \"/srv/all\"\n",
            "[limits]\ncommands_per_second = -1\n",
            "[auth]\ntokens_file = \"/nonexistent/tokens.toml\"\n",
            "[server]\nlisten = \"0.0.0.0:7878\"\n",
            "[limitz]\nburst = 1\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(load_checked(&file).is_err(), "{bad}");
        }
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:7878\"\n[auth]\ninsecure_no_auth = true\n",
        )
        .unwrap();
        assert!(load_checked(&file).is_ok());
    }

    #[test]
    fn connection_limits_and_tls_keys_layer_and_check() {
        let dir = std::env::temp_dir().join(format!("voxterm-cfg5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nidle_timeout = \"5m\"\nping_interval = \"0s\"\n\
             [limits]\noutput_bytes_per_second = 1048576\noutput_burst = 0\n\
             max_connections_per_tenant = 4\nmax_connections_per_ip = 16\n",
        )
        .unwrap();
        let c = Config::load(Preset::Production, Some(&file)).unwrap();
        assert_eq!(c.server.idle_timeout, Duration::from_secs(300));
        assert!(c.server.ping_interval.is_zero());
        assert_eq!(c.limits.output_bytes_per_second, 1 << 20);
        assert_eq!(
            (
                c.limits.max_connections_per_tenant,
                c.limits.max_connections_per_ip
            ),
            (4, 16)
        );
        for bad in [
            "[server]\ntls_cert = \"/nonexistent/cert.pem\"\n",
            "[server]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(load_checked(&file).is_err(), "{bad}");
        }
    }

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

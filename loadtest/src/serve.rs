//! The server under test when no `--url` is given.
//!
//! It runs in a separate process (10,000 users means 20,000 sockets on one host,
//! and the open-files hard limit here is 20,000 per process), and that process is
//! this binary again, re-executed with the hidden `__serve` subcommand: the engine
//! comes from the voxterm library, so no `voxterm` binary has to be built first.
//! Its flags (`--server-arg`) are `voxterm serve`'s, parsed by the library's own
//! definition ([`voxterm::cli::ServeArgs`]), plus the cache bounds.

use anyhow::{bail, Context};
use clap::error::{ContextKind, ErrorKind};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use voxterm::cli::ServeArgs;
use voxterm::config::Config;

/// What `--server-arg` may pass: the options of `voxterm serve`, from the same
/// clap definition (a flag that works there works here), plus the cache bounds
/// the load tester sizes for a steady-state memory reading.
#[derive(Debug, Parser)]
#[command(name = "loadtest __serve")]
struct ChildArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// L1 cache bound per worker thread, bytes.
    #[arg(long, value_name = "N")]
    l1_bytes: Option<usize>,
    /// L2 cache bound, bytes.
    #[arg(long, value_name = "N")]
    l2_bytes: Option<u64>,
}

/// `voxterm serve` options the child refuses: the load tester picks the listen
/// address, and its users present no token and speak plain `ws://`.
const REFUSED: &[&str] = &["listen", "tokens", "tls_cert", "tls_key"];

/// The child's parser: `voxterm serve`'s, with what differs for a server under
/// test (preset `high-performance` by default, no `VOXTERM_*` environment).
fn command() -> clap::Command {
    let mut cmd = ChildArgs::command()
        // A repeated flag's last value wins (`--server-arg` lists are appended to).
        .args_override_self(true)
        // Only the flags count, not the environment of whoever runs the load tester.
        .mut_args(|a| a.env(None))
        .mut_arg("preset", |a| a.default_value("high-performance"))
        .mut_arg("no_batch", |a| a.visible_alias("no-coalesce"));
    for id in REFUSED {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    cmd
}

/// The flags `__serve` supports, as `--flag VALUE`, for error messages.
fn supported() -> Vec<String> {
    command()
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            if !a.get_action().takes_values() {
                return Some(format!("--{long}"));
            }
            let value = a
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| a.get_id().as_str().to_uppercase(), |v| v.to_string());
            Some(format!("--{long} {value}"))
        })
        .collect()
}

/// Whether `flag` (e.g. `--no-cache`) is one `__serve` supports.
pub fn supports(flag: &str) -> bool {
    let Some(name) = flag.strip_prefix("--") else {
        return false;
    };
    command()
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .any(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().unwrap_or_default().contains(&name)
        })
}

/// Parses `__serve` arguments; `--help` prints the child's help and exits.
fn parse(args: &[String]) -> anyhow::Result<ChildArgs> {
    let argv = std::iter::once("__serve".to_owned()).chain(args.iter().cloned());
    let matches = match command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) if e.kind() == ErrorKind::UnknownArgument => {
            let flag = e
                .get(ContextKind::InvalidArg)
                .map_or_else(|| "?".to_owned(), |v| v.to_string());
            bail!(
                "server flag {flag} is not supported by this server build (supported: {})",
                supported().join(", ")
            )
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            bail!("{}", first.trim_start_matches("error: "))
        }
    };
    if let Some(id) = REFUSED
        .iter()
        .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
    {
        bail!(
            "server flag --{} is not for the load tester's server: it picks the listen address itself, and its users present no token and speak plain ws://",
            id.replace('_', "-")
        );
    }
    Ok(ChildArgs::from_arg_matches(&matches)?)
}

/// Builds the configuration from `__serve` arguments.
pub fn config_from_args(listen: SocketAddr, args: &[String]) -> anyhow::Result<Config> {
    let args = parse(args)?;
    let mut config = args.serve.load_config()?;
    config.server.listen = listen;
    if config.predict.data_dir.is_none() {
        // Every run starts with a cold model (runs stay comparable) and leaves
        // nothing in the user's ~/.local/share.
        config.predict.data_dir = Some(
            std::env::temp_dir().join(format!("voxterm-loadtest-model-{}", std::process::id())),
        );
    }
    if let Some(b) = args.l1_bytes {
        config.cache.l1_bytes = b;
    }
    if let Some(b) = args.l2_bytes {
        config.cache.l2_bytes = b;
    }
    voxterm::server::check(&config)?;
    Ok(config)
}

/// The body of `loadtest __serve`: serve until SIGTERM/SIGINT, printing the bound
/// address on stdout first so the parent knows the port.
pub fn run_child(listen: SocketAddr, args: &[String]) -> anyhow::Result<()> {
    crate::raise_nofile();
    crate::init_tracing();
    let config = config_from_args(listen, args)?;
    let rt = voxterm::server::runtime(&config)?;
    rt.block_on(async move {
        let server = voxterm::server::Server::bind(config)
            .await
            .context("cannot bind")?;
        let addr = server.local_addr()?;
        println!("listening {addr}");
        server.run(voxterm::server::shutdown_signal()).await;
        anyhow::Ok(())
    })
}

/// A server child process.
pub struct ServerChild {
    child: Child,
    /// ws:// URL of its endpoint.
    pub url: String,
}

impl ServerChild {
    /// Starts `<this exe> __serve --listen 127.0.0.1:0 ARGS` and waits for its port.
    pub async fn start(args: &[String]) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("cannot find my own executable")?;
        let mut child = Command::new(exe)
            .arg("__serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("server did not start within 20 s")??;
        let Some(addr) = line.as_deref().and_then(|l| l.strip_prefix("listening ")) else {
            let status = child.wait().await.ok();
            bail!("server failed to start ({status:?}); see its stderr above");
        };
        let url = format!("ws://{addr}/ws");
        Ok(ServerChild { child, url })
    }

    /// Its process id (None once it has been waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether it is still running (false = it crashed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait; returns a description of an abnormal end.
    pub async fn stop(mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(format!("server exited during the run: {status}"));
        }
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(s)) if s.success() => None,
            Ok(Ok(s)) => Some(format!("server shutdown failed: {s}")),
            Ok(Err(e)) => Some(format!("cannot wait for the server: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Some("server did not shut down within 30 s".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn cache_bounds_override_the_preset_and_bad_values_are_refused() {
        let args = ["--l1-bytes=1048576", "--l2-bytes", "8388608"].map(String::from);
        let c = config_from_args(listen(), &args).expect("valid flags");
        assert_eq!((c.cache.l1_bytes, c.cache.l2_bytes), (1 << 20, 8 << 20));
        let preset = config_from_args(listen(), &[]).expect("no flags");
        assert!(
            preset.cache.l2_bytes > 8 << 20,
            "the preset's bound is larger"
        );

        let e =
            config_from_args(listen(), &["--l2-bytes=8MiB".to_owned()]).expect_err("bytes only");
        assert!(format!("{e:#}").contains("'8MiB' for '--l2-bytes"), "{e:#}");
        let e = config_from_args(listen(), &["--l9".to_owned()]).expect_err("unknown flag");
        assert!(
            format!("{e:#}").contains("--l9") && format!("{e:#}").contains("--l1-bytes N"),
            "{e:#}"
        );
    }

    #[test]
    fn the_flags_of_voxterm_serve_apply_over_the_high_performance_preset() {
        use voxterm::config::Preset;
        let c = config_from_args(listen(), &[]).expect("no flags");
        let hp = Preset::HighPerformance.config();
        assert_eq!(
            (c.exec.workers, c.cache.l2_bytes, c.server.listen),
            (hp.exec.workers, hp.cache.l2_bytes, listen())
        );
        assert!(c.predict.data_dir.is_some(), "a model directory of its own");

        let args = [
            "--preset=development",
            "--workers",
            "3",
            "--no-coalesce",
            "--no-predict",
            "--no-cache",
            "--redis-url=redis://127.0.0.1:1",
        ]
        .map(String::from);
        let c = config_from_args(listen(), &args).expect("valid flags");
        assert_eq!(c.exec.workers, 3);
        assert!(!c.server.coalesce && !c.predict.enabled && !c.cache.enabled);
        assert_eq!(c.cache.redis_url.as_deref(), Some("redis://127.0.0.1:1"));
        assert_eq!(
            c.cache.l2_bytes,
            Preset::Development.config().cache.l2_bytes
        );

        // As the hand-written parser before: the last of a repeated flag wins.
        let args = [
            "--workers=2",
            "--no-batch",
            "--workers",
            "5",
            "--no-coalesce",
        ]
        .map(String::from);
        let c = config_from_args(listen(), &args).expect("repeated flags");
        assert_eq!((c.exec.workers, c.server.coalesce), (5, false));
    }

    #[test]
    fn what_the_load_tester_owns_is_refused_and_the_environment_is_ignored() {
        for flag in ["--listen=127.0.0.1:1", "--tokens=t.toml"] {
            let e = config_from_args(listen(), &[flag.to_owned()]).expect_err(flag);
            assert!(
                format!("{e:#}").contains("not for the load tester"),
                "{e:#}"
            );
        }
        assert!(command().get_arguments().all(|a| a.get_env().is_none()));
        for flag in [
            "--no-cache",
            "--no-predict",
            "--no-batch",
            "--no-coalesce",
            "--l2-bytes",
        ] {
            assert!(supports(flag), "{flag}");
        }
        assert!(!supports("--tokens") && !supports("--l9") && !supports("no-cache"));
    }
}

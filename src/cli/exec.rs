//! `voxterm exec`: run one command on a server, like ssh runs one on a host.

use super::{client_runtime, DEFAULT_URL};
use crate::client::{Client, ClientOptions};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use voxterm_protocol::{CacheMode, Exec, Message, OpenSession, Priority, StreamKind};

/// Exit status when the server refused or could not run the command.
const SERVER_ERROR: u8 = 125;

/// Options of `voxterm exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Server WebSocket URL (`ws://`, or `wss://` for a server with TLS).
    #[arg(long, env = "VOXTERM_URL", default_value = DEFAULT_URL)]
    url: String,
    /// For `wss://`: PEM certificates to trust instead of the system's roots
    /// (a private CA or the server's self-signed certificate).
    #[arg(long, env = "VOXTERM_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Session to run in (cwd and env persist per session).
    #[arg(long, default_value = "default")]
    session: String,
    /// Tenant to act as (servers without tokens).
    #[arg(long, env = "VOXTERM_TENANT")]
    tenant: Option<String>,
    /// Authentication token.
    #[arg(long, env = "VOXTERM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Command timeout, e.g. `5s` or `250ms` (default: the server's).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print `voxterm-stats served_from=.. backend_us=.. e2e_us=..` as the last stderr line.
    #[arg(long)]
    stats: bool,
    /// The command. One argument is taken verbatim (`-- 'ls | wc -l'`); several are joined with spaces.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// Runs the command; exits with its status (128+signal when killed, 125 on a server error).
pub fn run(args: ExecArgs) -> ExitCode {
    let runtime = match client_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxterm: {e}");
            return ExitCode::from(SERVER_ERROR);
        }
    };
    match runtime.block_on(exec(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("voxterm: {e:#}");
            ExitCode::from(SERVER_ERROR)
        }
    }
}

async fn exec(args: ExecArgs) -> anyhow::Result<u8> {
    let command = args.command.join(" ");
    let opts = ClientOptions {
        tenant: args.tenant,
        token: args.token,
        ca_cert: args.ca_cert,
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&args.url, opts).await?;
    let session = if args.session == "default" {
        0
    } else {
        client
            .send(&Message::OpenSession(OpenSession {
                session: 1,
                name: args.session.clone(),
            }))
            .await?;
        match client.recv().await? {
            Message::SessionOpened(_) => 1,
            Message::Error(e) => anyhow::bail!("cannot open session: {:?}: {}", e.code, e.message),
            other => anyhow::bail!("unexpected frame 0x{:02x}", other.kind()),
        }
    };
    let timeout_ms = args
        .timeout
        .map_or(0, |t| t.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
    let request = client.next_request_id();
    let started = Instant::now();
    client
        .send(&Message::Exec(Exec {
            request,
            session,
            command,
            priority: Priority::High,
            timeout_ms,
            cache: CacheMode::Default,
        }))
        .await?;
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    loop {
        match client.recv().await? {
            Message::Output(o) if o.request == request => match o.stream {
                StreamKind::Stdout => {
                    stdout.write_all(&o.data)?;
                    stdout.flush()?;
                }
                StreamKind::Stderr => {
                    stderr.write_all(&o.data)?;
                    stderr.flush()?;
                }
            },
            Message::Exit(exit) if exit.request == request => {
                let e2e = started.elapsed();
                if args.stats {
                    writeln!(
                        stderr,
                        "voxterm-stats served_from={} backend_us={} e2e_us={}",
                        exit.served_from.as_str(),
                        exit.backend_us,
                        e2e.as_micros()
                    )?;
                }
                return Ok(match (exit.code, exit.signal) {
                    (Some(code), _) => (code & 0xff) as u8,
                    (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
                    (None, None) => {
                        writeln!(
                            stderr,
                            "voxterm: command stopped before it ran ({:?})",
                            exit.killed
                        )?;
                        SERVER_ERROR
                    }
                });
            }
            Message::Error(e) if e.request == Some(request) || e.request.is_none() => {
                anyhow::bail!("{:?}: {}", e.code, e.message)
            }
            _ => {}
        }
    }
}

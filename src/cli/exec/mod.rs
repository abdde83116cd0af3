//! `voxterm exec`: run one command on a server, like ssh runs one on a host,
//! and say in one line what happened whenever it was not the command itself
//! that decided how it ended (a timeout, the output cap, a cancel, a shutdown,
//! a server that cannot be reached).
//!
//! Three ways to run, as with ssh: a plain `Exec` (stdin `/dev/null`; the
//! answer may come from the cache) when local stdin is a terminal or
//! `/dev/null`, or with `-n`; a `Spawn` that forwards local stdin when it is
//! a pipe or a file (`stdin`); a `Spawn` on a terminal with `-t`, the local
//! terminal in raw mode meanwhile (`terminal`).

mod stdin;
mod terminal;

use super::{client_runtime, DEFAULT_URL};
use crate::client::{Client, ClientError, ClientOptions};
use clap::Args;
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use voxterm_protocol::{
    Attach, CacheMode, Cancel, Configure, ErrorCode, Exec, Exit, KillReason, Message, NoticeKind,
    OpenSession, Priority, Pty, Resize, Spawn, StreamKind, Welcome,
};

/// The exit statuses of `voxterm exec` that are not the command's own (see
/// `--help` and the README): a script can tell them apart.
pub mod status {
    /// The server cut the output at its output cap and stopped the command.
    pub const OUTPUT_CAP: u8 = 123;
    /// The command ran past its timeout and the server killed it (as GNU `timeout`).
    pub const TIMEOUT: u8 = 124;
    /// The server refused the command, could not run it, could not be reached
    /// or shut down before it finished.
    pub const SERVER: u8 = 125;
    /// The command was cancelled (128 + SIGINT, as after Ctrl-C).
    pub const CANCELLED: u8 = 130;
    /// Local standard output was closed (`voxterm exec … | head`): 128 +
    /// SIGPIPE, quietly, as a local command ends.
    pub const BROKEN_PIPE: u8 = 141;
}

/// Options of `voxterm exec`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: the command's own; 128+N when it died of signal N; 123 when the \
server cut its output at the output cap; 124 when it ran past its timeout; 125 \
when the server refused it, could not run it, could not be reached or shut \
down; 130 when it was cancelled; 141 when local output was closed (| head).

The command runs under /bin/sh on the server when it has shell syntax. Several \
arguments are joined with spaces, so their quoting is lost (as with ssh): quote \
the whole line (-- 'printf \"%s\\n\" \"a b\"'), or pass it verbatim with -f FILE \
or --stdin-line.

Standard input is forwarded to the command when it is a pipe or a file \
(echo x | voxterm exec -- cat), as ssh does; such a command is never answered \
from the cache. -n keeps it /dev/null. Programs that need a terminal (vi, top, \
less, python3 with no script) need -t; without it the command gets TERM=dumb, \
PAGER=cat and an EDITOR that fails at once instead of waiting.")]
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
    /// Command timeout, e.g. `5s` or `250ms`; 0 or absent: the server's default.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print `voxterm-stats served_from=.. backend_us=.. e2e_us=..` as the last stderr line.
    #[arg(long)]
    stats: bool,
    /// Read the command line from FILE, verbatim (a script: several lines, any quoting).
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["command", "stdin_line"])]
    file: Option<PathBuf>,
    /// Read the command line from standard input, verbatim.
    #[arg(long, conflicts_with = "command")]
    stdin_line: bool,
    /// Do not forward standard input: the command's stdin is /dev/null (and
    /// its answer may come from the cache), as `ssh -n`.
    #[arg(short = 'n', long = "no-stdin")]
    no_stdin: bool,
    /// Run the command on a terminal (vi, top, less, a REPL), as `ssh -t`: the
    /// local terminal is in raw mode until the command ends, and its size follows.
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// When the connection drops, do not reconnect and re-attach to the
    /// command (by default a command without forwarded input outlives a
    /// dropped connection for the server's detach grace, and its output
    /// continues where it stopped).
    #[arg(long)]
    no_reattach: bool,
    /// The command (`--` before it is optional). One argument is taken verbatim
    /// (`-- 'ls | wc -l'`); several are joined with spaces.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 1..,
        required_unless_present_any = ["file", "stdin_line"]
    )]
    command: Vec<String>,
}

/// Runs the command; exits with its status or one of [`status`].
pub fn run(args: ExecArgs) -> ExitCode {
    let runtime = match client_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxterm: cannot start: {e}");
            return ExitCode::from(status::SERVER);
        }
    };
    match runtime.block_on(exec(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("voxterm: {e}");
            ExitCode::from(status::SERVER)
        }
    }
}

/// The command line to send: from the arguments, a file or standard input.
fn command_line(args: &ExecArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.file {
        return std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()));
    }
    if args.stdin_line {
        let mut line = String::new();
        std::io::stdin().read_to_string(&mut line).map_err(|e| {
            anyhow::anyhow!("cannot read the command line from standard input: {e}")
        })?;
        return Ok(line);
    }
    Ok(args.command.join(" "))
}

/// A connection error in the words a user can act on: the URL, the cause
/// once, and what to do.
fn explain_connect(url: &str, e: &ClientError) -> String {
    use tokio_tungstenite::tungstenite::Error as Ws;
    match e {
        ClientError::Connect { .. } => {
            format!("{url}: {e}; is the server running? start it with: voxterm serve")
        }
        ClientError::Ws(Ws::Http(response)) if response.status() == 404 => format!(
            "{url}: the server answered 404 Not Found: the WebSocket endpoint is /ws (e.g. {DEFAULT_URL})"
        ),
        ClientError::Ws(Ws::Http(response)) => format!(
            "{url}: the server refused the WebSocket upgrade with {}",
            response.status()
        ),
        ClientError::Protocol(m)
            if m.contains("unsupported URL scheme") && url.starts_with("http") =>
        {
            format!("{url}: use ws:// (or wss://), not http:// (e.g. {DEFAULT_URL})")
        }
        _ => format!("{url}: {e}"),
    }
}

async fn exec(args: ExecArgs) -> anyhow::Result<u8> {
    let command = command_line(&args)?;
    let opts = ClientOptions {
        tenant: args.tenant.clone(),
        token: args.token.clone(),
        ca_cert: args.ca_cert.clone(),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&args.url, opts.clone())
        .await
        .map_err(|e| anyhow::anyhow!(explain_connect(&args.url, &e)))?;
    let session = open_session(&mut client, &args.session).await?;
    // 0 is the protocol's "the server's default".
    let timeout_ms = args
        .timeout
        .map_or(0, |t| t.as_millis().min(u128::from(u32::MAX)) as u32);
    let request = client.next_request_id();
    let forward = !args.no_stdin && !args.stdin_line && stdin::worth_forwarding();
    let frame = if args.tty || forward {
        let pty = args.tty.then(|| {
            let (rows, cols) = terminal::size();
            Pty {
                rows,
                cols,
                term: std::env::var("TERM").unwrap_or_default(),
            }
        });
        Message::Spawn(Box::new(Spawn {
            request,
            session,
            command,
            timeout_ms,
            pty,
        }))
    } else {
        Message::Exec(Exec {
            request,
            session,
            command,
            priority: Priority::High,
            timeout_ms,
            cache: CacheMode::Default,
        })
    };
    let mut feed = match &frame {
        Message::Spawn(_) if args.no_stdin || args.stdin_line => Some(stdin::Feed::empty(request)),
        Message::Spawn(_) => Some(stdin::Feed::stdin(request)),
        _ => None,
    };
    // Only an `Exec` is taken over after a drop: input sent into a dying
    // connection could be lost, and a command must not see holes in its input.
    // Asked for alongside the command, not before it: its answer (the grace)
    // comes in the loop below and costs the command no round trip.
    let mut configuring = matches!(frame, Message::Exec(_)) && !args.no_reattach;
    if configuring {
        ask_reattach(&mut client).await?;
    }
    let mut reattach = Duration::ZERO;
    let mut last_seq = None;
    // The connection the command is on, as far as the server has said: the
    // one it was sent on, until a take-over is confirmed. An `Attach` names
    // it (if the connection that sent the `Attach` drops before the answer,
    // the server still finds the command from here).
    let mut home = client.welcome().connection;
    // When the connection was lost, until the server confirms the take-over.
    let mut lost_at: Option<Instant> = None;
    let started = Instant::now();
    client.send(&frame).await?;
    let mut raw = match args.tty && !args.no_stdin {
        true => terminal::RawMode::enter()?,
        false => None,
    };
    let mut resized = match args.tty {
        true => Some(signal(SignalKind::window_change())?),
        false => None,
    };
    let mut ended = Ended::signals()?;
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    loop {
        let message = tokio::select! {
            m = client.recv() => match m {
                Ok(m) => m,
                Err(e) if !reattach.is_zero() => {
                    let _ = writeln!(stderr, "voxterm: the connection to {} was lost ({e}); reconnecting…", args.url);
                    let old = home;
                    let lost = Instant::now();
                    client = reconnect(&args.url, &opts, lost + reattach).await?;
                    reattach = reattach_grace(&mut client).await?;
                    let session = open_session(&mut client, &args.session).await?;
                    client
                        .send(&Message::Attach(Attach { request, connection: old, session, after_seq: last_seq }))
                        .await?;
                    lost_at = Some(lost);
                    continue;
                }
                Err(e) => {
                    drop(raw.take());
                    anyhow::bail!("the connection to {} ended: {e}", args.url)
                }
            },
            chunk = next_chunk(&mut feed) => {
                if let Some(feed) = &mut feed {
                    feed.take(chunk);
                    let ready = feed.ready();
                    client.send_all(&ready).await?;
                }
                continue;
            }
            Some(()) = next_signal(&mut resized) => {
                let (rows, cols) = terminal::size();
                client.send(&Message::Resize(Resize { request, rows, cols })).await?;
                continue;
            }
            signal = ended.next() => {
                // The command goes with us: cancelled and the connection
                // closed on purpose (a connection merely dropped would keep
                // it for re-attach). The terminal is restored as `raw` drops.
                drop(raw.take());
                stop(client, request).await;
                return Ok(128 + signal);
            }
        };
        match message {
            Message::Output(o) if o.request == request => {
                last_seq = Some(o.seq);
                let written = match o.stream {
                    StreamKind::Stdout => stdout.write_all(&o.data).and_then(|()| stdout.flush()),
                    StreamKind::Stderr => stderr.write_all(&o.data).and_then(|()| stderr.flush()),
                };
                match written {
                    Ok(()) => {}
                    // `voxterm exec … | head`: the reader is gone; end as a
                    // local command would, and stop the command on the server.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                        stop(client, request).await;
                        return Ok(status::BROKEN_PIPE);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Message::InputCredit(c) if c.request == request => {
                if let Some(feed) = &mut feed {
                    feed.credit(c.bytes);
                    let ready = feed.ready();
                    client.send_all(&ready).await?;
                }
            }
            Message::Configured(c) => {
                configuring = false;
                reattach = Duration::from_millis(u64::from(c.reattach_ms));
            }
            // A server that does not know `Configure`: no re-attach.
            Message::Error(e)
                if configuring && e.request.is_none() && e.code == ErrorCode::UnknownType =>
            {
                configuring = false;
            }
            Message::Notice(n) if n.kind == NoticeKind::Reattached => {
                home = client.welcome().connection;
                reconnected(
                    &mut stderr,
                    lost_at.take(),
                    "the command's output continues",
                );
            }
            Message::Notice(n) if n.request == request => {
                let _ = writeln!(stderr, "voxterm: {}", n.message);
            }
            Message::Exit(exit) if exit.request == request => {
                drop(raw.take());
                if args.stats {
                    let _ = writeln!(
                        stderr,
                        "voxterm-stats served_from={} backend_us={} e2e_us={}",
                        exit.served_from.as_str(),
                        exit.backend_us,
                        started.elapsed().as_micros()
                    );
                }
                let (code, said) = ending(&exit, client.welcome(), args.timeout);
                if let Some(said) = said {
                    let _ = writeln!(stderr, "voxterm: {said}");
                }
                return Ok(code);
            }
            // Written as the connection died, it never reached the server:
            // it did not run, so it is sent again, as it was, on this one.
            Message::Error(e) if e.request == Some(request) && e.code == ErrorCode::NotReceived => {
                client.send(&frame).await?;
                home = client.welcome().connection;
                reconnected(
                    &mut stderr,
                    lost_at.take(),
                    "the command had not reached the server, so it was sent again",
                );
            }
            Message::Error(e) if e.request == Some(request) && e.code == ErrorCode::RequestLost => {
                drop(raw.take());
                anyhow::bail!(
                    "the connection was lost and the command could not be taken over again: {}",
                    e.message
                )
            }
            Message::Error(e) if e.request == Some(request) || e.request.is_none() => {
                drop(raw.take());
                anyhow::bail!("{}", refusal(&e))
            }
            _ => {}
        }
    }
}

/// Tells the person that the connection lost at `lost` is back, and `what`
/// became of the command.
fn reconnected(stderr: &mut impl Write, lost: Option<Instant>, what: &str) {
    if let Some(lost) = lost {
        let secs = lost.elapsed().as_secs_f64();
        let _ = writeln!(stderr, "voxterm: reconnected after {secs:.1} s; {what}");
    }
}

/// Cancels `request` and closes the connection with a close frame: a client
/// that leaves on purpose takes its command along (a dropped connection would
/// leave it held for re-attach).
async fn stop(mut client: Client, request: u32) {
    let _ = client.send(&Message::Cancel(Cancel { request })).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
}

/// Binds the session named `name` (handle 0 is `default`; another is handle 1).
async fn open_session(client: &mut Client, name: &str) -> anyhow::Result<u32> {
    if name == "default" {
        return Ok(0);
    }
    client
        .send(&Message::OpenSession(OpenSession {
            session: 1,
            name: name.to_owned(),
        }))
        .await?;
    match client.recv().await? {
        Message::SessionOpened(_) => Ok(1),
        Message::Error(e) => {
            anyhow::bail!("cannot open session {name:?}: {:?}: {}", e.code, e.message)
        }
        other => anyhow::bail!("unexpected frame 0x{:02x}", other.kind()),
    }
}

/// Sends `Configure { reattach: true }` (answered by `Configured`).
async fn ask_reattach(client: &mut Client) -> anyhow::Result<()> {
    client
        .send(&Message::Configure(Configure {
            suggestions: 0,
            rejections: false,
            reattach: true,
        }))
        .await?;
    Ok(())
}

/// Asks for re-attach and waits for the grace the server grants (zero: none, or a server
/// that does not know `Configure`); a refusal is told in the words of any other.
async fn reattach_grace(client: &mut Client) -> anyhow::Result<Duration> {
    match client.reattach().await {
        Ok(grace) => Ok(grace),
        Err(ClientError::Refused(e)) => anyhow::bail!("{}", refusal(&e)),
        Err(e) => Err(e.into()),
    }
}

/// Connects again, trying until `until` (the end of the server's grace).
async fn reconnect(url: &str, opts: &ClientOptions, until: Instant) -> anyhow::Result<Client> {
    let mut wait = Duration::from_millis(100);
    loop {
        match Client::connect(url, opts.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() + wait < until => {
                tracing::debug!(error = %e, "reconnect failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => anyhow::bail!(
                "the connection was lost and could not be made again in time: {}",
                explain_connect(url, &e)
            ),
        }
    }
}

/// An `Error` in words: the message, and the code where the message alone
/// would not say what kind of refusal it is.
fn refusal(e: &voxterm_protocol::Error) -> String {
    use voxterm_protocol::ErrorCode as C;
    match e.code {
        C::PolicyDenied | C::InvalidArgument | C::RateLimited | C::InvalidCommand => {
            e.message.clone()
        }
        code => format!("{code:?}: {}", e.message),
    }
}

async fn next_chunk(feed: &mut Option<stdin::Feed>) -> Option<Vec<u8>> {
    match feed {
        Some(feed) if feed.wants_more() => feed.next().await,
        _ => std::future::pending().await,
    }
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The signals that end `voxterm exec` early: it returns (restoring the
/// terminal) with 128 + the signal, and the command is cancelled (`stop`).
struct Ended {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Ended {
    fn signals() -> std::io::Result<Ended> {
        Ok(Ended {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.term.recv() => 15,
            _ = self.hup.recv() => 1,
            _ = self.int.recv() => 2,
        }
    }
}

/// The exit status for a finished command, and the line to print when the
/// server, not the command, decided how it ended.
fn ending(exit: &Exit, welcome: &Welcome, asked: Option<Duration>) -> (u8, Option<String>) {
    let own = match (exit.code, exit.signal) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => status::SERVER,
    };
    // A cut stream is the output cap, whether the kill or the exit came first.
    let cut = exit.killed == KillReason::OutputLimit
        || (exit.killed == KillReason::None && exit.truncated);
    if cut {
        return (
            status::OUTPUT_CAP,
            Some(format!(
                "output cut at {} (the server's output cap); the command was stopped",
                bytes(welcome.limits.output_cap_bytes)
            )),
        );
    }
    match exit.killed {
        KillReason::None | KillReason::OutputLimit => (own, None),
        KillReason::Timeout => {
            let after = match asked.filter(|t| !t.is_zero()) {
                Some(t) => t,
                None => Duration::from_millis(u64::from(welcome.limits.default_timeout_ms)),
            };
            (
                status::TIMEOUT,
                Some(format!(
                    "killed after {} (timeout); give it longer with --timeout",
                    humantime::format_duration(after)
                )),
            )
        }
        KillReason::Cancelled => (status::CANCELLED, Some("cancelled".to_owned())),
        KillReason::Shutdown => (
            status::SERVER,
            Some("the server shut down before the command finished".to_owned()),
        ),
    }
}

/// `8388608` → `8 MiB`, for messages.
fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

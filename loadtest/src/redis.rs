//! A `redis-server` of the load tester's own (`--with-redis`): the server child
//! gets it as its L3 cache tier, and the `chaos` scenario kills and restarts it
//! in the middle of the run to check that the server keeps answering without it
//! and reconnects by itself.
//!
//! The process is killed when this handle is dropped (also on error paths), and
//! on Linux asks the kernel to kill it when the load tester dies first
//! (`PR_SET_PDEATHSIG`, which fires when the spawning thread ends: the main
//! thread or a runtime worker, which live as long as the load tester), so no Redis is left
//! behind on a free port.

use anyhow::{bail, Context};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A `redis-server` on a loopback port, without persistence.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers PING.
    pub async fn start() -> anyhow::Result<RedisServer> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .context("cannot find a free port for redis-server")?;
            l.local_addr()?.port()
        };
        let mut r = RedisServer { port, child: None };
        r.spawn().await?;
        Ok(r)
    }

    /// `redis://127.0.0.1:PORT`, for the server's `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only the
        // calling (child) process; it runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context(
            "cannot start redis-server (install it: apt-get install redis-server, brew install redis)",
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            if self.command("PING").await.is_ok_and(|r| r == "+PONG") {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                bail!(
                    "redis-server on port {} did not answer within 10 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills it with SIGKILL (a crash, not a shutdown: clients see their
    /// connections reset) and waits for it to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await.context("cannot kill redis-server")?;
        }
        Ok(())
    }

    /// Starts it again on the same port (empty: it keeps no data).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    /// Keys stored, or an error when it does not answer.
    pub async fn dbsize(&self) -> anyhow::Result<u64> {
        let reply = self.command("DBSIZE").await?;
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected DBSIZE reply {reply:?}"))
    }

    /// One inline command, one single-line reply (without the CRLF).
    async fn command(&self, cmd: &str) -> anyhow::Result<String> {
        let io = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
            s.write_all(format!("{cmd}\r\n").as_bytes()).await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 256];
            while !buf.ends_with(b"\r\n") && buf.len() < 4096 {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            anyhow::Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
        };
        tokio::time::timeout(Duration::from_secs(2), io)
            .await
            .context("redis-server did not answer within 2 s")?
    }
}

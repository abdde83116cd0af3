//! A `Spawn`: a command with live input, and perhaps a terminal. The same
//! way as an uncached `Exec` (admission already done, builtins in-process, a
//! worker slot, the same job), with three differences: never cached nor
//! prefetched (what it prints depends on what the client types), its input
//! comes from the client, and on a terminal its environment says so.

use super::lines::Parsed;
use super::workers::Why;
use super::{Engine, Finish};
use crate::exec::{Interactive, PtySize};
use crate::metrics::Cause;
use crate::output::OutputSink;
use crate::session::{on_terminal, Builtin, Session};
use crate::Cancel;
use voxterm_protocol::Priority;

/// `TERM` when the client names none.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// A `Spawn`'s terminal, as the engine runs it.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// Its size.
    pub size: PtySize,
    /// `TERM` for the command.
    pub term: String,
}

impl Engine {
    /// Runs a `Spawn`'s line with `feed` as its input (on `terminal` when
    /// given), streaming output into `sink`. Exactly one `Finish`.
    #[allow(clippy::too_many_arguments)]
    pub async fn spawn<S: OutputSink>(
        &self,
        session: &Session,
        line: &Parsed,
        timeout_ms: u32,
        feed: tokio::sync::mpsc::UnboundedReceiver<crate::exec::Feed>,
        terminal: Option<Terminal>,
        sink: &mut S,
        cancel: Cancel,
    ) -> Finish {
        if let Err(refused) = self.begin(session, line) {
            return refused;
        }
        if let Some(builtin) = Builtin::from_line(line.line()) {
            return self.builtin(session, &builtin, sink).await;
        }
        let mut job = match self.job(session, line, self.timeout_for(timeout_ms)) {
            Ok(job) => job,
            Err(refused) => return refused,
        };
        if let Some(t) = &terminal {
            job.env = on_terminal(&job.env, &t.term);
        }
        // It may write: the tenant's fs-read answers are invalidated before
        // and after, as for an uncached `Exec` (see `execute`).
        let cache = self
            .cache
            .as_ref()
            .filter(|c| c.invalidates(line.verdict(c)));
        let tenant = session.tenant();
        if let Some(cache) = cache {
            cache.bump(tenant).await;
        }
        let io = Interactive {
            feed,
            pty: terminal.map(|t| t.size),
        };
        // A person is typing into it: ahead of queued normal work.
        let why = Why {
            cause: Cause::Interactive,
            class: self
                .cache
                .as_ref()
                .map_or("none", |c| line.verdict(c).class.as_str()),
            cacheable_miss: false,
        };
        let finish = self
            .workers
            .run(tenant, Priority::High, &job, Some(io), why, sink, cancel)
            .await;
        if let Some(cache) = cache {
            cache.bump(tenant).await;
        }
        finish
    }
}

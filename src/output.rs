//! Where a running command's output goes: the neutral meeting point of the
//! parts that produce output (`exec` runs a child, the cache replays an
//! entry, builtins answer in-process) and the parts that carry it (a
//! single-flight fan-out to every follower, a connection's writer). Neither
//! side imports the other; both import this.

use std::future::Future;

use thiserror::Error;
use voxterm_protocol::StreamKind;

/// Receives a command's output, chunk by chunk, in order per stream.
pub trait OutputSink: Send {
    /// Deliver one chunk; awaiting here is the back-pressure path (a slow client
    /// slows only its own command). Err = receiver gone.
    fn chunk(
        &mut self,
        stream: StreamKind,
        data: &[u8],
    ) -> impl Future<Output = Result<(), SinkClosed>> + Send;

    /// `n` bytes of the command's input (a `Spawn`'s) were passed on to it:
    /// the client may send that many more (`InputCredit`). Only commands with
    /// live input call it.
    fn input_consumed(&mut self, n: usize) -> impl Future<Output = Result<(), SinkClosed>> + Send {
        let _ = n;
        std::future::ready(Ok(()))
    }
}

/// The output receiver is gone (client disconnected or request dropped): the
/// producer stops (a running command's process group is killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("output sink closed")]
pub struct SinkClosed;

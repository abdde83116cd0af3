//! What the spawn benches share: a sink that drops output, so that the spawn
//! is measured and not a client. (A directory, not `benches/support.rs`, so
//! cargo does not take it for a bench of its own.)

use std::future::Future;

use voxterm::output::{OutputSink, SinkClosed};
use voxterm_protocol::StreamKind;

/// Drops output.
pub struct Discard;

impl OutputSink for Discard {
    fn chunk(
        &mut self,
        _: StreamKind,
        _: &[u8],
    ) -> impl Future<Output = Result<(), SinkClosed>> + Send {
        std::future::ready(Ok(()))
    }
}

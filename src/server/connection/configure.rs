//! `Configure`: the opt-in additions to version 1, and the answer that tells
//! a client the timers and sizes it paces itself by.
//!
//! Re-attach (`replay`, `detached`) is granted when the server's
//! `detach_grace` is not 0; `Configured.reattach_ms` says for how long.
//!
//! Additions are asked for, never imposed: a client that does not send
//! `Configure` gets exactly the frames it got before they existed, so every
//! existing client keeps working. What the server cannot give (suggestions
//! without prediction) is granted as 0, and `Configured` says so.

use super::Connection;
use crate::server::request::max_output_data;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxterm_protocol::{Configure, Configured, Message, Settings};

/// Milliseconds of a configured duration, saturated into the field.
fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A configured size, saturated into the field.
fn size(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Connection {
    /// `Configure`: records what is granted and answers with `Configured`.
    /// The answer is queued before the change to rejections takes effect for
    /// later frames, so a client sees `Configured` before any `Rejected`.
    pub(super) async fn on_configure(&mut self, configure: Configure) {
        let cfg = self.engine.config();
        let most = u8::try_from(self.engine.max_suggestions()).unwrap_or(u8::MAX);
        let suggestions = configure.suggestions.min(most);
        self.shared.set_suggestions(suggestions);
        self.rejections = configure.rejections;
        // Re-attach, once on, stays on: routes already made keep their frames.
        let grace = cfg.server.detach_grace;
        let reattach = configure.reattach && !grace.is_zero();
        if reattach && self.shared.acks().is_none() {
            self.shared.enable_reattach(cfg.server.detach_buffer);
            // An `Attach` naming this connection from a later one of its
            // tenant may end it (`detached`).
            let lost = CancellationToken::new();
            self.taken_over = Some(Box::pin(lost.clone().cancelled_owned()));
            if let Some(tenant) = &self.tenant {
                self.ctx.detached.open(tenant.clone(), self.id, lost);
            }
        }
        let reattach_ms = if self.shared.acks().is_some() {
            ms(grace)
        } else {
            0
        };
        let settings = Settings {
            handshake_ms: ms(cfg.server.handshake_timeout),
            idle_ms: ms(cfg.server.idle_timeout),
            keepalive_ms: ms(cfg.server.ping_interval),
            drain_ms: ms(cfg.server.drain_timeout),
            kill_grace_ms: ms(cfg.exec.kill_grace),
            compression_threshold: size(cfg.server.compress_threshold),
            max_output_data: size(max_output_data(cfg.server.max_frame_bytes as usize)),
            coalesce_bytes: if cfg.server.coalesce {
                size(cfg.server.coalesce_bytes)
            } else {
                0
            },
        };
        self.send(Message::Configured(Box::new(Configured {
            suggestions,
            rejections: configure.rejections,
            reattach_ms,
            settings,
        })))
        .await;
    }
}

//! `Classify`: what the server makes of a line, without running it.
//!
//! Answered at once from the reader (parsing and the verdicts are memoised
//! per line, so this costs a lookup for a line seen before). It is not a
//! request in flight: it starts nothing that could need a `Cancel`.

use super::Connection;
use voxterm_protocol::{Classified, Classify, ErrorCode, Message};

impl Connection {
    /// `Classify`: one `Classified`, or an `Error` naming the request.
    pub(super) async fn on_classify(&mut self, ask: Classify) {
        let request = ask.request;
        let max = self.engine.config().limits.max_command_bytes as usize;
        let refused = if max > 0 && ask.command.len() > max {
            Some((
                ErrorCode::InvalidCommand,
                format!("the command line is {} bytes long; at most {max} are accepted ([limits] max_command_bytes)", ask.command.len()),
            ))
        } else if ask.command.trim().is_empty() {
            Some((ErrorCode::InvalidCommand, "empty command".to_owned()))
        } else {
            self.session(ask.session).await.err()
        };
        if let Some((code, message)) = refused {
            return self.send_error(Some(request), code, message).await;
        }
        let line = self.engine.parse(&ask.command);
        let (class, detail) = self.engine.classify(&line);
        self.send(Message::Classified(Classified {
            request,
            class,
            detail,
        }))
        .await;
    }
}

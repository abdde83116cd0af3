//! `Spawn`, `Input` and `Resize`: a command with live input, and perhaps a
//! terminal.
//!
//! A `Spawn` is admitted like an `Exec` (`commands::admit`), registered with
//! an input port, and answered at once, from the reader, with the initial
//! `InputCredit`, so that it is the request's first frame. `Input` and
//! `Resize` go to the running command's feed in the order they arrived. The
//! credit bounds what the feed holds: a client that sends more than it was
//! granted breaks the protocol, is told so and its request is cancelled;
//! nothing is buffered past the window and no other request waits for it.

use super::commands::Ask;
use super::Connection;
use crate::engine::{Terminal, DEFAULT_TERM};
use crate::exec::{Feed, PtySize};
use crate::server::request;
use crate::server::shared::InputPort;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use voxterm_protocol::{ErrorCode, Input, InputCredit, Message, Pty, Resize, Spawn, Subject};

/// The input window of a `Spawn`: what the client may send before the
/// command has consumed any (PROTOCOL.md §7). Large enough that a fast
/// reader (`wc -c`) is never stalled by round trips on loopback, small
/// enough that a connection with every request blocked holds little.
pub const INPUT_WINDOW: u32 = 256 * 1024;

/// Largest terminal side accepted, in cells.
const MAX_SIDE: u16 = 1000;
/// Longest `TERM` accepted.
const MAX_TERM: usize = 64;

impl Connection {
    /// `Spawn`: admitted, answered with its credit, then run in a task.
    pub(super) async fn on_spawn(&mut self, spawn: Spawn, received: Instant) {
        let terminal = spawn.pty.as_ref().map(terminal).transpose();
        let (terminal, valid) = match terminal {
            Ok(t) => (t, Ok(())),
            Err(why) => (None, Err((ErrorCode::InvalidArgument, why))),
        };
        let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
        let credit = Arc::new(AtomicU64::new(u64::from(INPUT_WINDOW)));
        let port = InputPort {
            feed,
            credit: credit.clone(),
            pty: terminal.is_some(),
            ended: false,
        };
        let ask = Ask {
            request: spawn.request,
            session: spawn.session,
            command: &spawn.command,
            timeout_ms: spawn.timeout_ms,
        };
        let Some((session, line, cancel)) = self.admit(ask, valid, Some(port)).await else {
            return;
        };
        // Through the request's route: a client that re-attaches must get it.
        let out = self.shared.out_for(spawn.request, &session);
        let _ = out
            .send(Message::InputCredit(InputCredit {
                request: spawn.request,
                bytes: INPUT_WINDOW,
            }))
            .await;
        let (shared, engine) = (self.shared.clone(), self.engine.clone());
        let run = request::Spawned {
            feed: rx,
            credit,
            terminal,
            out,
        };
        self.ctx.tracker.spawn(request::run_spawned(
            shared, engine, session, spawn, line, run, received, cancel,
        ));
    }

    /// `Input`: to the request's feed, within its credit.
    pub(super) async fn on_input(&mut self, input: Input) {
        let id = input.request;
        let refused = {
            let mut in_flight = self.shared.in_flight();
            match in_flight.get_mut(&id) {
                None => Some((
                    ErrorCode::UnknownRequest,
                    format!("request {id} is not in flight (it may just have ended)"),
                )),
                Some(entry) => match &mut entry.input {
                    None => Some((
                        ErrorCode::InputRefused,
                        format!("request {id} is an Exec: its stdin is /dev/null; send a Spawn to give a command input"),
                    )),
                    Some(port) if port.ended => Some((
                        ErrorCode::InputRefused,
                        format!("request {id}: its input has already ended"),
                    )),
                    Some(port) => {
                        let len = input.data.len() as u64;
                        // Only the reader spends credit, so a load then a
                        // subtraction cannot overspend it.
                        let credit = port.credit.load(Ordering::Acquire);
                        if len > credit {
                            entry.cancel.cancel();
                            Some((
                                ErrorCode::InputRefused,
                                format!("request {id}: {len} bytes of input with only {credit} credited; the request is cancelled"),
                            ))
                        } else {
                            port.credit.fetch_sub(len, Ordering::AcqRel);
                            // A closed feed: the command is ending; its input
                            // would be discarded anyway.
                            let _ = port.feed.send(Feed::Data(input.data));
                            if input.end {
                                port.ended = true;
                                let _ = port.feed.send(Feed::End);
                            }
                            None
                        }
                    }
                },
            }
        };
        if let Some((code, message)) = refused {
            self.reject(Subject::Request, id, code, message).await;
        }
    }

    /// `Resize`: to the request's terminal.
    pub(super) async fn on_resize(&mut self, resize: Resize) {
        let id = resize.request;
        let refused = match size(resize.rows, resize.cols) {
            Err(why) => Some((ErrorCode::InvalidArgument, why)),
            Ok(size) => {
                let in_flight = self.shared.in_flight();
                match in_flight.get(&id).map(|e| &e.input) {
                    None => Some((
                        ErrorCode::UnknownRequest,
                        format!("request {id} is not in flight (it may just have ended)"),
                    )),
                    Some(Some(port)) if port.pty => {
                        let _ = port.feed.send(Feed::Resize(size));
                        None
                    }
                    Some(_) => Some((
                        ErrorCode::NotATerminal,
                        format!("request {id} has no terminal to resize"),
                    )),
                }
            }
        };
        if let Some((code, message)) = refused {
            self.reject(Subject::Request, id, code, message).await;
        }
    }
}

/// A `Spawn`'s terminal, checked.
fn terminal(pty: &Pty) -> Result<Terminal, String> {
    let size = size(pty.rows, pty.cols)?;
    let term = match pty.term.as_str() {
        "" => DEFAULT_TERM.to_owned(),
        t if t.len() <= MAX_TERM
            && t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)) =>
        {
            t.to_owned()
        }
        t => {
            return Err(format!(
                "TERM {t:?} is not a terminal name (letters, digits, '.', '_', '+', '-'; at most {MAX_TERM})"
            ))
        }
    };
    Ok(Terminal { size, term })
}

/// A terminal size, checked.
fn size(rows: u16, cols: u16) -> Result<PtySize, String> {
    if !(1..=MAX_SIDE).contains(&rows) || !(1..=MAX_SIDE).contains(&cols) {
        return Err(format!(
            "a terminal of {rows}x{cols} is out of range (rows and columns 1 to {MAX_SIDE})"
        ));
    }
    Ok(PtySize { rows, cols })
}

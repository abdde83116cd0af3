//! A command's live input (a `Spawn`): what the client sends it, passed on in
//! order, and the credit that tells the client it may send more.
//!
//! The input side is one more branch of `run`'s loop, not a task of its own:
//! a write and a read of the feed are both cancel-safe, so the loop can wait
//! on the child's output, its exit and its input at once, and a child that
//! stops reading (its pipe full) never stops its output from being read. The
//! bytes in flight are bounded by the credit the client was given (see
//! PROTOCOL.md §7): the feed holds at most one window.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::pty::{Master, PtySize};

/// What a client sends a running command, in the order it sent it.
#[derive(Debug)]
pub enum Feed {
    /// Bytes for its stdin (or its terminal).
    Data(Vec<u8>),
    /// End of input: stdin is closed (on a terminal, `Ctrl-D` is typed).
    End,
    /// The terminal's new size.
    Resize(PtySize),
}

/// How a command with live input runs: its feed and, when it asked for one,
/// its terminal's size.
#[derive(Debug)]
pub struct Interactive {
    /// The client's input, in order; closed when the request ends.
    pub feed: mpsc::UnboundedReceiver<Feed>,
    /// A terminal of this size, or none (stdin is a pipe).
    pub pty: Option<PtySize>,
}

/// The end-of-file character of a terminal in its default (cooked) mode.
const VEOF: u8 = 0x04;

/// Where input goes.
pub(super) enum Writer {
    /// The child's stdin pipe.
    Pipe(tokio::net::unix::pipe::Sender),
    /// The terminal's controlling side.
    Pty(tokio::net::unix::pipe::Sender),
}

impl Writer {
    async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Writer::Pipe(w) => w.write(data).await,
            Writer::Pty(w) => w.write(data).await,
        }
    }
}

/// What one step of the input side did.
pub(super) enum Step {
    /// `n` bytes of the client's input were passed on (or discarded because
    /// the command no longer reads): credit them back.
    Consumed(usize),
    /// Nothing to report (a resize, the end of input, a partial step).
    Quiet,
    /// The feed is closed and nothing is pending: the input side is done.
    Done,
}

/// The input side of one running command.
pub(super) struct Input {
    feed: Option<mpsc::UnboundedReceiver<Feed>>,
    writer: Option<Writer>,
    /// A chunk being written: its bytes, how far, and whether it is the
    /// client's (credited) or ours (the terminal's EOF character).
    pending: Option<(Vec<u8>, usize, bool)>,
    pty: bool,
}

impl Input {
    pub(super) fn new(feed: mpsc::UnboundedReceiver<Feed>, writer: Option<Writer>) -> Input {
        let pty = matches!(writer, Some(Writer::Pty(_)));
        Input {
            feed: Some(feed),
            writer,
            pending: None,
            pty,
        }
    }

    /// True while there is something to wait for.
    pub(super) fn active(&self) -> bool {
        self.feed.is_some() || self.pending.is_some()
    }

    /// Writes some of the pending chunk, or takes the next item of the feed.
    /// Cancel-safe: state changes only after an await has completed.
    pub(super) async fn step(&mut self, master: Option<&Master>) -> Step {
        if let Some((data, off, credited)) = &mut self.pending {
            let Some(writer) = &mut self.writer else {
                // The command stopped reading: the rest is discarded, and credited.
                let rest = data.len() - *off;
                let credited = *credited;
                self.pending = None;
                return if credited {
                    Step::Consumed(rest)
                } else {
                    Step::Quiet
                };
            };
            return match writer.write(&data[*off..]).await {
                Ok(n) => {
                    *off += n;
                    let credited = *credited;
                    if *off >= data.len() {
                        self.pending = None;
                    }
                    if credited {
                        Step::Consumed(n)
                    } else {
                        Step::Quiet
                    }
                }
                Err(_) => {
                    // EPIPE (the command closed its stdin or exited) or EIO (the
                    // terminal is gone): input from now on is discarded.
                    self.writer = None;
                    Step::Quiet
                }
            };
        }
        let Some(feed) = &mut self.feed else {
            return Step::Done;
        };
        match feed.recv().await {
            Some(Feed::Data(data)) if data.is_empty() => Step::Quiet,
            Some(Feed::Data(data)) => {
                self.pending = Some((data, 0, true));
                Step::Quiet
            }
            Some(Feed::End) => {
                if self.pty {
                    self.pending = Some((vec![VEOF], 0, false));
                } else {
                    // Dropping the pipe's end is the command's EOF.
                    self.writer = None;
                }
                Step::Quiet
            }
            Some(Feed::Resize(size)) => {
                if let Some(master) = master {
                    if let Err(e) = master.resize(size) {
                        tracing::debug!(error = %e, "terminal resize failed");
                    }
                }
                Step::Quiet
            }
            None => {
                self.feed = None;
                Step::Quiet
            }
        }
    }
}

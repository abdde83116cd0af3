//! Local standard input, forwarded to a `Spawn`ed command within the credit
//! the server grants (PROTOCOL.md §7): never more in flight than the server
//! allowed, so a 50 MB pipe into `voxterm exec -- wc -c` goes at the pace of
//! the remote `wc` and nobody buffers it whole.
//!
//! Reading stdin blocks, so a plain thread does it and hands chunks over a
//! small channel (the channel's bound is the back-pressure on the local
//! side). Not a tokio blocking task: the runtime would wait for it at exit,
//! and a read of a terminal never returns on its own.

use std::fs;
use std::io::{self, IsTerminal, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tokio::sync::mpsc;
use voxterm_protocol::{Input, Message, RequestId};

/// Largest chunk read from stdin at once.
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the credit.
const AHEAD: usize = 4;

/// Whether local stdin has anything to forward: not a terminal (a person
/// types into a terminal only with `-t`) and not `/dev/null`.
pub(super) fn worth_forwarding() -> bool {
    if io::stdin().is_terminal() {
        return false;
    }
    let (Ok(ours), Ok(null)) = (fs::metadata("/dev/stdin"), fs::metadata("/dev/null")) else {
        // Closed stdin: nothing to forward.
        return false;
    };
    !(ours.file_type().is_char_device() && ours.rdev() == null.rdev())
}

/// The forwarding state of one request's input.
pub(super) struct Feed {
    request: RequestId,
    /// Chunks from the reader thread; `None` once it hit end of file.
    rx: Option<mpsc::Receiver<Vec<u8>>>,
    /// A chunk waiting for credit.
    pending: Vec<u8>,
    /// Bytes the server still allows.
    credit: u64,
    /// `Input { end: true }` was sent.
    ended: bool,
}

impl Feed {
    /// Forwards local stdin, read by a thread of its own.
    pub(super) fn stdin(request: RequestId) -> Feed {
        let (tx, rx) = mpsc::channel(AHEAD);
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut buf = vec![0; CHUNK];
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(buf).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!(
                            "voxterm: reading standard input: {e}; ending the command's input here"
                        );
                        break;
                    }
                }
            }
        });
        Feed {
            request,
            rx: Some(rx),
            pending: Vec::new(),
            credit: 0,
            ended: false,
        }
    }

    /// No input at all: only the end (`-n` with `-t`).
    pub(super) fn empty(request: RequestId) -> Feed {
        Feed {
            request,
            rx: None,
            pending: Vec::new(),
            credit: 0,
            ended: false,
        }
    }

    /// The server granted `bytes` more.
    pub(super) fn credit(&mut self, bytes: u32) {
        self.credit += u64::from(bytes);
    }

    /// True while the next chunk can be taken from the reader.
    pub(super) fn wants_more(&self) -> bool {
        self.rx.is_some() && self.pending.is_empty()
    }

    /// The next chunk from the reader (`None`: end of file). Cancel-safe.
    pub(super) async fn next(&mut self) -> Option<Vec<u8>> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Takes a chunk from [`Feed::next`].
    pub(super) fn take(&mut self, chunk: Option<Vec<u8>>) {
        match chunk {
            Some(data) => self.pending = data,
            None => self.rx = None,
        }
    }

    /// The `Input` frames that may go now: what is pending, within the
    /// credit, and the end once everything is sent.
    pub(super) fn ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        if !self.pending.is_empty() && self.credit > 0 {
            let n = usize::try_from(self.credit)
                .map_or(self.pending.len(), |c| c.min(self.pending.len()));
            let rest = self.pending.split_off(n);
            let data = std::mem::replace(&mut self.pending, rest);
            self.credit -= n as u64;
            out.push(Message::Input(Input {
                request: self.request,
                data,
                end: false,
            }));
        }
        if self.rx.is_none() && self.pending.is_empty() && !self.ended {
            self.ended = true;
            out.push(Message::Input(Input {
                request: self.request,
                data: Vec::new(),
                end: true,
            }));
        }
        out
    }
}

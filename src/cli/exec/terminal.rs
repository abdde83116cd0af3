//! The local terminal under `voxterm exec -t`: raw mode while the remote
//! command owns the screen, restored on every way out, and its size.
//!
//! Raw mode hands every key to the remote terminal as typed (Ctrl-C is the
//! byte 0x03 there, where the command's own terminal turns it into SIGINT),
//! and shows the remote output as it comes. The guard restores the saved
//! mode when it is dropped: on return, on `?`, and while a panic unwinds;
//! `exec` turns SIGTERM, SIGHUP and SIGINT into a return, so they restore too.

use std::io::{self, IsTerminal};

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Raw mode on local stdin until dropped.
pub(super) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts local stdin in raw mode; `None` when it is not a terminal.
    pub(super) fn enter() -> io::Result<Option<RawMode>> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Flush, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing better to do if it fails: the terminal is gone.
        let _ = tcsetattr(io::stdin(), OptionalActions::Flush, &self.saved);
    }
}

/// The local terminal's size as (rows, cols), from stdout or stdin; 24×80
/// when neither is a terminal (as `ssh -t` from a pipe).
pub(super) fn size() -> (u16, u16) {
    let sized = tcgetwinsize(io::stdout())
        .or_else(|_| tcgetwinsize(io::stdin()))
        .ok()
        .filter(|w| w.ws_row > 0 && w.ws_col > 0);
    match sized {
        Some(w) => (w.ws_row.min(1000), w.ws_col.min(1000)),
        None => (24, 80),
    }
}

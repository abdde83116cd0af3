//! A pseudo-terminal for a command that asked for one (`Spawn` with a `pty`).
//!
//! The pair is opened here, the child gets the terminal end on its stdin,
//! stdout and stderr, and the engine keeps the controlling end: it reads the
//! command's output from it (one stream, as a terminal shows it), writes what
//! the client types into it and sets its size. The child becomes a session
//! leader with the terminal as its controlling terminal through util-linux's
//! `setsid --ctty` at the front of its argv, so the spawn stays `posix_spawn`
//! (see `run`). Why not `portable-pty`: it spawns and owns the child itself
//! (fork, `pre_exec`), where exec keeps one spawn path with process groups,
//! `waitid`, cgroups and `run_as` for both kinds of command.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::pty::{openpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use tokio::net::unix::pipe;

/// Where util-linux installs `setsid` (Debian's `util-linux`, an essential package).
const SETSID: [&str; 2] = ["/usr/bin/setsid", "/bin/setsid"];

/// The front of a terminal command's argv: a new session whose controlling
/// terminal is the child's stdin (the terminal), then the command.
pub(crate) fn session_leader() -> io::Result<[&'static std::ffi::OsStr; 3]> {
    let setsid = SETSID
        .iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "setsid (util-linux) is needed to give a command a terminal",
            )
        })?;
    Ok([setsid.as_ref(), "--ctty".as_ref(), "--".as_ref()])
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl PtySize {
    fn winsize(self) -> Winsize {
        Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// An open pseudo-terminal pair, until the child has its end.
pub(crate) struct Pty {
    /// The controlling side, kept by the engine.
    master: OwnedFd,
    /// The terminal side, for the child's stdio; dropped after the spawn so
    /// the engine sees the end (EIO) once the last process holding it exits.
    slave: OwnedFd,
}

impl Pty {
    /// Opens a pair of `size`.
    pub(crate) fn open(size: PtySize) -> io::Result<Pty> {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY;
        let master = openpt(flags)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        // TIOCGPTPEER opens the terminal side from the master itself, never by
        // a path that could name something else by then.
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
        tcsetwinsize(&slave, size.winsize())?;
        Ok(Pty { master, slave })
    }

    /// The terminal side: the child's stdin, stdout and stderr.
    pub(crate) fn terminal(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }

    /// After the spawn: the engine's ends (reading, writing, resizing), the
    /// terminal side closed in this process.
    pub(crate) fn into_master(self) -> io::Result<Master> {
        drop(self.slave);
        set_nonblocking(&self.master)?;
        let reader = pipe::Receiver::from_owned_fd_unchecked(self.master.try_clone()?)?;
        let writer = pipe::Sender::from_owned_fd_unchecked(self.master.try_clone()?)?;
        Ok(Master {
            control: self.master,
            reader: Some(reader),
            writer: Some(writer),
        })
    }
}

/// Tokio's pipe types need a non-blocking descriptor, and the `*_unchecked`
/// constructors (a terminal is not a FIFO) leave that to the caller. On a
/// blocking one, a readiness event already stale when the output loop reads
/// (a loaded machine makes that likely) parks a worker thread in `read(2)`,
/// and with it the whole loop: typed keys, cancel and the timeout wait until
/// the command prints again, which it will not while it waits for those
/// keys (the page's §5b `cat` and `vi` steps hung this way, rarely, under
/// load). The flag is on the open file, so it covers the reader's and the
/// writer's copies; the child's terminal side is a separate open file
/// (TIOCGPTPEER) and stays blocking.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(fd)?;
    fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// The engine's side of a running command's terminal.
pub(crate) struct Master {
    control: OwnedFd,
    /// The command's output; taken by the output loop.
    pub(crate) reader: Option<pipe::Receiver>,
    /// What the client types; taken by the input side.
    pub(crate) writer: Option<pipe::Sender>,
}

impl Master {
    /// Sets the terminal's size; the kernel sends the command `SIGWINCH`.
    pub(crate) fn resize(&self, size: PtySize) -> io::Result<()> {
        tcsetwinsize(self.control.as_fd(), size.winsize()).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{fcntl_getfl, OFlags};

    #[tokio::test]
    async fn the_engines_side_is_non_blocking_and_the_childs_is_not() {
        let pty = Pty::open(PtySize { rows: 24, cols: 80 }).expect("a pty");
        let child_side = pty.slave.try_clone().expect("dup");
        let master = pty.into_master().expect("master");
        assert!(fcntl_getfl(&master.control)
            .expect("flags")
            .contains(OFlags::NONBLOCK));
        assert!(!fcntl_getfl(&child_side)
            .expect("flags")
            .contains(OFlags::NONBLOCK));
    }
}

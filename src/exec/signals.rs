//! The signal dispositions children start with.
//!
//! A child inherits every signal the server *ignores* (exec resets handled
//! signals to their default, but keeps ignored ones ignored). A server started
//! from a background job of a non-interactive shell (`cmd &`, as CI scripts
//! and some supervisors do) has SIGINT and SIGQUIT ignored, and then so does
//! every command it runs: Ctrl-C typed on a command's terminal would do
//! nothing. Before the first spawn, an ignored SIGINT or SIGQUIT is replaced
//! by a handler that does nothing: the server still ignores the signal in
//! effect, and its children start with the default, as under a login shell.

use std::sync::Once;

use nix::libc;

extern "C" fn ignore(_: libc::c_int) {}

/// Makes sure children get the default SIGINT and SIGQUIT (once per process).
pub(super) fn default_for_children() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGQUIT] {
            // SAFETY: sigaction with a null new action only reads the current
            // one into `old`, a zeroed plain-data struct it fully writes; the
            // installed handler is an `extern "C"` function that does nothing
            // (async-signal-safe), with an empty mask.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_IGN
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut new.sa_mask);
                new.sa_flags = libc::SA_RESTART;
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    tracing::debug!(sig, "an ignored signal is handled (as ignored) so that commands get its default");
                }
            }
        }
    });
}

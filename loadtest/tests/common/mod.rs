//! What the load tester's integration tests share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `loadtest __serve` engine on a free port, killed when dropped.
pub struct Engine {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
}

impl Engine {
    /// Starts one and waits for the port it says it listens on.
    pub fn start() -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["__serve", "--listen", "127.0.0.1:0", "--"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the engine");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("its first line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening ADDR")
            .to_owned();
        Engine { child, addr }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The voice terminal's JavaScript, run from `cargo test`: Node's unit tests
//! (`web/test/`: the protocol client against PROTOCOL.md, the spoken-form
//! normaliser, the read-back gate) and the page itself in a real Chromium driven
//! through chromedriver (`web/e2e/browser.mjs`) against this build's `voxterm`.
//!
//! Node, Chromium and chromedriver are outside programs (`.ci/run` installs
//! them). Without them these tests say so and pass locally, but fail when `CI`
//! is set, so CI cannot go green without having run them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Says what is missing; fails under CI, where it must be installed.
fn missing(what: &str) {
    let msg = format!(
        "{what} not found on PATH: the voice terminal's tests did NOT run \
         (Debian: apt-get install nodejs chromium chromium-driver; .ci/run does this)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures eprintln!
    // of passing tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.current_dir(repo()).output().expect("start node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture: the measured figures of the browser run.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn node_unit_tests() {
    let Some(node) = on_path(&["node", "nodejs"]) else {
        return missing("node");
    };
    run(
        Command::new(node).args(["--test", "web/test/"]),
        "node --test web/test/",
    );
}

#[test]
fn the_page_in_a_real_chromium() {
    let Some(node) = on_path(&["node", "nodejs"]) else {
        return missing("node");
    };
    if on_path(&["chromium", "chromium-browser", "google-chrome"]).is_none() {
        return missing("chromium");
    }
    if on_path(&["chromedriver"]).is_none() {
        return missing("chromedriver");
    }
    run(
        Command::new(node)
            .arg("web/e2e/browser.mjs")
            .env("VOXTERM_BIN", env!("CARGO_BIN_EXE_voxterm")),
        "web/e2e/browser.mjs (the page in Chromium)",
    );
}

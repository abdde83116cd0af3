//! `loadtest browser` with 2 real headless Chromium pages for a few seconds
//! against a server it starts itself: the report carries the scorecard's
//! browser rows with real values, and the figures behind them.
//!
//! Node, Chromium and chromedriver are outside programs (`.ci/run` installs
//! them). As in `tests/web.rs`: without them this says so and passes locally,
//! but fails when `CI` is set, so CI cannot go green without having run it.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn missing(what: &str) {
    let msg = format!(
        "{what} not found on PATH: loadtest browser's test did NOT run \
         (Debian: apt-get install nodejs chromium chromium-driver; .ci/run does this)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
}

#[test]
fn two_pages_measure_the_browser_rows() {
    if on_path(&["node", "nodejs"]).is_none() {
        return missing("node");
    }
    if on_path(&["chromium", "chromium-browser", "google-chrome"]).is_none() {
        return missing("chromium");
    }
    if on_path(&["chromedriver"]).is_none() {
        return missing("chromedriver");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("browser.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["browser", "--pages", "2", "--duration", "4s", "--json"])
        .arg(&json)
        .output()
        .expect("run loadtest browser");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture: the measured figures.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "loadtest browser failed ({})\n{stdout}\n{stderr}",
        out.status
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json");
    assert_eq!(r["pages"], 2, "{stdout}");
    let metric = |id: &str| {
        r["metrics"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == id))
            .unwrap_or_else(|| panic!("no row {id}:\n{stdout}"))
            .clone()
    };
    // Every browser row is measured, with a value that can be real.
    for (id, low, high) in [
        ("browser_p95_ms", 0.0, 10_000.0),
        ("browser_e2e_p95_ms", 1.0, 10_000.0),
        ("first_paint_ms", 1.0, 30_000.0),
        ("interactive_ms", 1.0, 30_000.0),
        ("browser_memory_mb", 0.5, 1000.0),
    ] {
        let m = metric(id);
        let v = m["measured"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id} not measured:\n{stdout}"));
        assert!((low..high).contains(&v), "{id} = {v}\n{stdout}");
        assert!(m["score"].as_f64().is_some(), "{id} scored");
    }
    // The end to end includes the backend, so it is at least the page's share.
    assert!(
        metric("browser_e2e_p95_ms")["measured"].as_f64()
            >= metric("browser_p95_ms")["measured"].as_f64(),
        "{stdout}"
    );
    // What no browser measures here stays "not measured".
    assert!(metric("e2e_p95_ms")["measured"].is_null(), "{stdout}");
    // Both kinds of command ran on both pages, and none failed.
    let count = |k: &str| r["commands"][k].as_u64().unwrap_or(0);
    assert!(count("cached") >= 4, "{stdout}");
    assert!(count("uncached") >= 4, "{stdout}");
    assert_eq!(count("failed"), 0, "{stdout}");
    for k in ["cached", "uncached", "cached:run", "uncached:run"] {
        let s = &r["latency"][k];
        assert!(s["p50_ms"].as_f64().unwrap_or(0.0) > 0.0, "{k}: {s}");
        assert!(s["p99_ms"].as_f64() >= s["p95_ms"].as_f64(), "{k}: {s}");
    }
    assert!(stdout.contains("end to end in a browser p95"), "{stdout}");
    assert!(stdout.contains("cached, Enter → painted"), "{stdout}");
}

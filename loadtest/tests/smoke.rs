//! `loadtest --scenario smoke` against a server it starts itself: the CI check that
//! every request ends with a terminal frame.

use std::process::Command;

#[test]
fn smoke_scenario_loses_no_responses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("smoke.json");
    let html = dir.path().join("smoke.html");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--scenario",
            "smoke",
            "--quiet",
            "--min-grade",
            "F",
            "--json",
        ])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed\n{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json");
    assert_eq!(report["lost_responses"], 0, "{stdout}");
    assert!(report["requests"].as_u64().unwrap_or(0) > 50, "{stdout}");
    assert!(
        report["critical_failures"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{stdout}"
    );
    assert!(["A", "B", "C", "D", "F"].contains(&report["grade"].as_str().unwrap_or("")));
    assert!(!report["histograms"]["e2e"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<svg") && !page.contains("http://") && !page.contains("https://"));
    assert!(stdout.contains("grade:"), "{stdout}");
}

//! A command line is parsed once per request (issue 13): admission parses it,
//! and the command policy, builtin recognition, the cache's classifier and
//! exec all read that one parse. A repeated line is remembered by the engine
//! (with both verdicts) and not parsed at all; a line too long to remember is
//! parsed once per request. Counted with `shell::parses()`, over a real server.
//!
//! One test in this binary on purpose: the counter is process-wide, and every
//! server of the binary runs in this process.

mod common;

use common::*;
use voxterm::client::{Client, Completed};
use voxterm::shell::parses;
use voxterm_protocol::{ErrorCode, ServedFrom};

/// Runs `command` and returns how many lines were parsed meanwhile.
async fn parsed_for(c: &mut Client, command: &str) -> (u64, Completed) {
    let before = parses();
    let done = run(c, 0, command).await;
    (parses() - before, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_parses_its_line_once_and_a_repeated_line_not_at_all() {
    let s = TestServer::start_with("parse-once", |c| {
        c.policy.deny = vec!["rm".into()];
        c.cache.enabled = true;
        // Nothing may parse in the background while a request is counted: a
        // prefetch reads the same memo, but a predicted long line would be
        // parsed again at an unpredictable moment.
        c.predict.enabled = false;
    })
    .await;
    std::fs::write(s.root.join("f.txt"), "hello\n").expect("write f.txt");
    let mut c = s.client("alice").await;
    exit_of(&run(&mut c, 0, "true").await);

    // A fresh cacheable line: policy, builtin check, classifier, exec: one parse.
    let (n, done) = parsed_for(&mut c, "echo parse-once").await;
    assert_eq!(exit_of(&done).code, Some(0));
    assert_eq!(n, 1, "a fresh line is parsed once");
    // Again: remembered (the answer comes from the cache, the verdicts from the memo).
    let (n, done) = parsed_for(&mut c, "echo parse-once").await;
    assert_ne!(exit_of(&done).served_from, ServedFrom::Exec);
    assert_eq!(n, 0, "a repeated line is not parsed again");

    // A fresh line run directly (no shell), validated fs-read: stamps come from
    // the same parse's argv, exec starts that argv.
    let (n, done) = parsed_for(&mut c, "cat f.txt").await;
    assert_eq!(done.stdout, b"hello\n");
    assert_eq!(n, 1);
    // With surrounding blanks it is the same line.
    let (n, done) = parsed_for(&mut c, "  cat f.txt ").await;
    assert_eq!(done.stdout, b"hello\n");
    assert_eq!(n, 0);

    // A line that runs uncached (a shell line, volatile): still one parse.
    let (n, done) = parsed_for(&mut c, "date +%s | wc -c").await;
    assert_eq!(exit_of(&done).code, Some(0));
    assert_eq!(n, 1);
    // A missing program: the 127 comes from the same parse's argv.
    let (n, done) = parsed_for(&mut c, "no-such-program-parse-once x").await;
    assert_eq!(exit_of(&done).code, Some(127));
    assert_eq!(n, 1);

    // A builtin: recognized from the admission's parse.
    let (n, done) = parsed_for(&mut c, "cd .").await;
    assert_eq!(exit_of(&done).served_from, ServedFrom::Builtin);
    assert_eq!(n, 1);

    // A refusal: parsed once, remembered with its verdict.
    let (n, done) = parsed_for(&mut c, "ls && rm -rf nothing-here").await;
    assert_eq!(
        done.error.as_ref().map(|e| e.code),
        Some(ErrorCode::PolicyDenied)
    );
    assert_eq!(n, 1);
    let (n, _) = parsed_for(&mut c, "ls && rm -rf nothing-here").await;
    assert_eq!(n, 0);

    // A string that `sh -c` runs is a line of its own: the policy parses it
    // when it meets it (the request's line itself is still parsed once).
    let (n, done) = parsed_for(&mut c, "sh -c 'echo nested'").await;
    assert_eq!(done.stdout, b"nested\n");
    assert_eq!(n, 2);

    // A line too long to remember (over 512 bytes): once per request.
    let long = format!("echo {}", "a".repeat(600));
    for _ in 0..2 {
        let (n, done) = parsed_for(&mut c, &long).await;
        assert_eq!(done.stdout.len(), 601);
        assert_eq!(n, 1, "a long line is parsed once per request");
    }
}

//! The cache classifier on arbitrary command lines: never a panic (the parser's
//! own panics are caught by `walk`, which libFuzzer's abort-on-panic hook would
//! still report), a stack overflow or a hang; and the verdict is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use voxterm::cache::{Class, Policy};

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // `Exec.command` is a `String`: lines are always UTF-8.
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let policy = POLICY.get_or_init(Policy::builtin);
    let v = on_worker_stack(|| policy.classify(line));
    assert_eq!(v, policy.classify(line));
    if matches!(v.class, Class::Unknown | Class::Mutating) {
        assert!(!v.cacheable());
    }
});

/// Runs `f` on a thread with the 2 MiB stack of a tokio worker, where the
/// classifier runs in the server, so that deep recursion shows up as it would there.
fn on_worker_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn_scoped(s, f)
            .expect("spawn")
            .join()
            .expect("the classifier panicked")
    })
}

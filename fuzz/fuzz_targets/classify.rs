//! The cache classifier on arbitrary command lines: never a panic, a stack
//! overflow or a hang; and the verdict is deterministic.
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
    tolerate_parser_panics();
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

/// brush-parser's own panics are caught by `walk` (the line is then unknown, or
/// refused by a policy); they are let through here so that fuzzing goes on, and
/// every other panic still aborts through libFuzzer's hook. `VOXTERM_FUZZ_STRICT=1`
/// reports the parser's panics too (e.g. to minimize one for upstream).
fn tolerate_parser_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("VOXTERM_FUZZ_STRICT").is_some() {
            return;
        }
        let libfuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_parser = info
                .location()
                .is_some_and(|l| l.file().contains("brush-parser"));
            if !in_parser {
                libfuzzer_hook(info)
            }
        }));
    });
}

//! The command policy (deny and allow lists) on arbitrary command lines: never a
//! panic, a stack overflow or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use voxterm::config::PolicyConfig;
use voxterm::security::CommandPolicy;

static POLICIES: OnceLock<Vec<CommandPolicy>> = OnceLock::new();

fn policies() -> Vec<CommandPolicy> {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    [
        (list(&["rm", "git push", "curl"]), list(&[])),
        (
            list(&["git push"]),
            list(&["ls", "cat", "echo", "grep", "git status", "git log"]),
        ),
    ]
    .into_iter()
    .filter_map(|(deny, allow)| {
        CommandPolicy::new(&PolicyConfig {
            deny,
            allow,
            ..PolicyConfig::default()
        })
        .ok()
        .flatten()
    })
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    tolerate_parser_panics();
    let policies = POLICIES.get_or_init(policies);
    // On a thread with the 2 MiB stack of a tokio worker, where the check runs.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn_scoped(s, || {
                for p in policies {
                    let _ = p.check(line);
                }
            })
            .expect("spawn")
            .join()
            .expect("the policy check panicked")
    });
});

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

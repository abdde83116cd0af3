//! Writes the committed seed corpus (`corpus/<target>/seed-*`):
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [CORPUS_DIR]`.
//!
//! Frame seeds are produced by the codec itself, so they stay valid as the
//! protocol evolves; command-line seeds cover the shell syntax the walk handles.

use std::fs;
use std::path::{Path, PathBuf};
use voxterm_protocol::*;

fn messages() -> Vec<(&'static str, Message)> {
    let exec = Exec {
        request: 7,
        session: 0,
        command: "ls -la | wc -l".into(),
        priority: Priority::High,
        timeout_ms: 5000,
        cache: CacheMode::Default,
    };
    vec![
        (
            "hello",
            Message::Hello(Box::new(Hello {
                version: PROTOCOL_VERSION,
                client: "seed/1".into(),
                encodings: vec![Encoding::Bincode, Encoding::Json],
                compression: vec![Compression::Brotli, Compression::Deflate],
                tenant: Some("t".into()),
                token: None,
            })),
        ),
        (
            "open-session",
            Message::OpenSession(OpenSession {
                session: 1,
                name: "work".into(),
            }),
        ),
        ("exec", Message::Exec(exec.clone())),
        (
            "batch",
            Message::Batch(Batch {
                mode: BatchMode::Sequential,
                execs: vec![
                    exec.clone(),
                    Exec {
                        request: 8,
                        command: "echo $(date) > /tmp/x".into(),
                        ..exec
                    },
                ],
            }),
        ),
        ("cancel", Message::Cancel(Cancel { request: 7 })),
        (
            "output",
            Message::Output(Output {
                request: 7,
                stream: StreamKind::Stderr,
                seq: 3,
                data: b"total 0\n".repeat(200),
            }),
        ),
        (
            "exit",
            Message::Exit(Exit {
                request: 7,
                code: Some(0),
                signal: None,
                served_from: ServedFrom::L2,
                backend_us: 1234,
                truncated: false,
                killed: KillReason::None,
            }),
        ),
        (
            "error",
            Message::Error(Error {
                request: Some(7),
                code: ErrorCode::Malformed,
                message: "bad frame".into(),
            }),
        ),
        ("ping", Message::Ping(Ping { nonce: u64::MAX })),
        (
            "stats",
            Message::Stats(Box::new(Stats {
                nonce: 1,
                uptime_ms: 2,
                connections: 3,
                sessions: 4,
                requests: 5,
                in_flight: 6,
                errors: 7,
                queue_depth: 8,
                busy_workers: 9,
                rss_bytes: 10,
                cpu_us: 11,
                bytes_in: 12,
                bytes_out: 13,
                backend_histogram: vec![1, 2, 3],
                counters: vec![Counter {
                    name: "hits".into(),
                    value: 42,
                }],
            })),
        ),
    ]
}

const LINES: &[(&str, &str)] = &[
    ("simple", "ls -la /tmp"),
    (
        "pipeline",
        "cat file | grep -v '^#' | sort | uniq -c | head -n 5",
    ),
    ("lists", "cd /tmp && ls || echo none; true"),
    ("subshell", "(cd /tmp; rm -f x) && { echo a; ls; }"),
    ("subst", "echo \"$(git log --oneline | head -1)\" `date`"),
    ("nested-subst", "echo $(echo $(echo $(ls *.rs)))"),
    ("heredoc", "cat <<EOF\nhello $USER\n$(rm x)\nEOF\n"),
    ("heredoc-quoted", "cat <<'EOF' > out\nliteral $HOME\nEOF\n"),
    ("quotes", "printf '%s\\n' \"a b\" 'c d' e\\ f $'g'"),
    ("redirects", "ls >/dev/null 2>&1 < in 3>>log &> both"),
    (
        "loops",
        "for f in *.txt; do wc -l \"$f\"; done; while read l; do echo $l; done < f",
    ),
    (
        "case-if",
        "case $x in a|b) echo ab;; *) if test -f x; then cat x; fi;; esac",
    ),
    ("function", "f() { rm -rf \"$1\"; }; f dir &"),
    (
        "wrappers",
        "env A=1 timeout 5 nice -n 5 sh -c 'xargs rm < list' && eval git push",
    ),
    (
        "find-exec",
        "find . -name '*.o' -exec rm {} + -execdir ls \\;",
    ),
    (
        "vars",
        "A=1 B=\"$A\" echo ${A:-x} ${#B} $RANDOM $$ ${HOME%/*}",
    ),
    ("arith-test", "[[ -f x ]] && echo $(( 1 + $(cat n) ))"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };
    let frames = root.join("frame_decoder");
    fs::create_dir_all(&frames)?;
    let mut all = Vec::new();
    for (name, msg) in messages() {
        for (enc, e) in [("bin", Encoding::Bincode), ("json", Encoding::Json)] {
            for (comp, c) in [
                ("plain", Compression::None),
                ("deflate", Compression::Deflate),
                ("brotli", Compression::Brotli),
            ] {
                let mut codec = Codec::new(CodecSettings {
                    encoding: e,
                    compression: c,
                    compress_threshold: 0,
                    ..CodecSettings::default()
                });
                let mut buf = Vec::new();
                codec.encode(&msg, &mut buf)?;
                // Compressed only where it is smaller: skip the duplicates.
                if c != Compression::None && buf[2] & frame::flags::COMPRESSION_MASK == 0 {
                    continue;
                }
                if e == Encoding::Bincode && c == Compression::None {
                    all.extend_from_slice(&buf);
                }
                fs::write(frames.join(format!("seed-{name}-{enc}-{comp}")), &buf)?;
            }
        }
    }
    // Several frames in one WebSocket message, then a cut one.
    fs::write(frames.join("seed-multi"), &all)?;
    fs::write(frames.join("seed-multi-cut"), &all[..all.len() - 3])?;
    for target in ["classify", "command_policy"] {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        for (name, line) in LINES {
            fs::write(dir.join(format!("seed-{name}")), line)?;
        }
    }
    Ok(())
}

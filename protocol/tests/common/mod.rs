//! proptest strategies for every message, shared by the integration tests.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use voxterm_protocol::*;

pub fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Bincode), Just(Encoding::Json)]
}

pub fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Deflate),
        Just(Compression::Brotli)
    ]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::High),
        Just(Priority::Normal),
        Just(Priority::Prefetch)
    ]
}

fn cache_mode() -> impl Strategy<Value = CacheMode> {
    prop_oneof![
        Just(CacheMode::Default),
        Just(CacheMode::Bypass),
        Just(CacheMode::Refresh)
    ]
}

fn stream() -> impl Strategy<Value = StreamKind> {
    prop_oneof![Just(StreamKind::Stdout), Just(StreamKind::Stderr)]
}

fn served_from() -> impl Strategy<Value = ServedFrom> {
    proptest::sample::select(ServedFrom::ALL.to_vec())
}

fn kill_reason() -> impl Strategy<Value = KillReason> {
    proptest::sample::select(vec![
        KillReason::None,
        KillReason::Timeout,
        KillReason::Cancelled,
        KillReason::OutputLimit,
        KillReason::Shutdown,
    ])
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

/// Short strings, including multi-byte UTF-8.
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

/// Command output: small random chunks, or up to 20 KiB of repetitive text so
/// that compression kicks in.
pub fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..64),
        1 => (vec(any::<u8>(), 1..48), 1usize..600).prop_map(|(line, n)| line.repeat(n)),
        1 => vec(any::<u8>(), 1000..3000),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(a, b, c, d, e, f)| Limits {
            max_message_bytes: a,
            max_frame_bytes: b,
            max_in_flight: c,
            max_sessions: d,
            default_timeout_ms: e,
            output_cap_bytes: f,
        })
}

pub fn exec() -> impl Strategy<Value = Exec> {
    (
        any::<u32>(),
        any::<u32>(),
        text(),
        priority(),
        any::<u32>(),
        cache_mode(),
    )
        .prop_map(
            |(request, session, command, priority, timeout_ms, cache)| Exec {
                request,
                session,
                command,
                priority,
                timeout_ms,
                cache,
            },
        )
}

fn stats() -> impl Strategy<Value = Stats> {
    (
        vec(any::<u64>(), 13),
        data(),
        vec((text(), any::<u64>()), 0..8),
    )
        .prop_map(|(n, backend_histogram, counters)| Stats {
            nonce: n[0],
            uptime_ms: n[1],
            connections: n[2],
            sessions: n[3],
            requests: n[4],
            in_flight: n[5],
            errors: n[6],
            queue_depth: n[7],
            busy_workers: n[8],
            rss_bytes: n[9],
            cpu_us: n[10],
            bytes_in: n[11],
            bytes_out: n[12],
            backend_histogram,
            counters: counters
                .into_iter()
                .map(|(name, value)| Counter { name, value })
                .collect(),
        })
}

pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u8>(),
            text(),
            vec(encoding(), 0..4),
            vec(compression(), 0..4),
            option::of(text()),
            option::of(text())
        )
            .prop_map(|(version, client, encodings, compression, tenant, token)| {
                Message::Hello(Box::new(Hello {
                    version,
                    client,
                    encodings,
                    compression,
                    tenant,
                    token,
                }))
            }),
        (
            any::<u8>(),
            text(),
            encoding(),
            compression(),
            limits(),
            text(),
            any::<u64>()
        )
            .prop_map(
                |(version, server, encoding, compression, limits, tenant, connection)| {
                    Message::Welcome(Box::new(Welcome {
                        version,
                        server,
                        encoding,
                        compression,
                        limits,
                        tenant,
                        connection,
                    }))
                }
            ),
        (any::<u32>(), text())
            .prop_map(|(session, name)| Message::OpenSession(OpenSession { session, name })),
        (any::<u32>(), text(), any::<bool>()).prop_map(|(session, cwd, resumed)| {
            Message::SessionOpened(SessionOpened {
                session,
                cwd,
                resumed,
            })
        }),
        any::<u32>().prop_map(|session| Message::CloseSession(CloseSession { session })),
        any::<u32>().prop_map(|session| Message::SessionClosed(SessionClosed { session })),
        exec().prop_map(Message::Exec),
        (
            prop_oneof![Just(BatchMode::Parallel), Just(BatchMode::Sequential)],
            vec(exec(), 0..6)
        )
            .prop_map(|(mode, execs)| Message::Batch(Batch { mode, execs })),
        any::<u32>().prop_map(|request| Message::Cancel(Cancel { request })),
        (any::<u32>(), stream(), any::<u32>(), data()).prop_map(|(request, stream, seq, data)| {
            Message::Output(Output {
                request,
                stream,
                seq,
                data,
            })
        }),
        (
            any::<u32>(),
            option::of(any::<i32>()),
            option::of(any::<i32>()),
            served_from(),
            any::<u64>(),
            any::<bool>(),
            kill_reason()
        )
            .prop_map(
                |(request, code, signal, served_from, backend_us, truncated, killed)| {
                    Message::Exit(Exit {
                        request,
                        code,
                        signal,
                        served_from,
                        backend_us,
                        truncated,
                        killed,
                    })
                }
            ),
        (option::of(any::<u32>()), error_code(), text()).prop_map(|(request, code, message)| {
            Message::Error(Error {
                request,
                code,
                message,
            })
        }),
        any::<u64>().prop_map(|nonce| Message::Ping(Ping { nonce })),
        any::<u64>().prop_map(|nonce| Message::Pong(Pong { nonce })),
        any::<u64>().prop_map(|nonce| Message::StatsRequest(StatsRequest { nonce })),
        stats().prop_map(|s| Message::Stats(Box::new(s))),
        (
            any::<u32>(),
            any::<u32>(),
            text(),
            any::<u32>(),
            option::of((any::<u16>(), any::<u16>(), text())),
        )
            .prop_map(|(request, session, command, timeout_ms, pty)| {
                Message::Spawn(Box::new(Spawn {
                    request,
                    session,
                    command,
                    timeout_ms,
                    pty: pty.map(|(rows, cols, term)| Pty { rows, cols, term }),
                }))
            }),
        (any::<u32>(), data(), any::<bool>())
            .prop_map(|(request, data, end)| Message::Input(Input { request, data, end })),
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(request, rows, cols)| {
            Message::Resize(Resize {
                request,
                rows,
                cols,
            })
        }),
        (any::<u32>(), any::<u32>(), text()).prop_map(|(request, session, command)| {
            Message::Classify(Classify {
                request,
                session,
                command,
            })
        }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(request, bytes)| Message::InputCredit(InputCredit { request, bytes })),
        (any::<u32>(), text()).prop_map(|(request, message)| {
            Message::Notice(Notice {
                request,
                kind: if message.len() % 2 == 0 {
                    NoticeKind::NeedsTerminal
                } else {
                    NoticeKind::Reattached
                },
                message,
            })
        }),
        (any::<u32>(), line_class(), text()).prop_map(|(request, class, detail)| {
            Message::Classified(Classified {
                request,
                class,
                detail,
            })
        }),
        (any::<u8>(), any::<bool>(), any::<bool>()).prop_map(
            |(suggestions, rejections, reattach)| {
                Message::Configure(Configure {
                    suggestions,
                    rejections,
                    reattach,
                })
            }
        ),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            option::of(any::<u32>())
        )
            .prop_map(|(request, connection, session, after_seq)| {
                Message::Attach(Attach {
                    request,
                    connection,
                    session,
                    after_seq,
                })
            }),
        (
            any::<u8>(),
            any::<bool>(),
            any::<u32>(),
            vec(any::<u32>(), 8)
        )
            .prop_map(|(suggestions, rejections, reattach_ms, t)| {
                Message::Configured(Box::new(Configured {
                    suggestions,
                    rejections,
                    reattach_ms,
                    settings: Settings {
                        handshake_ms: t[0],
                        idle_ms: t[1],
                        keepalive_ms: t[2],
                        drain_ms: t[3],
                        kill_grace_ms: t[4],
                        compression_threshold: t[5],
                        max_output_data: t[6],
                        coalesce_bytes: t[7],
                    },
                }))
            }),
        (
            proptest::sample::select(Subject::ALL.to_vec()),
            any::<u32>(),
            proptest::sample::select(ErrorCode::ALL.to_vec()),
            text()
        )
            .prop_map(|(about, id, code, message)| {
                Message::Rejected(Rejected {
                    about,
                    id,
                    code,
                    message,
                })
            }),
        (
            any::<u32>(),
            any::<u32>(),
            vec((text(), any::<u16>()), 0..4)
        )
            .prop_map(|(after, session, lines)| {
                Message::Suggestions(Suggestions {
                    after,
                    session,
                    lines: lines
                        .into_iter()
                        .map(|(line, score)| Suggestion { line, score })
                        .collect(),
                })
            }),
    ]
}

fn line_class() -> impl Strategy<Value = LineClass> {
    proptest::sample::select(LineClass::ALL.to_vec())
}

pub fn codec(encoding: Encoding, compression: Compression) -> Codec {
    Codec::new(CodecSettings {
        encoding,
        compression,
        ..CodecSettings::default()
    })
}

/// Decodes every frame of `buf`, panicking on the first error.
pub fn decode_all(codec: &mut Codec, buf: &[u8]) -> Vec<Message> {
    codec
        .decode(buf)
        .map(|r| r.unwrap_or_else(|e| panic!("decode failed: {e}")))
        .collect()
}

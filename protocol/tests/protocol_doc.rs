//! Keeps PROTOCOL.md honest: every hex example in it is the exact encoding of the
//! message this test builds under the same name, and decodes back to it.
//!
//! An example in the document is an HTML comment `<!-- example: NAME -->` followed
//! by a fenced block; each line of the block starts with hex byte pairs, and
//! everything after the first token that is not a byte pair is annotation.
//! `<!-- json-example: NAME -->` marks a block whose first line is the hex header
//! of the JSON-encoded frame and whose other lines are its JSON body.

use voxterm_protocol::*;

const DOC: &str = include_str!("../PROTOCOL.md");

fn examples() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Box::new(Hello {
                version: 1,
                client: "vt/1".into(),
                encodings: vec![Encoding::Bincode],
                compression: vec![Compression::Deflate, Compression::None],
                tenant: None,
                token: Some("s3cret".into()),
            })),
        ),
        (
            "welcome",
            Message::Welcome(Box::new(Welcome {
                version: 1,
                server: "voxterm".into(),
                encoding: Encoding::Bincode,
                compression: Compression::Deflate,
                limits: Limits {
                    max_message_bytes: 4 << 20,
                    max_frame_bytes: 1 << 20,
                    max_in_flight: 256,
                    max_sessions: 16,
                    default_timeout_ms: 30_000,
                    output_cap_bytes: 8 << 20,
                },
                tenant: "default".into(),
                connection: 1,
            })),
        ),
        (
            "exec",
            Message::Exec(Exec {
                request: 1,
                session: 0,
                command: "echo hi".into(),
                priority: Priority::Normal,
                timeout_ms: 0,
                cache: CacheMode::Default,
            }),
        ),
        (
            "output",
            Message::Output(Output {
                request: 1,
                stream: StreamKind::Stdout,
                seq: 0,
                data: b"hi\n".to_vec(),
            }),
        ),
        (
            "exit",
            Message::Exit(Exit {
                request: 1,
                code: Some(0),
                signal: None,
                served_from: ServedFrom::Exec,
                backend_us: 1234,
                truncated: false,
                killed: KillReason::None,
            }),
        ),
        (
            "error",
            Message::Error(Error {
                request: Some(300),
                code: ErrorCode::UnknownSession,
                message: "no session 7".into(),
            }),
        ),
        ("cancel", Message::Cancel(Cancel { request: 1 })),
        ("ping", Message::Ping(Ping { nonce: 65_536 })),
        (
            "spawn",
            Message::Spawn(Box::new(Spawn {
                request: 2,
                session: 0,
                command: "vi".into(),
                timeout_ms: 0,
                pty: Some(Pty {
                    rows: 24,
                    cols: 80,
                    term: String::new(),
                }),
            })),
        ),
        (
            "input_credit",
            Message::InputCredit(InputCredit {
                request: 2,
                bytes: 262_144,
            }),
        ),
        (
            "input",
            Message::Input(Input {
                request: 2,
                data: b":wq\r".to_vec(),
                end: false,
            }),
        ),
        (
            "configure",
            Message::Configure(Configure {
                suggestions: 3,
                rejections: true,
                reattach: true,
            }),
        ),
        (
            "attach",
            Message::Attach(Attach {
                request: 1,
                connection: 4_294_967_297,
                session: 0,
                after_seq: Some(9),
            }),
        ),
        (
            "suggestions",
            Message::Suggestions(Suggestions {
                after: 1,
                session: 0,
                lines: vec![Suggestion {
                    line: "ls".into(),
                    score: 640,
                }],
            }),
        ),
        (
            "rejected",
            Message::Rejected(Rejected {
                about: Subject::Request,
                id: 7,
                code: ErrorCode::DuplicateRequest,
                message: "dup".into(),
            }),
        ),
    ]
}

/// The fenced block following each `<!-- {marker}: NAME -->`, by name.
fn blocks(marker: &str) -> Vec<(String, Vec<&'static str>)> {
    let open = format!("<!-- {marker}: ");
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(open.as_str()) else {
            continue;
        };
        let name = rest.trim_end_matches("-->").trim().to_string();
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "example {name}: no fenced block after the marker"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        out.push((name, body));
    }
    out
}

fn hex_bytes(lines: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in lines {
        for token in line.split_whitespace() {
            let is_byte = token.len() == 2 && token.chars().all(|c| c.is_ascii_hexdigit());
            if !is_byte {
                break;
            }
            bytes.push(u8::from_str_radix(token, 16).unwrap());
        }
    }
    bytes
}

fn encode(msg: &Message, encoding: Encoding) -> Vec<u8> {
    let mut codec = Codec::new(CodecSettings {
        encoding,
        ..CodecSettings::default()
    });
    let mut buf = Vec::new();
    codec.encode(msg, &mut buf).unwrap();
    buf
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

#[test]
fn hex_examples_match_the_codec() {
    let doc = blocks("example");
    let known = examples();
    assert!(doc.len() >= 4, "PROTOCOL.md lost its hex examples");
    for (name, lines) in &doc {
        let Some((_, msg)) = known.iter().find(|(n, _)| n == name) else {
            panic!("PROTOCOL.md example {name:?} has no message in this test");
        };
        let want = encode(msg, Encoding::Bincode);
        let got = hex_bytes(lines);
        assert_eq!(
            to_hex(&got),
            to_hex(&want),
            "PROTOCOL.md example {name:?} (left: document, right: codec)"
        );
        let mut codec = Codec::new(CodecSettings::default());
        let decoded: Vec<_> = codec.decode(&got).collect();
        assert_eq!(decoded, vec![Ok(msg.clone())], "example {name:?}");
    }
    for (name, _) in &known {
        assert!(
            doc.iter().any(|(n, _)| n == name),
            "example {name:?} is missing from PROTOCOL.md"
        );
    }
}

#[test]
fn json_examples_match_the_codec() {
    let doc = blocks("json-example");
    assert!(!doc.is_empty(), "PROTOCOL.md lost its JSON example");
    let known = examples();
    for (name, lines) in &doc {
        let Some((_, msg)) = known.iter().find(|(n, _)| n == name) else {
            panic!("PROTOCOL.md JSON example {name:?} has no message in this test");
        };
        let frame = encode(msg, Encoding::Json);
        let (header, body) = lines.split_first().expect("empty JSON example");
        assert_eq!(
            to_hex(&hex_bytes(&[header])),
            to_hex(&frame[..HEADER_LEN]),
            "JSON example {name:?} header"
        );
        let want = std::str::from_utf8(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(body.join("\n").trim(), want, "JSON example {name:?} body");
    }
}

/// Prints the encodings, for writing the document: `cargo test -- --nocapture print_examples --ignored`.
#[test]
#[ignore]
fn print_examples() {
    for (name, msg) in examples() {
        println!("{name}: {}", to_hex(&encode(&msg, Encoding::Bincode)));
        let json = encode(&msg, Encoding::Json);
        println!(
            "{name} json: {} {}",
            to_hex(&json[..HEADER_LEN]),
            String::from_utf8_lossy(&json[HEADER_LEN..])
        );
    }
}

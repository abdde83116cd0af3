//! The decoder's behaviour on hostile and broken input: never a panic, errors
//! per frame, one `Truncated` for a cut message, bounded decompression.

mod common;

use std::io::Write;

use common::{decode_all, message};
use proptest::prelude::*;
use voxterm_protocol::frame::flags;
use voxterm_protocol::*;

const KINDS: [u8; 16] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x30, 0x31, 0x40, 0x41,
];

fn small_codec() -> Codec {
    Codec::new(CodecSettings {
        max_frame_bytes: 64 * 1024,
        ..CodecSettings::default()
    })
}

fn header(kind: u8, flags: u8, len: usize) -> Vec<u8> {
    FrameHeader {
        version: PROTOCOL_VERSION,
        kind,
        flags,
        len: len as u32,
    }
    .to_bytes()
    .to_vec()
}

fn frame(kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = header(kind, flags, body.len());
    f.extend_from_slice(body);
    f
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    Codec::new(CodecSettings::default())
        .encode(msg, &mut buf)
        .unwrap();
    buf
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let n = small_codec().decode(&bytes).count();
        prop_assert!(n <= bytes.len() / HEADER_LEN + 1);
    }

    #[test]
    fn arbitrary_body_after_valid_header_never_panics(
        kind in prop_oneof![proptest::sample::select(KINDS.to_vec()), any::<u8>()],
        fl in prop_oneof![0u8..8, any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut buf = frame(kind, fl, &body);
        buf.extend_from_slice(&tail);
        let items: Vec<_> = small_codec().decode(&buf).collect();
        prop_assert!(!items.is_empty());
    }

    #[test]
    fn bit_flips_in_valid_frames_never_panic(
        msg in message(),
        comp in common::compression(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut c = common::codec(Encoding::Bincode, comp);
        let mut buf = Vec::new();
        c.encode(&msg, &mut buf).unwrap();
        for (i, x) in flips {
            let i = i.index(buf.len());
            buf[i] ^= x;
        }
        let _ = c.decode(&buf).count();
    }

    #[test]
    fn cut_message_yields_frames_then_one_truncated(
        msgs in proptest::collection::vec(message(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        let mut c = Codec::new(CodecSettings::default());
        for m in &msgs {
            c.encode(m, &mut buf).unwrap();
            ends.push(buf.len());
        }
        let at = cut.index(buf.len());
        let whole = ends.iter().filter(|&&e| e <= at).count();
        let items: Vec<_> = c.decode(&buf[..at]).collect();
        let oks = items.iter().take_while(|r| r.is_ok()).count();
        prop_assert_eq!(oks, whole);
        if ends.contains(&at) || at == 0 {
            prop_assert_eq!(items.len(), whole);
        } else {
            prop_assert_eq!(items.len(), whole + 1);
            let is_truncated = matches!(items[whole], Err(DecodeError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }
}

#[test]
fn empty_buffer_yields_nothing() {
    assert_eq!(small_codec().decode(&[]).count(), 0);
}

#[test]
fn bad_body_in_the_middle_does_not_stop_the_rest() {
    let a = Message::Ping(Ping { nonce: 1 });
    let c = Message::Cancel(Cancel { request: 9 });
    let mut buf = encode(&a);
    buf.extend(frame(0x10, 0, &[0xff, 0xff, 0xff])); // an Exec with garbage
    buf.extend(encode(&c));
    let items: Vec<_> = small_codec().decode(&buf).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], Ok(a));
    let err = items[1].clone().unwrap_err();
    assert!(matches!(err, DecodeError::Body { kind: 0x10, .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::Malformed);
    assert_eq!(err.kind(), Some(0x10));
    assert_eq!(items[2], Ok(c));
}

#[test]
fn trailing_bytes_in_a_body_are_an_error() {
    let mut f = encode(&Message::Ping(Ping { nonce: 5 }));
    f.push(0);
    f[3] += 1; // length now covers the extra byte
    let items: Vec<_> = small_codec().decode(&f).collect();
    assert!(
        matches!(&items[..], [Err(DecodeError::Body { kind: 0x30, .. })]),
        "{items:?}"
    );
}

#[test]
fn header_errors_are_typed_and_skip_only_their_frame() {
    let ping = encode(&Message::Ping(Ping { nonce: 3 }));
    let cases: Vec<(Vec<u8>, DecodeError, ErrorCode)> = vec![
        (
            {
                let mut f = ping.clone();
                f[0] = 2;
                f
            },
            DecodeError::UnsupportedVersion(2),
            ErrorCode::UnsupportedVersion,
        ),
        (
            frame(0x7f, 0, &[1]),
            DecodeError::UnknownType(0x7f),
            ErrorCode::UnknownType,
        ),
        (
            frame(0x30, 0b1000, &[1]),
            DecodeError::BadFlags(0b1000),
            ErrorCode::Malformed,
        ),
        (
            frame(0x30, 3, &[1]),
            DecodeError::BadFlags(3),
            ErrorCode::Malformed,
        ),
        (
            frame(0x20, 0, &vec![0; 64 * 1024 + 1]),
            DecodeError::FrameTooLarge {
                len: 64 * 1024 + 1,
                max: 64 * 1024,
            },
            ErrorCode::FrameTooLarge,
        ),
    ];
    for (bad, want, code) in cases {
        let mut buf = bad;
        buf.extend_from_slice(&ping);
        let items: Vec<_> = small_codec().decode(&buf).collect();
        assert_eq!(items.len(), 2, "{want}");
        assert_eq!(items[0].as_ref().unwrap_err(), &want);
        assert_eq!(want.code(), code);
        assert_eq!(items[1], Ok(Message::Ping(Ping { nonce: 3 })));
    }
}

#[test]
fn truncation_is_reported_once_and_stops() {
    let ping = encode(&Message::Ping(Ping { nonce: 3 }));
    let items: Vec<_> = small_codec().decode(&ping[..4]).collect();
    assert_eq!(
        items,
        vec![Err(DecodeError::Truncated {
            needed: 6,
            available: 4
        })]
    );
    let mut buf = ping.clone();
    buf.extend_from_slice(&header(0x30, 0, 1000));
    buf.extend_from_slice(&ping); // inside the claimed body: never decoded
    let items: Vec<_> = small_codec().decode(&buf).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1],
        Err(DecodeError::Truncated {
            needed: 1006,
            available: 6 + ping.len()
        })
    );
    assert_eq!(items[1].as_ref().unwrap_err().code(), ErrorCode::Malformed);
}

#[test]
fn lying_length_fields_allocate_nothing_big() {
    // Output whose data claims 2^62 bytes; Hello whose client string claims 4 GiB.
    let output = [0x01, 0x00, 0x00, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x40];
    let hello = [0x01, 0xfc, 0xff, 0xff, 0xff, 0xff];
    for (kind, body) in [(0x20u8, &output[..]), (0x01, &hello[..])] {
        let items: Vec<_> = small_codec().decode(&frame(kind, 0, body)).collect();
        assert!(
            matches!(&items[..], [Err(DecodeError::Body { .. })]),
            "{items:?}"
        );
    }
}

#[test]
fn zip_bombs_stop_at_max_frame_bytes() {
    let bomb_src = vec![0u8; 8 << 20];
    for (flag, packed) in [(1u8, deflate(&bomb_src)), (2, brotli(&bomb_src))] {
        assert!(packed.len() < 64 * 1024);
        let items: Vec<_> = small_codec().decode(&frame(0x20, flag, &packed)).collect();
        assert!(
            matches!(
                &items[..],
                [Err(DecodeError::FrameTooLarge { max: 65536, .. })]
            ),
            "{items:?}"
        );
    }
}

#[test]
fn exactly_max_frame_bytes_after_decompression_is_accepted() {
    let max = 4096u32;
    let mut c = Codec::new(CodecSettings {
        max_frame_bytes: max,
        compression: Compression::Deflate,
        ..CodecSettings::default()
    });
    // request, stream and seq take 1 byte each, the data length 3 (0xFB + u16).
    let mut data_len = max as usize - 6;
    let msg = loop {
        let m = Message::Output(Output {
            request: 1,
            stream: StreamKind::Stdout,
            seq: 0,
            data: vec![b'a'; data_len],
        });
        let mut probe = Vec::new();
        Codec::new(CodecSettings::default())
            .encode(&m, &mut probe)
            .unwrap();
        if probe.len() - HEADER_LEN <= max as usize {
            assert_eq!(probe.len() - HEADER_LEN, max as usize);
            break m;
        }
        data_len -= 1;
    };
    for comp in [Compression::Deflate, Compression::Brotli] {
        c.set_compression(comp);
        let mut buf = Vec::new();
        c.encode(&msg, &mut buf).unwrap();
        assert_ne!(buf[2] & flags::COMPRESSION_MASK, 0);
        assert_eq!(decode_all(&mut c, &buf), vec![msg.clone()]);
    }
}

#[test]
fn corrupt_compressed_bodies_are_decompress_errors() {
    let packed = deflate(b"hello hello hello hello");
    let cut = &packed[..packed.len() / 2];
    let mut trailing = packed.clone();
    trailing.extend_from_slice(b"junk");
    for (flag, body) in [
        (1u8, cut.to_vec()),
        (1, trailing),
        (1, vec![0xff; 10]),
        (2, vec![0xff; 10]),
        (2, brotli(b"hello hello hello hello")[..4].to_vec()),
    ] {
        let items: Vec<_> = small_codec().decode(&frame(0x20, flag, &body)).collect();
        assert!(
            matches!(&items[..], [Err(DecodeError::Decompress(_))]),
            "{flag} {body:?} {items:?}"
        );
        assert_eq!(items[0].as_ref().unwrap_err().code(), ErrorCode::Malformed);
    }
}

#[test]
fn error_codes_map_as_documented() {
    use DecodeError as D;
    let cases = [
        (
            D::Truncated {
                needed: 6,
                available: 1,
            },
            ErrorCode::Malformed,
            None,
        ),
        (
            D::UnsupportedVersion(9),
            ErrorCode::UnsupportedVersion,
            None,
        ),
        (D::UnknownType(0x99), ErrorCode::UnknownType, Some(0x99)),
        (D::BadFlags(0x80), ErrorCode::Malformed, None),
        (
            D::FrameTooLarge { len: 2, max: 1 },
            ErrorCode::FrameTooLarge,
            None,
        ),
        (
            D::Body {
                kind: 0x10,
                detail: String::new(),
            },
            ErrorCode::Malformed,
            Some(0x10),
        ),
        (D::Decompress(String::new()), ErrorCode::Malformed, None),
    ];
    for (e, code, kind) in cases {
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(e.kind(), kind, "{e}");
    }
}

#[test]
fn json_frames_decode_whatever_the_codec_encodes_with() {
    let body = br#"{"nonce":42}"#;
    let mut c = small_codec();
    assert_eq!(
        decode_all(&mut c, &frame(0x30, flags::JSON, body)),
        vec![Message::Ping(Ping { nonce: 42 })]
    );
    let items: Vec<_> = c
        .decode(&frame(0x30, flags::JSON, b"{\"nonce\":-1}"))
        .collect();
    assert!(matches!(
        &items[..],
        [Err(DecodeError::Body { kind: 0x30, .. })]
    ));
}

/// The committed fuzz seeds (`fuzz/corpus/frame_decoder/seed-*`, written by the
/// codec via `fuzz/examples/gen_seeds.rs`) are valid frames: only the deliberately
/// cut message ends in `Truncated`.
#[test]
fn fuzz_seeds_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decoder");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("seed-") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let items: Vec<_> = Codec::new(CodecSettings::default())
            .decode(&bytes)
            .collect();
        assert!(!items.is_empty(), "{name}");
        let (last, whole) = items.split_last().unwrap();
        assert!(whole.iter().all(Result::is_ok), "{name}: {items:?}");
        if name == "seed-multi-cut" {
            assert!(matches!(last, Err(DecodeError::Truncated { .. })), "{name}");
        } else {
            assert!(last.is_ok(), "{name}: {last:?}");
        }
        n += 1;
    }
    assert!(n >= 20, "{n} seeds in {}", dir.display());
}

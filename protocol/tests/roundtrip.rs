//! decode(encode(x)) == x for every message, encoding and compression.

mod common;

use common::{codec, compression, decode_all, encoding, message};
use proptest::prelude::*;
use voxterm_protocol::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(msg in message(), enc in encoding(), comp in compression()) {
        let mut c = codec(enc, comp);
        let mut buf = Vec::new();
        c.encode(&msg, &mut buf).unwrap();
        let header = FrameHeader::parse(&buf).unwrap();
        prop_assert_eq!(header.len as usize, buf.len() - HEADER_LEN);
        prop_assert_eq!(header.kind, msg.kind());
        prop_assert_eq!(header.flags & frame::flags::JSON != 0, enc == Encoding::Json);
        // A fresh codec with default settings must read it: frames describe themselves.
        let mut reader = Codec::new(CodecSettings::default());
        prop_assert_eq!(decode_all(&mut reader, &buf), vec![msg]);
    }

    #[test]
    fn concatenated_frames_decode_in_order(
        msgs in proptest::collection::vec(message(), 1..6),
        enc in encoding(),
        comp in compression(),
    ) {
        let mut c = codec(enc, comp);
        let mut buf = Vec::new();
        for m in &msgs {
            c.encode(m, &mut buf).unwrap();
        }
        // The same codec decodes too, reusing its compression state across frames.
        prop_assert_eq!(decode_all(&mut c, &buf), msgs);
    }

    #[test]
    fn mixed_settings_in_one_message(
        msgs in proptest::collection::vec((message(), encoding(), compression()), 1..6),
    ) {
        let mut c = Codec::new(CodecSettings::default());
        let mut buf = Vec::new();
        for (m, e, comp) in &msgs {
            c.set_encoding(*e);
            c.set_compression(*comp);
            c.encode(m, &mut buf).unwrap();
        }
        let want: Vec<Message> = msgs.into_iter().map(|(m, _, _)| m).collect();
        prop_assert_eq!(decode_all(&mut c, &buf), want);
    }
}

#[test]
fn encode_appends_and_leaves_prefix_alone() {
    let mut c = Codec::new(CodecSettings::default());
    let mut buf = b"prefix".to_vec();
    c.encode(&Message::Ping(Ping { nonce: 7 }), &mut buf)
        .unwrap();
    assert_eq!(&buf[..6], b"prefix");
    assert_eq!(
        decode_all(&mut c, &buf[6..]),
        vec![Message::Ping(Ping { nonce: 7 })]
    );
}

#[test]
fn too_large_body_is_refused_and_buffer_unchanged() {
    let mut c = Codec::new(CodecSettings {
        max_frame_bytes: 100,
        ..CodecSettings::default()
    });
    let mut buf = vec![1, 2, 3];
    let msg = Message::Output(Output {
        request: 1,
        stream: StreamKind::Stdout,
        seq: 0,
        data: vec![b'x'; 200],
    });
    let err = c.encode(&msg, &mut buf).unwrap_err();
    assert!(
        matches!(err, EncodeError::FrameTooLarge { max: 100, .. }),
        "{err}"
    );
    assert_eq!(buf, vec![1, 2, 3]);
}

#[test]
fn body_above_24_bits_is_refused() {
    let mut c = Codec::new(CodecSettings {
        max_frame_bytes: u32::MAX,
        ..CodecSettings::default()
    });
    let msg = Message::Output(Output {
        request: 1,
        stream: StreamKind::Stdout,
        seq: 0,
        data: vec![0; 1 << 24],
    });
    let mut buf = Vec::new();
    let err = c.encode(&msg, &mut buf).unwrap_err();
    assert!(
        matches!(err, EncodeError::FrameTooLarge { max: 0xFF_FFFF, .. }),
        "{err}"
    );
    assert!(buf.is_empty());
}

/// `ErrorCode::ALL` lists every code in wire order (bincode writes the variant index).
#[test]
fn error_code_all_is_in_wire_order() {
    for (i, code) in voxterm_protocol::ErrorCode::ALL.iter().enumerate() {
        let bytes = bincode::encode_to_vec(code, bincode::config::standard()).unwrap();
        assert_eq!(bytes, vec![i as u8], "{code:?}");
    }
    // And no code is missing: the next index is not a code.
    let next = [voxterm_protocol::ErrorCode::ALL.len() as u8];
    let decoded: Result<(voxterm_protocol::ErrorCode, usize), _> =
        bincode::decode_from_slice(&next, bincode::config::standard());
    assert!(decoded.is_err(), "{decoded:?}");
}

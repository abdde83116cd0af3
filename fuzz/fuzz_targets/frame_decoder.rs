//! The frame decoder on arbitrary WebSocket message bytes.
//!
//! Beyond "no panic, no unbounded allocation, no hang": the iteration ends after
//! at most one `Truncated`, yields at most one item per header, and every frame
//! that decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxterm_protocol::{Codec, CodecSettings, Compression, DecodeError, Encoding, HEADER_LEN};

/// A small limit (decompression bombs and `FrameTooLarge` paths) and the default 1 MiB.
const LIMITS: [u32; 2] = [300, 1 << 20];

fuzz_target!(|data: &[u8]| {
    for max_frame_bytes in LIMITS {
        let mut codec = Codec::new(CodecSettings {
            max_frame_bytes,
            ..CodecSettings::default()
        });
        let items: Vec<_> = codec.decode(data).collect();
        assert!(items.len() <= data.len() / HEADER_LEN + 1);
        if let Some(i) = items
            .iter()
            .position(|r| matches!(r, Err(DecodeError::Truncated { .. })))
        {
            assert_eq!(i, items.len() - 1, "Truncated must end the iteration");
        }
        for msg in items.into_iter().flatten() {
            roundtrip(&msg, max_frame_bytes);
        }
    }
});

/// Encoding what was decoded, in every encoding and compression, gives it back.
fn roundtrip(msg: &voxterm_protocol::Message, max_frame_bytes: u32) {
    for encoding in [Encoding::Bincode, Encoding::Json] {
        for compression in [Compression::None, Compression::Deflate, Compression::Brotli] {
            let mut codec = Codec::new(CodecSettings {
                encoding,
                compression,
                max_frame_bytes,
                compress_threshold: 0,
            });
            let mut buf = Vec::new();
            // A JSON body can outgrow the limit its bincode form fitted in.
            if codec.encode(msg, &mut buf).is_err() {
                continue;
            }
            let back: Vec<_> = codec.decode(&buf).collect();
            assert_eq!(back.len(), 1);
            match &back[0] {
                Ok(m) => assert_eq!(m, msg, "{encoding:?} {compression:?}"),
                Err(e) => {
                    panic!("re-encoded frame does not decode ({encoding:?} {compression:?}): {e}")
                }
            }
        }
    }
}

//! Compression is used when it pays and only then.

mod common;

use common::decode_all;
use voxterm_protocol::frame::flags;
use voxterm_protocol::*;

fn output(data: Vec<u8>) -> Message {
    Message::Output(Output {
        request: 7,
        stream: StreamKind::Stdout,
        seq: 3,
        data,
    })
}

fn compressible(len: usize) -> Vec<u8> {
    let listing = b"-rw-r--r--  1 user staff  4096 Nov 23 11:27 Cargo.toml\n";
    listing.iter().copied().cycle().take(len).collect()
}

/// Incompressible bytes (xorshift; deterministic so failures reproduce).
fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn encode_with(comp: Compression, threshold: usize, msg: &Message) -> Vec<u8> {
    let mut c = Codec::new(CodecSettings {
        compression: comp,
        compress_threshold: threshold,
        ..CodecSettings::default()
    });
    let mut buf = Vec::new();
    c.encode(msg, &mut buf).unwrap();
    assert_eq!(decode_all(&mut c, &buf), vec![msg.clone()]);
    buf
}

#[test]
fn compressible_4k_output_is_compressed() {
    let msg = output(compressible(4096));
    let plain = encode_with(Compression::None, DEFAULT_COMPRESS_THRESHOLD, &msg);
    for (comp, bits) in [
        (Compression::Deflate, flags::DEFLATE),
        (Compression::Brotli, flags::BROTLI),
    ] {
        let packed = encode_with(comp, DEFAULT_COMPRESS_THRESHOLD, &msg);
        assert_eq!(packed[2] & flags::COMPRESSION_MASK, bits, "{comp:?}");
        assert!(
            packed.len() * 4 < plain.len(),
            "{comp:?}: {} vs {}",
            packed.len(),
            plain.len()
        );
    }
}

#[test]
fn random_bytes_are_not_compressed_even_above_threshold() {
    for comp in [Compression::Deflate, Compression::Brotli] {
        for threshold in [0, DEFAULT_COMPRESS_THRESHOLD] {
            let msg = output(random(100));
            let buf = encode_with(comp, threshold, &msg);
            assert_eq!(buf[2], 0, "{comp:?} threshold {threshold}");
        }
        // Incompressible and above the threshold: tried, not smaller, sent raw.
        let buf = encode_with(comp, DEFAULT_COMPRESS_THRESHOLD, &output(random(4096)));
        assert_eq!(buf[2], 0, "{comp:?}");
    }
}

#[test]
fn bodies_below_threshold_are_not_compressed() {
    let msg = output(compressible(500));
    for comp in [Compression::Deflate, Compression::Brotli] {
        let buf = encode_with(comp, DEFAULT_COMPRESS_THRESHOLD, &msg);
        assert_eq!(buf[2], 0, "{comp:?}");
        // Same body with a lower threshold does compress: the threshold is what decided.
        let buf = encode_with(comp, 100, &msg);
        assert_ne!(buf[2] & flags::COMPRESSION_MASK, 0, "{comp:?}");
    }
}

#[test]
fn json_bodies_compress_too() {
    let msg = output(compressible(4096));
    let mut c = Codec::new(CodecSettings {
        encoding: Encoding::Json,
        compression: Compression::Brotli,
        ..CodecSettings::default()
    });
    let mut buf = Vec::new();
    c.encode(&msg, &mut buf).unwrap();
    assert_eq!(buf[2], flags::JSON | flags::BROTLI);
    assert_eq!(decode_all(&mut c, &buf), vec![msg]);
}

#[test]
fn state_reuse_across_many_frames_stays_correct() {
    let mut c = Codec::new(CodecSettings {
        compression: Compression::Deflate,
        ..CodecSettings::default()
    });
    let mut buf = Vec::new();
    let mut want = Vec::new();
    for i in 0..50usize {
        c.set_compression(if i % 2 == 0 {
            Compression::Deflate
        } else {
            Compression::Brotli
        });
        let m = output(compressible(1000 + i * 97));
        c.encode(&m, &mut buf).unwrap();
        want.push(m);
    }
    assert_eq!(decode_all(&mut c, &buf), want);
}

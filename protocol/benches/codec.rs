//! Codec cost per message, and bincode-vs-JSON bytes on the wire.
//!
//! `cargo bench -p voxterm-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use voxterm_protocol::*;

fn exec() -> Message {
    Message::Exec(Exec {
        request: 1,
        session: 0,
        command: "ls -la".into(),
        priority: Priority::default(),
        timeout_ms: 0,
        cache: CacheMode::default(),
    })
}

fn output(data: Vec<u8>) -> Message {
    Message::Output(Output {
        request: 1,
        stream: StreamKind::Stdout,
        seq: 0,
        data,
    })
}

fn exit() -> Message {
    Message::Exit(Exit {
        request: 1,
        code: Some(0),
        signal: None,
        served_from: ServedFrom::Exec,
        backend_us: 1234,
        truncated: false,
        killed: KillReason::None,
    })
}

/// 40 bytes of typical `ls` output.
fn text40() -> Vec<u8> {
    b"total 48\ndrwxr-xr-x  6 vox vox 4096 src\n".to_vec()
}

/// 16 KiB of directory listing: compressible like real terminal output.
fn listing(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < len {
        let line = format!(
            "-rw-r--r--  1 vox staff {:6} Nov {:2} 11:{:02} file_{i}.rs\n",
            i * 37 % 100_000,
            i % 30,
            i % 60
        );
        v.extend_from_slice(line.as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn codec(encoding: Encoding, compression: Compression) -> Codec {
    Codec::new(CodecSettings {
        encoding,
        compression,
        ..CodecSettings::default()
    })
}

fn wire_bytes(encoding: Encoding, msgs: &[Message]) -> usize {
    let mut c = codec(encoding, Compression::None);
    let mut buf = Vec::new();
    for m in msgs {
        c.encode(m, &mut buf).expect("encode");
    }
    buf.len()
}

fn print_sizes() {
    let exchange = [exec(), output(text40()), exit()];
    let bin = wire_bytes(Encoding::Bincode, &exchange);
    let json = wire_bytes(Encoding::Json, &exchange);
    eprintln!(
        "wire bytes, Exec(\"ls -la\") + Output(40 B) + Exit: bincode {bin} B, JSON {json} B, \
         bincode {:.1}% smaller",
        100.0 * (1.0 - bin as f64 / json as f64)
    );
    let big = [output(listing(16 * 1024))];
    for comp in [Compression::None, Compression::Deflate, Compression::Brotli] {
        let mut c = codec(Encoding::Bincode, comp);
        let mut buf = Vec::new();
        c.encode(&big[0], &mut buf).expect("encode");
        eprintln!(
            "wire bytes, Output(16 KiB listing) with {comp:?}: {} B",
            buf.len()
        );
    }
}

fn bench(c: &mut Criterion) {
    print_sizes();
    let cases = [
        ("exec", exec(), Compression::None),
        ("output_40B", output(text40()), Compression::None),
        (
            "output_16KiB_deflate",
            output(listing(16 * 1024)),
            Compression::Deflate,
        ),
        (
            "output_16KiB_brotli",
            output(listing(16 * 1024)),
            Compression::Brotli,
        ),
        ("exit", exit(), Compression::None),
    ];
    for (name, msg, comp) in cases {
        let mut codec = codec(Encoding::Bincode, comp);
        let mut buf = Vec::with_capacity(64 * 1024);
        c.bench_function(&format!("encode/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                codec.encode(black_box(&msg), &mut buf).expect("encode");
                black_box(buf.len())
            })
        });
        buf.clear();
        codec.encode(&msg, &mut buf).expect("encode");
        c.bench_function(&format!("decode/{name}"), |b| {
            b.iter(|| {
                for frame in codec.decode(black_box(&buf)) {
                    black_box(frame.expect("decode"));
                }
            })
        });
    }
    let mut json = codec(Encoding::Json, Compression::None);
    let mut buf = Vec::new();
    let msg = exec();
    c.bench_function("encode/exec_json", |b| {
        b.iter(|| {
            buf.clear();
            json.encode(black_box(&msg), &mut buf).expect("encode");
        })
    });
    c.bench_function("decode/exec_json", |b| {
        b.iter(|| json.decode(black_box(&buf)).count())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

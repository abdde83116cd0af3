use std::time::Instant;
use brotli::enc::encode::*;
use brotli::enc::StandardAlloc;
fn listing(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(format!("-rw-r--r--  1 user staff {:6} Nov {:2} 11:{:02} file_{}.rs\n", i * 37 % 100000, i % 30, i % 60, i).as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}
fn main() {
    let data = listing(16 * 1024);
    let mut out = vec![0u8; data.len()];
    for level in [1u32] {
        let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
        let n = 2000;
        let t = Instant::now();
        let mut size = 0;
        for _ in 0..n { c.reset(); c.compress(&data, &mut out, flate2::FlushCompress::Finish).unwrap(); size = c.total_out(); }
        println!("deflate {level}: {size} B, {:?}/op", t.elapsed() / n);
    }
    for (q, sz) in [(4u32, 2048usize), (4, 16384), (4, 65536), (3, 2048)] { let data = listing(sz);
        for lgwin in [10u32, 11, 12, 14, 15, 16, 17, 18, 22] {
        let n = 1000;
        let t = Instant::now();
        let mut size = 0;
        for _ in 0..n {
            let mut s = BrotliEncoderStateStruct::new(StandardAlloc::default());
            s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, q);
            s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, lgwin);
            s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT, data.len() as u32);
            let (mut ai, mut io, mut ao, mut oo, mut to) = (data.len(), 0, out.len(), 0, None);
            s.compress_stream(BrotliEncoderOperation::BROTLI_OPERATION_FINISH, &mut ai, &data, &mut io, &mut ao, &mut out, &mut oo, &mut to, &mut |_, _, _, _| ());
            assert!(s.is_finished());
            size = oo;
            BrotliEncoderDestroyInstance(&mut s);
        }
        println!("brotli q{q} size {sz} lgwin{lgwin}: {size} B, {:?}/op", t.elapsed() / n);
        }
    }
}

//! Per-frame body compression with state reused across frames.
//!
//! Every compressed body is a complete, independent stream (the decoder resets
//! per frame), so frames can be decoded in any order and dropped freely. What is
//! reused is allocation: flate2's `Compress`/`Decompress` are `reset()`, and one
//! scratch buffer serves every frame. The brotli crate has no reset for its
//! encoder or decoder state, so those are built per frame; their large tables
//! are sized from the body (window and size hint), which keeps that cheap.

use brotli::enc::encode::{
    BrotliEncoderDestroyInstance, BrotliEncoderOperation, BrotliEncoderParameter,
    BrotliEncoderStateStruct,
};
use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use flate2::{FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

use crate::error::DecodeError;
use crate::message::Compression;

/// Deflate level: 1 is miniz_oxide's fast path; terminal output compresses
/// nearly as well at 1 as at 6 for a fraction of the time (see benches/codec.rs).
pub(crate) const DEFLATE_LEVEL: u32 = 1;

/// Brotli quality: 4–5 are the low-latency settings; 5 adds context modelling.
pub(crate) const BROTLI_QUALITY: u32 = 4;

/// Output buffer size a decompression starts with when the scratch is smaller.
const MIN_INFLATE_START: usize = 4096;

thread_local! {
    /// One compression state per thread, shared by every codec that runs there.
    ///
    /// Every compressed body is an independent stream (reset per frame), so a codec
    /// needs the state only for the duration of one `encode`/`decode` call. Keeping
    /// it per connection cost ~61 KB of deflate tables per connection that
    /// negotiated compression (measured with valgrind massif under loadtest); per
    /// thread it costs that once per thread.
    static SHARED: RefCell<Compressor> = RefCell::new(Compressor::new());
}

/// Runs `f` with this thread's compression state.
pub(crate) fn with<R>(f: impl FnOnce(&mut Compressor) -> R) -> R {
    SHARED.with(|shared| match shared.try_borrow_mut() {
        Ok(mut c) => f(&mut c),
        // Not reentrant in practice; a private state keeps it correct if it ever is.
        Err(_) => f(&mut Compressor::new()),
    })
}

/// Compression and decompression state. The deflate states are created on first use.
pub(crate) struct Compressor {
    deflate: Option<Box<flate2::Compress>>,
    inflate: Option<Box<flate2::Decompress>>,
    /// Scratch output. Its length is a high-water mark (never above
    /// `max_frame_bytes + 1`), so reuse never zeroes memory twice.
    buf: Vec<u8>,
}

impl Compressor {
    pub(crate) fn new() -> Self {
        Compressor {
            deflate: None,
            inflate: None,
            buf: Vec::new(),
        }
    }

    /// Compresses `input`; `Some` only when the result is strictly smaller, since
    /// otherwise sending it raw is both shorter and cheaper to decode.
    pub(crate) fn compress(&mut self, alg: Compression, input: &[u8]) -> Option<&[u8]> {
        let room = input.len().checked_sub(1)?;
        let len = match alg {
            Compression::None => return None,
            Compression::Deflate => {
                let deflate = self.deflate.get_or_insert_with(|| {
                    Box::new(flate2::Compress::new(
                        flate2::Compression::new(DEFLATE_LEVEL),
                        false,
                    ))
                });
                deflate.reset();
                let out = scratch(&mut self.buf, room);
                let status = deflate.compress(input, out, FlushCompress::Finish);
                let done = matches!(status, Ok(Status::StreamEnd))
                    && deflate.total_in() == input.len() as u64;
                if !done {
                    return None;
                }
                usize::try_from(deflate.total_out()).ok()?
            }
            Compression::Brotli => brotli_compress(input, scratch(&mut self.buf, room))?,
        };
        self.buf.get(..len)
    }

    /// Decompresses `input`, refusing to produce more than `max` bytes.
    pub(crate) fn decompress(
        &mut self,
        alg: Compression,
        input: &[u8],
        max: u32,
    ) -> Result<&[u8], DecodeError> {
        let limit = max as usize;
        // One byte past the limit tells "exactly max" from "more than max".
        let cap_max = limit.saturating_add(1);
        let start = self
            .buf
            .len()
            .max(input.len().saturating_mul(4))
            .max(MIN_INFLATE_START)
            .min(cap_max);
        let len = match alg {
            Compression::None => return Err(DecodeError::Decompress("not compressed".into())),
            Compression::Deflate => self.inflate(input, start, cap_max, max)?,
            Compression::Brotli => self.brotli_decompress(input, start, cap_max, max)?,
        };
        if len > limit {
            return Err(too_large(len, max));
        }
        self.buf
            .get(..len)
            .ok_or_else(|| DecodeError::Decompress("output overran its buffer".into()))
    }

    fn inflate(
        &mut self,
        input: &[u8],
        mut cap: usize,
        cap_max: usize,
        max: u32,
    ) -> Result<usize, DecodeError> {
        let inflate = self
            .inflate
            .get_or_insert_with(|| Box::new(flate2::Decompress::new(false)));
        inflate.reset(false);
        loop {
            let in_pos = total(inflate.total_in())?;
            let out_pos = total(inflate.total_out())?;
            let (src, dst) = match (
                input.get(in_pos..),
                scratch(&mut self.buf, cap).get_mut(out_pos..),
            ) {
                (Some(src), Some(dst)) => (src, dst),
                _ => return Err(DecodeError::Decompress("deflate state out of range".into())),
            };
            // Not `Finish`: miniz_oxide treats `Finish` as "the output buffer is
            // big enough" and fails instead of asking for more room.
            let status = inflate
                .decompress(src, dst, FlushDecompress::None)
                .map_err(|e| DecodeError::Decompress(format!("deflate: {e}")))?;
            let new_in = total(inflate.total_in())?;
            let new_out = total(inflate.total_out())?;
            if new_out >= cap_max {
                return Err(too_large(new_out, max));
            }
            if status == Status::StreamEnd {
                if new_in != input.len() {
                    return Err(DecodeError::Decompress(
                        "trailing bytes after the deflate stream".into(),
                    ));
                }
                return Ok(new_out);
            }
            if new_out == cap {
                cap = cap.saturating_mul(2).min(cap_max);
            } else if new_in == input.len() {
                return Err(DecodeError::Decompress(
                    "deflate stream is truncated".into(),
                ));
            } else if new_in == in_pos && new_out == out_pos {
                return Err(DecodeError::Decompress(
                    "deflate stream made no progress".into(),
                ));
            }
        }
    }

    fn brotli_decompress(
        &mut self,
        input: &[u8],
        mut cap: usize,
        cap_max: usize,
        max: u32,
    ) -> Result<usize, DecodeError> {
        let mut state = BrotliState::new(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        );
        let mut avail_in = input.len();
        let mut in_off = 0;
        let mut out_off = 0;
        let mut total_out = 0;
        loop {
            let out = scratch(&mut self.buf, cap);
            let mut avail_out = cap.saturating_sub(out_off);
            let result = BrotliDecompressStream(
                &mut avail_in,
                &mut in_off,
                input,
                &mut avail_out,
                &mut out_off,
                out,
                &mut total_out,
                &mut state,
            );
            match result {
                BrotliResult::ResultSuccess if avail_in != 0 => {
                    return Err(DecodeError::Decompress(
                        "trailing bytes after the brotli stream".into(),
                    ))
                }
                BrotliResult::ResultSuccess => return Ok(out_off),
                BrotliResult::NeedsMoreOutput if cap >= cap_max => {
                    return Err(too_large(out_off, max))
                }
                BrotliResult::NeedsMoreOutput => cap = cap.saturating_mul(2).min(cap_max),
                BrotliResult::NeedsMoreInput => {
                    return Err(DecodeError::Decompress("brotli stream is truncated".into()))
                }
                BrotliResult::ResultFailure => {
                    return Err(DecodeError::Decompress("invalid brotli stream".into()))
                }
            }
        }
    }
}

/// One-shot brotli into `out`; `None` when it does not fit (so is not smaller).
fn brotli_compress(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut state = BrotliEncoderStateStruct::new(StandardAlloc::default());
    state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
    state.set_parameter(
        BrotliEncoderParameter::BROTLI_PARAM_LGWIN,
        window_bits(input.len()),
    );
    let hint = u32::try_from(input.len()).unwrap_or(u32::MAX);
    state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT, hint);
    let mut avail_in = input.len();
    let mut in_off = 0;
    let mut avail_out = out.len();
    let mut out_off = 0;
    let mut total_out = None;
    // FINISH runs to the end unless output space runs out; a few rounds at most.
    for _ in 0..64 {
        let ok = state.compress_stream(
            BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
            &mut avail_in,
            input,
            &mut in_off,
            &mut avail_out,
            out,
            &mut out_off,
            &mut total_out,
            &mut |_, _, _, _| (),
        );
        if !ok || state.is_finished() || avail_out == 0 {
            break;
        }
    }
    let done = state.is_finished() && !state.has_more_output();
    BrotliEncoderDestroyInstance(&mut state);
    done.then_some(out_off)
}

/// Smallest brotli window (10..=24 bits) that covers `len` bytes: the decoder's
/// ring buffer and the encoder's tables scale with it.
fn window_bits(len: usize) -> u32 {
    let mut bits = 10;
    while bits < 24 && (1usize << bits) - 16 < len {
        bits += 1;
    }
    bits
}

/// The first `len` bytes of the scratch buffer, growing it (zeroed) if needed.
fn scratch(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

fn total(n: u64) -> Result<usize, DecodeError> {
    usize::try_from(n).map_err(|_| DecodeError::Decompress("stream position overflow".into()))
}

fn too_large(len: usize, max: u32) -> DecodeError {
    DecodeError::FrameTooLarge {
        len: len as u64,
        max,
    }
}

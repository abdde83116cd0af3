//! The codec: messages to frames and back, with the connection's negotiated
//! encoding and compression.

use crate::body::{decode_body, encode_body, is_known_kind};
use crate::compress;
use crate::error::{DecodeError, EncodeError};
use crate::frame::{flags_for, FrameHeader, HEADER_LEN, MAX_BODY_LEN};
use crate::message::{Compression, Encoding, Message, PROTOCOL_VERSION};

/// Bodies smaller than this are sent uncompressed: below about a kilobyte the
/// bytes saved do not pay for the CPU on both ends.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;

/// What a codec encodes with and what it accepts.
#[derive(Clone, Debug)]
pub struct CodecSettings {
    /// Body encoding of frames this codec writes (the reader follows each frame's flags).
    pub encoding: Encoding,
    /// Compression this codec may apply to frames it writes.
    pub compression: Compression,
    /// Largest frame body, before compression on encode and after decompression on decode.
    pub max_frame_bytes: u32,
    /// Smallest encoded body worth trying to compress.
    pub compress_threshold: usize,
}

impl Default for CodecSettings {
    fn default() -> Self {
        CodecSettings {
            encoding: Encoding::Bincode,
            compression: Compression::None,
            max_frame_bytes: 1024 * 1024,
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
        }
    }
}

/// Encoder and decoder of one connection. Compression state is not owned here but
/// borrowed per call from a per-thread pool (see `compress.rs`), so a connection
/// costs only its settings.
pub struct Codec {
    settings: CodecSettings,
}

impl Codec {
    /// A codec with these settings.
    pub fn new(settings: CodecSettings) -> Self {
        Codec { settings }
    }

    /// The current settings.
    pub fn settings(&self) -> &CodecSettings {
        &self.settings
    }

    /// Switches the encoding of later frames (after `Welcome`).
    pub fn set_encoding(&mut self, e: Encoding) {
        self.settings.encoding = e;
    }

    /// Switches the compression of later frames (after `Welcome`).
    pub fn set_compression(&mut self, c: Compression) {
        self.settings.compression = c;
    }

    /// Appends exactly one frame for `msg` to `out`. On error `out` is unchanged.
    pub fn encode(&mut self, msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let body_start = start + HEADER_LEN;
        out.resize(body_start, 0);
        let json = self.settings.encoding == Encoding::Json;
        if let Err(e) = encode_body(msg, json, out) {
            out.truncate(start);
            return Err(e);
        }
        let raw_len = out.len() - body_start;
        let max = (self.settings.max_frame_bytes as usize).min(MAX_BODY_LEN);
        if raw_len > max {
            out.truncate(start);
            return Err(EncodeError::FrameTooLarge { len: raw_len, max });
        }
        let mut compression = Compression::None;
        if self.settings.compression != Compression::None
            && raw_len >= self.settings.compress_threshold
        {
            let alg = self.settings.compression;
            let packed = compress::with(|c| match c.compress(alg, &out[body_start..]) {
                Some(packed) => {
                    out.truncate(body_start);
                    out.extend_from_slice(packed);
                    true
                }
                None => false,
            });
            if packed {
                compression = alg;
            }
        }
        let header = FrameHeader {
            version: PROTOCOL_VERSION,
            kind: msg.kind(),
            flags: flags_for(json, compression),
            // Fits: the body is at most `max` ≤ MAX_BODY_LEN, compressed or not.
            len: (out.len() - body_start) as u32,
        };
        out[start..body_start].copy_from_slice(&header.to_bytes());
        Ok(())
    }

    /// Iterates over the frames of one WebSocket message, in order.
    pub fn decode<'a>(&'a mut self, buf: &'a [u8]) -> Frames<'a> {
        Frames {
            codec: self,
            buf,
            done: false,
        }
    }

    fn decode_frame(&mut self, header: FrameHeader, body: &[u8]) -> Result<Message, DecodeError> {
        if header.version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(header.version));
        }
        if !is_known_kind(header.kind) {
            return Err(DecodeError::UnknownType(header.kind));
        }
        let compression = header.compression()?;
        let max = self.settings.max_frame_bytes;
        if header.len > max {
            return Err(DecodeError::FrameTooLarge {
                len: header.len.into(),
                max,
            });
        }
        match compression {
            Compression::None => decode_body(header.kind, body, header.is_json(), max),
            alg => compress::with(|c| {
                let body = c.decompress(alg, body, max)?;
                decode_body(header.kind, body, header.is_json(), max)
            }),
        }
    }
}

/// The frames of one WebSocket message, decoded one by one.
///
/// A frame whose extent is known but whose content is bad yields `Err` and the
/// iteration goes on; a message cut inside a frame yields one `Truncated` and ends.
pub struct Frames<'a> {
    codec: &'a mut Codec,
    /// The frames not yet decoded.
    buf: &'a [u8],
    done: bool,
}

impl Iterator for Frames<'_> {
    type Item = Result<Message, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        let header = match FrameHeader::parse(self.buf) {
            Ok(h) => h,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let end = HEADER_LEN + header.len as usize;
        let Some(body) = self.buf.get(HEADER_LEN..end) else {
            self.done = true;
            return Some(Err(DecodeError::Truncated {
                needed: end,
                available: self.buf.len(),
            }));
        };
        self.buf = self.buf.get(end..).unwrap_or_default();
        Some(self.codec.decode_frame(header, body))
    }
}

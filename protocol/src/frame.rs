//! The 6-byte frame header: version, type, flags, 24-bit little-endian body length.

use crate::error::DecodeError;
use crate::message::Compression;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 6;

/// Largest body the 24-bit length field can describe (16 MiB − 1).
pub const MAX_BODY_LEN: usize = 0xFF_FFFF;

/// Bits of the flags byte. Kept in one place so PROTOCOL.md and the code agree.
pub mod flags {
    /// Bits 0–1: body compression (0 none, 1 raw deflate, 2 brotli, 3 reserved).
    pub const COMPRESSION_MASK: u8 = 0b0000_0011;
    /// Compression field value for raw deflate (RFC 1951).
    pub const DEFLATE: u8 = 1;
    /// Compression field value for brotli (RFC 7932).
    pub const BROTLI: u8 = 2;
    /// Bit 2: the body is JSON rather than bincode.
    pub const JSON: u8 = 0b0000_0100;
    /// Bits 3–7: reserved, must be zero so they can gain a meaning later.
    pub const RESERVED: u8 = 0b1111_1000;
}

/// A parsed frame header. Parsing only splits the bytes; [`FrameHeader::check`]
/// decides whether this codec can handle the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version of the frame.
    pub version: u8,
    /// Frame type byte (one of [`crate::kind`]).
    pub kind: u8,
    /// Compression and encoding bits (see [`flags`]).
    pub flags: u8,
    /// Body length in bytes, as on the wire (compressed, if compressed).
    pub len: u32,
}

impl FrameHeader {
    /// Splits the first [`HEADER_LEN`] bytes of `buf`; `Truncated` if there are fewer.
    pub fn parse(buf: &[u8]) -> Result<FrameHeader, DecodeError> {
        match buf {
            [version, kind, flags, l0, l1, l2, ..] => Ok(FrameHeader {
                version: *version,
                kind: *kind,
                flags: *flags,
                len: u32::from_le_bytes([*l0, *l1, *l2, 0]),
            }),
            _ => Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            }),
        }
    }

    /// The header as wire bytes. `len` above 24 bits is the caller's bug; it is
    /// masked rather than allowed to corrupt the next frame.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [l0, l1, l2, _] = (self.len & MAX_BODY_LEN as u32).to_le_bytes();
        [self.version, self.kind, self.flags, l0, l1, l2]
    }

    /// Appends the header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// The compression the flags announce; `BadFlags` for reserved bits or value 3.
    pub fn compression(&self) -> Result<Compression, DecodeError> {
        if self.flags & flags::RESERVED != 0 {
            return Err(DecodeError::BadFlags(self.flags));
        }
        match self.flags & flags::COMPRESSION_MASK {
            0 => Ok(Compression::None),
            flags::DEFLATE => Ok(Compression::Deflate),
            flags::BROTLI => Ok(Compression::Brotli),
            _ => Err(DecodeError::BadFlags(self.flags)),
        }
    }

    /// True when the body is JSON rather than bincode.
    pub fn is_json(&self) -> bool {
        self.flags & flags::JSON != 0
    }
}

/// The flags byte for a body with this encoding and compression.
pub(crate) fn flags_for(json: bool, compression: Compression) -> u8 {
    let c = match compression {
        Compression::None => 0,
        Compression::Deflate => flags::DEFLATE,
        Compression::Brotli => flags::BROTLI,
    };
    if json {
        c | flags::JSON
    } else {
        c
    }
}

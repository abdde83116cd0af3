//! Errors of the codec, typed so the server can answer each one with the right
//! `Error` frame (see [`DecodeError::code`]) instead of guessing from a string.

use thiserror::Error;

use crate::message::ErrorCode;

/// Why one frame of a WebSocket message could not be decoded.
///
/// Only [`DecodeError::Truncated`] ends the iteration over a message: every other
/// error concerns one frame whose extent is known, so the frames after it are
/// still decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The message ends inside a frame header or body; nothing after it can be framed.
    #[error("truncated frame: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the header (or header + body) needs from the frame's start.
        needed: usize,
        /// Bytes left in the message from the frame's start.
        available: usize,
    },
    /// The header's version byte is not [`crate::PROTOCOL_VERSION`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The frame type byte names no message.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// Reserved flag bits are set, or the reserved compression value 3 is used.
    #[error("bad frame flags 0b{0:08b}")]
    BadFlags(u8),
    /// The body (on the wire or once decompressed) exceeds `max_frame_bytes`.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Body length seen (for decompression: the point where it was stopped).
        len: u64,
        /// The codec's `max_frame_bytes`.
        max: u32,
    },
    /// The body does not decode as the message its type byte names.
    #[error("malformed body of frame type 0x{kind:02x}: {detail}")]
    Body {
        /// The frame type byte.
        kind: u8,
        /// What the bincode or JSON decoder said.
        detail: String,
    },
    /// The compressed body is not a valid deflate or brotli stream.
    #[error("cannot decompress frame body: {0}")]
    Decompress(String),
}

impl DecodeError {
    /// The protocol error code to send back in an `Error` frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Truncated { .. }
            | DecodeError::BadFlags(_)
            | DecodeError::Body { .. }
            | DecodeError::Decompress(_) => ErrorCode::Malformed,
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
        }
    }

    /// The frame type byte, when the error carries it (for logs and metrics).
    pub fn kind(&self) -> Option<u8> {
        match self {
            DecodeError::UnknownType(kind) | DecodeError::Body { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Why a message could not be encoded. The output buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded body exceeds `max_frame_bytes` or the 24-bit length field;
    /// the sender must split the payload (e.g. into several `Output` chunks).
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Encoded body length, before compression.
        len: usize,
        /// The smaller of `max_frame_bytes` and the 24-bit maximum.
        max: usize,
    },
    /// bincode or serde_json refused the value.
    #[error("cannot serialize frame type 0x{kind:02x}: {detail}")]
    Serialize {
        /// The frame type byte.
        kind: u8,
        /// What the serializer said.
        detail: String,
    },
}

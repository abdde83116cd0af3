//! Wire types, framing, codec and compression of the voxterm protocol.
//!
//! A WebSocket binary message carries one or more frames; a frame is a 6-byte
//! header (version, type, flags, 24-bit length) followed by a bincode 2 (or JSON)
//! body, optionally compressed. `PROTOCOL.md` documents every byte.
#![warn(missing_docs)]

mod body;
mod codec;
mod compress;
mod error;
pub mod frame;
pub mod message;

pub use codec::{Codec, CodecSettings, Frames, DEFAULT_COMPRESS_THRESHOLD};
pub use error::{DecodeError, EncodeError};
pub use frame::{FrameHeader, HEADER_LEN};
pub use message::*;

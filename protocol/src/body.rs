//! Frame bodies: the inner struct of a [`Message`] variant in bincode 2 (standard
//! config) or JSON. The enum itself is never serialized; the frame type byte says
//! which struct follows.

use bincode::config::{self, Config};
use bincode::{Decode, Encode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{DecodeError, EncodeError};
use crate::message::{kind, Message};

/// bincode counts what it is about to allocate ("claims") against a limit, and
/// only a compile-time one. The in-memory size it claims can exceed the wire size
/// (a 1-byte varint claims 8 for a u64; an empty `Counter` claims 32 up front), so
/// the limit is this many times `max_frame_bytes`, rounded up to a power of four.
/// A lying length field can therefore reserve at most that much, never more.
const CLAIM_FACTOR: u64 = 16;

/// True when `k` is the frame type of some [`Message`] variant.
pub(crate) fn is_known_kind(k: u8) -> bool {
    matches!(
        k,
        kind::HELLO
            | kind::WELCOME
            | kind::OPEN_SESSION
            | kind::SESSION_OPENED
            | kind::CLOSE_SESSION
            | kind::SESSION_CLOSED
            | kind::CONFIGURE
            | kind::CONFIGURED
            | kind::EXEC
            | kind::BATCH
            | kind::CANCEL
            | kind::SPAWN
            | kind::INPUT
            | kind::RESIZE
            | kind::CLASSIFY
            | kind::ATTACH
            | kind::OUTPUT
            | kind::EXIT
            | kind::ERROR
            | kind::INPUT_CREDIT
            | kind::NOTICE
            | kind::CLASSIFIED
            | kind::REJECTED
            | kind::SUGGESTIONS
            | kind::PING
            | kind::PONG
            | kind::STATS_REQUEST
            | kind::STATS
    )
}

/// Appends bincode straight into the caller's buffer (no temporary `Vec`).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn put<T: Encode + Serialize>(
    k: u8,
    value: &T,
    json: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let detail = if json {
        serde_json::to_writer(&mut *out, value)
            .err()
            .map(|e| e.to_string())
    } else {
        bincode::encode_into_writer(value, VecWriter(out), config::standard())
            .err()
            .map(|e| e.to_string())
    };
    match detail {
        None => Ok(()),
        Some(detail) => Err(EncodeError::Serialize { kind: k, detail }),
    }
}

/// Appends the body of `msg` to `out`.
pub(crate) fn encode_body(msg: &Message, json: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let k = msg.kind();
    match msg {
        Message::Hello(m) => put(k, m, json, out),
        Message::Welcome(m) => put(k, m, json, out),
        Message::OpenSession(m) => put(k, m, json, out),
        Message::SessionOpened(m) => put(k, m, json, out),
        Message::CloseSession(m) => put(k, m, json, out),
        Message::SessionClosed(m) => put(k, m, json, out),
        Message::Configure(m) => put(k, m, json, out),
        Message::Configured(m) => put(k, m, json, out),
        Message::Exec(m) => put(k, m, json, out),
        Message::Batch(m) => put(k, m, json, out),
        Message::Cancel(m) => put(k, m, json, out),
        Message::Spawn(m) => put(k, m, json, out),
        Message::Input(m) => put(k, m, json, out),
        Message::Resize(m) => put(k, m, json, out),
        Message::Classify(m) => put(k, m, json, out),
        Message::Attach(m) => put(k, m, json, out),
        Message::Output(m) => put(k, m, json, out),
        Message::Exit(m) => put(k, m, json, out),
        Message::Error(m) => put(k, m, json, out),
        Message::InputCredit(m) => put(k, m, json, out),
        Message::Notice(m) => put(k, m, json, out),
        Message::Classified(m) => put(k, m, json, out),
        Message::Rejected(m) => put(k, m, json, out),
        Message::Suggestions(m) => put(k, m, json, out),
        Message::Ping(m) => put(k, m, json, out),
        Message::Pong(m) => put(k, m, json, out),
        Message::StatsRequest(m) => put(k, m, json, out),
        Message::Stats(m) => put(k, m, json, out),
    }
}

fn bincode_with_limit<T: Decode<()>, C: Config>(
    body: &[u8],
    cfg: C,
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::decode_from_slice(body, cfg)
}

// Not inlined: sixteen types × seven limit buckets inlined into `decode_body`
// gave it a stack frame that cost ~60 ns per frame to set up.
#[inline(never)]
fn get<T: Decode<()> + DeserializeOwned>(
    k: u8,
    body: &[u8],
    json: bool,
    max_frame_bytes: u32,
) -> Result<T, DecodeError> {
    let err = |detail: String| DecodeError::Body { kind: k, detail };
    if json {
        return serde_json::from_slice(body).map_err(|e| err(e.to_string()));
    }
    let budget = u64::from(max_frame_bytes).saturating_mul(CLAIM_FACTOR);
    let std = config::standard();
    let decoded = if budget <= 1 << 20 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 20 }>())
    } else if budget <= 1 << 22 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 22 }>())
    } else if budget <= 1 << 24 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 24 }>())
    } else if budget <= 1 << 26 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 26 }>())
    } else if budget <= 1 << 28 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 28 }>())
    } else if budget <= 1 << 30 {
        bincode_with_limit(body, std.with_limit::<{ 1 << 30 }>())
    } else {
        // max_frame_bytes above 64 MiB: the caller asked for huge frames.
        bincode_with_limit(body, std.with_limit::<{ usize::MAX }>())
    };
    match decoded {
        Ok((value, used)) if used == body.len() => Ok(value),
        Ok((_, used)) => Err(err(format!("{} trailing bytes", body.len() - used))),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Decodes a (decompressed) body of frame type `k`.
pub(crate) fn decode_body(
    k: u8,
    body: &[u8],
    json: bool,
    max_frame_bytes: u32,
) -> Result<Message, DecodeError> {
    let m = max_frame_bytes;
    Ok(match k {
        kind::HELLO => Message::Hello(get(k, body, json, m)?),
        kind::WELCOME => Message::Welcome(get(k, body, json, m)?),
        kind::OPEN_SESSION => Message::OpenSession(get(k, body, json, m)?),
        kind::SESSION_OPENED => Message::SessionOpened(get(k, body, json, m)?),
        kind::CLOSE_SESSION => Message::CloseSession(get(k, body, json, m)?),
        kind::SESSION_CLOSED => Message::SessionClosed(get(k, body, json, m)?),
        kind::CONFIGURE => Message::Configure(get(k, body, json, m)?),
        kind::CONFIGURED => Message::Configured(get(k, body, json, m)?),
        kind::EXEC => Message::Exec(get(k, body, json, m)?),
        kind::BATCH => Message::Batch(get(k, body, json, m)?),
        kind::CANCEL => Message::Cancel(get(k, body, json, m)?),
        kind::SPAWN => Message::Spawn(get(k, body, json, m)?),
        kind::INPUT => Message::Input(get(k, body, json, m)?),
        kind::RESIZE => Message::Resize(get(k, body, json, m)?),
        kind::CLASSIFY => Message::Classify(get(k, body, json, m)?),
        kind::ATTACH => Message::Attach(get(k, body, json, m)?),
        kind::OUTPUT => Message::Output(get(k, body, json, m)?),
        kind::EXIT => Message::Exit(get(k, body, json, m)?),
        kind::ERROR => Message::Error(get(k, body, json, m)?),
        kind::INPUT_CREDIT => Message::InputCredit(get(k, body, json, m)?),
        kind::NOTICE => Message::Notice(get(k, body, json, m)?),
        kind::CLASSIFIED => Message::Classified(get(k, body, json, m)?),
        kind::REJECTED => Message::Rejected(get(k, body, json, m)?),
        kind::SUGGESTIONS => Message::Suggestions(get(k, body, json, m)?),
        kind::PING => Message::Ping(get(k, body, json, m)?),
        kind::PONG => Message::Pong(get(k, body, json, m)?),
        kind::STATS_REQUEST => Message::StatsRequest(get(k, body, json, m)?),
        kind::STATS => Message::Stats(get(k, body, json, m)?),
        other => return Err(DecodeError::UnknownType(other)),
    })
}

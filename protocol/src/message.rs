//! The messages of the voxterm protocol.
//!
//! Every message is one frame on the wire (see `frame.rs` and PROTOCOL.md). The
//! structs here are the frame bodies; [`Message`] ties each one to its frame type
//! byte. Field order is wire order: bincode writes fields in declaration order, so
//! reordering or inserting a field is a protocol change and needs a version bump.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. Sent in every frame header.
pub const PROTOCOL_VERSION: u8 = 1;

/// Client-chosen id of a request, unique among that connection's in-flight requests.
pub type RequestId = u32;

/// Client-chosen handle of a session on one connection. Handle 0 is always bound to
/// the session named `default`, so simple clients never need `OpenSession`.
pub type SessionId = u32;

/// Body encodings a connection can use after `Hello`/`Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum Encoding {
    /// bincode 2, standard config (varint integers). The default and the compact one.
    Bincode,
    /// JSON (serde_json), for debugging and for the size comparison.
    Json,
}

/// Per-frame compression algorithms a connection can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum Compression {
    /// Bodies are never compressed.
    None,
    /// Raw deflate (RFC 1951) via flate2.
    Deflate,
    /// Brotli (RFC 7932).
    Brotli,
}

/// Limits the server enforces on a connection, announced in `Welcome` so a client
/// can stay inside them instead of discovering them by failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Limits {
    /// Largest WebSocket message the server accepts; larger ones close with 1009.
    pub max_message_bytes: u32,
    /// Largest single frame body (after decompression).
    pub max_frame_bytes: u32,
    /// Most requests one connection may have in flight at once.
    pub max_in_flight: u32,
    /// Most sessions one connection may have open at once.
    pub max_sessions: u32,
    /// Default command timeout in milliseconds when `Exec.timeout_ms` is 0.
    pub default_timeout_ms: u32,
    /// Per-stream output cap in bytes; output past it is cut and `Exit.truncated` set.
    pub output_cap_bytes: u64,
}

/// First frame a client sends: what it speaks and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u8,
    /// Free-form client name and version, for logs.
    pub client: String,
    /// Encodings the client accepts, most preferred first.
    pub encodings: Vec<Encoding>,
    /// Compression the client accepts, most preferred first.
    pub compression: Vec<Compression>,
    /// Tenant to act as when the server runs without tokens (default `default`).
    pub tenant: Option<String>,
    /// Authentication token, for clients (browsers) that cannot set headers.
    pub token: Option<String>,
}

/// The server's answer to `Hello`: what was chosen and what the limits are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Welcome {
    /// Protocol version both sides will use.
    pub version: u8,
    /// Server name and version.
    pub server: String,
    /// Encoding of every later frame body, in both directions.
    pub encoding: Encoding,
    /// Compression either side may apply to later frames.
    pub compression: Compression,
    /// Limits enforced on this connection.
    pub limits: Limits,
    /// The tenant this connection acts for.
    pub tenant: String,
    /// Server-assigned connection id, for correlating logs.
    pub connection: u64,
}

/// Bind a connection-local session handle to a named session of the tenant,
/// creating it or resuming it (cwd, env and history survive reconnects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct OpenSession {
    /// Handle the client will use in `Exec.session`.
    pub session: SessionId,
    /// Session name within the tenant.
    pub name: String,
}

/// Reply to `OpenSession`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SessionOpened {
    /// The handle from `OpenSession`.
    pub session: SessionId,
    /// Current working directory of the session.
    pub cwd: String,
    /// True when an existing session was resumed rather than created.
    pub resumed: bool,
}

/// Unbind a session handle. The session itself lives on for its idle TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct CloseSession {
    /// The handle to release.
    pub session: SessionId,
}

/// Reply to `CloseSession`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SessionClosed {
    /// The released handle.
    pub session: SessionId,
}

/// Opt-in additions to version 1, asked for after `Welcome` and answered by
/// `Configured`. A client that never sends it sees none of the frames it
/// enables, so every existing client keeps working unchanged. It may be sent
/// again; the last one counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Configure {
    /// How many predicted next commands to send after each `Exec` ends, as
    /// `Suggestions`; 0 sends none.
    pub suggestions: u8,
    /// Errors that end no request come as `Rejected`, which names what they
    /// are about (a request id, a session handle, a frame), instead of as an
    /// `Error` without a request.
    pub rejections: bool,
    /// If this connection drops, its running commands keep running for the
    /// server's detach grace, their output held, so that a new connection can
    /// take them over with `Attach`.
    pub reattach: bool,
}

/// The answer to `Configure`: what the server grants, and the timers and
/// sizes a client needs to pace itself that `Welcome` does not carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Configured {
    /// Suggestions per command granted: at most what was asked and what the
    /// server predicts; 0 when prediction is off.
    pub suggestions: u8,
    /// Whether `Rejected` replaces request-less `Error`s from now on.
    pub rejections: bool,
    /// How long this connection's commands outlive it for `Attach`, in
    /// milliseconds; 0 when re-attach was not asked for or is off here.
    pub reattach_ms: u32,
    /// The connection's timers and sizes.
    pub settings: Settings,
}

/// Timers and sizes of this connection, so a client need not learn them by
/// failure (all times in milliseconds; 0 means "off").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Settings {
    /// Time from the upgrade to an accepted `Hello`.
    pub handshake_ms: u32,
    /// A connection that sends nothing this long is closed (1000, "idle").
    pub idle_ms: u32,
    /// Interval of the server's WebSocket pings.
    pub keepalive_ms: u32,
    /// On shutdown, how long running requests get before they are killed.
    pub drain_ms: u32,
    /// After SIGTERM, how long a killed command gets before SIGKILL.
    pub kill_grace_ms: u32,
    /// Bodies at least this large are compressed (when compression is on).
    pub compression_threshold: u32,
    /// The largest `Output.data` the server sends.
    pub max_output_data: u32,
    /// The server coalesces ready frames into one message up to about this size.
    pub coalesce_bytes: u32,
}

/// Scheduling class of a request in the worker pool's queue.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Encode,
    Decode,
)]
pub enum Priority {
    /// Interactive, user is waiting: ahead of everything.
    High,
    /// The default.
    #[default]
    Normal,
    /// Speculative work; runs only on idle capacity.
    Prefetch,
}

/// How a request may use the result cache.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub enum CacheMode {
    /// Serve from cache when the policy allows, store clean results.
    #[default]
    Default,
    /// Neither read nor write the cache.
    Bypass,
    /// Run the command and overwrite the cached entry.
    Refresh,
}

/// Run one command in a session. Answered by zero or more `Output` frames and then
/// exactly one terminal frame: `Exit`, or `Error` when it could not be run at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Exec {
    /// Client-chosen id; every reply names it.
    pub request: RequestId,
    /// Session handle (0 = the `default` session).
    pub session: SessionId,
    /// The command line, as a user would type it in a POSIX shell.
    pub command: String,
    /// Queue class.
    pub priority: Priority,
    /// Timeout in milliseconds; 0 means the server default.
    pub timeout_ms: u32,
    /// Cache use.
    pub cache: CacheMode,
}

/// How the commands of a `Batch` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum BatchMode {
    /// All at once; each gets its own replies.
    #[default]
    Parallel,
    /// One after another; after a failure the rest end with `Error { Skipped }`.
    Sequential,
}

/// Several `Exec`s in one frame, to save round trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Batch {
    /// Parallel or sequential with stop-on-failure.
    pub mode: BatchMode,
    /// The commands; each is answered as if sent alone.
    pub execs: Vec<Exec>,
}

/// Cancel an in-flight request. Its process group is killed and it ends with an
/// `Exit` whose `killed` is `Cancelled`. Unknown ids are ignored (it may have ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Cancel {
    /// The request to cancel.
    pub request: RequestId,
}

/// The terminal a `Spawn` asks for: the command runs on a pseudo-terminal of
/// this size, so programs that need one (vi, top, less, a REPL) work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Pty {
    /// Rows, 1..=1000.
    pub rows: u16,
    /// Columns, 1..=1000.
    pub cols: u16,
    /// `TERM` for the command; empty means `xterm-256color`.
    pub term: String,
}

/// Run one command with a live stdin, and on a terminal when `pty` is set.
///
/// Apart from `Exec` because it is a different kind of request: it is never
/// cached or prefetched (what it prints depends on what the client types), it
/// cannot be batched, and it is answered with an `InputCredit` before anything
/// else. The fast, cacheable path stays `Exec`, unchanged on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Spawn {
    /// Client-chosen id, in the same space as `Exec.request`.
    pub request: RequestId,
    /// Session handle (0 = the `default` session).
    pub session: SessionId,
    /// The command line, as a user would type it in a POSIX shell.
    pub command: String,
    /// Timeout in milliseconds; 0 means the server default.
    pub timeout_ms: u32,
    /// A pseudo-terminal for the command, or none (stdin is then a pipe).
    pub pty: Option<Pty>,
}

/// Bytes for a `Spawn`ed command's stdin (or its terminal).
///
/// Flow control: a client may have at most the bytes granted by `InputCredit`
/// outstanding, so the server's buffer per request is bounded without ever
/// stopping the connection's other requests (no head-of-line blocking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Input {
    /// The `Spawn` request the bytes are for.
    pub request: RequestId,
    /// The bytes, written to the command unmodified.
    pub data: Vec<u8>,
    /// End of input: the command's stdin is closed after `data` (on a
    /// terminal, the terminal's end-of-file character is sent instead).
    pub end: bool,
}

/// A new size for a `Spawn`ed command's terminal; the command gets `SIGWINCH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Resize {
    /// The `Spawn` request (it must have asked for a `pty`).
    pub request: RequestId,
    /// Rows, 1..=1000.
    pub rows: u16,
    /// Columns, 1..=1000.
    pub cols: u16,
}

/// Ask what the server makes of a line without running it, so a client can
/// confirm a line that changes something before it runs (a voice client reads
/// it back: speech recognition mishears).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Classify {
    /// Client-chosen id, in the same space as `Exec.request`.
    pub request: RequestId,
    /// Session handle (0 = the `default` session).
    pub session: SessionId,
    /// The command line.
    pub command: String,
}

/// Take over a request of a connection that dropped (`Configure.reattach`):
/// its output after `after_seq` and its one terminal frame come on this
/// connection, exactly once, and it is this connection's request from then on
/// (`Cancel`, `Input` and `Resize` reach it under the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Attach {
    /// The request's id (on the old connection; it keeps it here).
    pub request: RequestId,
    /// `Welcome.connection` of the connection that sent it.
    pub connection: u64,
    /// The session handle, on this connection, of the session the request
    /// runs in: it must be bound to the same session.
    pub session: SessionId,
    /// The `seq` of the last `Output` of it the client has; none if it has
    /// none.
    pub after_seq: Option<u32>,
}

/// Permission to send more `Input`: the server has passed `bytes` more of the
/// request's input on to the command (or, first, the initial window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct InputCredit {
    /// The `Spawn` request.
    pub request: RequestId,
    /// How many more input bytes the client may send.
    pub bytes: u32,
}

/// What a `Notice` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum NoticeKind {
    /// The command is a program that waits for a terminal (vi, top, a REPL)
    /// and was started without one: run it with a `Spawn` that has a `pty`.
    NeedsTerminal,
    /// An `Attach` took the request over: its output after the `after_seq`
    /// asked for follows (sent only to clients that asked for re-attach).
    Reattached,
}

/// Something the person should know about a running request, apart from its
/// output (clients print it on their own stderr or status line). Not terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Notice {
    /// The request it concerns.
    pub request: RequestId,
    /// What it is about, for clients that act on it.
    pub kind: NoticeKind,
    /// One line for a person, e.g. "vi needs a terminal: run it with -t".
    pub message: String,
}

/// What running a line would do, as the server's own walk of it sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    strum::VariantArray,
)]
pub enum LineClass {
    /// Only reads (the cache may answer it).
    ReadOnly,
    /// Changes only the session (`cd`, `export`, `unset`).
    Session,
    /// Writes files, changes repositories, talks to the network, or signals.
    Mutating,
    /// The server cannot tell (a program it does not know, an expansion).
    Unknown,
    /// The command policy refuses it; `detail` says why.
    Denied,
}

impl LineClass {
    /// Every class, in variant-index (wire) order.
    pub const ALL: &'static [LineClass] = <LineClass as strum::VariantArray>::VARIANTS;
}

/// The answer to `Classify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Classified {
    /// The `Classify` request.
    pub request: RequestId,
    /// The line's class.
    pub class: LineClass,
    /// One line for a person: what makes it so (e.g. "rm writes files").
    pub detail: String,
}

/// What a `Rejected` is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    strum::VariantArray,
)]
pub enum Subject {
    /// The connection as a whole (a text message, an expired token); `id` is 0.
    Connection,
    /// A frame that could not be decoded or went the wrong way; `id` is its
    /// type byte (0 when even the header was unreadable).
    Frame,
    /// A request id: a duplicate of one in flight (which goes on), or the
    /// target of an `Input` or `Resize` that was refused.
    Request,
    /// A session handle: an `OpenSession` or `CloseSession` that was refused.
    Session,
    /// A `Batch` refused as a whole (an empty one); `id` is 0.
    Batch,
}

impl Subject {
    /// Every subject, in variant-index (wire) order.
    pub const ALL: &'static [Subject] = <Subject as strum::VariantArray>::VARIANTS;
}

/// An error that ends no request, naming the call it answers. Sent instead of
/// a request-less `Error` once `Configure.rejections` is granted, so a client
/// with several calls outstanding knows which one failed. Never terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Rejected {
    /// What kind of thing `id` names.
    pub about: Subject,
    /// The request id, session handle or frame type byte; 0 for the others.
    pub id: u32,
    /// What went wrong (the codes of `Error`).
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// One predicted next command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Suggestion {
    /// The line, exactly as this tenant ran it before.
    pub line: String,
    /// The model's probability, in thousandths (0–1000).
    pub score: u16,
}

/// The likely next commands after a request ended, most likely first (sent
/// only when `Configure.suggestions` asked for them). Only lines this tenant
/// itself ran in this context are suggested: another tenant's lines are never
/// shown. Running one is an ordinary `Exec`; it is answered at once (with
/// `served_from: Prefetch`) when the server prefetched it meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Suggestions {
    /// The request whose end they follow (sent after its terminal frame).
    pub after: RequestId,
    /// Its session handle.
    pub session: SessionId,
    /// At most the granted number; may be empty (nothing likely follows).
    pub lines: Vec<Suggestion>,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of a command's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Output {
    /// The request this output belongs to.
    pub request: RequestId,
    /// stdout or stderr.
    pub stream: StreamKind,
    /// Per-request sequence number across both streams, from 0, without gaps.
    pub seq: u32,
    /// The bytes, unmodified.
    pub data: Vec<u8>,
}

/// Where a result came from.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    strum::VariantArray,
)]
pub enum ServedFrom {
    /// A child process ran it.
    Exec,
    /// An engine builtin (`cd`, `export`, `unset`, `pwd`) answered it in-process.
    Builtin,
    /// The per-thread L1 cache.
    L1,
    /// The process-wide L2 cache.
    L2,
    /// Redis, shared by all instances.
    L3,
    /// A cache entry that the prefetcher filled before it was asked for.
    Prefetch,
    /// It joined an identical request's run (single flight) that started a
    /// process: it shares that process's output and started none of its own.
    Joined,
}

impl ServedFrom {
    /// Every variant, for metrics and reports (derived: a new variant is
    /// listed without anyone remembering to).
    pub const ALL: &'static [ServedFrom] = <ServedFrom as strum::VariantArray>::VARIANTS;

    /// Stable lowercase name used in metrics labels and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedFrom::Exec => "exec",
            ServedFrom::Builtin => "builtin",
            ServedFrom::L1 => "L1",
            ServedFrom::L2 => "L2",
            ServedFrom::L3 => "L3",
            ServedFrom::Prefetch => "prefetch",
            ServedFrom::Joined => "joined",
        }
    }
}

/// Why the engine killed a command, if it did.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub enum KillReason {
    /// The engine did not kill it (it exited, or something else signalled it).
    #[default]
    None,
    /// Its timeout passed.
    Timeout,
    /// The client sent `Cancel`.
    Cancelled,
    /// It wrote more than the output cap.
    OutputLimit,
    /// The server shut down before it finished.
    Shutdown,
}

/// The end of a request that ran (or was answered from cache or a builtin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Exit {
    /// The request that ended.
    pub request: RequestId,
    /// Exit status, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    pub signal: Option<i32>,
    /// Where the answer came from.
    pub served_from: ServedFrom,
    /// Microseconds from the request frame's arrival to this frame's creation.
    pub backend_us: u64,
    /// True when output was cut at the output cap.
    pub truncated: bool,
    /// Why the engine killed it, if it did.
    pub killed: KillReason,
}

/// Typed error codes. Stable numbers: clients may switch on them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    strum::VariantArray,
)]
pub enum ErrorCode {
    /// A frame could not be decoded (bad header, bad body, bad flags).
    Malformed,
    /// The frame type byte is not one this server knows.
    UnknownType,
    /// The frame's protocol version is not supported.
    UnsupportedVersion,
    /// A text WebSocket message arrived; only binary messages are accepted.
    TextFrame,
    /// A frame body exceeds the frame limit.
    FrameTooLarge,
    /// A message that only the server sends (or only the client) went the wrong way.
    UnexpectedMessage,
    /// `Hello` must come first.
    HelloRequired,
    /// The request id is already in flight on this connection.
    DuplicateRequest,
    /// The session handle is not open on this connection.
    UnknownSession,
    /// The connection already has `max_in_flight` requests.
    TooManyRequests,
    /// The connection already has `max_sessions` sessions.
    TooManySessions,
    /// The command line is empty or cannot be parsed.
    InvalidCommand,
    /// The process could not be started.
    SpawnFailed,
    /// A sequential batch stopped before reaching this request.
    Skipped,
    /// The server is shutting down and accepts no new work.
    ShuttingDown,
    /// Authentication failed.
    Unauthorized,
    /// The command policy refuses this command.
    PolicyDenied,
    /// A rate limit was hit; retry later.
    RateLimited,
    /// A quota (sessions, connections) is exhausted.
    QuotaExceeded,
    /// A bug or resource failure on the server.
    Internal,
    /// `Input` or `Resize` names a request that is not in flight.
    UnknownRequest,
    /// `Input` the request cannot take: it is an `Exec` (no stdin), its input
    /// already ended, or it goes past the credit granted.
    InputRefused,
    /// `Resize` for a request that has no terminal.
    NotATerminal,
    /// A field is out of range: a terminal size, a `TERM`, a timeout above
    /// the server's maximum.
    InvalidArgument,
    /// `Attach` names a request this server does not hold: it ended longer
    /// than the detach grace ago, was killed when the grace ran out, belongs
    /// to another tenant, or ran on another engine (which may have died).
    RequestLost,
    /// `Attach` names a request that the connection it names, dropped within
    /// the detach grace, never received (lost in a balancer or a socket
    /// buffer with the link): it did not run, and the client may send it
    /// again.
    NotReceived,
}

impl ErrorCode {
    /// Every code, in variant-index (wire) order (derived: a new code is
    /// listed without anyone remembering to).
    pub const ALL: &'static [ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;
}

/// A typed error. With `request` set it is that request's terminal frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Error {
    /// The request this error ends, if it concerns one.
    pub request: Option<RequestId>,
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// Liveness probe; answered by `Pong` with the same nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Ping {
    /// Echoed back unchanged.
    pub nonce: u64,
}

/// Answer to `Ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Pong {
    /// The `Ping`'s nonce.
    pub nonce: u64,
}

/// Ask for the server's counters (used by the load tester during a run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct StatsRequest {
    /// Echoed in the reply, to pair them.
    pub nonce: u64,
}

/// A named counter or gauge, for figures that later subsystems add (cache,
/// prediction) without a protocol change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Counter {
    /// Metric name, e.g. `cache_hits_l1`.
    pub name: String,
    /// Its value.
    pub value: u64,
}

/// Server-wide counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Stats {
    /// The `StatsRequest` nonce.
    pub nonce: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Live sessions (attached or within their idle TTL).
    pub sessions: u64,
    /// Requests accepted since start.
    pub requests: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Requests that ended with an `Error` frame since start.
    pub errors: u64,
    /// Jobs waiting in the worker pool's queue.
    pub queue_depth: u64,
    /// Workers running a command now.
    pub busy_workers: u64,
    /// Resident set size of the server process, bytes.
    pub rss_bytes: u64,
    /// CPU time of the server process (user + system), microseconds.
    pub cpu_us: u64,
    /// Bytes received in WebSocket payloads.
    pub bytes_in: u64,
    /// Bytes sent in WebSocket payloads.
    pub bytes_out: u64,
    /// Backend latency (frame in → terminal frame out), microseconds, as a
    /// serialized HdrHistogram (V2 + deflate), so that clients can merge and query it.
    pub backend_histogram: Vec<u8>,
    /// Further counters (requests by served_from, cache and prediction figures).
    pub counters: Vec<Counter>,
}

/// Every message, each with its frame type byte (see [`Message::kind`]).
///
/// The rare, large bodies (`Hello`, `Welcome`, `Spawn`, `Stats`) are boxed so that the enum
/// stays the size of the hot ones (`Output`, `Exec`, `Exit`): every connection's
/// writer queue preallocates slots of this size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// 0x01, client → server.
    Hello(Box<Hello>),
    /// 0x02, server → client.
    Welcome(Box<Welcome>),
    /// 0x03, client → server.
    OpenSession(OpenSession),
    /// 0x04, server → client.
    SessionOpened(SessionOpened),
    /// 0x05, client → server.
    CloseSession(CloseSession),
    /// 0x06, server → client.
    SessionClosed(SessionClosed),
    /// 0x07, client → server.
    Configure(Configure),
    /// 0x08, server → client (boxed: rare, and larger than `Exec`).
    Configured(Box<Configured>),
    /// 0x10, client → server.
    Exec(Exec),
    /// 0x11, client → server.
    Batch(Batch),
    /// 0x12, client → server.
    Cancel(Cancel),
    /// 0x13, client → server (boxed: rare, and larger than `Exec`).
    Spawn(Box<Spawn>),
    /// 0x14, client → server.
    Input(Input),
    /// 0x15, client → server.
    Resize(Resize),
    /// 0x16, client → server.
    Classify(Classify),
    /// 0x17, client → server.
    Attach(Attach),
    /// 0x20, server → client.
    Output(Output),
    /// 0x21, server → client.
    Exit(Exit),
    /// 0x22, server → client.
    Error(Error),
    /// 0x23, server → client.
    InputCredit(InputCredit),
    /// 0x24, server → client.
    Notice(Notice),
    /// 0x25, server → client.
    Classified(Classified),
    /// 0x26, server → client.
    Rejected(Rejected),
    /// 0x27, server → client.
    Suggestions(Suggestions),
    /// 0x30, either way.
    Ping(Ping),
    /// 0x31, either way.
    Pong(Pong),
    /// 0x40, client → server.
    StatsRequest(StatsRequest),
    /// 0x41, server → client.
    Stats(Box<Stats>),
}

/// Frame type bytes, one per [`Message`] variant.
pub mod kind {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const OPEN_SESSION: u8 = 0x03;
    pub const SESSION_OPENED: u8 = 0x04;
    pub const CLOSE_SESSION: u8 = 0x05;
    pub const SESSION_CLOSED: u8 = 0x06;
    pub const CONFIGURE: u8 = 0x07;
    pub const CONFIGURED: u8 = 0x08;
    pub const EXEC: u8 = 0x10;
    pub const BATCH: u8 = 0x11;
    pub const CANCEL: u8 = 0x12;
    pub const SPAWN: u8 = 0x13;
    pub const INPUT: u8 = 0x14;
    pub const RESIZE: u8 = 0x15;
    pub const CLASSIFY: u8 = 0x16;
    pub const ATTACH: u8 = 0x17;
    pub const OUTPUT: u8 = 0x20;
    pub const EXIT: u8 = 0x21;
    pub const ERROR: u8 = 0x22;
    pub const INPUT_CREDIT: u8 = 0x23;
    pub const NOTICE: u8 = 0x24;
    pub const CLASSIFIED: u8 = 0x25;
    pub const REJECTED: u8 = 0x26;
    pub const SUGGESTIONS: u8 = 0x27;
    pub const PING: u8 = 0x30;
    pub const PONG: u8 = 0x31;
    pub const STATS_REQUEST: u8 = 0x40;
    pub const STATS: u8 = 0x41;
}

impl Message {
    /// The frame type byte of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Welcome(_) => kind::WELCOME,
            Message::OpenSession(_) => kind::OPEN_SESSION,
            Message::SessionOpened(_) => kind::SESSION_OPENED,
            Message::CloseSession(_) => kind::CLOSE_SESSION,
            Message::SessionClosed(_) => kind::SESSION_CLOSED,
            Message::Configure(_) => kind::CONFIGURE,
            Message::Configured(_) => kind::CONFIGURED,
            Message::Exec(_) => kind::EXEC,
            Message::Batch(_) => kind::BATCH,
            Message::Cancel(_) => kind::CANCEL,
            Message::Spawn(_) => kind::SPAWN,
            Message::Input(_) => kind::INPUT,
            Message::Resize(_) => kind::RESIZE,
            Message::Classify(_) => kind::CLASSIFY,
            Message::Attach(_) => kind::ATTACH,
            Message::Output(_) => kind::OUTPUT,
            Message::Exit(_) => kind::EXIT,
            Message::Error(_) => kind::ERROR,
            Message::InputCredit(_) => kind::INPUT_CREDIT,
            Message::Notice(_) => kind::NOTICE,
            Message::Classified(_) => kind::CLASSIFIED,
            Message::Rejected(_) => kind::REJECTED,
            Message::Suggestions(_) => kind::SUGGESTIONS,
            Message::Ping(_) => kind::PING,
            Message::Pong(_) => kind::PONG,
            Message::StatsRequest(_) => kind::STATS_REQUEST,
            Message::Stats(_) => kind::STATS,
        }
    }
}

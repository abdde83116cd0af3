// voxterm.js: the voxterm wire protocol (protocol/PROTOCOL.md) as an ES module
// with no dependencies, for browsers and Node >= 20. Two layers:
//   - the codec: encodeFrame / decodeMessage (frames, bincode 2 standard, JSON
//     bodies, raw-deflate bodies through DecompressionStream);
//   - VoxtermClient: one WebSocket, Hello/Welcome, multiplexed sessions and
//     requests (Exec, Batch, Cancel, Spawn/Input/Resize, Classify), Ping, Stats,
//     reconnect with backoff (sessions are reopened by name, so cwd survives).
// Decoded messages are plain objects with the field names of PROTOCOL.md §5;
// enums are their variant names ("Stdout", "Exec"), u64 a Number (a BigInt
// above 2^53), Vec<u8> a Uint8Array. Encoders take names or indices.

export const VERSION = 1;
export const HEADER_BYTES = 6;

// Flags byte (PROTOCOL.md §2).
export const FLAG_DEFLATE = 0x01;
export const FLAG_BROTLI = 0x02;
export const FLAG_JSON = 0x04;

export const Enums = {
  Encoding: ['Bincode', 'Json'],
  Compression: ['None', 'Deflate', 'Brotli'],
  Priority: ['High', 'Normal', 'Prefetch'],
  CacheMode: ['Default', 'Bypass', 'Refresh'],
  BatchMode: ['Parallel', 'Sequential'],
  StreamKind: ['Stdout', 'Stderr'],
  ServedFrom: ['Exec', 'Builtin', 'L1', 'L2', 'L3', 'Prefetch', 'Joined'],
  KillReason: ['None', 'Timeout', 'Cancelled', 'OutputLimit', 'Shutdown'],
  NoticeKind: ['NeedsTerminal', 'Reattached'],
  LineClass: ['ReadOnly', 'Session', 'Mutating', 'Unknown', 'Denied'],
  Subject: ['Connection', 'Frame', 'Request', 'Session', 'Batch'],
  ErrorCode: [
    'Malformed', 'UnknownType', 'UnsupportedVersion', 'TextFrame', 'FrameTooLarge',
    'UnexpectedMessage', 'HelloRequired', 'DuplicateRequest', 'UnknownSession',
    'TooManyRequests', 'TooManySessions', 'InvalidCommand', 'SpawnFailed', 'Skipped',
    'ShuttingDown', 'Unauthorized', 'PolicyDenied', 'RateLimited', 'QuotaExceeded',
    'Internal', 'UnknownRequest', 'InputRefused', 'NotATerminal', 'InvalidArgument',
    'RequestLost', 'NotReceived',
  ],
};

// Field types: 'u8' 'u16' 'u32' 'u64' 'i32' 'bool' 'string' 'bytes',
// ['opt', T], ['vec', T], ['enum', Name], ['struct', fields].
const Limits = ['struct', [
  ['max_message_bytes', 'u32'], ['max_frame_bytes', 'u32'], ['max_in_flight', 'u32'],
  ['max_sessions', 'u32'], ['default_timeout_ms', 'u32'], ['output_cap_bytes', 'u64'],
]];
const ExecFields = [
  ['request', 'u32'], ['session', 'u32'], ['command', 'string'],
  ['priority', ['enum', 'Priority']], ['timeout_ms', 'u32'], ['cache', ['enum', 'CacheMode']],
];
const Pty = ['struct', [['rows', 'u16'], ['cols', 'u16'], ['term', 'string']]];
const Counter = ['struct', [['name', 'string'], ['value', 'u64']]];
const Settings = ['struct', [
  ['handshake_ms', 'u32'], ['idle_ms', 'u32'], ['keepalive_ms', 'u32'], ['drain_ms', 'u32'],
  ['kill_grace_ms', 'u32'], ['compression_threshold', 'u32'], ['max_output_data', 'u32'],
  ['coalesce_bytes', 'u32'],
]];
const Suggestion = ['struct', [['line', 'string'], ['score', 'u16']]];

/** Every message: type byte, name, fields in wire order. */
export const Messages = [
  [0x01, 'Hello', [
    ['version', 'u8'], ['client', 'string'], ['encodings', ['vec', ['enum', 'Encoding']]],
    ['compression', ['vec', ['enum', 'Compression']]], ['tenant', ['opt', 'string']],
    ['token', ['opt', 'string']],
  ]],
  [0x02, 'Welcome', [
    ['version', 'u8'], ['server', 'string'], ['encoding', ['enum', 'Encoding']],
    ['compression', ['enum', 'Compression']], ['limits', Limits], ['tenant', 'string'],
    ['connection', 'u64'],
  ]],
  [0x03, 'OpenSession', [['session', 'u32'], ['name', 'string']]],
  [0x04, 'SessionOpened', [['session', 'u32'], ['cwd', 'string'], ['resumed', 'bool']]],
  [0x05, 'CloseSession', [['session', 'u32']]],
  [0x06, 'SessionClosed', [['session', 'u32']]],
  [0x07, 'Configure', [['suggestions', 'u8'], ['rejections', 'bool'], ['reattach', 'bool']]],
  [0x08, 'Configured', [
    ['suggestions', 'u8'], ['rejections', 'bool'], ['reattach_ms', 'u32'], ['settings', Settings],
  ]],
  [0x10, 'Exec', ExecFields],
  [0x11, 'Batch', [['mode', ['enum', 'BatchMode']], ['execs', ['vec', ['struct', ExecFields]]]]],
  [0x12, 'Cancel', [['request', 'u32']]],
  [0x13, 'Spawn', [
    ['request', 'u32'], ['session', 'u32'], ['command', 'string'], ['timeout_ms', 'u32'],
    ['pty', ['opt', Pty]],
  ]],
  [0x14, 'Input', [['request', 'u32'], ['data', 'bytes'], ['end', 'bool']]],
  [0x15, 'Resize', [['request', 'u32'], ['rows', 'u16'], ['cols', 'u16']]],
  [0x16, 'Classify', [['request', 'u32'], ['session', 'u32'], ['command', 'string']]],
  [0x17, 'Attach', [['request', 'u32'], ['connection', 'u64'], ['session', 'u32'], ['after_seq', ['opt', 'u32']]]],
  [0x20, 'Output', [
    ['request', 'u32'], ['stream', ['enum', 'StreamKind']], ['seq', 'u32'], ['data', 'bytes'],
  ]],
  [0x21, 'Exit', [
    ['request', 'u32'], ['code', ['opt', 'i32']], ['signal', ['opt', 'i32']],
    ['served_from', ['enum', 'ServedFrom']], ['backend_us', 'u64'], ['truncated', 'bool'],
    ['killed', ['enum', 'KillReason']],
  ]],
  [0x22, 'Error', [['request', ['opt', 'u32']], ['code', ['enum', 'ErrorCode']], ['message', 'string']]],
  [0x23, 'InputCredit', [['request', 'u32'], ['bytes', 'u32']]],
  [0x24, 'Notice', [['request', 'u32'], ['kind', ['enum', 'NoticeKind']], ['message', 'string']]],
  [0x25, 'Classified', [['request', 'u32'], ['class', ['enum', 'LineClass']], ['detail', 'string']]],
  [0x26, 'Rejected', [
    ['about', ['enum', 'Subject']], ['id', 'u32'], ['code', ['enum', 'ErrorCode']], ['message', 'string'],
  ]],
  [0x27, 'Suggestions', [['after', 'u32'], ['session', 'u32'], ['lines', ['vec', Suggestion]]]],
  [0x30, 'Ping', [['nonce', 'u64']]],
  [0x31, 'Pong', [['nonce', 'u64']]],
  [0x40, 'StatsRequest', [['nonce', 'u64']]],
  [0x41, 'Stats', [
    ...['nonce', 'uptime_ms', 'connections', 'sessions', 'requests', 'in_flight', 'errors',
      'queue_depth', 'busy_workers', 'rss_bytes', 'cpu_us', 'bytes_in', 'bytes_out']
      .map((n) => [n, 'u64']),
    ['backend_histogram', 'bytes'], ['counters', ['vec', Counter]],
  ]],
];

const byType = new Map(Messages.map(([t, name, fields]) => [t, { type: t, name, fields }]));
const byName = new Map(Messages.map(([t, name, fields]) => [name, { type: t, name, fields }]));

/** The type byte of a message name (`typeOf('Exec') === 0x10`). */
export function typeOf(name) {
  const m = byName.get(name);
  if (!m) throw new ProtocolError('UnknownType', `no message named ${name}`);
  return m.type;
}

/** A frame or body that cannot be decoded; `code` is an ErrorCode name. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------- bincode writer

class Writer {
  constructor(size = 64) {
    this.buf = new Uint8Array(size);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  le(value, n) {
    // value: BigInt or Number, written as n little-endian bytes.
    let v = BigInt(value);
    this.reserve(n);
    for (let i = 0; i < n; i++) {
      this.buf[this.len++] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  varint(value, max) {
    const v = BigInt(value);
    if (v < 0n || v > max) throw new RangeError(`${value} does not fit`);
    if (v <= 250n) this.byte(Number(v));
    else if (v <= 0xffffn) { this.byte(0xfb); this.le(v, 2); }
    else if (v <= 0xffffffffn) { this.byte(0xfc); this.le(v, 4); }
    else { this.byte(0xfd); this.le(v, 8); }
  }
  done() {
    return this.buf.slice(0, this.len);
  }
}

const MAX = { u16: 0xffffn, u32: 0xffffffffn, u64: 0xffffffffffffffffn };

function checkInt(v, what) {
  if (typeof v === 'bigint') return;
  if (!Number.isInteger(v)) throw new TypeError(`${what}: ${v} is not an integer`);
}

function enumIndex(enumName, v) {
  const names = Enums[enumName];
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  const i = names.indexOf(v);
  if (i < 0) throw new TypeError(`${v} is no ${enumName}`);
  return i;
}

function write(w, type, v, what) {
  if (typeof type === 'string') {
    switch (type) {
      case 'u8':
        checkInt(v, what);
        if (v < 0 || v > 255) throw new RangeError(`${what}: ${v} is no u8`);
        return w.byte(Number(v));
      case 'u16': case 'u32': case 'u64':
        checkInt(v, what);
        return w.varint(v, MAX[type]);
      case 'i32': {
        checkInt(v, what);
        const n = Number(v);
        if (n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`${what}: ${v} is no i32`);
        return w.varint(n >= 0 ? n * 2 : -n * 2 - 1, MAX.u32);
      }
      case 'bool': return w.byte(v ? 1 : 0);
      case 'string': {
        const b = utf8enc.encode(String(v));
        w.varint(b.length, MAX.u64);
        return w.bytes(b);
      }
      case 'bytes': {
        const b = typeof v === 'string' ? utf8enc.encode(v) : v instanceof Uint8Array ? v : Uint8Array.from(v ?? []);
        w.varint(b.length, MAX.u64);
        return w.bytes(b);
      }
    }
    throw new TypeError(`unknown type ${type}`);
  }
  const [kind, inner] = type;
  switch (kind) {
    case 'opt':
      if (v === null || v === undefined) return w.byte(0);
      w.byte(1);
      return write(w, inner, v, what);
    case 'vec':
      w.varint((v ?? []).length, MAX.u64);
      for (const x of v ?? []) write(w, inner, x, what);
      return;
    case 'enum':
      return w.varint(enumIndex(inner, v), MAX.u32);
    case 'struct':
      for (const [name, t] of inner) write(w, t, v?.[name], `${what}.${name}`);
      return;
  }
  throw new TypeError(`unknown type ${kind}`);
}

// ---------------------------------------------------------------- bincode reader

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.buf.length) throw new ProtocolError('Malformed', 'body ends early');
  }
  byte() {
    this.need(1);
    return this.buf[this.pos++];
  }
  le(n) {
    this.need(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.buf[this.pos + i]);
    this.pos += n;
    return v;
  }
  varint(width) {
    // width: the target type's bytes (2, 4, 8); only tags that fit are accepted.
    const b = this.byte();
    if (b <= 250) return b;
    let v;
    if (b === 0xfb) v = this.le(2);
    else if (b === 0xfc && width >= 4) v = this.le(4);
    else if (b === 0xfd && width >= 8) v = this.le(8);
    else throw new ProtocolError('Malformed', `varint tag 0x${b.toString(16)} invalid for a ${width * 8}-bit integer`);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  length() {
    const n = this.varint(8);
    if (typeof n === 'bigint' || n > this.buf.length - this.pos) {
      throw new ProtocolError('Malformed', 'length runs past the body');
    }
    return n;
  }
}

const WIDTH = { u16: 2, u32: 4, u64: 8 };

function read(r, type) {
  if (typeof type === 'string') {
    switch (type) {
      case 'u8': return r.byte();
      case 'u16': case 'u32': case 'u64': return r.varint(WIDTH[type]);
      case 'i32': {
        const z = r.varint(4);
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case 'bool': {
        const b = r.byte();
        if (b > 1) throw new ProtocolError('Malformed', `bool byte ${b}`);
        return b === 1;
      }
      case 'string': {
        const n = r.length();
        const s = r.buf.subarray(r.pos, r.pos + n);
        r.pos += n;
        try {
          return utf8dec.decode(s);
        } catch {
          throw new ProtocolError('Malformed', 'invalid UTF-8');
        }
      }
      case 'bytes': {
        const n = r.length();
        const s = r.buf.slice(r.pos, r.pos + n);
        r.pos += n;
        return s;
      }
    }
  }
  const [kind, inner] = type;
  switch (kind) {
    case 'opt': {
      const tag = r.byte();
      if (tag === 0) return null;
      if (tag === 1) return read(r, inner);
      throw new ProtocolError('Malformed', `option tag ${tag}`);
    }
    case 'vec': {
      const n = r.varint(8);
      // Every element takes at least one byte: a count beyond the rest is a lie.
      if (typeof n === 'bigint' || n > r.buf.length - r.pos) throw new ProtocolError('Malformed', 'count runs past the body');
      const out = [];
      for (let i = 0; i < n; i++) out.push(read(r, inner));
      return out;
    }
    case 'enum': {
      const i = r.varint(4);
      const names = Enums[inner];
      if (i >= names.length) throw new ProtocolError('Malformed', `${inner} index ${i}`);
      return names[i];
    }
    case 'struct': {
      const o = {};
      for (const [name, t] of inner) o[name] = read(r, t);
      return o;
    }
  }
  throw new TypeError(`unknown type ${kind}`);
}

/** The bincode body of a message (no header). */
export function encodeBody(name, msg) {
  const m = byName.get(name);
  if (!m) throw new TypeError(`no message named ${name}`);
  const w = new Writer();
  write(w, ['struct', m.fields], msg, name);
  return w.done();
}

/** A message from a bincode body; bytes left over are an error. */
export function decodeBody(type, body) {
  const m = byType.get(type);
  if (!m) throw new ProtocolError('UnknownType', `type 0x${type.toString(16)}`);
  const r = new Reader(body);
  const msg = read(r, ['struct', m.fields]);
  if (r.pos !== body.length) throw new ProtocolError('Malformed', `${body.length - r.pos} bytes left over`);
  return msg;
}

// JSON bodies: serde_json's shape (enums as names, bytes as number arrays).
function fromJson(type, v) {
  if (typeof type === 'string') {
    if (type === 'bytes') {
      if (!Array.isArray(v)) throw new ProtocolError('Malformed', 'bytes are not an array');
      return Uint8Array.from(v);
    }
    return v;
  }
  const [kind, inner] = type;
  if (kind === 'opt') return v === null || v === undefined ? null : fromJson(inner, v);
  if (kind === 'vec') return (v ?? []).map((x) => fromJson(inner, x));
  if (kind === 'enum') {
    if (!Enums[inner].includes(v)) throw new ProtocolError('Malformed', `${v} is no ${inner}`);
    return v;
  }
  const o = {};
  for (const [name, t] of inner) o[name] = fromJson(t, v?.[name]);
  return o;
}

/** One frame: 6-byte header and the bincode body, uncompressed. */
export function encodeFrame(name, msg) {
  const body = encodeBody(name, msg);
  if (body.length > 0xffffff) throw new RangeError('body above 16 MiB');
  const out = new Uint8Array(HEADER_BYTES + body.length);
  out[0] = VERSION;
  out[1] = typeOf(name);
  out[2] = 0;
  out[3] = body.length & 0xff;
  out[4] = (body.length >> 8) & 0xff;
  out[5] = (body.length >> 16) & 0xff;
  out.set(body, HEADER_BYTES);
  return out;
}

/** Several frames back to back, for one WebSocket message. */
export function concatFrames(frames) {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const f of frames) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/** Whether this runtime can inflate raw-deflate bodies. */
export function canInflate() {
  try {
    return typeof DecompressionStream === 'function' && !!new DecompressionStream('deflate-raw');
  } catch {
    return false;
  }
}

/** Inflates a raw-deflate body, stopping once it passes `limit` bytes. */
export async function inflateRaw(body, limit) {
  const ds = new DecompressionStream('deflate-raw');
  const writer = ds.writable.getWriter();
  writer.write(body).catch(() => {});
  writer.close().catch(() => {});
  const reader = ds.readable.getReader();
  const chunks = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        reader.cancel().catch(() => {});
        throw new ProtocolError('FrameTooLarge', `inflated body passes ${limit} bytes`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw new ProtocolError('Malformed', `body does not inflate: ${e.message}`);
  }
  return concatFrames(chunks);
}

/**
 * Splits one WebSocket message into frames and decodes each. Returns, in order,
 * `{ name, type, msg }` for good frames and `{ error: ProtocolError }` for bad
 * ones (PROTOCOL.md §2's receiving rules: a bad frame does not stop the next).
 * Plain frames decode synchronously; pass `inflate` (async) for compressed ones.
 */
export async function decodeMessage(data, { maxFrameBytes = 16 * 1024 * 1024, inflate = inflateRaw } = {}) {
  const buf = data instanceof Uint8Array ? data : new Uint8Array(data);
  // First pass: frame the message and start every inflation at once (they
  // proceed together); second pass: decode in order.
  const frames = [];
  let at = 0;
  while (at < buf.length) {
    if (buf.length - at < HEADER_BYTES) {
      frames.push({ error: new ProtocolError('Malformed', 'a cut frame header') });
      break;
    }
    const len = buf[at + 3] | (buf[at + 4] << 8) | (buf[at + 5] << 16);
    if (at + HEADER_BYTES + len > buf.length) {
      frames.push({ error: new ProtocolError('Malformed', 'frame length runs past the message') });
      break;
    }
    const f = { version: buf[at], type: buf[at + 1], flags: buf[at + 2], body: buf.subarray(at + HEADER_BYTES, at + HEADER_BYTES + len) };
    at += HEADER_BYTES + len;
    if (f.version === VERSION && byType.has(f.type) && (f.flags & 0xfb) === FLAG_DEFLATE) {
      f.inflated = inflate(f.body, maxFrameBytes);
      f.inflated.catch(() => {});
    }
    frames.push(f);
  }
  const out = [];
  for (const f of frames) {
    if (f.error) {
      out.push(f);
      continue;
    }
    const { version, type, flags } = f;
    let body = f.body;
    try {
      if (version !== VERSION) throw new ProtocolError('UnsupportedVersion', `version ${version}`);
      const m = byType.get(type);
      if (!m) throw new ProtocolError('UnknownType', `type 0x${type.toString(16)}`);
      if (flags & 0xf8 || (flags & 3) === 3) throw new ProtocolError('Malformed', `flags 0x${flags.toString(16)}`);
      if ((flags & 3) === FLAG_DEFLATE) body = await f.inflated;
      else if ((flags & 3) === FLAG_BROTLI) throw new ProtocolError('Malformed', 'brotli bodies are not supported by this client');
      if (body.length > maxFrameBytes) throw new ProtocolError('FrameTooLarge', `body of ${body.length} bytes`);
      let msg;
      if (flags & FLAG_JSON) {
        let v;
        try {
          v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
        } catch (e) {
          throw new ProtocolError('Malformed', `JSON body: ${e.message}`);
        }
        msg = fromJson(['struct', m.fields], v);
      } else {
        msg = decodeBody(type, body);
      }
      out.push({ name: m.name, type, msg });
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      out.push({ error: e });
    }
  }
  return out;
}

// ---------------------------------------------------------------- the client

/** Why a request ended without an Exit: the server's Error or a lost connection. */
export class RequestError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'RequestError';
    this.code = code;
    this.detail = message;
  }
}

/**
 * One in-flight request. Events arrive through callbacks set on it
 * (`onOutput(data, stream, seq)`, `onNotice(msg)`, `onCredit(bytes)`) or by
 * iterating it (`for await (const ev of req)`: `{type:'output',...}`,
 * `{type:'notice',...}`, then the end). Events are kept for an iterator taken
 * later only while no `onOutput` is set. `done` resolves with the Exit message
 * or rejects with a RequestError.
 */
export class Request {
  constructor(client, id, command, kind) {
    this.client = client;
    this.id = id;
    this.command = command;
    this.kind = kind;
    this.started = now();
    this.session = 0;
    // The seq of the last Output received: where a re-attach resumes.
    this.lastSeq = null;
    // The frame that started it, [name, msg]: sent again when the server
    // answers an Attach with NotReceived (it was lost with the link).
    this.frame = null;
    // Welcome.connection of the connection it was sent on, or that took it
    // over (Notice Reattached): the one an Attach names.
    this.home = null;
    this.onOutput = null;
    this.onNotice = null;
    this.onCredit = null;
    this.credit = 0;
    this.pendingInput = [];
    this.ended = false;
    this.queue = [];
    this.iterating = false;
    this.waiters = [];
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {});
  }

  push(ev) {
    const w = this.waiters.shift();
    if (w) w({ value: ev, done: false });
    // Kept for a later iterator only when nobody takes output by callback:
    // a flood must not pile up in a queue no one reads.
    else if (this.iterating || !this.onOutput || ev.type === 'exit' || ev.type === 'error') this.queue.push(ev);
  }

  finish(exit, error) {
    if (this.ended) return;
    this.ended = true;
    this.elapsedMs = now() - this.started;
    if (error) this.reject(error);
    else this.resolve(exit);
    this.push({ type: error ? 'error' : 'exit', exit, error });
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    this.iterating = true;
    return {
      next: () => {
        if (this.queue.length) {
          const value = this.queue.shift();
          return Promise.resolve({ value, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }

  /** Asks the server to kill it; it still ends with its one Exit (Cancelled). */
  cancel() {
    if (!this.ended) this.client.send('Cancel', { request: this.id });
  }

  /** Spawned commands: sends stdin bytes, never more than the server credited. */
  write(data) {
    const bytes = typeof data === 'string' ? utf8enc.encode(data) : data;
    this.pendingInput.push({ bytes, end: false });
    this.flushInput();
  }

  /** Spawned commands: closes stdin (after what was written). */
  end() {
    const last = this.pendingInput.at(-1);
    if (last && !last.end) last.end = true;
    else this.pendingInput.push({ bytes: new Uint8Array(0), end: true });
    this.flushInput();
  }

  /** Spawned commands with a terminal: the new size. */
  resize(rows, cols) {
    if (!this.ended) this.client.send('Resize', { request: this.id, rows, cols });
  }

  flushInput() {
    // While reconnecting, input waits here (the credit is the server's, kept).
    if (this.client.ws?.readyState !== 1) return;
    while (this.pendingInput.length && !this.ended) {
      const head = this.pendingInput[0];
      if (head.bytes.length === 0 && !head.end) {
        this.pendingInput.shift();
        continue;
      }
      const n = Math.min(head.bytes.length, this.credit);
      if (n === 0 && head.bytes.length > 0) return;
      const chunk = head.bytes.subarray(0, n);
      const rest = head.bytes.subarray(n);
      const end = head.end && rest.length === 0;
      this.credit -= n;
      this.client.send('Input', { request: this.id, data: chunk, end });
      if (rest.length) head.bytes = rest;
      else this.pendingInput.shift();
    }
  }
}

function now() {
  return globalThis.performance ? performance.now() : Date.now();
}

const DEFAULTS = {
  clientName: 'voxterm.js/1',
  tenant: null,
  token: null,
  reconnect: true,
  backoffMinMs: 250,
  backoffMaxMs: 10000,
  WebSocket: globalThis.WebSocket,
  compression: null, // null: Deflate then None when this runtime can inflate
  suggestions: 0, // predicted next commands wanted after each Exec ('suggestions' events)
  reattach: true, // a lost connection's commands are taken over on the next one
};

/**
 * A connection to a voxterm server. `url` is the ws:// or wss:// URL of /ws.
 * Listen with `on(event, fn)`: 'state' (connecting | open | reconnecting |
 * closed, detail), 'welcome', 'configured' (what Configure granted, with the
 * server's timers), 'session' (SessionOpened), 'suggestions' (Suggestions),
 * 'error' (Errors and Rejections that end no request: `{ code, message }`,
 * with `about` and `id` when the server named the call), 'protocolError'
 * (frames that did not decode).
 */
export class VoxtermClient {
  constructor(url, options = {}) {
    this.url = url;
    this.opts = { ...DEFAULTS, ...options };
    this.listeners = new Map();
    this.requests = new Map();
    this.nextId = 1;
    this.sessions = new Map([[0, 'default']]);
    this.pendingOpens = [];
    this.pendingNonces = new Map();
    this.nextNonce = 1;
    this.ws = null;
    this.welcome = null;
    this.state = 'closed';
    this.attempt = 0;
    this.closing = false;
    this.inbox = Promise.resolve();
    this.timer = null;
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, ...args) {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        fn(...args);
      } catch (e) {
        console.error(e);
      }
    }
  }

  setState(state, detail) {
    this.state = state;
    this.emit('state', state, detail);
  }

  /** Opens the connection; resolves with Welcome (rejects when the first try fails). */
  connect() {
    this.closing = false;
    return new Promise((resolve, reject) => {
      const off = this.on('state', (state, detail) => {
        if (state === 'open') {
          off();
          resolve(this.welcome);
        } else if (state === 'reconnecting' || state === 'closed') {
          off();
          reject(new Error(detail?.reason || 'connection failed'));
        }
      });
      this.open();
    });
  }

  open() {
    this.setState(this.attempt ? 'reconnecting' : 'connecting', { attempt: this.attempt });
    const protocols = ['voxterm'];
    if (this.opts.token) protocols.push(`bearer.${this.opts.token}`);
    let ws;
    try {
      ws = new this.opts.WebSocket(this.url, protocols);
    } catch (e) {
      this.lost({ code: 0, reason: e.message, opened: false });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      const inflate = canInflate();
      const compression = this.opts.compression ?? (inflate ? ['Deflate', 'None'] : ['None']);
      ws.send(encodeFrame('Hello', {
        version: VERSION,
        client: this.opts.clientName,
        encodings: ['Bincode'],
        compression,
        tenant: this.opts.tenant,
        token: null,
      }));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') return;
      // Compressed frames inflate asynchronously: decoding starts now (messages
      // inflate side by side), one chain dispatches them in order.
      const max = this.welcome?.limits.max_frame_bytes ?? 16 * 1024 * 1024;
      const decoded = decodeMessage(new Uint8Array(ev.data), { maxFrameBytes: max });
      decoded.catch(() => {});
      this.inbox = this.inbox.then(() => decoded).then((frames) => this.deliver(frames)).catch((e) => console.error(e));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.inbox = this.inbox.then(() => this.lost({ code: ev.code, reason: ev.reason, opened }));
    };
    ws.onerror = () => {};
  }

  deliver(frames) {
    for (const f of frames) {
      if (f.error) this.emit('protocolError', f.error);
      else this.dispatch(f.name, f.msg);
    }
  }

  dispatch(name, m) {
    switch (name) {
      case 'Welcome':
        this.welcome = m;
        this.configured = null;
        this.attempt = 0;
        this.emit('welcome', m);
        // Rejections name the call they answer, so they can be matched even
        // with several outstanding; suggestions only when asked for.
        this.send('Configure', { suggestions: this.opts.suggestions, rejections: true, reattach: this.opts.reattach });
        // Rebind the named sessions (cwd and env live on the server).
        for (const [handle, sname] of this.sessions) {
          if (handle !== 0) this.send('OpenSession', { session: handle, name: sname });
        }
        this.reattach();
        this.setState('open');
        return;
      case 'SessionOpened': {
        const i = this.pendingOpens.findIndex((p) => p.session === m.session);
        if (i >= 0) this.pendingOpens.splice(i, 1)[0].resolve(m);
        this.emit('session', m);
        return;
      }
      case 'SessionClosed':
        this.emit('sessionClosed', m);
        return;
      case 'Configured':
        this.configured = m;
        this.emit('configured', m);
        return;
      case 'Suggestions':
        this.emit('suggestions', m);
        return;
      case 'Rejected': {
        if (m.about === 'Session') {
          const i = this.pendingOpens.findIndex((p) => p.session === m.id);
          if (i >= 0) {
            const p = this.pendingOpens.splice(i, 1)[0];
            this.sessions.delete(p.session);
            p.reject(new RequestError(m.code, m.message));
          }
        }
        // A rejected Input or Resize, or a duplicate id: the request goes on.
        if (m.about === 'Request') this.requests.get(m.id)?.onRejected?.(m);
        this.emit('error', { ...m, request: null });
        return;
      }
      case 'Output': {
        const r = this.requests.get(m.request);
        if (!r) return;
        r.lastSeq = m.seq;
        r.onOutput?.(m.data, m.stream, m.seq);
        r.push({ type: 'output', data: m.data, stream: m.stream, seq: m.seq });
        return;
      }
      case 'Notice': {
        const r = this.requests.get(m.request);
        // Taken over: a later Attach names this connection. Until this
        // notice it names the old one (the server follows it from there).
        if (r && m.kind === 'Reattached') r.home = this.welcome?.connection ?? r.home;
        r?.onNotice?.(m);
        r?.push({ type: 'notice', kind: m.kind, message: m.message });
        return;
      }
      case 'InputCredit': {
        const r = this.requests.get(m.request);
        if (!r) return;
        r.credit += m.bytes;
        r.onCredit?.(m.bytes);
        r.flushInput();
        return;
      }
      case 'Classified': {
        const r = this.requests.get(m.request);
        if (!r) return;
        this.requests.delete(m.request);
        r.finish({ class: m.class, detail: m.detail });
        return;
      }
      case 'Exit': {
        const r = this.requests.get(m.request);
        if (!r) return;
        this.requests.delete(m.request);
        r.finish(m);
        return;
      }
      case 'Error': {
        if (m.request !== null) {
          const r = this.requests.get(m.request);
          // Written as the link died, it never reached the server: it did
          // not run, so it is sent again as it was, on this connection.
          if (r && m.code === 'NotReceived' && r.frame) {
            this.resend(r);
            return;
          }
          if (r) {
            this.requests.delete(m.request);
            r.finish(null, new RequestError(m.code, m.message));
            return;
          }
        }
        // A server without Classify cannot read the frame (UnknownType, no
        // request): it is the oldest Classify still waiting.
        if (m.code === 'UnknownType') {
          const r = [...this.requests.values()].find((q) => q.kind === 'classify');
          if (r) {
            this.requests.delete(r.id);
            r.finish(null, new RequestError(m.code, m.message));
            return;
          }
        }
        // Errors that name no request: an OpenSession's, if one waits.
        if (['UnknownSession', 'TooManySessions', 'QuotaExceeded'].includes(m.code) && this.pendingOpens.length) {
          const p = this.pendingOpens.shift();
          this.sessions.delete(p.session);
          p.reject(new RequestError(m.code, m.message));
        }
        this.emit('error', m);
        return;
      }
      case 'Ping':
        this.send('Pong', { nonce: m.nonce });
        return;
      case 'Pong':
      case 'Stats': {
        const p = this.pendingNonces.get(Number(m.nonce));
        if (p) {
          this.pendingNonces.delete(Number(m.nonce));
          p(m);
        }
        return;
      }
    }
  }

  lost({ code, reason, opened }) {
    const error = new RequestError('Disconnected', `connection lost (${code}${reason ? ` ${reason}` : ''})`);
    // With re-attach granted, commands outlive the connection for the grace:
    // they are kept, and taken over on the next connection (`reattach`).
    const grace = this.configured?.reattach_ms ?? 0;
    if (opened && grace > 0 && this.welcome && !this.closing && this.opts.reconnect) {
      this.held = { connection: this.welcome.connection, until: now() + grace };
      for (const r of [...this.requests.values()]) {
        if (r.kind === 'classify') {
          this.requests.delete(r.id);
          r.finish(null, error);
        }
      }
    } else if (!this.held || now() > this.held.until || this.closing || !this.opts.reconnect) {
      this.held = null;
      for (const r of this.requests.values()) r.finish(null, error);
      this.requests.clear();
    }
    for (const p of this.pendingOpens.splice(0)) p.reject(error);
    this.welcome = null;
    this.configured = null;
    const detail = { code, reason, opened };
    if (this.closing || !this.opts.reconnect) {
      this.setState('closed', detail);
      return;
    }
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this.attempt += 1;
    this.setState('reconnecting', { ...detail, delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.open(), delay);
  }

  /**
   * On a new connection: takes over the requests a lost one left running
   * (one Attach each, from the last seq received), or ends them when the
   * grace is over.
   */
  reattach() {
    // Kept until the next loss replaces it: a connection that drops before
    // its own Configured still carries the requests on, within this grace.
    const held = this.held;
    if (!held) return;
    const late = now() > held.until;
    for (const r of [...this.requests.values()]) {
      if (late) {
        this.requests.delete(r.id);
        r.finish(null, new RequestError('RequestLost', 'the connection was lost for longer than the server keeps commands'));
        continue;
      }
      this.send('Attach', { request: r.id, connection: r.home ?? held.connection, session: r.session, after_seq: r.lastSeq });
    }
  }

  /** Sends a request's first frame again (the server never received it). */
  resend(r) {
    try {
      this.send(...r.frame);
    } catch {
      // Lost again: the next connection names the same home, and hears the same.
      return;
    }
    r.home = this.welcome?.connection ?? r.home;
    const notice = { request: r.id, kind: 'Resent', message: 'reconnected: the command had not reached the server, so it was sent again' };
    r.onNotice?.(notice);
    r.push({ type: 'notice', kind: notice.kind, message: notice.message });
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    else this.setState('closed', { code: 1000 });
  }

  /** Sends one message (throws when not connected). */
  send(name, msg) {
    this.sendRaw(encodeFrame(name, msg));
  }

  sendRaw(bytes) {
    if (!this.ws || this.ws.readyState !== 1) throw new RequestError('Disconnected', 'not connected');
    this.ws.send(bytes);
  }

  allocId() {
    for (let i = 0; i < 0xffffffff; i++) {
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.requests.has(id)) return id;
    }
    throw new RequestError('TooManyRequests', 'no free request id');
  }

  track(command, kind) {
    const r = new Request(this, this.allocId(), command, kind);
    this.requests.set(r.id, r);
    return r;
  }

  /** Binds `handle` to the named session; resolves with SessionOpened. */
  openSession(name, handle) {
    if (handle === undefined) {
      handle = 1;
      while (this.sessions.has(handle)) handle++;
    }
    this.sessions.set(handle, name);
    return new Promise((resolve, reject) => {
      this.pendingOpens.push({ session: handle, resolve, reject });
      try {
        this.send('OpenSession', { session: handle, name });
      } catch (e) {
        this.pendingOpens.pop();
        reject(e);
      }
    });
  }

  closeSession(handle) {
    this.sessions.delete(handle);
    this.send('CloseSession', { session: handle });
  }

  execFields(command, o = {}) {
    return {
      session: o.session ?? 0,
      command,
      priority: o.priority ?? 'Normal',
      timeout_ms: o.timeout_ms ?? 0,
      cache: o.cache ?? 'Default',
    };
  }

  /** Runs a command line; returns its Request. */
  exec(command, o = {}) {
    const r = this.track(command, 'exec');
    r.session = o.session ?? 0;
    this.sendOrFail(r, 'Exec', { request: r.id, ...this.execFields(command, o) });
    return r;
  }

  /** Several commands in one frame ('Parallel' or 'Sequential'); one Request each. */
  batch(mode, commands) {
    const reqs = commands.map((c) => this.track(typeof c === 'string' ? c : c.command, 'exec'));
    const execs = reqs.map((r, i) => {
      const c = commands[i];
      r.session = (typeof c === 'string' ? 0 : c.session) ?? 0;
      const exec = { request: r.id, ...this.execFields(r.command, typeof c === 'string' ? {} : c) };
      r.home = this.welcome?.connection ?? null;
      // One of a parallel batch runs the same alone; a sequential step does
      // not (its order), so it ends with NotReceived instead.
      if (mode === 'Parallel') r.frame = ['Exec', exec];
      return exec;
    });
    try {
      this.send('Batch', { mode, execs });
    } catch (e) {
      for (const r of reqs) {
        this.requests.delete(r.id);
        r.finish(null, e);
      }
    }
    return reqs;
  }

  /** A command with a live stdin (and a terminal when `pty` is given). */
  spawn(command, o = {}) {
    const r = this.track(command, 'spawn');
    r.session = o.session ?? 0;
    const pty = o.pty ? { rows: o.pty.rows, cols: o.pty.cols, term: o.pty.term ?? '' } : null;
    this.sendOrFail(r, 'Spawn', {
      request: r.id, session: o.session ?? 0, command, timeout_ms: o.timeout_ms ?? 0, pty,
    });
    return r;
  }

  /** How the server classes a line; resolves with `{ class, detail }`. */
  classify(command, o = {}) {
    const r = this.track(command, 'classify');
    this.sendOrFail(r, 'Classify', { request: r.id, session: o.session ?? 0, command });
    return r.done;
  }

  sendOrFail(r, name, msg) {
    r.frame = [name, msg];
    r.home = this.welcome?.connection ?? null;
    try {
      this.send(name, msg);
    } catch (e) {
      this.requests.delete(r.id);
      r.finish(null, e instanceof RequestError ? e : new RequestError('Internal', e.message));
    }
  }

  nonce(name, timeoutMs) {
    const n = this.nextNonce++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pendingNonces.delete(n);
        reject(new RequestError('Timeout', `${name} unanswered`));
      }, timeoutMs);
      this.pendingNonces.set(n, (m) => {
        clearTimeout(t);
        resolve(m);
      });
      try {
        this.send(name, { nonce: n });
      } catch (e) {
        clearTimeout(t);
        this.pendingNonces.delete(n);
        reject(e);
      }
    });
  }

  /** Round trip of a protocol Ping, in ms. */
  async ping(timeoutMs = 5000) {
    const t0 = now();
    await this.nonce('Ping', timeoutMs);
    return now() - t0;
  }

  /** The server's Stats. */
  stats(timeoutMs = 5000) {
    return this.nonce('StatsRequest', timeoutMs);
  }
}

/** The ws:// or wss:// URL of /ws for a page served by voxterm (`location`). */
export function wsUrlFor(loc) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

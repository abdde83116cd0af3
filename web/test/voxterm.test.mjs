// The JS protocol client against PROTOCOL.md itself and hand-computed bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import {
  encodeFrame, encodeBody, decodeBody, decodeMessage, concatFrames, typeOf, Messages,
  Enums, ProtocolError, VoxtermClient, RequestError, canInflate, wsUrlFor,
} from '../voxterm.js';

const DOC = readFileSync(new URL('../../protocol/PROTOCOL.md', import.meta.url), 'utf8');

/** `<!-- example: NAME -->` blocks: the leading hex byte pairs of each line. */
function examples(kind = 'example') {
  const out = new Map();
  const re = new RegExp(`<!-- ${kind}: ([\\w-]+) -->\\s*\`\`\`text\\n([\\s\\S]*?)\`\`\``, 'g');
  for (const [, name, block] of DOC.matchAll(re)) out.set(name, block.split('\n').filter((l) => l.length));
  return out;
}

function hexOf(lines) {
  const bytes = [];
  for (const line of lines) {
    for (const tok of line.trim().split(/\s+/)) {
      if (!/^[0-9a-fA-F]{2}$/.test(tok)) break;
      bytes.push(parseInt(tok, 16));
    }
  }
  return Uint8Array.from(bytes);
}

const hex = (s) => Uint8Array.from(s.trim().split(/\s+/).filter(Boolean).map((b) => parseInt(b, 16)));

// The messages the document's examples show (protocol/tests/protocol_doc.rs builds the same).
const EXPECTED = {
  hello: ['Hello', { version: 1, client: 'vt/1', encodings: ['Bincode'], compression: ['Deflate', 'None'], tenant: null, token: 's3cret' }],
  welcome: ['Welcome', {
    version: 1, server: 'voxterm', encoding: 'Bincode', compression: 'Deflate',
    limits: { max_message_bytes: 4 << 20, max_frame_bytes: 1 << 20, max_in_flight: 256, max_sessions: 16, default_timeout_ms: 30000, output_cap_bytes: 8 << 20 },
    tenant: 'default', connection: 1,
  }],
  exec: ['Exec', { request: 1, session: 0, command: 'echo hi', priority: 'Normal', timeout_ms: 0, cache: 'Default' }],
  output: ['Output', { request: 1, stream: 'Stdout', seq: 0, data: new TextEncoder().encode('hi\n') }],
  exit: ['Exit', { request: 1, code: 0, signal: null, served_from: 'Exec', backend_us: 1234, truncated: false, killed: 'None' }],
  error: ['Error', { request: 300, code: 'UnknownSession', message: 'no session 7' }],
  cancel: ['Cancel', { request: 1 }],
  ping: ['Ping', { nonce: 65536 }],
  spawn: ['Spawn', { request: 2, session: 0, command: 'vi', timeout_ms: 0, pty: { rows: 24, cols: 80, term: '' } }],
  input_credit: ['InputCredit', { request: 2, bytes: 262144 }],
  input: ['Input', { request: 2, data: new TextEncoder().encode(':wq\r'), end: false }],
  configure: ['Configure', { suggestions: 3, rejections: true, reattach: true }],
  attach: ['Attach', { request: 1, connection: 4294967297, session: 0, after_seq: 9 }],
  suggestions: ['Suggestions', { after: 1, session: 0, lines: [{ line: 'ls', score: 640 }] }],
  rejected: ['Rejected', { about: 'Request', id: 7, code: 'DuplicateRequest', message: 'dup' }],
};

test('every annotated example of PROTOCOL.md decodes and re-encodes byte for byte', async () => {
  const ex = examples();
  assert.ok(ex.size >= 8, `found only ${ex.size} examples`);
  for (const name of Object.keys(EXPECTED)) assert.ok(ex.has(name), `example ${name} is in the document`);
  for (const [name, lines] of ex) {
    const bytes = hexOf(lines);
    const frames = await decodeMessage(bytes);
    assert.equal(frames.length, 1, `${name}: one frame`);
    assert.ok(!frames[0].error, `${name}: ${frames[0].error}`);
    const { name: msgName, msg } = frames[0];
    assert.deepEqual(encodeFrame(msgName, msg), bytes, `${name}: re-encodes to the same bytes`);
    if (EXPECTED[name]) {
      const [want, fields] = EXPECTED[name];
      assert.equal(msgName, want, name);
      assert.deepEqual(msg, fields, name);
      assert.deepEqual(encodeFrame(want, fields), bytes, `${name}: encodes to the document's bytes`);
    }
  }
});

test('the JSON example decodes to the same Exec', async () => {
  const [headerLine, json] = examples('json-example').get('exec');
  const header = hexOf([headerLine]);
  const body = new TextEncoder().encode(json);
  assert.equal(header[3], body.length, 'the header length is the body length');
  const [f] = await decodeMessage(concatFrames([header, body]));
  assert.equal(f.name, 'Exec');
  assert.deepEqual(f.msg, EXPECTED.exec[1]);
});

test('Output and Exit back to back in one message', async () => {
  const ex = examples();
  const both = concatFrames([hexOf(ex.get('output')), hexOf(ex.get('exit'))]);
  assert.equal(both.length, 29);
  const frames = await decodeMessage(both);
  assert.deepEqual(frames.map((f) => f.name), ['Output', 'Exit']);
});

test('varints, zigzag and their boundaries', () => {
  const cases = [
    [0, '00'], [250, 'fa'], [251, 'fb fb 00'], [65535, 'fb ff ff'], [65536, 'fc 00 00 01 00'],
    [0xffffffff, 'fc ff ff ff ff'],
  ];
  for (const [v, want] of cases) assert.deepEqual(encodeBody('Cancel', { request: v }), hex(want), `u32 ${v}`);
  assert.throws(() => encodeBody('Cancel', { request: 2 ** 32 }), RangeError);
  assert.throws(() => encodeBody('Cancel', { request: -1 }), RangeError);
  // u64: 2^32 takes the 0xFD form; above 2^53 comes back as a BigInt.
  assert.deepEqual(encodeBody('Ping', { nonce: 2 ** 32 }), hex('fd 00 00 00 00 01 00 00 00'));
  assert.deepEqual(decodeBody(0x30, hex('fd ff ff ff ff ff ff ff ff')), { nonce: 0xffffffffffffffffn });
  // i32 zigzag through Exit.code.
  const zig = [[0, '00'], [-1, '01'], [1, '02'], [-2, '03'], [127, 'fb fe 00'], [-2147483648, 'fc ff ff ff ff'], [2147483647, 'fc fe ff ff ff']];
  for (const [v, want] of zig) {
    const exit = { request: 0, code: v, signal: null, served_from: 'Exec', backend_us: 0, truncated: false, killed: 'None' };
    const body = encodeBody('Exit', exit);
    assert.deepEqual(body.subarray(2, 2 + hex(want).length), hex(want), `zigzag ${v}`);
    assert.deepEqual(decodeBody(0x21, body), exit);
  }
  // Tags that do not fit the type are errors: 0xFC for a u16, 0xFD for a u32.
  assert.throws(() => decodeBody(0x15, hex('01 fc 00 00 01 00 01')), ProtocolError);
  assert.throws(() => decodeBody(0x12, hex('fd 00 00 00 00 01 00 00 00')), ProtocolError);
});

test('strict bodies: leftovers, bad bools, bad options, bad UTF-8, bad enums, short bodies', () => {
  assert.throws(() => decodeBody(0x12, hex('01 00')), /left over/);
  assert.throws(() => decodeBody(0x04, hex('01 00 02')), /bool/);
  assert.throws(() => decodeBody(0x22, hex('02 00 00')), /option/);
  assert.throws(() => decodeBody(0x04, hex('01 02 c3 28 00')), /UTF-8/);
  assert.throws(() => decodeBody(0x22, hex('00 63 00')), /ErrorCode/);
  assert.throws(() => decodeBody(0x20, hex('01 00 00 05 61')), /past/);
  assert.throws(() => decodeBody(0x12, hex('')), /ends early/);
});

test('frame errors follow the receiving rules: a bad frame does not stop the next', async () => {
  const good = encodeFrame('Cancel', { request: 7 });
  const badVersion = Uint8Array.from([2, 0x12, 0, 1, 0, 0, 7]);
  const badType = Uint8Array.from([1, 0x7f, 0, 1, 0, 0, 7]);
  const badFlags = Uint8Array.from([1, 0x12, 0x08, 1, 0, 0, 7]);
  const reserved = Uint8Array.from([1, 0x12, 0x03, 1, 0, 0, 7]);
  const frames = await decodeMessage(concatFrames([badVersion, good, badType, badFlags, reserved, good]));
  assert.deepEqual(frames.map((f) => f.error?.code ?? f.name),
    ['UnsupportedVersion', 'Cancel', 'UnknownType', 'Malformed', 'Malformed', 'Cancel']);
  const cut = await decodeMessage(concatFrames([good, Uint8Array.from([1, 0x12, 0, 9, 0, 0, 1])]));
  assert.deepEqual(cut.map((f) => f.error?.code ?? f.name), ['Cancel', 'Malformed']);
  const short = await decodeMessage(concatFrames([good, Uint8Array.from([1, 0x12])]));
  assert.deepEqual(short.map((f) => f.error?.code ?? f.name), ['Cancel', 'Malformed']);
  const big = await decodeMessage(encodeFrame('Output', { request: 1, stream: 'Stdout', seq: 0, data: new Uint8Array(100) }), { maxFrameBytes: 50 });
  assert.equal(big[0].error.code, 'FrameTooLarge');
});

const noInflate = !canInflate() && `this Node (${process.version}) has no DecompressionStream('deflate-raw'); the client then offers only None`;

test('raw-deflate bodies inflate (DecompressionStream), with a size limit', { skip: noInflate }, async () => {
  const data = new TextEncoder().encode('line of output\n'.repeat(500));
  const body = encodeBody('Output', { request: 3, stream: 'Stderr', seq: 9, data });
  const z = deflateRawSync(body);
  assert.ok(z.length < body.length);
  const header = Uint8Array.from([1, 0x20, 0x01, z.length & 0xff, (z.length >> 8) & 0xff, z.length >> 16]);
  const frame = concatFrames([header, z]);
  const [f] = await decodeMessage(frame);
  assert.equal(f.name, 'Output');
  assert.equal(f.msg.stream, 'Stderr');
  assert.deepEqual(f.msg.data, data);
  // A small bomb: stops at the limit.
  const [bomb] = await decodeMessage(frame, { maxFrameBytes: 1000 });
  assert.equal(bomb.error.code, 'FrameTooLarge');
  // Not deflate at all.
  const junk = Uint8Array.from([1, 0x20, 0x01, 3, 0, 0, 0xff, 0xff, 0xff]);
  const [bad] = await decodeMessage(junk);
  assert.equal(bad.error.code, 'Malformed');
  // Brotli is not offered by this client: a clear error, not a crash.
  const [br] = await decodeMessage(Uint8Array.from([1, 0x12, 0x02, 1, 0, 0, 7]));
  assert.equal(br.error.code, 'Malformed');
});

// The new frames (Spawn, Input, Resize, Classify, InputCredit, Notice, Classified),
// against bytes computed by hand from their layouts.
test('new frames: hand-computed bytes', async () => {
  const cases = [
    ['Spawn', { request: 2, session: 1, command: 'top', timeout_ms: 0, pty: { rows: 24, cols: 80, term: '' } },
      '01 13 00 0b 00 00  02 01 03 74 6f 70 00 01 18 50 00'],
    ['Spawn', { request: 2, session: 0, command: 'cat', timeout_ms: 60000, pty: null },
      '01 13 00 0a 00 00  02 00 03 63 61 74 fb 60 ea 00'],
    ['Spawn', { request: 5, session: 0, command: 'vi', timeout_ms: 0, pty: { rows: 300, cols: 1000, term: 'xterm' } },
      '01 13 00 13 00 00  05 00 02 76 69 00 01 fb 2c 01 fb e8 03 05 78 74 65 72 6d'],
    ['Input', { request: 2, data: new TextEncoder().encode('ls\n'), end: false },
      '01 14 00 06 00 00  02 03 6c 73 0a 00'],
    ['Input', { request: 2, data: new Uint8Array(0), end: true }, '01 14 00 03 00 00  02 00 01'],
    ['Resize', { request: 2, rows: 50, cols: 251 }, '01 15 00 05 00 00  02 32 fb fb 00'],
    ['Classify', { request: 9, session: 0, command: 'rm -rf build' },
      '01 16 00 0f 00 00  09 00 0c 72 6d 20 2d 72 66 20 62 75 69 6c 64'],
    ['InputCredit', { request: 2, bytes: 65536 }, '01 23 00 06 00 00  02 fc 00 00 01 00'],
    ['Notice', { request: 2, kind: 'NeedsTerminal', message: 'vi' }, '01 24 00 05 00 00  02 00 02 76 69'],
    ['Classified', { request: 9, class: 'Mutating', detail: 'rm' }, '01 25 00 05 00 00  09 02 02 72 6d'],
    ['Classified', { request: 9, class: 'Denied', detail: '' }, '01 25 00 03 00 00  09 04 00'],
    ['Error', { request: 4, code: 'InvalidArgument', message: '' }, '01 22 00 04 00 00  01 04 17 00'],
    ['Error', { request: null, code: 'UnknownRequest', message: '' }, '01 22 00 03 00 00  00 14 00'],
  ];
  for (const [name, msg, bytes] of cases) {
    const want = hex(bytes);
    assert.deepEqual(encodeFrame(name, msg), want, `${name} ${JSON.stringify(msg)}`);
    const [f] = await decodeMessage(want);
    assert.equal(f.name, name);
    assert.deepEqual(f.msg, msg);
  }
  assert.equal(typeOf('Classify'), 0x16);
  assert.deepEqual(Enums.ErrorCode.slice(20), ['UnknownRequest', 'InputRefused', 'NotATerminal', 'InvalidArgument', 'RequestLost', 'NotReceived']);
  assert.deepEqual(Enums.LineClass, ['ReadOnly', 'Session', 'Mutating', 'Unknown', 'Denied']);
  assert.equal(Enums.ServedFrom[6], 'Joined');
});

test('every message round-trips through bincode', async () => {
  const sample = { u8: 1, u16: 300, u32: 70000, u64: 2 ** 40, i32: -5, bool: true, string: 'héllo ✓', bytes: Uint8Array.from([0, 255]) };
  const value = (t) => {
    if (typeof t === 'string') return sample[t];
    const [k, inner] = t;
    if (k === 'opt') return value(inner);
    if (k === 'vec') return [value(inner), value(inner)];
    if (k === 'enum') return Enums[inner].at(-1);
    return Object.fromEntries(inner.map(([n, tt]) => [n, value(tt)]));
  };
  for (const [, name, fields] of Messages) {
    const msg = value(['struct', fields]);
    const [f] = await decodeMessage(encodeFrame(name, msg));
    assert.equal(f.name, name);
    assert.deepEqual(f.msg, msg, name);
  }
});

// ------------------------------------------------ the client, over a fake socket

class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    queueMicrotask(() => {
      if (this.refuse) return this.serverClose(1006);
      this.readyState = 1;
      this.onopen?.();
    });
  }
  send(b) { this.sent.push(b); }
  close(code = 1000) { this.serverClose(code); }
  serverClose(code) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  deliver(...frames) {
    const data = concatFrames(frames);
    this.onmessage?.({ data: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) });
  }
  async frames() {
    const out = [];
    for (const s of this.sent) for (const f of await decodeMessage(s)) out.push(f);
    return out;
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));
// The server's timers and sizes, as a Configured carries them.
const settings = {
  handshake_ms: 10000, idle_ms: 600000, keepalive_ms: 30000, drain_ms: 10000, kill_grace_ms: 500,
  compression_threshold: 1024, max_output_data: 16384, coalesce_bytes: 16384,
};
const welcome = EXPECTED.welcome[1];

async function connected(opts = {}) {
  FakeSocket.all = [];
  const c = new VoxtermClient('ws://127.0.0.1:7878/ws', { WebSocket: FakeSocket, backoffMinMs: 5, backoffMaxMs: 20, ...opts });
  const p = c.connect();
  await tick();
  const ws = FakeSocket.all[0];
  ws.deliver(encodeFrame('Welcome', welcome));
  assert.deepEqual(await p, welcome);
  // Right after Welcome the client asks for the additions; the tests below
  // count the frames after it.
  const [, configure] = await ws.frames();
  assert.deepEqual([configure.name, configure.msg], ['Configure', { suggestions: opts.suggestions ?? 0, rejections: true, reattach: opts.reattach ?? true }]);
  ws.sent.splice(1, 1);
  return [c, ws];
}

test('client: Hello with subprotocols, Exec, Output, Exit, Cancel', async () => {
  const [c, ws] = await connected({ token: 'tok123' });
  assert.deepEqual(ws.protocols, ['voxterm', 'bearer.tok123']);
  const [hello] = await ws.frames();
  assert.equal(hello.name, 'Hello');
  assert.equal(hello.msg.token, null, 'the token goes in the subprotocol, not in Hello');
  assert.deepEqual(hello.msg.compression, canInflate() ? ['Deflate', 'None'] : ['None']);
  const r = c.exec('echo hi');
  const outs = [];
  r.onOutput = (d, stream) => outs.push([new TextDecoder().decode(d), stream]);
  r.cancel();
  const sent = (await ws.frames()).slice(1);
  assert.deepEqual(sent.map((f) => f.name), ['Exec', 'Cancel']);
  assert.equal(sent[0].msg.command, 'echo hi');
  assert.equal(sent[1].msg.request, r.id);
  ws.deliver(
    encodeFrame('Output', { request: r.id, stream: 'Stdout', seq: 0, data: new TextEncoder().encode('hi\n') }),
    encodeFrame('Exit', { request: r.id, code: null, signal: 9, served_from: 'Exec', backend_us: 5, truncated: false, killed: 'Cancelled' }),
  );
  const exit = await r.done;
  assert.equal(exit.killed, 'Cancelled');
  assert.deepEqual(outs, [['hi\n', 'Stdout']]);
  // Output taken by callback is not also kept for an iterator (a flood would
  // pile up); the end is.
  const evs = [];
  for await (const ev of r) evs.push(ev.type);
  assert.deepEqual(evs, ['exit']);
  // Without callbacks, a later iterator gets everything.
  const q = c.exec('echo again');
  ws.deliver(
    encodeFrame('Output', { request: q.id, stream: 'Stdout', seq: 0, data: new TextEncoder().encode('again\n') }),
    encodeFrame('Exit', { request: q.id, code: 0, signal: null, served_from: 'L1', backend_us: 5, truncated: false, killed: 'None' }),
  );
  await q.done;
  const all = [];
  for await (const ev of q) all.push(ev.type === 'output' ? new TextDecoder().decode(ev.data) : ev.type);
  assert.deepEqual(all, ['again\n', 'exit']);
  c.close();
});

test('client: Error ends its request; ids are unique among in-flight requests; Batch', async () => {
  const [c, ws] = await connected();
  const a = c.exec('true');
  const [b1, b2] = c.batch('Sequential', ['false', { command: 'echo x', cache: 'Bypass' }]);
  assert.equal(new Set([a.id, b1.id, b2.id]).size, 3);
  const batch = (await ws.frames()).find((f) => f.name === 'Batch');
  assert.equal(batch.msg.mode, 'Sequential');
  assert.deepEqual(batch.msg.execs.map((e) => [e.request, e.command, e.cache]), [[b1.id, 'false', 'Default'], [b2.id, 'echo x', 'Bypass']]);
  ws.deliver(encodeFrame('Error', { request: b2.id, code: 'Skipped', message: 'batch stopped' }));
  await assert.rejects(b2.done, (e) => e instanceof RequestError && e.code === 'Skipped');
  c.close();
});

test('client: Spawn honours InputCredit; Resize; end closes stdin', async () => {
  const [c, ws] = await connected();
  const r = c.spawn('cat', { pty: { rows: 24, cols: 80 } });
  r.write('hello world');
  r.end();
  let sent = (await ws.frames()).slice(1);
  assert.deepEqual(sent.map((f) => f.name), ['Spawn'], 'no input before credit');
  assert.deepEqual(sent[0].msg.pty, { rows: 24, cols: 80, term: '' });
  ws.deliver(encodeFrame('InputCredit', { request: r.id, bytes: 5 }));
  await tick();
  sent = (await ws.frames()).slice(2);
  assert.deepEqual(sent.map((f) => [f.name, new TextDecoder().decode(f.msg.data), f.msg.end]), [['Input', 'hello', false]]);
  ws.deliver(encodeFrame('InputCredit', { request: r.id, bytes: 100 }));
  await tick();
  sent = (await ws.frames()).slice(3);
  assert.deepEqual(sent.map((f) => [f.name, new TextDecoder().decode(f.msg.data), f.msg.end]), [['Input', ' world', true]]);
  r.resize(30, 100);
  const last = (await ws.frames()).at(-1);
  assert.deepEqual([last.name, last.msg.rows, last.msg.cols], ['Resize', 30, 100]);
  ws.deliver(encodeFrame('Notice', { request: r.id, kind: 'NeedsTerminal', message: 'x' }));
  ws.deliver(encodeFrame('Exit', { request: r.id, code: 0, signal: null, served_from: 'Exec', backend_us: 5, truncated: false, killed: 'None' }));
  await r.done;
  const evs = [];
  for await (const ev of r) evs.push(ev.type);
  assert.deepEqual(evs, ['notice', 'exit']);
  c.close();
});

test('client: Classify resolves with the class, or rejects with the Error', async () => {
  const [c, ws] = await connected();
  const p = c.classify('rm -rf build', { session: 1 });
  const q = c.classify('ls');
  const sent = (await ws.frames()).filter((f) => f.name === 'Classify');
  assert.deepEqual(sent.map((f) => [f.msg.command, f.msg.session]), [['rm -rf build', 1], ['ls', 0]]);
  ws.deliver(encodeFrame('Classified', { request: sent[0].msg.request, class: 'Mutating', detail: 'writes' }));
  ws.deliver(encodeFrame('Error', { request: sent[1].msg.request, code: 'UnknownType', message: 'old server' }));
  assert.deepEqual(await p, { class: 'Mutating', detail: 'writes' });
  await assert.rejects(q, (e) => e.code === 'UnknownType');
  // A server that does not know Classify answers UnknownType without a request.
  const old = c.classify('ls');
  ws.deliver(encodeFrame('Error', { request: null, code: 'UnknownType', message: 'type 0x16' }));
  await assert.rejects(old, (e) => e.code === 'UnknownType');
  c.close();
});

test('client: Configured, Suggestions and Rejected reach their listeners and calls', async () => {
  const [c, ws] = await connected({ suggestions: 3 });
  const seen = { configured: [], suggestions: [], error: [] };
  for (const ev of Object.keys(seen)) c.on(ev, (m) => seen[ev].push(m));
  ws.deliver(encodeFrame('Configured', { suggestions: 3, rejections: true, reattach_ms: 0, settings }));
  await tick();
  assert.deepEqual(c.configured.settings, settings);
  assert.equal(seen.configured.length, 1);
  ws.deliver(encodeFrame('Suggestions', { after: 4, session: 0, lines: [{ line: 'ls -la', score: 700 }, { line: 'git status', score: 200 }] }));
  await tick();
  assert.deepEqual(seen.suggestions[0].lines.map((l) => l.line), ['ls -la', 'git status']);
  // A refused OpenSession is matched by its handle, whichever is older.
  const first = c.openSession('one');
  const second = c.openSession('two');
  const opens = (await ws.frames()).filter((f) => f.name === 'OpenSession').map((f) => f.msg.session);
  ws.deliver(encodeFrame('Rejected', { about: 'Session', id: opens[1], code: 'TooManySessions', message: 'at most 1' }));
  await assert.rejects(second, (e) => e.code === 'TooManySessions');
  ws.deliver(encodeFrame('SessionOpened', { session: opens[0], cwd: '/w', resumed: false }));
  assert.equal((await first).cwd, '/w');
  assert.ok(!c.sessions.has(opens[1]), 'the refused handle is forgotten');
  // A rejected Input does not end its request.
  const r = c.spawn('cat');
  let rejectedInput = null;
  r.onRejected = (m) => { rejectedInput = m; };
  ws.deliver(encodeFrame('Rejected', { about: 'Request', id: r.id, code: 'InputRefused', message: 'no credit' }));
  await tick();
  assert.equal(rejectedInput.code, 'InputRefused');
  assert.ok(c.requests.has(r.id), 'the request goes on');
  assert.deepEqual(seen.error.map((m) => [m.about, m.code]), [['Session', 'TooManySessions'], ['Request', 'InputRefused']]);
  c.close();
});

test('client: a lost connection\'s commands are taken over on the next one (Attach from the last seq)', async () => {
  const [c, ws] = await connected();
  ws.deliver(encodeFrame('Configured', { suggestions: 0, rejections: true, reattach_ms: 5000, settings }));
  await tick();
  const r = c.exec('seq 1 5', { session: 0 });
  const out = [];
  r.onOutput = (d) => out.push(new TextDecoder().decode(d));
  for (let seq = 0; seq < 3; seq++) ws.deliver(encodeFrame('Output', { request: r.id, stream: 'Stdout', seq, data: new TextEncoder().encode(`${seq + 1}\n`) }));
  await tick();
  ws.serverClose(1006);
  await tick();
  assert.ok(!r.ended, 'the request outlives the connection');
  await new Promise((res) => setTimeout(res, 40));
  const ws2 = FakeSocket.all[1];
  ws2.deliver(encodeFrame('Welcome', { ...welcome, connection: 2 }));
  await tick();
  const sent = (await ws2.frames()).map((f) => [f.name, f.msg]);
  assert.deepEqual(sent.map(([n]) => n), ['Hello', 'Configure', 'Attach']);
  assert.deepEqual(sent[2][1], { request: r.id, connection: 1, session: 0, after_seq: 2 });
  ws2.deliver(
    encodeFrame('Notice', { request: r.id, kind: 'Reattached', message: 're-attached' }),
    encodeFrame('Output', { request: r.id, stream: 'Stdout', seq: 3, data: new TextEncoder().encode('4\n5\n') }),
    encodeFrame('Exit', { request: r.id, code: 0, signal: null, served_from: 'Exec', backend_us: 5, truncated: false, killed: 'None' }),
  );
  const exit = await r.done;
  assert.equal(exit.code, 0);
  assert.equal(out.join(''), '1\n2\n3\n4\n5\n');
  // RequestLost ends a request that could not be taken over.
  c.close();
});

test('client: a command the dying link swallowed is sent again; an Attach names the connection until the take-over is confirmed', async () => {
  const [c, ws] = await connected();
  ws.deliver(encodeFrame('Configured', { suggestions: 0, rejections: true, reattach_ms: 5000, settings }));
  await tick();
  const spoken = c.exec('ls -la', { session: 0 });
  const running = c.exec('sleep 2; echo done', { session: 0 });
  const notices = [];
  spoken.onNotice = (m) => notices.push(m.kind);
  ws.serverClose(1006);
  await new Promise((res) => setTimeout(res, 40));
  // Connection 2: both are attached naming connection 1, then it drops
  // before any answer.
  const ws2 = FakeSocket.all[1];
  ws2.deliver(encodeFrame('Welcome', { ...welcome, connection: 2 }));
  await tick();
  const attaches2 = (await ws2.frames()).filter((f) => f.name === 'Attach').map((f) => f.msg.connection);
  assert.deepEqual(attaches2, [1, 1]);
  ws2.serverClose(1006);
  await new Promise((res) => setTimeout(res, 60));
  // Connection 3: still named 1 (no take-over confirmed). The server took
  // one over and never received the other.
  const ws3 = FakeSocket.all[2];
  ws3.deliver(encodeFrame('Welcome', { ...welcome, connection: 3 }));
  await tick();
  const sent3 = (await ws3.frames()).filter((f) => f.name === 'Attach').map((f) => [f.msg.request, f.msg.connection]);
  assert.deepEqual(sent3, [[spoken.id, 1], [running.id, 1]]);
  ws3.sent.length = 0;
  ws3.deliver(
    encodeFrame('Notice', { request: running.id, kind: 'Reattached', message: 'reconnected' }),
    encodeFrame('Error', { request: spoken.id, code: 'NotReceived', message: 'never reached this server' }),
  );
  await tick();
  const again = (await ws3.frames()).map((f) => [f.name, f.msg]);
  assert.equal(again.length, 1, 'sent again once');
  assert.equal(again[0][0], 'Exec');
  assert.equal(again[0][1].request, spoken.id);
  assert.equal(again[0][1].command, 'ls -la');
  assert.ok(!spoken.ended, 'NotReceived does not end it: it runs now');
  assert.deepEqual(notices, ['Resent']);
  assert.equal(running.home, 3, 'taken over: the next Attach names connection 3');
  assert.equal(spoken.home, 3);
  ws3.deliver(encodeFrame('Exit', { request: spoken.id, code: 0, signal: null, served_from: 'Exec', backend_us: 5, truncated: false, killed: 'None' }));
  assert.equal((await spoken.done).code, 0);
  c.close();
});

test('client: reconnects with backoff, reopens named sessions, fails in-flight requests', async () => {
  const [c, ws] = await connected();
  const opened = c.openSession('work');
  const open1 = (await ws.frames()).find((f) => f.name === 'OpenSession');
  assert.deepEqual(open1.msg, { session: 1, name: 'work' });
  ws.deliver(encodeFrame('SessionOpened', { session: 1, cwd: '/tmp', resumed: false }));
  assert.equal((await opened).cwd, '/tmp');
  const r = c.exec('sleep 30', { session: 1 });
  const states = [];
  c.on('state', (s) => states.push(s));
  ws.serverClose(1006);
  await assert.rejects(r.done, (e) => e.code === 'Disconnected');
  await new Promise((res) => setTimeout(res, 40));
  assert.equal(FakeSocket.all.length, 2, 'reconnected');
  const ws2 = FakeSocket.all[1];
  ws2.deliver(encodeFrame('Welcome', welcome));
  await tick();
  const again = (await ws2.frames()).map((f) => f.name);
  assert.deepEqual(again, ['Hello', 'Configure', 'OpenSession'], 'the additions asked for again, the session rebound by name');
  assert.deepEqual(states, ['reconnecting', 'reconnecting', 'open']);
  assert.throws(() => { ws2.readyState = 3; c.send('Cancel', { request: 1 }); }, RequestError);
  ws2.readyState = 1;
  // Server Pings are answered.
  ws2.deliver(encodeFrame('Ping', { nonce: 42 }));
  await tick();
  const pong = (await ws2.frames()).at(-1);
  assert.deepEqual([pong.name, pong.msg.nonce], ['Pong', 42]);
  c.close();
  await tick();
  assert.equal(c.state, 'closed');
});

test('wsUrlFor follows the page: ws on http, wss on https', () => {
  assert.equal(wsUrlFor({ protocol: 'http:', host: '127.0.0.1:7878' }), 'ws://127.0.0.1:7878/ws');
  assert.equal(wsUrlFor({ protocol: 'https:', host: 'term.example.com' }), 'wss://term.example.com/ws');
});

// The Node reference stack of the cached hot path (benches/hot_path.rs): one
// Node process, `ws` for the WebSocket, `lru-cache` for results,
// `child_process` for misses. It is written the way a Node developer would
// write such a server in an afternoon: idiomatic, with no tuning beyond what
// the libraries offer, so the bench compares voxterm with the stack people
// would otherwise reach for, not with a strawman or a Node micro-optimisation.
//
// It speaks the subset of the protocol (protocol/PROTOCOL.md) the bench uses:
// Hello -> Welcome; Exec (session 0, every CacheMode) -> Output(s) + Exit;
// Ping -> Pong. Other messages are ignored.
//
// Usage: node server.mjs PORT   (listens on 127.0.0.1:PORT, path /ws)

import { execFile } from 'node:child_process';
import http from 'node:http';
import { constants } from 'node:os';
import { LRUCache } from 'lru-cache';
import { WebSocketServer } from 'ws';
// The project's own codec: the reference stack uses the same wire code as
// every JavaScript client, rather than a second implementation to keep in step.
import { VERSION, concatFrames, decodeMessage, encodeFrame } from '../../web/voxterm.js';

// The same limits the bench's canned floor announces.
const LIMITS = {
  max_message_bytes: 1 << 20,
  max_frame_bytes: 1 << 20,
  max_in_flight: 256,
  max_sessions: 16,
  default_timeout_ms: 30_000,
  output_cap_bytes: 1 << 20,
};

// The most output one Output frame carries.
const OUTPUT_CHUNK = 64 * 1024;

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}

// Results by tenant, working directory and command line. Bounded by count and
// by bytes, so a few commands with large output cannot take all the memory.
// No TTL: like the reference stack, a result stays until evicted.
const cache = new LRUCache({
  max: 10_000,
  maxSize: 64 * 1024 * 1024,
  sizeCalculation: (r) => r.stdout.length + r.stderr.length + 64,
});

let connections = 0;

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found: the WebSocket is at /ws\n');
});

// No permessage-deflate: the protocol compresses frames itself (and this
// server answers Compression None), so deflating again would only cost CPU.
const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate: false,
  maxPayload: LIMITS.max_message_bytes,
});

wss.on('connection', (ws) => {
  const conn = {
    id: ++connections,
    tenant: null, // set by Hello
    cwd: process.cwd(), // session 0's working directory (no cd support)
    // Messages are answered in arrival order: decoding is async (a frame may
    // be compressed, and inflating is), so each waits for the previous one.
    inbox: Promise.resolve(),
  };
  // Without a listener, an 'error' (a bad WebSocket frame, a reset) would be
  // thrown and take the whole process down; ws closes the socket itself.
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const arrived = process.hrtime.bigint();
    if (!isBinary) {
      // Answered in turn, like everything else (PROTOCOL.md §1).
      conn.inbox = conn.inbox.then(() => {
        ws.send(encodeFrame('Error', { request: null, code: 'TextFrame', message: 'binary messages only' }));
      });
      return;
    }
    // Start decoding now; only the answering is queued behind earlier messages.
    const decoded = decodeMessage(data, { maxFrameBytes: LIMITS.max_frame_bytes });
    decoded.catch(() => {});
    conn.inbox = conn.inbox
      .then(() => decoded)
      .then((frames) => answer(ws, conn, frames, arrived))
      .catch((e) => {
        // A codec failure that is not a ProtocolError (a bug, or input the
        // codec does not expect): this connection only.
        console.error(`connection ${conn.id}: ${e.message}`);
        ws.close(1011, 'internal error');
      });
  });
});

/** Answers the frames of one WebSocket message; the replies go in one send. */
function answer(ws, conn, frames, arrived) {
  const out = [];
  for (const f of frames) {
    if (f.error) {
      // A frame that does not decode: say why, then drop the connection (a
      // client that sends garbage is not worth resynchronising with).
      out.push(encodeFrame('Error', { request: null, code: f.error.code, message: f.error.message }));
      ws.send(concatFrames(out));
      ws.close(1002, 'malformed frame');
      return;
    }
    const m = f.msg;
    if (conn.tenant === null && f.name !== 'Hello') {
      out.push(encodeFrame('Error', { request: null, code: 'HelloRequired', message: 'send Hello first' }));
      continue;
    }
    switch (f.name) {
      case 'Hello':
        if (conn.tenant !== null) {
          out.push(encodeFrame('Error', { request: null, code: 'UnexpectedMessage', message: 'a second Hello' }));
        } else if (m.version !== VERSION) {
          out.push(encodeFrame('Error', { request: null, code: 'UnsupportedVersion', message: `version ${m.version}` }));
        } else {
          conn.tenant = m.tenant ?? 'default';
          out.push(encodeFrame('Welcome', {
            version: VERSION,
            server: `voxterm-node-reference (node ${process.version})`,
            encoding: 'Bincode',
            compression: 'None',
            limits: LIMITS,
            tenant: conn.tenant,
            connection: conn.id,
          }));
        }
        break;
      case 'Exec':
        exec(ws, conn, m, arrived, out);
        break;
      case 'Ping':
        out.push(encodeFrame('Pong', { nonce: m.nonce }));
        break;
      default:
        // Batch, sessions, Spawn, Stats...: outside what the bench measures.
        break;
    }
  }
  if (out.length) ws.send(concatFrames(out));
}

/** An Exec: a cache hit answers into `out` at once; anything else runs. */
function exec(ws, conn, e, arrived, out) {
  if (e.session !== 0) {
    out.push(encodeFrame('Error', { request: e.request, code: 'UnknownSession', message: `session ${e.session} is not open` }));
    return;
  }
  if (e.command.trim() === '') {
    out.push(encodeFrame('Error', { request: e.request, code: 'InvalidCommand', message: 'empty command' }));
    return;
  }
  // NUL cannot occur in a tenant, a path or a command line: an unambiguous key.
  const key = `${conn.tenant}\0${conn.cwd}\0${e.command}`;
  if (e.cache === 'Default') {
    const hit = cache.get(key);
    if (hit) {
      result(out, e.request, hit, 'L1', arrived);
      return;
    }
  }
  // A miss, Refresh or Bypass: run it. Its answer goes in its own send when
  // the child has exited (other messages are answered meanwhile).
  const child = execFile('/bin/sh', ['-c', e.command], {
    cwd: conn.cwd,
    encoding: 'buffer',
    maxBuffer: LIMITS.output_cap_bytes,
    timeout: e.timeout_ms || LIMITS.default_timeout_ms,
  }, (err, stdout, stderr) => {
    if (ws.readyState !== ws.OPEN) return;
    const frames = [];
    if (err && typeof err.code === 'string' && err.code !== 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
      // The shell could not be started at all (ENOENT, EAGAIN...).
      frames.push(encodeFrame('Error', { request: e.request, code: 'SpawnFailed', message: err.message }));
    } else {
      const r = {
        stdout,
        stderr,
        code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
        signal: err?.signal ? constants.signals[err.signal] ?? null : null,
        truncated: err?.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER',
        // execFile kills only for maxBuffer and for the timeout.
        killed: err?.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? 'OutputLimit' : err?.killed ? 'Timeout' : 'None',
      };
      // Only complete runs are worth serving again.
      if (e.cache !== 'Bypass' && r.code !== null && r.killed === 'None') {
        cache.set(key, { stdout: r.stdout, stderr: r.stderr, code: r.code });
      }
      result(frames, e.request, r, 'Exec', arrived);
    }
    ws.send(concatFrames(frames));
  });
  // An Exec has no input (PROTOCOL.md: stdin is /dev/null); execFile gives
  // the child a pipe, so close it or `cat` would wait for the timeout.
  child.stdin.end();
}

/** Output frames (seq across both streams) and the Exit of one result. */
function result(out, request, r, servedFrom, arrived) {
  let seq = 0;
  // Large output goes in several frames, each well under max_frame_bytes.
  for (const [stream, data] of [['Stdout', r.stdout], ['Stderr', r.stderr]]) {
    for (let at = 0; at < data.length; at += OUTPUT_CHUNK) {
      out.push(encodeFrame('Output', { request, stream, seq: seq++, data: data.subarray(at, at + OUTPUT_CHUNK) }));
    }
  }
  out.push(encodeFrame('Exit', {
    request,
    code: r.code,
    signal: r.signal ?? null,
    served_from: servedFrom,
    backend_us: (process.hrtime.bigint() - arrived) / 1000n,
    truncated: r.truncated ?? false,
    killed: r.killed ?? 'None',
  }));
}

server.listen(port, '127.0.0.1', () => {
  console.log(`voxterm node reference on ws://127.0.0.1:${port}/ws`);
});

// SIGTERM/SIGINT: close the connections (1001, going away) and the listener,
// then exit 0; a peer that never answers the close does not hold us up.
function shutdown() {
  for (const ws of wss.clients) ws.close(1001, 'server shutting down');
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

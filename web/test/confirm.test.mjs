// The read-back gate and the flood writer, with a fake client and a fake terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gate, answer, readBack } from '../confirm.js';
import { TermView, FRAME_BYTES, MAX_QUEUED, SMALL } from '../termview.js';
import { RequestError } from '../voxterm.js';

function fakeClient(classes) {
  const calls = [];
  return {
    calls,
    classify(line, { session }) {
      calls.push([line, session]);
      const c = classes[line];
      if (c instanceof Error) return Promise.reject(c);
      return Promise.resolve({ class: c, detail: `detail of ${line}` });
    },
  };
}

test('read-only and session lines run without asking; mutating and unknown ask', async () => {
  const asked = [];
  let reply = true;
  const client = fakeClient({ ls: 'ReadOnly', 'cd src': 'Session', 'rm -rf build': 'Mutating', 'git push': 'Unknown', 'sudo rm': 'Denied' });
  const gate = new Gate(client, async (q) => { asked.push(q); return reply; });
  assert.deepEqual(await gate.decide('ls'), { run: true, class: 'ReadOnly', detail: 'detail of ls', asked: false });
  assert.equal((await gate.decide('cd src', 2)).run, true);
  assert.deepEqual(client.calls.at(-1), ['cd src', 2]);
  assert.equal(asked.length, 0);
  const yes = await gate.decide('rm -rf build');
  assert.deepEqual([yes.run, yes.asked, yes.class], [true, true, 'Mutating']);
  assert.equal(asked[0].line, 'rm -rf build', 'the read-back names exactly the line');
  reply = false;
  const no = await gate.decide('git push');
  assert.deepEqual([no.run, no.asked, no.class], [false, true, 'Unknown']);
  const denied = await gate.decide('sudo rm');
  assert.deepEqual([denied.run, denied.asked, denied.class], [false, false, 'Denied']);
  assert.equal(asked.length, 2);
});

test('a server without Classify: every line is asked about, and Classify is not sent again', async () => {
  const asked = [];
  const client = fakeClient({ ls: new RequestError('UnknownType', 'type 0x16') });
  const gate = new Gate(client, async (q) => { asked.push(q); return true; });
  const first = await gate.decide('ls');
  assert.deepEqual([first.run, first.asked, first.class], [true, true, 'Unknown']);
  assert.match(first.reason, /cannot class lines/);
  await gate.decide('ls');
  assert.equal(client.calls.length, 1, 'not asked again');
  assert.equal(asked.length, 2);
  // Disconnected: nothing runs, nothing is asked.
  const g2 = new Gate(fakeClient({ x: new RequestError('Disconnected', 'gone') }), async () => true);
  assert.deepEqual((await g2.decide('x')).run, false);
});

test('spoken answers and the read-back text', () => {
  for (const y of ['yes', 'Yes.', 'yeah', 'run it', 'confirm']) assert.equal(answer(y), true, y);
  for (const n of ['no', 'No!', 'cancel', 'stop', 'nope']) assert.equal(answer(n), false, n);
  for (const x of ['yes please remove', 'maybe', '']) assert.equal(answer(x), null, x);
  assert.equal(readBack({ line: 'rm -rf build', class: 'Mutating', detail: '' }), 'This changes things. Run: rm -rf build ? Say yes or no.');
});

function fakeTerm() {
  const t = { writes: [], pending: null, write(data, cb) { t.writes.push(data.length); t.pending = cb; } };
  return t;
}

test('TermView: a small write when idle goes straight to xterm', async () => {
  const frames = [];
  const term = fakeTerm();
  const view = new TermView(term, (f) => frames.push(f));
  view.write('hello\n');
  assert.deepEqual(term.writes, [6], 'written without waiting for a frame');
  view.write('more');
  assert.deepEqual(term.writes, [6], 'not while xterm is still parsing');
  term.pending();
  assert.deepEqual(term.writes, [6, 4], 'a little more goes on at once');
  assert.equal(frames.length, 0);
  const done = view.flushed();
  term.pending();
  await done;
  view.write(new Uint8Array(SMALL + 1));
  assert.equal(term.writes.length, 2, 'a large write waits for a frame');
  assert.equal(frames.length, 1);
});

test('TermView: one chunk per frame, after the write callback, bounded queue', async () => {
  const frames = [];
  const term = fakeTerm();
  const view = new TermView(term, (f) => frames.push(f));
  view.write(new Uint8Array(FRAME_BYTES * 2 + 10));
  assert.equal(frames.length, 1, 'one frame scheduled');
  frames.shift()();
  assert.deepEqual(term.writes, [FRAME_BYTES]);
  assert.equal(frames.length, 0, 'nothing more until xterm has parsed it');
  term.pending();
  frames.shift()();
  term.pending();
  assert.equal(frames.length, 0, 'the small rest follows at once');
  assert.deepEqual(term.writes, [FRAME_BYTES, FRAME_BYTES, 10]);
  // A flood beyond the bound drops old output and says so.
  for (let i = 0; i < 20; i++) view.write(new Uint8Array(1024 * 1024));
  assert.ok(view.queued <= MAX_QUEUED, `${view.queued}`);
  term.pending();
  frames.shift()();
  assert.ok(term.writes.length === 4 && view.dropped === 0, `${term.writes.length} ${view.dropped}`);
  const done = view.flushed();
  for (let guard = 0; (view.writing || frames.length) && guard < 1000; guard++) {
    if (view.writing) term.pending();
    if (frames.length) frames.shift()();
  }
  await done;
  assert.equal(view.queued, 0);
});

test('verdicts that run without asking are kept per connection; asking ones never', async () => {
  const client = fakeClient({ ls: 'ReadOnly', 'rm x': 'Mutating', 'sudo x': 'Denied', bad: new RequestError('InvalidCommand', 'no') });
  const asked = [];
  const gate = new Gate(client, async (q) => { asked.push(q); return false; });
  gate.prefetch('ls', 1);
  assert.equal(client.calls.length, 1, 'asked ahead of Enter');
  assert.equal((await gate.decide('ls', 1)).run, true);
  assert.equal((await gate.decide('ls', 1)).run, true);
  assert.equal(client.calls.length, 1, 'Enter found the answer');
  await gate.decide('ls', 2);
  assert.equal(client.calls.length, 2, 'another session asks again');
  for (let i = 0; i < 2; i++) await gate.decide('rm x', 1);
  for (let i = 0; i < 2; i++) await gate.decide('sudo x', 1);
  for (let i = 0; i < 2; i++) await gate.decide('bad', 1);
  assert.equal(client.calls.length, 8, 'mutating, denied and failed lines are asked every time');
  assert.equal(asked.length, 4, 'and the mutating and unclassable ones read back every time');
  gate.forget();
  await gate.decide('ls', 1);
  assert.equal(client.calls.length, 9, 'a new connection asks afresh');
});

test('TermView: a held header goes to xterm with its answer, in one write', async () => {
  const frames = [];
  const term = fakeTerm();
  const view = new TermView(term, (f) => frames.push(f));
  view.hold(60000, { keepFramesMs: 0 });
  view.write('❯ echo hi\n');
  view.write('hi\n');
  view.write('✓ exit 0\n');
  assert.deepEqual(term.writes, [], 'held');
  view.release();
  assert.equal(term.writes.length, 1, 'header, output and end line in one write');
  term.pending();
  // Past SMALL bytes the hold ends by itself (a flood is not held back).
  view.hold(60000, { keepFramesMs: 0 });
  view.write('❯ seq\n');
  view.write(new Uint8Array(SMALL));
  assert.equal(frames.length, 1, 'released: the backlog waits for a frame as usual');
  assert.equal(view.held, false);
  // A stop (discard) shows what was held instead of dropping it.
  frames.shift()();
  term.pending();
  await view.flushed();
  view.hold(60000, { keepFramesMs: 0 });
  view.write('❯ sleep 30\n');
  view.discard();
  assert.equal(term.writes.at(-1), Buffer.byteLength('❯ sleep 30\n'));
  // And a hold ends after its time.
  view.hold(5, { keepFramesMs: 0 });
  term.pending();
  view.write('❯ slow\n');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(term.writes.at(-1), Buffer.byteLength('❯ slow\n'));
});

test('TermView: a hold keeps frames coming until the answer is in, and no longer', () => {
  const frames = [];
  const view = new TermView(fakeTerm(), (f) => frames.push(f));
  view.hold(60000, { keepFramesMs: 60000 });
  assert.equal(frames.length, 1);
  frames.shift()();
  assert.equal(frames.length, 1, 'another frame asked for');
  view.hold(60000, { keepFramesMs: 60000 });
  assert.equal(frames.length, 1, 'one loop, not two');
  view.write('❯ echo\n');
  view.release();
  frames.shift()();
  assert.equal(frames.length, 0, 'answered: the loop ends');
});

// measure.js with a fake clock, frame and Performance timeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Timings, pageFigures } from '../measure.js';

test('one record per command, from Enter through its stages to the frame that paints it', async () => {
  let now = 100;
  const frames = [];
  const measures = [];
  const perf = { measure: (name, o) => measures.push([name, o]), clearMeasures: () => measures.splice(0) };
  const t = new Timings({ now: () => now, raf: (f) => frames.push(f), perf, keep: 2 });
  const view = { flushed: () => Promise.resolve() };
  for (let i = 0; i < 3; i++) {
    const rec = t.begin(`echo ${i}`);
    now += 1;
    t.decided(rec, { run: true, asked: false });
    now += 2;
    t.output(rec);
    now += 5;
    t.output(rec); // the first output counts
    t.exited(rec, { served_from: 'L1', backend_us: 120n });
    const painted = t.painted(rec, view);
    await Promise.resolve();
    now += 1; // parsed at 109+…
    await new Promise((r) => setImmediate(r));
    now += 7;
    frames.shift()(now - 2); // the frame began 2 ms before its callback ran
    const r = await painted;
    assert.deepEqual([r.decided - r.enter, r.output - r.enter, r.exit - r.enter], [1, 3, 8]);
    assert.equal(r.frame, r.painted - 2);
    assert.equal(r.total, r.painted - r.enter);
    assert.equal(r.run, r.painted - r.decided);
    assert.equal(r.servedFrom, 'L1');
    assert.equal(r.backendUs, 120);
  }
  assert.equal(t.length, 2, 'only the newest are kept');
  assert.deepEqual(t.slice(0).map((r) => r.line), ['echo 1', 'echo 2']);
  assert.ok(measures.length <= 2, 'the Performance measures are cleared as records age out');
});

test('page figures: paints, marks, interactive once both the script and the connection are there', () => {
  const entries = {
    paint: [{ name: 'first-paint', startTime: 90 }, { name: 'first-contentful-paint', startTime: 95 }],
    navigation: [{ domInteractive: 40 }],
  };
  const marks = { 'app-ready': [{ startTime: 200 }] };
  const perf = {
    getEntriesByType: (t) => entries[t] ?? [],
    getEntriesByName: (n) => marks[n] ?? [],
  };
  const before = pageFigures(perf);
  assert.equal(before.firstContentfulPaint, 95);
  assert.equal(before.interactive, null, 'not interactive before the WebSocket is open');
  marks['voxterm-connected'] = [{ startTime: 250 }];
  assert.deepEqual(pageFigures(perf), { firstPaint: 90, firstContentfulPaint: 95, domInteractive: 40, scriptReady: 200, connected: 250, interactive: 250 });
});

// pages.mjs: N voice-terminal pages in real headless Chromium, each running a
// mix of cached and uncached commands against a running server, measured in
// the page (web/measure.js). Run by `loadtest browser`, which parses the one
// `voxterm-browser-result: {json}` line this prints and grades it; runnable
// alone too:
//
//   node web/e2e/pages.mjs --url http://127.0.0.1:7878/ --pages 2 --duration-ms 10000
//
// Each page: load (first paint, first contentful paint, script ready, the
// WebSocket open), a few warm-up commands (so the cached lines are in the
// cache), then commands until the duration is up with a random think time
// between them: a person's Enter falls anywhere in a frame, and a loop that
// submits from the previous command's frame callback would measure only one
// phase of it. The page's JS heap is read after a GC at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChromeDriver, sleep } from './driver.mjs';

function options(argv) {
  const o = { url: null, pages: 2, durationMs: 10000, thinkMinMs: 20, thinkMaxMs: 80, cachedShare: 0.5, token: null, warmup: 4 };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = [argv[i], argv[i + 1]];
    const num = () => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k} needs a number ≥ 0, not ${v}`);
      i++;
      return n;
    };
    if (k === '--url') {
      o.url = v;
      i++;
    } else if (k === '--token') {
      o.token = v;
      i++;
    } else if (k === '--pages') o.pages = Math.max(1, Math.floor(num()));
    else if (k === '--duration-ms') o.durationMs = num();
    else if (k === '--think-min-ms') o.thinkMinMs = num();
    else if (k === '--think-max-ms') o.thinkMaxMs = num();
    else if (k === '--cached-share') o.cachedShare = Math.min(1, num());
    else if (k === '--warmup') o.warmup = Math.floor(num());
    else throw new Error(`unknown option ${k}`);
  }
  if (!o.url) throw new Error('--url http://HOST:PORT/ is required');
  o.thinkMaxMs = Math.max(o.thinkMaxMs, o.thinkMinMs);
  return o;
}

/**
 * The in-page loop (WebDriver's async script): submits lines through the
 * page's own form, as Enter does, until `until` (performance.now() time) or
 * `max` commands; resolves with the records measure.js kept for them.
 */
const LOOP = `const [o, until, max, done] = arguments;
  const v = window.__voxterm;
  const line = document.getElementById('line');
  const form = document.getElementById('prompt');
  const start = v.timings.length;
  let n = 0;
  const pick = () => Math.random() < o.cachedShare
    ? 'echo voxterm-browser-cached-' + (n % 4)
    : 'date +%N';
  const next = () => {
    if (n >= max || performance.now() >= until) {
      return done(v.timings.slice(start).map((t) => ({ line: t.line, servedFrom: t.servedFrom ?? null,
        backendUs: t.backendUs ?? null, total: t.total, run: t.run, asked: t.asked,
        stages: [t.decided, t.output, t.exit, t.parsed, t.frame, t.painted].map((x) => x === null ? null : x - t.enter) })));
    }
    const before = v.timings.length;
    line.value = pick();
    n++;
    form.requestSubmit();
    const wait = () => {
      if (!document.getElementById('confirm').hidden) document.getElementById('confirm-yes').click();
      if (v.timings.length > before) return setTimeout(next, o.thinkMinMs + Math.random() * (o.thinkMaxMs - o.thinkMinMs));
      setTimeout(wait, 1);
    };
    wait();
  };
  next();`;

const HEAP = `const done = arguments[0]; if (window.gc) window.gc();
  setTimeout(() => done(performance.memory ? performance.memory.usedJSHeapSize : null), 100);`;

async function onePage(driver, o, profile, index) {
  const page = await driver.session(profile);
  const url = new URL(o.url);
  if (o.token) url.hash = `token=${encodeURIComponent(o.token)}`;
  await page.goto(url.toString());
  await page.until('the page to connect', `const c = document.getElementById('conn'); return c && (c.dataset.state === 'open' || c.dataset.state === 'refused') && c.dataset.state;`, 30000)
    .then((state) => {
      if (state !== 'open') throw new Error(`page ${index}: the server refused the page (${state}); a token (--token) or allowed_origins?`);
    });
  // Both marks are set once the connection is open; ask measure.js itself.
  const load = await page.runAsync(`const done = arguments[0];
    import('/measure.js').then((m) => done(m.pageFigures()), (e) => done({ error: String(e) }));`);
  const heapAfterLoad = await page.runAsync(HEAP);
  if (o.warmup) await page.runAsync(LOOP, { ...o, cachedShare: 1, thinkMinMs: 0, thinkMaxMs: 0 }, 1e12, o.warmup);
  await page.runAsync(LOOP, { ...o, cachedShare: 0, thinkMinMs: 0, thinkMaxMs: 0 }, 1e12, 1);
  const commands = [];
  const end = Date.now() + o.durationMs;
  // In slices, so no one WebDriver call nears its script timeout.
  while (Date.now() < end) {
    const sliceMs = Math.min(end - Date.now(), 60000);
    const got = await page.runAsync(`${LOOP}`, o, await page.run('return performance.now();') + sliceMs, 1e9);
    commands.push(...got);
  }
  const heapAfterRun = await page.runAsync(HEAP);
  const dom = await page.run('return document.getElementsByTagName("*").length;');
  await page.close().catch(() => {});
  return { page: index, load, heapAfterLoadBytes: heapAfterLoad, heapAfterRunBytes: heapAfterRun, domElements: dom, commands };
}

async function main() {
  const o = options(process.argv.slice(2));
  const tmp = mkdtempSync(join(tmpdir(), 'voxterm-pages-'));
  let driver = null;
  const stop = () => {
    driver?.stop();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  driver = await ChromeDriver.start();
  const t0 = Date.now();
  const pages = await Promise.all(Array.from({ length: o.pages }, (_, i) => onePage(driver, o, join(tmp, `profile-${i}`), i)));
  const result = {
    schema: 'voxterm-browser/1',
    url: o.url,
    chromium: await browserVersion(driver),
    options: o,
    wallMs: Date.now() - t0,
    pages,
  };
  console.log(`voxterm-browser-result: ${JSON.stringify(result)}`);
}

async function browserVersion(driver) {
  try {
    const st = await driver.wd('GET', '/status');
    return st.build?.version ? `chromedriver ${st.build.version}` : null;
  } catch {
    return null;
  }
}

main().then(() => process.exit(0), async (e) => {
  console.error(`pages.mjs FAILED: ${e.stack || e}`);
  await sleep(0);
  process.exit(1);
});

// measure.js: what the person feels, measured in the page. Each command gets
// one record from Enter (or the final transcript that ran it) to the frame
// after its output and end line are in the terminal, with the stages between,
// so a slow command shows where its time went:
//
//   enter → decided (Classify answered, or "yes") → output (first Output frame)
//   → exit (the Exit) → parsed (xterm.js has parsed everything) → frame (the
//   animation frame after that began) → painted (in that frame, xterm.js has
//   rendered its rows, in its callback before ours; the browser paints right
//   after). frame − parsed is the wait for the display's next frame (up to
//   16.7 ms at 60 Hz, wherever Enter fell); painted − frame is the rendering.
//
// Every record is also a Performance measure (`voxterm:command`), so a DevTools
// recording shows them on its timeline; the measures are cleared as records
// age out, so a long session does not grow the page's timeline buffer.
// `loadtest browser` and web/e2e/browser.mjs read `window.__voxterm.timings`
// and `pageFigures()`.

export const KEEP = 2000;
const MEASURE = 'voxterm:command';

/** Page load figures, ms from navigation start; null where not (yet) known. */
export function pageFigures(perf = performance) {
  const paint = Object.fromEntries(perf.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
  const mark = (name) => perf.getEntriesByName(name, 'mark')[0]?.startTime ?? null;
  const nav = perf.getEntriesByType('navigation')[0];
  const ready = mark('app-ready');
  const connected = mark('voxterm-connected');
  return {
    firstPaint: paint['first-paint'] ?? null,
    firstContentfulPaint: paint['first-contentful-paint'] ?? null,
    domInteractive: nav ? nav.domInteractive : null,
    scriptReady: ready,
    connected,
    // The person can run a command: the page's script is ready and the
    // WebSocket is open (Welcome received).
    interactive: ready !== null && connected !== null ? Math.max(ready, connected) : null,
  };
}

export class Timings {
  constructor({ now = () => performance.now(), raf = (f) => requestAnimationFrame(f), perf = globalThis.performance, keep = KEEP } = {}) {
    this.now = now;
    this.raf = raf;
    this.perf = perf;
    this.keep = keep;
    this.list = [];
    this.measures = 0;
  }

  get length() {
    return this.list.length;
  }

  slice(from, to) {
    return this.list.slice(from, to);
  }

  /** Enter was pressed on `line` (or its final transcript said "run"). */
  begin(line) {
    return { line, enter: this.now(), decided: null, output: null, exit: null, parsed: null, frame: null, painted: null };
  }

  /** The gate decided (run or not); `asked` when the person was asked. */
  decided(rec, decision) {
    rec.decided = this.now();
    rec.asked = !!decision.asked;
  }

  /** An Output frame of this command arrived (the first one counts). */
  output(rec) {
    if (rec.output === null) rec.output = this.now();
  }

  /** Its Exit arrived: where the answer came from and the server's own time. */
  exited(rec, exit) {
    rec.exit = this.now();
    rec.servedFrom = exit?.served_from ?? null;
    rec.backendUs = exit ? Number(exit.backend_us) : null;
  }

  /**
   * Once `view` has handed everything to xterm.js and xterm has parsed it,
   * waits for the next animation frame and keeps the record. Resolves with it.
   */
  async painted(rec, view) {
    await view.flushed();
    rec.parsed = this.now();
    rec.frame = await new Promise((r) => this.raf(r));
    rec.painted = this.now();
    // The frame's start is on the same clock; a runtime without it says painted.
    if (typeof rec.frame !== 'number' || rec.frame > rec.painted) rec.frame = rec.painted;
    // total: Enter → painted, with the Classify (and a read-back) first; run:
    // from the decision to run → painted.
    rec.total = rec.painted - rec.enter;
    rec.run = rec.painted - (rec.decided ?? rec.enter);
    this.list.push(rec);
    if (this.list.length > this.keep) this.list.splice(0, this.list.length - this.keep);
    try {
      this.perf?.measure(MEASURE, { start: rec.enter, end: rec.painted, detail: { line: rec.line, servedFrom: rec.servedFrom } });
      if (++this.measures > this.keep) {
        this.perf.clearMeasures(MEASURE);
        this.measures = 0;
      }
    } catch {
      // A runtime without User Timing level 3: the record is kept all the same.
    }
    return rec;
  }
}

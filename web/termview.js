// termview.js: one xterm.js terminal fed without freezing the page. Output is
// queued and written once per animation frame, at most FRAME_BYTES at a time and
// only after xterm's write callback says the previous chunk is parsed, so a
// flood (`seq 1 2000000`) costs the page a bounded slice of each frame. When the
// queue passes MAX_QUEUED bytes the oldest queued output is dropped with a
// visible marker: the scrollback could not have kept it anyway.

export const FRAME_BYTES = 64 * 1024;
export const MAX_QUEUED = 8 * 1024 * 1024;
/** Writes up to this size go to xterm at once when nothing is being written. */
export const SMALL = 16 * 1024;
/** How long a hold keeps animation frames coming, at most (see keepFrames). */
export const KEEP_FRAMES_MS = 250;

export class TermView {
  constructor(term, raf = (f) => requestAnimationFrame(f)) {
    this.term = term;
    this.raf = raf;
    this.queue = [];
    this.queued = 0;
    this.dropped = 0;
    this.writing = false;
    this.scheduled = false;
    this.written = 0;
    this.received = 0;
    this.idle = [];
    this.held = false;
    this.holdTimer = 0;
    this.framesUntil = 0;
    this.frameLoop = false;
  }

  /**
   * Holds small writes for up to `ms`, or until `release()`: a command's
   * header, its output and its end line then reach xterm.js in one write and
   * are painted in one frame. Written one by one, the header's frame (xterm
   * re-renders every row when a line scrolls in, several ms here) tends to be
   * rendering just when the answer arrives, and the answer waits behind it
   * for the frame after. Past SMALL queued bytes the hold ends at once.
   */
  hold(ms, { keepFramesMs = KEEP_FRAMES_MS } = {}) {
    this.held = true;
    clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => this.release({ answered: false }), ms);
    this.keepFrames(keepFramesMs);
  }

  /**
   * Keeps animation frames coming (an empty callback each frame) for up to
   * `ms`, or until the answer is released: measured in headless Chromium on
   * this project's 2-core machine, an answer that arrives while the page is
   * idle tends to wait for the first frame the renderer has to start up
   * (decided → output p50 about 8 ms for a sub-millisecond round trip) and
   * then for the next one; with frames already coming, the p95 of Enter →
   * painted for a cached command fell from about 30 to 22 ms in the same
   * run (an A/B alternated 3 times). An empty frame costs the main thread
   * next to nothing, and the loop is bounded.
   */
  keepFrames(ms) {
    if (!(ms > 0)) return;
    this.framesUntil = Math.max(this.framesUntil, performance.now() + ms);
    if (this.frameLoop) return;
    this.frameLoop = true;
    const tick = () => {
      if (this.framesUntil && performance.now() < this.framesUntil) this.raf(tick);
      else {
        this.framesUntil = 0;
        this.frameLoop = false;
      }
    };
    this.raf(tick);
  }

  /** Ends a hold; `answered` (the default): the command's end is in, so the frames may stop too. */
  release({ answered = true } = {}) {
    if (answered) this.framesUntil = 0;
    if (!this.held) return;
    this.held = false;
    clearTimeout(this.holdTimer);
    this.schedule();
  }

  write(data) {
    if (typeof data === 'string') data = new TextEncoder().encode(data);
    if (!data.length) return;
    this.received += data.length;
    this.queue.push(data);
    this.queued += data.length;
    while (this.queued > MAX_QUEUED && this.queue.length > 1) {
      const old = this.queue.shift();
      this.queued -= old.length;
      this.dropped += old.length;
    }
    this.schedule();
  }

  schedule() {
    if (this.held) {
      if (this.queued <= SMALL && !this.dropped) return;
      this.held = false;
      clearTimeout(this.holdTimer);
    }
    if (this.scheduled || this.writing) return;
    // Idle and a small write: hand it to xterm now (it paints on its next
    // frame); only a backlog waits for frames, so a short answer costs no
    // extra frame and a flood cannot take more than one chunk per frame.
    if (this.queued <= SMALL && !this.dropped) {
      this.pump();
      return;
    }
    this.scheduled = true;
    this.raf(() => this.pump());
  }

  pump() {
    this.scheduled = false;
    if (this.writing) return;
    if (this.dropped) {
      const note = `\r\n\x1b[33m[… ${this.dropped} bytes of output skipped to keep up …]\x1b[0m\r\n`;
      this.dropped = 0;
      this.queue.unshift(new TextEncoder().encode(note));
      this.queued += this.queue[0].length;
    }
    if (!this.queue.length) {
      for (const f of this.idle.splice(0)) f();
      return;
    }
    let n = 0;
    const parts = [];
    while (this.queue.length && n < FRAME_BYTES) {
      const head = this.queue[0];
      const take = Math.min(head.length, FRAME_BYTES - n);
      parts.push(head.subarray(0, take));
      n += take;
      if (take === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(take);
    }
    this.queued -= n;
    const chunk = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      chunk.set(p, at);
      at += p.length;
    }
    this.writing = true;
    // xterm.js parses a write on a later task (setTimeout), behind whatever
    // else is queued, except right after user input, when it parses at once.
    // A small write (a command's header, a short answer, its end line) is
    // parsed now the same way, so it makes the coming frame; a flood's
    // chunks still go one per frame. The hook is xterm's own (its
    // WriteBuffer's handleUserInput, not public API: the vendored version is
    // pinned); without it writes are parsed as before.
    if (n <= SMALL) this.term._core?._writeBuffer?.handleUserInput?.();
    this.term.write(chunk, () => {
      this.writing = false;
      this.written += n;
      if (this.queue.length && this.queued <= SMALL && !this.dropped) {
        // A little more came meanwhile: no reason to wait for a frame.
        this.pump();
      } else if (this.queue.length) {
        // A backlog: the next chunk waits for the next frame.
        this.scheduled = true;
        this.raf(() => this.pump());
      } else {
        for (const f of this.idle.splice(0)) f();
      }
    });
  }

  /** Drops what is queued and not yet written (a stopped command's backlog); returns its bytes. */
  discard() {
    // What was held (a header, a little output) was meant to be seen.
    this.release();
    const n = this.queued + this.dropped;
    this.queue = [];
    this.queued = 0;
    this.dropped = 0;
    return n;
  }

  /** Resolves once everything queued so far is parsed. */
  flushed() {
    this.release();
    if (!this.queue.length && !this.writing) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
}

// confirm.js: what happens between "the person said a line" and "the line runs".
// The server classes the line (Classify); a line it calls Mutating or Unknown is
// read back and runs only after a "yes"; Denied never runs. Speech recognition
// mishears, so the read-back shows and speaks exactly the line that will run.
// A server without Classify support cannot tell, so then every line is asked
// about (fail closed), and the page says why.

export const ASK = new Set(['Mutating', 'Unknown']);
/** Verdicts kept per connection (lines × sessions). */
export const KEEP = 500;

/**
 * Decides whether `line` runs. `client.classify(line, {session})` resolves with
 * `{class, detail}`; `ask({line, class, detail, reason})` resolves true for yes.
 * Resolves `{run, class, detail, asked, reason}`.
 */
export class Gate {
  constructor(client, ask) {
    this.client = client;
    this.ask = ask;
    this.classifySupported = true;
    // Classify answers by line and session: in flight, or kept when the line
    // runs without asking (ReadOnly, Session). Keeping them takes the round
    // trip off a repeated line's Enter (history, "run it again", a cached
    // command), and it is safe: the class is the server's walk of the line,
    // which does not change while the connection's server runs; a Denied
    // line is refused by the server on Exec whatever the page believes; and
    // every new connection starts afresh (`forget()`), since a restarted
    // server may have another policy. Asking verdicts are never kept, so a
    // read-back is asked from a fresh Classify every time.
    this.known = new Map();
  }

  /** A new connection (or none): nothing the last server said is kept. */
  forget() {
    this.known.clear();
  }

  /**
   * Asks the server about `line` ahead of Enter (the final transcript just
   * filled the line, or the person paused typing), so Enter finds the answer
   * here. Errors are left for `decide` to ask again.
   */
  prefetch(line, session = 0) {
    if (!this.classifySupported || !line.trim()) return;
    this.verdict(line, session).catch(() => {});
  }

  verdict(line, session) {
    const key = `${session}\n${line}`;
    const kept = this.known.get(key);
    if (kept) {
      // Most recently used last: the oldest goes first when full.
      this.known.delete(key);
      this.known.set(key, kept);
      return kept;
    }
    const p = this.client.classify(line, { session });
    this.known.set(key, p);
    while (this.known.size > KEEP) this.known.delete(this.known.keys().next().value);
    p.then((v) => {
      if (ASK.has(v?.class) || v?.class === 'Denied') this.known.delete(key);
    }, () => this.known.delete(key));
    return p;
  }

  async decide(line, session = 0) {
    let verdict;
    let reason = '';
    if (this.classifySupported) {
      try {
        verdict = await this.verdict(line, session);
      } catch (e) {
        if (e.code === 'UnknownType' || e.code === 'UnexpectedMessage') {
          this.classifySupported = false;
        } else if (e.code === 'PolicyDenied') {
          return { run: false, class: 'Denied', detail: e.detail ?? e.message, asked: false };
        } else if (e.code === 'Disconnected') {
          return { run: false, class: null, detail: 'not connected', asked: false };
        }
        reason = this.classifySupported
          ? `the server could not class this line (${e.code})`
          : 'this server cannot class lines (no Classify), so every line is read back';
      }
    } else {
      reason = 'this server cannot class lines (no Classify), so every line is read back';
    }
    const cls = verdict?.class ?? 'Unknown';
    const detail = verdict?.detail ?? '';
    if (cls === 'Denied') return { run: false, class: cls, detail, asked: false };
    if (!ASK.has(cls)) return { run: true, class: cls, detail, asked: false };
    const yes = await this.ask({ line, class: cls, detail, reason });
    return { run: !!yes, class: cls, detail, asked: true, reason };
  }
}

/** The words that answer a read-back. */
export function answer(transcript) {
  const t = transcript.trim().toLowerCase().replace(/[.!?,]/g, '');
  if (/^(yes|yeah|yep|confirm|run it|do it|go ahead)$/.test(t)) return true;
  if (/^(no|nope|cancel|don't|do not|stop)$/.test(t)) return false;
  return null;
}

/** What the page says when it reads a line back. */
export function readBack({ line, class: cls, detail }) {
  const why = cls === 'Mutating' ? 'This changes things' : 'I cannot tell what this does';
  return `${why}${detail ? ` (${detail})` : ''}. Run: ${line} ? Say yes or no.`;
}

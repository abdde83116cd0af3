// confirm.js: what happens between "the person said a line" and "the line runs".
// The server classes the line (Classify); a line it calls Mutating or Unknown is
// read back and runs only after a "yes"; Denied never runs. Speech recognition
// mishears, so the read-back shows and speaks exactly the line that will run.
// A server without Classify support cannot tell, so then every line is asked
// about (fail closed), and the page says why.

export const ASK = new Set(['Mutating', 'Unknown']);

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
  }

  async decide(line, session = 0) {
    let verdict;
    let reason = '';
    if (this.classifySupported) {
      try {
        verdict = await this.client.classify(line, { session });
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

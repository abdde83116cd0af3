// Suggestions: the server's likely next commands (its prediction, the same
// that drives prefetch), shown as numbered chips after each command. Saying
// "one" or clicking runs it; it is answered at once when the server has
// prefetched it meanwhile (the block then shows `prefetch`).
//
// The server only ever suggests lines this tenant ran itself in this context,
// and running a chip goes through the same read-back gate as a typed line.

const WORDS = new Map([
  ['one', 1], ['won', 1], ['first', 1], ['1', 1],
  ['two', 2], ['to', 2], ['too', 2], ['second', 2], ['2', 2],
  ['three', 3], ['third', 3], ['3', 3],
  ['four', 4], ['for', 4], ['fourth', 4], ['4', 4],
  ['five', 5], ['fifth', 5], ['5', 5],
]);

const LEADS = new Set(['the', 'number', 'run', 'option', 'suggestion', 'choice', 'pick']);
const ORDINALS = new Set(['first', 'second', 'third', 'fourth', 'fifth']);

/**
 * The chip a spoken (or typed) phrase picks: "one", "number two", "run
 * three", "the first one", "option 2". 0 when the phrase is not a pick, so
 * it is read as a command line instead. Homophones ("to", "for") count only
 * alone or after "number"/"run"/"option", never inside a longer phrase.
 */
export function pickNumber(text) {
  const words = String(text).toLowerCase().replace(/[.!?,#]/g, ' ').split(/\s+/).filter(Boolean);
  if (words.length === 1) return WORDS.get(words[0]) ?? 0;
  if (words.length > 4 || !LEADS.has(words[0])) return 0;
  // "number two", "run three", "the first one": lead words, then one number.
  let body = words;
  while (body.length && LEADS.has(body[0])) body = body.slice(1);
  if (body.length === 2 && body[1] === 'one' && ORDINALS.has(body[0])) body = [body[0]];
  return body.length === 1 ? WORDS.get(body[0]) ?? 0 : 0;
}

/** The chips under the prompt: one button per suggestion. */
export class Chips {
  /** `host`: the element the chips go in; `run(line)`: runs a picked line. */
  constructor(host, run) {
    this.host = host;
    this.run = run;
    this.lines = [];
  }

  /** Shows `lines` (`[{ line, score }]`, most likely first); none hides the row. */
  show(lines) {
    this.lines = (lines ?? []).map((s) => s.line);
    this.host.replaceChildren();
    this.lines.forEach((line, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.dataset.n = String(i + 1);
      const n = document.createElement('span');
      n.className = 'n';
      n.textContent = String(i + 1);
      const code = document.createElement('code');
      code.textContent = line;
      b.append(n, code);
      b.title = `say "${['one', 'two', 'three', 'four', 'five'][i] ?? i + 1}" or press Alt+${i + 1}`;
      b.setAttribute('aria-label', `suggestion ${i + 1}: ${line}`);
      b.addEventListener('click', () => this.run(line));
      this.host.append(b);
    });
    this.host.hidden = this.lines.length === 0;
  }

  /** The line of chip `n` (1-based), or null. */
  line(n) {
    return this.lines[n - 1] ?? null;
  }
}
